"""Push a clean trace set or a student to the Hugging Face Hub, each with a card that validates.

    distill filter --teacher r1 --prompts numinamath push_to_hub=me/numinamath-r1 license=apache-2.0
    make student SIZE=7b TEACHER=r1 PROMPTS=numinamath ARGS="push_to_hub=me/qwen-7b-distill"
    make student SIZE=7b ... ARGS="push_to_hub=me/qwen-7b-distill push_checkpoints=true"   # + a branch per checkpoint

A trace set goes up as one commit: data/train.jsonl (clean.jsonl), filter_report.json (and the
import record of an imported set) and a README.md dataset card whose YAML header has the
license, the data files and tags, and whose body names the teachers (counted from the traces)
and the filter counts. A student goes up as final/ with a model card: base_model, the datasets
it was trained on (hub sets it was imported from, and trace sets pushed from here), and the
eval table as model-index results when `make eval` has run. `hub_endpoint=` (or HF_ENDPOINT)
points at another hub; the token is huggingface_hub's (HF_TOKEN or `hf auth login`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from distill.trace import read_traces

log = logging.getLogger(__name__)

HUB_RECORD = "hub.json"
"""Written beside clean.jsonl once pushed: the repo id, so a student trained on it names the dataset."""
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CHECKPOINT_IGNORE = ["*.pt", "*.pth", "global_step*", "global_step*/**"]
"""Optimizer, scheduler and RNG states and DeepSpeed shards: a revision holds the weights, not the resume state."""


def _api(endpoint: str | None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


# ---------------------------------------------------------------------------------------------
# A clean trace set


def dataset_card(folder: Path, repo_id: str, license: str | None = None):
    """The README.md of a trace set pushed from `folder` (clean.jsonl, filter_report.json, import.json)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    folder = Path(folder)
    teachers: Counter[str] = Counter()
    tasks: Counter[str] = Counter()
    n = 0
    for t in read_traces(folder / "clean.jsonl"):
        n += 1
        teachers[str(t.teacher.get("model", "unknown"))] += 1
        tasks[t.task] += 1
    imported = _json(folder / "import.json")
    report = _json(folder / "filter_report.json")
    license = license or imported.get("license") or "unknown"
    data = DatasetCardData(
        license=license, language=["en"], pretty_name=repo_id.split("/")[-1],
        task_categories=["text-generation"], size_categories=[_size_category(n)],
        tags=["reasoning", "distillation", "synthetic", "distill"],
        source_datasets=[imported["source"]] if imported.get("source") and HUB_ID.match(str(imported["source"])) else None,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train.jsonl"}]}],
    )
    body = [f"# {repo_id.split('/')[-1]}", "",
            f"{n} reasoning traces kept by `distill filter`, one `Trace` record per line (prompt `messages`, "
            "`reasoning`, `answer`, `reference`, `teacher`, `meta`). Render them for training as "
            "`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`.", "",
            "## Teacher", "", *[f"- `{m}`: {c} traces" for m, c in teachers.most_common()], "",
            "## Tasks", "", *[f"- {k}: {c}" for k, c in tasks.most_common()], ""]
    if imported:
        body += ["## Source", "", f"Imported from `{imported.get('source')}` (subset {imported.get('subset')}, "
                 f"revision {imported.get('revision') or 'latest'}); license {license}."
                 + (f" Homepage: {imported['homepage']}." if imported.get("homepage") else ""), ""]
    body += ["## Filters", ""]
    if report:
        body += [f"{report.get('n_kept', n)} kept of {report.get('n_in', '?')}.", "",
                 "| filter | dropped |", "|---|---|",
                 *[f"| {k} | {v} |" for k, v in (report.get("dropped") or {}).items()], "",
                 "The whole report is `filter_report.json` in this repository.", ""]
    else:
        body += ["No filter report beside the traces.", ""]
    # Not from_template: a trace or a card body may hold Jinja-like text ({% generation %}).
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def push_trace_set(folder: str | Path, repo_id: str, *, endpoint: str | None = None, license: str | None = None,
                   private: bool = False) -> str:
    """Create the dataset repo if needed and upload the set in one commit; return the commit URL."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    card = dataset_card(folder, repo_id, license)
    ops = [CommitOperationAdd("README.md", str(card).encode()),
           CommitOperationAdd("data/train.jsonl", str(folder / "clean.jsonl"))]
    ops += [CommitOperationAdd(name, str(folder / name)) for name in ("filter_report.json", "import.json")
            if (folder / name).exists()]
    api = _api(endpoint)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
    commit = api.create_commit(repo_id, operations=ops, repo_type="dataset",
                               commit_message=f"distill: {len(ops) - 1} files from {folder}")
    (folder / HUB_RECORD).write_text(json.dumps({"repo_id": repo_id, "commit": commit.oid}) + "\n")
    log.info("pushed %s to %s", folder, commit.commit_url)
    return commit.commit_url


# ---------------------------------------------------------------------------------------------
# A student


def trained_on(record: dict[str, Any]) -> list[str]:
    """Hub ids of the data: trace sets pushed from here (hub.json beside them), sets they were imported from."""
    paths = [Path(s["path"]) for s in (record.get("mixture") or {}).get("sets", [])]
    if not paths and record.get("data", {}).get("path"):
        paths = [Path(record["data"]["path"])]
    found: list[str] = []
    for path in paths:
        pushed = _json(path.parent / HUB_RECORD).get("repo_id")
        sources = {str(t.teacher.get("source")) for t in read_traces(path)} if path.exists() else set()
        for name in [pushed, *sorted(sources)]:
            if name and HUB_ID.match(name) and name not in found:
                found.append(name)
    return found


def model_card(out_dir: str | Path, repo_id: str):
    """The README.md of final/: card.md's text under a YAML header with base_model, datasets and eval results."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from distill.students.card import default_eval_report, read_record

    out_dir = Path(out_dir)
    record = read_record(out_dir)
    cfg = record.get("config", {})
    base = cfg.get("base", "")
    report = _json(default_eval_report(out_dir))
    results = []
    for bench, row in (report.get("benchmarks") or {}).items():
        student = row.get("student") or {}
        if "pass@1" in student:
            results.append(EvalResult(task_type="text-generation", dataset_type=_bench_id(bench), dataset_name=bench,
                                      metric_type="pass@1", metric_value=round(100 * student["pass@1"]["mean"], 2),
                                      metric_name=f"pass@1 (%, k={student.get('k', '?')})"))
    data = ModelCardData(
        model_name=repo_id.split("/")[-1], base_model=base if HUB_ID.match(base) else None,
        datasets=trained_on(record) or None, library_name="transformers", pipeline_tag="text-generation",
        tags=["reasoning", "distillation", "distill", "sft" if cfg.get("kd", "none") == "none" else str(cfg.get("kd"))],
        eval_results=results or None,
    )
    card_md = out_dir / "card.md"
    body = card_md.read_text() if card_md.exists() else f"# {repo_id}\n"
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _bench_id(bench: str) -> str:
    """datasets/<bench>.yaml's hub id, else the name."""
    try:
        from distill.prompts import load_prompt_config

        return load_prompt_config(bench).hub or bench
    except Exception:  # noqa: BLE001 - an eval of a benchmark no longer on the menu still gets a card
        return bench


def push_student(out_dir: str | Path, repo_id: str, *, endpoint: str | None = None, private: bool = False) -> str:
    """Upload out_dir/final with its model card (README.md) in one commit; return the commit URL."""
    out_dir = Path(out_dir)
    final = out_dir / "final"
    if not (final / "config.json").exists():
        from distill.config import ConfigError

        raise ConfigError(f"{final}: no trained model to push (run `make student` first)")
    card = model_card(out_dir, repo_id)
    card.save(final / "README.md")  # the hub shows it; final/ keeps the card that went up
    api = _api(endpoint)
    api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(final), repo_type="model",
                               commit_message=f"distill: student from {out_dir}")
    log.info("pushed %s to %s", final, commit.commit_url)
    return commit.commit_url


def push_checkpoint_callback(repo_id: str, endpoint: str | None = None, private: bool = False):
    """A TrainerCallback that uploads each checkpoint as it is saved to branch checkpoint-<step> (rank 0).

    Synchronous: the upload of a checkpoint ends before training goes on, and a failed one stops
    the run with the hub's error. Resume state (optimizer, RNG, DeepSpeed shards) stays local.
    """
    from transformers import TrainerCallback

    class PushCheckpoints(TrainerCallback):
        def __init__(self):
            self.pushed: list[str] = []

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            api = _api(endpoint)
            api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
            api.create_branch(repo_id, branch=folder.name, exist_ok=True)
            commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=folder.name,
                                       ignore_patterns=CHECKPOINT_IGNORE, commit_message=f"distill: {folder.name}")
            self.pushed.append(folder.name)
            log.info("pushed %s to %s", folder, commit.commit_url)

    return PushCheckpoints()


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}

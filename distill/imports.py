"""Import a published trace set into the Trace record: the other way into the filter stage.

    make import SOURCE=openr1-math                              # sources/openr1-math.yaml, every subset it lists
    make import SOURCE=mixture-of-thoughts SUBSET=code ARGS="limit=1000"
    distill import --source limo path=/data/limo.jsonl          # a local copy instead of the hub
    make filter TEACHER=openr1-math PROMPTS=default             # then as our own traces
    make student SIZE=7b TEACHER=openr1-math PROMPTS=default

Each sources/<name>.yaml is a `SourceConfig`: where the set lives (hub id or local file, read with
`datasets.load_dataset`), its subsets, which column holds what, the markers that close its
reasoning, and who wrote the traces (the teacher). One row becomes one Trace per completion, in
$(OUT)/traces/<name>/<subset>/raw.jsonl, the folder `make traces` writes, so `make filter` and
`make student` take it with TEACHER=<name> PROMPTS=<subset>.

What a row becomes:
- prompt: `columns.problem` (text), or the turns before the last assistant turn of
  `columns.conversation` (OpenAI `{role, content}` or ShareGPT `{from, value}` messages; system
  turns are left out unless `keep_system`: a system prompt that teaches another format, such as
  Bespoke-Stratos' `<|begin_of_thought|>`, would not match the student's `<think>` rendering).
- completion: `columns.completion` (a text, or a list of texts: one Trace each, with the list
  columns in `columns.per_sample` taken element by element), else the last assistant turn; split
  into reasoning and answer at the set's `think` markers, and the answer unwrapped from its
  `solution` markers. A set with reasoning and answer in separate columns names both instead.
  `split_at: last_boxed` serves sets without markers (LIMO): the answer is the paragraph that
  holds the last \\boxed{}.
- reference: `columns.reference`, normalised as for prompt sets (AIME '023' -> '23').
- teacher: the YAML's `teacher` plus `backend: import` and where the row came from; `meta` holds
  the source, the row number, the problem and the `keep` columns.

Bad rows (no problem text, no assistant turn, a completion that is not text, ...) go to
rejects.jsonl with the reason and the row; a column missing from the whole set stops the import
before anything is written, naming the columns the set has. The import appends one line per
trace, so a crashed or killed import rerun with the same command skips what it wrote and goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distill.config import ConfigError, load_config, menu_path
from distill.prompt_rows import guess_column, normalize_reference
from distill.trace import JsonlWriter, Trace, atomic_write_text, read_jsonl, split_reasoning, trace_id

log = logging.getLogger(__name__)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
"""ShareGPT `from` values (and OpenAI roles) -> OpenAI roles."""
IMPORT_RECORD = "import.json"


@dataclass(frozen=True)
class SourceColumns:
    """Which column of a row holds what (`a.b` reads row["a"]["b"])."""

    problem: str | None = "problem"
    """The problem text. None when `conversation` carries the prompt."""
    conversation: str | None = None
    """Chat messages: the turns before the last assistant turn are the prompt, that turn the completion."""
    completion: str | None = None
    """Reasoning and answer in one text (or a list of texts, one trace each), split at the `think` markers."""
    reasoning: str | None = None
    """The reasoning alone, for sets that keep it apart from the answer (s1K: deepseek_thinking_trajectory)."""
    answer: str | None = None
    """The answer alone, with `reasoning`."""
    reference: str | None = None
    """The gold answer, when the set has one."""
    id: str | None = None
    """A stable id column; None hashes the problem text."""
    finish_reason: str | None = None
    """The teacher's finish reason ('stop', 'length'), a value or a list beside a list of completions."""
    per_sample: list[str] = field(default_factory=list)
    """List columns aligned with a list of completions: element i goes to trace i's meta."""
    keep: list[str] = field(default_factory=list)
    """Columns copied into every trace's meta."""


@dataclass(frozen=True)
class SourceConfig:
    """A published trace set: keys of sources/<name>.yaml."""

    teacher: dict[str, Any]
    """Who wrote the traces: at least {model: <hub id>}; goes into every Trace.teacher."""
    name: str = ""
    """The folder under traces/ (and the prompt-id prefix); defaults to the YAML file name."""
    hub: str | None = None
    """Hugging Face dataset id."""
    path: str | None = None
    """A local .jsonl / .json / .parquet / .csv copy (read with datasets.load_dataset); wins over `hub`."""
    revision: str | None = None
    """Hub commit or tag; pin it to import the same rows again."""
    subsets: list[str] = field(default_factory=lambda: ["default"])
    """Hub configs imported by default, one folder each (SUBSET= picks one, or another the hub has)."""
    split: str = "train"
    task: Literal["math", "choice", "code"] = "math"
    """How `distill.verify` checks the traces; `subset_tasks` sets it per subset."""
    subset_tasks: dict[str, str] = field(default_factory=dict)
    columns: SourceColumns = field(default_factory=SourceColumns)
    think: list[str] = field(default_factory=lambda: ["<think>", "</think>"])
    """The markers around the reasoning (the opening one may be missing, as in R1-Distill outputs)."""
    solution: list[str] = field(default_factory=list)
    """Markers around the answer to take off (Sky-T1 / Bespoke-Stratos: <|begin_of_solution|> ...)."""
    split_at: Literal["think", "last_boxed"] = "think"
    """think: at the `think` markers. last_boxed: no markers; the answer is the paragraph with the last \\boxed{}."""
    keep_system: bool = False
    """Keep the set's system turns in the prompt."""
    instruction: str | None = None
    """Appended to a `problem` column's text after a blank line; None: the prompt as published."""
    reference_format: Literal["auto", "gsm8k", "text"] = "auto"
    license: str | None = None
    """The set's license, for the dataset card of a pushed trace set."""
    homepage: str | None = None
    limit: int | None = None
    """Import the first N rows only."""
    cache_dir: str | None = None
    """datasets' cache folder (None: its default, ~/.cache/huggingface/datasets)."""

    def __post_init__(self) -> None:
        c = self.columns
        if not isinstance(self.teacher.get("model"), str) or not self.teacher["model"]:
            raise ConfigError(f"source '{self.name}': 'teacher' needs a model, e.g. teacher: {{model: deepseek-ai/DeepSeek-R1}}")
        if c.problem is None and c.conversation is None:
            raise ConfigError(f"source '{self.name}': set columns.problem or columns.conversation (where the prompt is)")
        if (c.reasoning is None) != (c.answer is None):
            raise ConfigError(f"source '{self.name}': columns.reasoning and columns.answer go together")
        if c.reasoning is None and c.completion is None and c.conversation is None:
            raise ConfigError(f"source '{self.name}': no completion: set columns.completion, columns.conversation, "
                              "or columns.reasoning and columns.answer")
        if self.split_at == "think" and len(self.think) != 2:
            raise ConfigError(f"source '{self.name}': think must be [open, close], got {self.think}")
        if self.solution and len(self.solution) != 2:
            raise ConfigError(f"source '{self.name}': solution must be [open, close] or [], got {self.solution}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"source '{self.name}': limit must be at least 1, got {self.limit}")

    def task_of(self, subset: str) -> str:
        return self.subset_tasks.get(subset, self.task)


class RowError(ValueError):
    """A row that cannot become a trace; the message is the reason written to rejects.jsonl."""


def load_source_config(name: str | Path, overrides: list[str] | None = None) -> SourceConfig:
    """sources/<name>.yaml (or a YAML path) plus key=value overrides."""
    path = menu_path("sources", name)
    cfg = load_config(SourceConfig, path, overrides)
    return cfg if cfg.name else dataclasses.replace(cfg, name=path.stem)


# ---------------------------------------------------------------------------------------------
# One row -> Traces


def _get(row: dict[str, Any], col: str) -> Any:
    if col in row:
        return row[col]
    node: Any = row
    for part in col.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RowError(f"no column '{col}'")
        node = node[part]
    return node


def _turns(value: Any, col: str) -> list[dict[str, str]]:
    """OpenAI or ShareGPT messages -> [{role, content}] with OpenAI roles."""
    if not isinstance(value, list) or not value:
        raise RowError(f"column '{col}' (columns.conversation) is not a non-empty list of messages: {value!r:.80}")
    out = []
    for i, m in enumerate(value):
        role = m.get("role", m.get("from")) if isinstance(m, dict) else None
        content = m.get("content", m.get("value")) if isinstance(m, dict) else None
        if str(role).lower() not in ROLES or not isinstance(content, str):
            raise RowError(f"column '{col}' turn {i} is not {{role, content}} or {{from, value}} text: {m!r:.80}")
        out.append({"role": ROLES[str(role).lower()], "content": content})
    return out


def split_last_boxed(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, found) for a solution without markers: the answer is the paragraph with the last \\boxed{}."""
    at = text.rfind("\\boxed")
    if at < 0:
        return text.strip(), "", False
    start = text.rfind("\n\n", 0, at)
    start = 0 if start < 0 else start
    return text[:start].strip(), text[start:].strip(), True


def _unwrap(answer: str, markers: list[str]) -> str:
    if not markers:
        return answer
    open_tag, close_tag = markers
    body = answer.strip()
    if body.startswith(open_tag):
        body = body[len(open_tag):]
    end = body.rfind(close_tag)
    return (body[:end] if end >= 0 else body).strip()


def split_completion(cfg: SourceConfig, text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, closed): the set's markers, then the answer's own wrapper taken off."""
    if cfg.split_at == "last_boxed":
        reasoning, answer, closed = split_last_boxed(text)
    else:
        reasoning, answer, closed = split_reasoning(text, (cfg.think[0], cfg.think[1]))
    return reasoning, _unwrap(answer, cfg.solution), closed


def row_traces(cfg: SourceConfig, subset: str, row: dict[str, Any], rowno: int) -> list[Trace]:
    """The Traces of one row; a `RowError` says why the row is bad."""
    cols = cfg.columns
    # ---- the prompt
    completions: list[Any] = []
    if cols.conversation is not None:
        turns = _turns(_get(row, cols.conversation), cols.conversation)
        last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
        if cols.problem is None and last is None:
            raise RowError(f"column '{cols.conversation}' has no assistant turn")
        prompt = turns[:last] if last is not None else turns
        if not cfg.keep_system:
            prompt = [t for t in prompt if t["role"] != "system"]
        if last is not None:
            completions = [turns[last]["content"]]
    if cols.problem is not None:
        problem = _get(row, cols.problem)
        if not isinstance(problem, str) or not problem.strip():
            raise RowError(f"column '{cols.problem}' (columns.problem) is not non-empty text: {problem!r:.80}")
        text = problem.strip()
        prompt = [{"role": "user", "content": f"{text}\n\n{cfg.instruction}" if cfg.instruction else text}]
    users = [t["content"] for t in prompt if t["role"] == "user"]
    if not users or not users[-1].strip():
        raise RowError("the prompt has no non-empty user turn")
    problem_text = text if cols.problem is not None else users[-1].strip()

    # ---- the completions: (reasoning, answer, closed) per sample
    if cols.reasoning is not None:
        reasoning, answer = _get(row, cols.reasoning), _get(row, cols.answer)  # type: ignore[arg-type]
        if not isinstance(reasoning, str) or not isinstance(answer, str):
            raise RowError(f"columns '{cols.reasoning}' and '{cols.answer}' must be text, got "
                           f"{type(reasoning).__name__} and {type(answer).__name__}")
        samples = [(reasoning.strip(), answer.strip(), True, reasoning + "\x1f" + answer)]
    else:
        if cols.completion is not None:
            value = _get(row, cols.completion)
            completions = value if isinstance(value, list) else [value]
        if not completions or not all(isinstance(c, str) and c.strip() for c in completions):
            raise RowError(f"no completion text in column '{cols.completion or cols.conversation}': {completions!r:.80}")
        samples = [(*split_completion(cfg, c), c) for c in completions]

    # ---- per-sample and per-row fields
    finish = _get(row, cols.finish_reason) if cols.finish_reason else None
    per_sample = {c: _get(row, c) for c in cols.per_sample}
    for name, values in [("finish_reason", finish), *per_sample.items()]:
        if isinstance(values, list) and len(values) != len(samples):
            raise RowError(f"column '{name}' has {len(values)} values for {len(samples)} completions")
    try:
        reference = normalize_reference(_get(row, cols.reference), cfg.reference_format) if cols.reference else None
    except ValueError as e:
        raise RowError(f"column '{cols.reference}' (columns.reference): {e}") from None
    local_id = str(_get(row, cols.id)).strip() if cols.id else hashlib.sha256(problem_text.encode()).hexdigest()[:16]
    if not local_id:
        raise RowError(f"empty id in column '{cols.id}' (columns.id)")
    prompt_id = f"{cfg.name}/{subset}/{local_id}"
    source = cfg.hub or cfg.path
    teacher = {**cfg.teacher, "backend": "import", "source": source, "subset": subset, "revision": cfg.revision,
               "served_model": None, "system_fingerprint": None}
    meta = {"imported_from": f"{source}:{subset}", "row": rowno, "problem": problem_text,
            **{c: _get(row, c) for c in cols.keep}}
    traces = []
    for i, (reasoning, answer, closed, raw) in enumerate(samples):
        reason = finish[i] if isinstance(finish, list) else finish
        # The id hashes the completion too: two rows with the same problem (hashed ids) stay apart,
        # and a row repeated byte for byte is a duplicate.
        key = f"import:{cfg.name}:{subset}:{hashlib.sha256(raw.encode()).hexdigest()[:16]}"
        traces.append(Trace(
            id=trace_id(prompt_id, i, key), prompt_id=prompt_id, sample_index=i, messages=prompt,
            reasoning=reasoning, answer=answer if closed else "",
            finish_reason=None if reason is None else str(reason), teacher=teacher, reference=reference,
            task=cfg.task_of(subset),
            meta={**meta, **{c: (v[i] if isinstance(v, list) else v) for c, v in per_sample.items()}},
        ))
    return traces


# ---------------------------------------------------------------------------------------------
# Reading the set and writing the traces


def _builder(path: Path) -> str:
    name = path.name.lower()
    for suffix, builder in ((".parquet", "parquet"), (".csv", "csv"), (".jsonl", "json"), (".json", "json"),
                            (".jsonl.gz", "json"), (".json.gz", "json"), (".ndjson", "json")):
        if name.endswith(suffix):
            return builder
    raise ConfigError(f"path={path}: not a .jsonl, .json, .parquet or .csv file")


def load_rows(cfg: SourceConfig, subset: str):
    """The set's rows through datasets.load_dataset: the local file when `path` is set, else the hub."""
    import datasets

    kwargs: dict[str, Any] = {"cache_dir": cfg.cache_dir} if cfg.cache_dir else {}
    if not cfg.hub and not cfg.path:
        raise ConfigError(f"source '{cfg.name}': no source; set `hub` (a dataset id) or path=<a local file>")
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise ConfigError(f"source '{cfg.name}': path={cfg.path} is not a file (relative to {Path.cwd()})")
        return datasets.load_dataset(_builder(path), data_files=str(path), split="train", **kwargs)
    try:
        return datasets.load_dataset(cfg.hub, subset, split=cfg.split, revision=cfg.revision, **kwargs)
    except (ValueError, FileNotFoundError, ConnectionError) as e:
        raise ConfigError(f"source '{cfg.name}': cannot load {cfg.hub} (subset {subset}, split {cfg.split}): "
                          f"{type(e).__name__}: {str(e)[:300]}. Offline? Point path= at a local copy") from None


def check_columns(cfg: SourceConfig, column_names: list[str]) -> None:
    """Every column the YAML names must exist in the set (its first part for `a.b`); else one error naming them."""
    cols = cfg.columns
    named = [("problem", cols.problem), ("conversation", cols.conversation), ("completion", cols.completion),
             ("reasoning", cols.reasoning), ("answer", cols.answer), ("reference", cols.reference),
             ("id", cols.id), ("finish_reason", cols.finish_reason),
             *[("per_sample", c) for c in cols.per_sample], *[("keep", c) for c in cols.keep]]
    have = set(column_names)
    missing = [(key, col) for key, col in named if col is not None and col not in have and col.split(".")[0] not in have]
    if missing:
        row = {c: "" for c in column_names}
        hints = []
        for key, col in missing:
            guess = guess_column(row, key) if key not in ("per_sample", "keep") else None
            hints.append(f"columns.{key}={col!r}" + (f" (did you mean '{guess}'?)" if guess else ""))
        raise ConfigError(f"source '{cfg.name}': the set has no column for {', '.join(hints)}; its columns are "
                          f"{sorted(column_names)}. Fix the YAML or pass e.g. columns.{missing[0][0]}=<column>")


def import_subset(cfg: SourceConfig, subset: str, out_dir: Path, rows=None) -> dict[str, Any]:
    """Import one subset into out_dir/raw.jsonl (+ rejects.jsonl, import.json); return the counts.

    `rows` (anything iterable of dicts with `column_names`, e.g. a datasets.Dataset) replaces the
    load, for tests. A rerun skips traces already in raw.jsonl and rows already in rejects.jsonl.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = load_rows(cfg, subset) if rows is None else rows
    check_columns(cfg, list(rows.column_names))

    started = time.monotonic()
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    # Writers first: opening sets aside a torn last line left by a killed run, before we read the ids.
    with JsonlWriter(out_dir / "raw.jsonl") as raw, JsonlWriter(out_dir / "rejects.jsonl") as rejects:
        done = {obj.get("id") for _, obj in read_jsonl(out_dir / "raw.jsonl")}
        rejected_rows = {obj.get("row") for _, obj in read_jsonl(out_dir / "rejects.jsonl")}
        seen: dict[str, int] = {}  # trace id -> the row that gave it, in this pass
        for rowno, row in enumerate(rows, start=1):
            if cfg.limit is not None and rowno > cfg.limit:
                break
            counts["rows"] += 1
            if rowno in rejected_rows:
                counts["rejected_before"] += 1
                continue
            try:
                traces = row_traces(cfg, subset, row, rowno)
                repeated = [seen[t.id] for t in traces if t.id in seen]
                if repeated:
                    raise RowError(f"duplicate: the same problem and completion as row {repeated[0]}")
            except RowError as e:
                reasons[str(e).split(":", 1)[0][:60]] += 1
                rejects.write({"row": rowno, "subset": subset, "reason": str(e), "raw": row})
                counts["rejected"] += 1
                continue
            for t in traces:
                seen[t.id] = rowno
                if t.id in done:
                    counts["already_imported"] += 1
                else:
                    raw.write(t)
                    counts["traces"] += 1
    record = {
        "source": cfg.hub or cfg.path, "name": cfg.name, "subset": subset, "split": cfg.split,
        "revision": cfg.revision, "teacher": cfg.teacher, "license": cfg.license, "homepage": cfg.homepage,
        "task": cfg.task_of(subset), "counts": dict(counts), "reject_reasons": dict(reasons),
        "seconds": round(time.monotonic() - started, 2),
    }
    atomic_write_text(out_dir / IMPORT_RECORD, json.dumps(record, indent=2, default=str) + "\n")
    log.info("%s/%s: %d rows -> %d traces written (%d already there), %d rows rejected (%s) in %s",
             cfg.name, subset, counts["rows"], counts["traces"], counts["already_imported"], counts["rejected"],
             ", ".join(f"{k}: {v}" for k, v in reasons.most_common(3)) or "none", out_dir)
    return record


def run(source: str | Path, out: str | Path, subset: str | None = None,
        overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """`distill import`: every subset of the source (or `subset`) into <out>/traces/<name>/<subset>/."""
    from distill.paths import traces_dir

    cfg = load_source_config(source, overrides)
    subsets = [subset] if subset else cfg.subsets
    if cfg.path and len(subsets) > 1:
        raise ConfigError(f"source '{cfg.name}': path= is one file; name the subset it holds with --subset "
                          f"(one of {', '.join(cfg.subsets)})")
    return [import_subset(cfg, s, traces_dir(out, cfg.name, s)) for s in subsets]

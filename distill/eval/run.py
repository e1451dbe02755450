"""Stage 4: student vs its original base vs the teacher, measured the same way, side by side.

    make eval SIZE=7b                                   # student + original base
    make eval SIZE=7b ARGS="--teacher r1"               # + the teacher (or its cached results)
    distill eval --size 7b --teacher r1 benchmarks=[aime24,math500] limit=50
    distill eval --size 7b data.aime24=../shared/data/benchmarks/aime24.jsonl   # offline copy

Columns: `original` is the base model named in students/<size>.yaml (`base`); `student` is
out/students/<size>/final (or --student); `rl` is out/rl/<size>/final when `make rl` made one;
`teacher` is teachers/<name>.yaml. All run on the teacher-stage backends (distill.teachers: hf,
vllm, openai) and are scored by distill.verify.

Outputs in out/eval/<size>/:
    original/<benchmark>.jsonl, student/<benchmark>.jsonl   one line per sample (resumable)
    report.json, report.md, report.png                     the side-by-side report
Teacher results live in out/eval/teachers/<teacher>/ and are shared by every size: a teacher
behind a paid API is evaluated once, and later runs reuse it (also without --teacher, when
exactly one teacher has results there).
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import ConfigError, load_config, menu_path, to_dict
from distill.eval.config import EvalConfig, load_eval_config
from distill.eval.report import build_report, markdown, plot, table
from distill.eval.tracker import log_report
from distill.eval.results import ResultStore, evaluate, run_key
from distill.paths import menu_name
from distill.prompts import ColumnError, Prompt, load_prompts
from distill.teachers.base import SamplingParams, Teacher
from distill.trace import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class Column:
    """One model of the comparison and where its results go."""

    role: str
    label: str
    folder: Path
    identity: dict[str, Any]
    """What makes two runs of this model comparable: model (with a weights fingerprint), prompt shaping."""
    make_backend: Callable[[], Teacher]
    """Loads the model (called only when a result is missing)."""
    info: dict[str, Any] = field(default_factory=dict)
    generate: bool = True
    """False: show the results on disk, generate nothing (not in `roles`, or a cached teacher)."""
    chunk: int = 64
    """Sequences per generate call (EvalConfig.chunk_for its backend)."""


def run(size: str, student: Path | None, teacher: str | None, out_dir: Path,
        overrides: list[str] | None = None, rl: Path | None = None) -> dict[str, Any]:
    """Evaluate, write report.{json,md,png} into `out_dir`, print the table; return the report."""
    # ---- Config: EvalConfig defaults < the preset's `eval:` section < key=value overrides
    # The preset is read as a StudentConfig, like `make student` reads it: its `base`, `revision` and `eval:`.
    from distill.students.config import StudentConfig

    preset_path = menu_path("students", size)
    preset = load_config(StudentConfig, preset_path)
    if not preset.base:
        raise ConfigError(f"{preset_path}: key 'base' (the original base model) is empty")
    section = preset.eval or {}
    cfg, preset_lines = load_eval_config(preset_path, section, overrides)
    for line in preset_lines:
        print(line)
    out_dir = Path(out_dir)
    params = sampling_params(cfg)

    # ---- Columns (checked before any download). Every column with results on disk is shown;
    # only those in `roles` generate what is missing.
    columns = [model_column("original", cfg.original or preset.base, out_dir / "original", cfg,
                            revision=preset.revision)]
    if student is not None and Path(student).exists():
        if not (Path(student) / "config.json").exists():
            raise ConfigError(f"--student {student} is not a model folder (no config.json); point it at a trained "
                              "student, e.g. out/students/<size>/final")
        columns.append(model_column("student", str(student), out_dir / "student", cfg))
    elif "student" in cfg.roles:
        raise ConfigError(f"no student model at {student}: train it first with `make student SIZE={menu_name(size)}`, "
                          "or point --student at a model directory")
    if rl is not None and (Path(rl) / "config.json").exists():  # the RL student of `make rl`, when there is one
        columns.append(model_column("rl", str(rl), out_dir / "rl", cfg))
    teacher_col = teacher_column(teacher or cfg.teacher, out_dir.parent / "teachers", cfg)
    if teacher_col is not None:
        columns.append(teacher_col)
    for col in columns:
        col.generate = col.generate and col.role in cfg.roles

    # ---- Benchmarks
    benchmarks = {name_of(b): load_benchmark(b, cfg) for b in cfg.benchmarks}

    # ---- Generate and score, one model at a time (a 70B original and a 32B student do not share a GPU)
    tables: dict[str, dict[str, Any]] = {b: {} for b in benchmarks}
    notes: list[str] = []
    for col in columns:
        backend = _Lazy(col.make_backend, col.label)
        for bench, prompts in benchmarks.items():
            store = ResultStore(col.folder / f"{bench}.jsonl", run_key(col.identity, params))
            k = cfg.samples_for(bench)
            if col.generate:
                meta = {"role": col.role, "model": col.label, "benchmark": bench}
                progress = evaluate(store, prompts, k, params, backend, meta, chunk=col.chunk,
                                    score_workers=cfg.score_workers, seed=cfg.seed, score_timeout=cfg.score_timeout,
                                    fallback=cfg.answer_fallback)
                if progress.generated or progress.failed:
                    log.info("%s %s: %d new samples (%d reused) in %.0fs; %d failed (rerun to retry)",
                             col.role, bench, progress.generated, progress.reused, progress.seconds, progress.failed)
                if progress.failed:
                    notes.append(f"{col.role} {bench}: {progress.failed} sample(s) failed in the backend; rerun to fill them in")
            if cfg.rescore or store.scored_otherwise(prompts, k, cfg.answer_fallback):
                # A changed answer fallback changes verdicts, not samples: re-check what is stored.
                store.rescore(prompts, k, cfg.score_workers, cfg.score_timeout, cfg.answer_fallback)
            result, unscorable = store.table(prompts, k)
            notes += _notes(col.role, bench, result, unscorable, prompts, k, store)
            if result:
                tables[bench][col.role] = result
        if backend.backend is not None and backend.backend.prompt_note:  # e.g. a template-less base, prompted plainly
            notes.append(f"{col.role}: {backend.backend.prompt_note}")
        backend.release()
        if col.role == "teacher" and col.generate:
            atomic_write_text(col.folder / "teacher.json", json.dumps({"label": col.label, "identity": col.identity}, indent=2))

    # ---- Report
    report = build_report(tables, {c.role: c.info for c in columns}, cfg.report_k, extra={
        "title": f"size {menu_name(size)}: " + ", ".join(f"{c.role} {c.label}" for c in columns),
        "size": menu_name(size),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "protocol": {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens,
                     "greedy": cfg.greedy, "k": {b: cfg.samples_for(b) for b in benchmarks}, "limit": cfg.limit,
                     "answer_fallback": cfg.answer_fallback},
        "config": to_dict(cfg),
        "notes": notes,
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False, default=str))
    atomic_write_text(out_dir / "report.md", markdown(report))
    plot(report, out_dir / "report.png")
    log_report(report, out_dir, cfg.report_to)  # TensorBoard scalars under out/eval/<size>/runs/ by default
    print(table(report))
    for note in notes:
        print(f"note: {note}")
    print(f"\nreport: {out_dir / 'report.md'} (and report.json, report.png)")
    _refresh_card(student, out_dir / "report.json")
    if rl is not None and (Path(rl) / "config.json").exists():
        _refresh_card(Path(rl), out_dir / "report.json", rl=True)
    return report


# ---------------------------------------------------------------------------------------------
# Pieces


def sampling_params(cfg: EvalConfig) -> SamplingParams:
    """The protocol every column is sampled with (the teacher's own YAML sampling is not used)."""
    if cfg.greedy:
        return SamplingParams(temperature=0.0, top_p=1.0, max_tokens=cfg.max_tokens, n=1)
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, n=1)


def name_of(benchmark: str) -> str:
    """'aime24' -> 'aime24'; 'my/sets/hard.yaml' -> 'hard' (the key for k, data and file names)."""
    return Path(benchmark).stem if benchmark.endswith((".yaml", ".yml")) else benchmark


def load_benchmark(benchmark: str, cfg: EvalConfig) -> list[Prompt]:
    """The problems of one benchmark, from datasets/<name>.yaml (its local file when `data` names one)."""
    name = name_of(benchmark)
    try:
        prompts = list(load_prompts(benchmark, cfg.overrides_for(name), limit=cfg.limit))
    except ColumnError as e:
        raise ConfigError(f"{e}\n(in `distill eval`: columns.{name}.{e.key}={e.guess or '<column>'})") from None
    except ConfigError as e:
        if name in cfg.data:
            raise
        raise ConfigError(f"{e}\n(in `distill eval`, point a benchmark at a local copy with data.{name}=PATH)") from None
    if not prompts:
        raise ConfigError(f"benchmark '{name}' has no problems (limit={cfg.limit}); check datasets/{name}.yaml "
                          "and its source")
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"benchmark '{name}': prompt id '{dup}' appears twice; results are keyed by id, "
                          "so the id column must be unique (or drop `columns.id` to hash the problem text)")
    return prompts


def model_column(role: str, model: str, folder: Path, cfg: EvalConfig, revision: str | None = None) -> Column:
    """The original base or the student, run on `cfg.backend` with `cfg.backend_options`."""
    from distill.teachers.config import TeacherConfig

    tcfg = load_config(TeacherConfig, {"name": role, "backend": cfg.backend, "model": model, **cfg.backend_options})
    identity = {"model": model, "revision": revision, "weights": weights_fingerprint(model),
                "system_prompt": tcfg.system_prompt, "prefill": tcfg.prefill, "extra_body": tcfg.extra_body}
    return Column(role, model, folder, identity, lambda: _load_teacher(tcfg),
                  info={"model": model, "backend": cfg.backend, "revision": revision},
                  chunk=cfg.chunk_for(tcfg.backend, tcfg.batch_size))


def teacher_column(name: str | None, root: Path, cfg: EvalConfig) -> Column | None:
    """The named teacher (evaluated, or read from its cache), or the one cached teacher, or None."""
    from distill.teachers.config import load_teacher_config

    if name:
        tcfg = load_teacher_config(name)
        identity = {k: v for k, v in tcfg.fingerprint_fields().items() if k != "sampling"}
        return Column("teacher", tcfg.label, root / tcfg.label, identity, lambda: _load_teacher(tcfg),
                      info={"model": tcfg.model, "backend": tcfg.backend, "teacher": tcfg.label},
                      chunk=cfg.chunk_for(tcfg.backend, tcfg.batch_size))
    cached = sorted(p.parent for p in root.glob("*/teacher.json"))
    if len(cached) > 1:
        log.info("cached results of several teachers in %s (%s); name one with --teacher to add a teacher column",
                 root, ", ".join(p.name for p in cached))
    if len(cached) != 1:
        return None
    saved = json.loads((cached[0] / "teacher.json").read_text())
    log.info("teacher column from cached results in %s (no --teacher given)", cached[0])
    return Column("teacher", saved["label"], cached[0], saved["identity"], _no_backend, generate=False,
                  info={"model": saved["identity"].get("model"), "teacher": saved["label"], "cached": True})


def weights_fingerprint(model: str) -> str | None:
    """Names, sizes and mtimes of a local model's weights: a retrained student gets new results.

    None for hub ids and toy:// models (their name pins them; pin hub ones with `revision`).
    """
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt") or p.name == "config.json")
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files) or None


def _load_teacher(tcfg: Any) -> Teacher:
    from distill.teachers import load_teacher

    return load_teacher(tcfg)


def _no_backend() -> Teacher:
    raise AssertionError("a cache-only column never generates")


class _Lazy:
    """Load the backend on first use (a finished run never loads a model) and free it after."""

    def __init__(self, factory: Callable[[], Teacher], label: str):
        self.factory, self.label, self.backend = factory, label, None

    def __call__(self) -> Teacher:
        if self.backend is None:
            log.info("loading %s", self.label)
            self.backend = self.factory()
        return self.backend

    def release(self) -> None:
        if self.backend is None:
            return
        self.backend = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def _notes(role: str, bench: str, result: dict[str, Any], unscorable: list[str], prompts: list[Prompt],
           k: int, store: ResultStore) -> list[str]:
    notes = []
    if unscorable:
        notes.append(f"{role} {bench}: {len(unscorable)} problem(s) left out, their reference cannot be checked "
                     f"({', '.join(unscorable[:3])}{'...' if len(unscorable) > 3 else ''})")
    short = sum(len(s) < k for s in result.values())
    missing = len(prompts) - len(result) - len(unscorable)
    if short or missing:
        notes.append(f"{role} {bench}: {missing} problem(s) without results and {short} with fewer than k={k} samples")
    unjudged = sum(1 for (pid, index), r in store.records.items()
                   if pid in result and index < k and r.get("status") in ("timeout", "error"))
    if unjudged:
        notes.append(f"{role} {bench}: {unjudged} sample(s) the checker could not judge (timeout/error), counted as wrong")
    return notes


def _refresh_card(student: Path | None, report: Path, rl: bool = False) -> None:
    """Add the results to the student's card.md when the student came out of `make student` (or `make rl`)."""
    if student is None or not (Path(student).parent / "run.json").exists():
        return
    try:
        if rl:
            from distill.rl.card import write_card
        else:
            from distill.students.card import write_card

        write_card(Path(student).parent, eval_report=report)
    except Exception as e:  # noqa: BLE001 - the report is written; a card problem must not fail the eval
        log.warning("could not add the eval results to %s/card.md: %s", Path(student).parent, e)


__all__ = ["run"]

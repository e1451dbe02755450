"""Stage 2 entry point: raw.jsonl -> clean.jsonl + rejects.jsonl + filter_report.json + filter_lengths.png.

    make filter TEACHER=r1 PROMPTS=numinamath
    distill filter --teacher r1 --prompts numinamath language=false math_correct.timeout=10 workers=4
    distill filter --input r1_traces.jsonl --recipe my_filters.yaml --out out

Which filters: a `--recipe` YAML with a `filters:` list when given (`--recipe r1` names the
default), else the `filters:` of teachers/<teacher>.yaml (read as its `TeacherConfig.filters`)
when it has one, else the default R1 recipe (`distill.filters.recipe.R1_RECIPE`).

Overrides, one rule: every `key=value` is a dotted path whose first part is either a
`FilterConfig` field (`workers=4`, `chunk_size=64`, `overwrite=true`, `push_to_hub=org/name`,
`filters=[finished,math_correct]` for the whole list) or the name of a filter, which addresses
that filter's entry in the recipe: `dedup.on=prompt` sets one of its fields (adding the filter at
its place in the order when the recipe lacks it), `language=false` takes it out, `length=true`
puts it in with its defaults.

Outputs go to `out_dir`, which must not hold another input's outputs: a folder whose
filter_report.json names another input is refused unless `overwrite=true`. An input with no
readable trace is refused too, so a good clean.jsonl is never replaced by an empty one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import ConfigError, from_dict, menu_path, parse_overrides
from distill.filters.pipeline import apply_filters
from distill.filters.recipe import FILTERS, apply_overrides, build, load_recipe, normalize, r1_recipe
from distill.filters.report import FilterReport
from distill.trace import ReadStats, atomic_jsonl, read_traces

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterConfig:
    """One `distill filter` run: which filters with which settings, and how the run goes."""

    filters: list[Any] = field(default_factory=list)
    """The recipe: filter names or {name: settings} items, in order (distill.filters.recipe)."""
    recipe_source: str = ""
    """Where the recipe came from (--recipe file, teacher YAML, R1 recipe); written to the report."""
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    """Processes the filters run in; 0 filters in this process."""
    chunk_size: int = 32
    """Traces per task handed to a worker."""
    overwrite: bool = False
    """Replace the outputs of a run on another input in the same folder."""
    push_to_hub: str | None = None
    """<org/name>: upload clean.jsonl afterwards, with a dataset card, in one commit (distill.hub)."""
    license: str | None = None
    """The dataset card's license (with push_to_hub)."""
    hub_endpoint: str | None = None
    """Another hub than huggingface.co (with push_to_hub)."""

    def __post_init__(self) -> None:
        if self.workers < 0 or self.chunk_size < 1:
            raise ConfigError(f"workers={self.workers}, chunk_size={self.chunk_size}: workers must be 0 (filter in "
                              "this process) or more, chunk_size at least 1")

    @property
    def recipe(self) -> list[tuple[str, dict[str, Any]]]:
        """The recipe as [(name, settings)], validated."""
        return normalize(self.filters, self.recipe_source or "filters")


def load_filter_config(teacher: str | None = None, recipe: str | Path | None = None,
                       overrides: list[str] | None = None) -> FilterConfig:
    """The recipe (--recipe, else the teacher's `filters:`, else R1) + `key=value` overrides -> FilterConfig."""
    spec, source = resolve_recipe(teacher, recipe)
    parsed = parse_overrides(overrides)
    fields = [f.name for f in dataclasses.fields(FilterConfig) if f.name not in ("filters", "recipe_source")]
    own = {key: parsed.pop(key) for key in list(parsed) if key in fields}
    for key in parsed:
        if key != "filters" and key not in FILTERS:
            hint = difflib.get_close_matches(key, [*fields, "filters", *FILTERS], n=1)
            raise ConfigError(f"override: unknown key '{key}'.{f' Did you mean {hint[0]!r}?' if hint else ''} "
                              f"Keys: {', '.join(fields)}, filters, or a filter's name: {', '.join(FILTERS)}")
    spec = apply_overrides(spec, parsed)
    data = {"filters": [{name: settings} for name, settings in spec], "recipe_source": source, **own}
    return from_dict(FilterConfig, data, "override")


def resolve_recipe(teacher: str | None, recipe: str | Path | None) -> tuple[list[tuple[str, dict]], str]:
    """(recipe, where it came from): --recipe, else the teacher YAML's `filters:`, else R1."""
    if recipe is not None and str(recipe) != "r1":
        if not Path(recipe).exists():
            raise ConfigError(f"--recipe {recipe}: no such file (a YAML with a `filters:` list, or `r1` for the default)")
        return load_recipe(recipe), str(recipe)
    if recipe is None and teacher:
        from distill.teachers.config import load_teacher_config

        try:
            path = menu_path("teachers", teacher)
        except ConfigError:
            path = None  # traces made elsewhere (--input): the teacher only names the folder
        if path is not None:
            filters = load_teacher_config(path).filters
            if filters:
                return normalize(filters, str(path)), str(path)
    return r1_recipe(), "R1 recipe (distill.filters.recipe.R1_RECIPE)"


def run(input_path: str | Path, out_dir: str | Path, teacher: str | None = None,
        recipe: str | Path | None = None, overrides: list[str] | None = None) -> FilterReport:
    """Filter `input_path` into `out_dir`; print the table and return the report (and push the clean
    set when `push_to_hub=` is set)."""
    # ---- Resolve the recipe and check every filter's settings before reading anything
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise ConfigError(f"{input_path}: no such file. Sample traces first (make traces TEACHER=... PROMPTS=...) "
                          "or point --input at a JSONL of traces")
    if input_path.is_dir():
        raise ConfigError(f"{input_path} is a folder; point --input at a JSONL file of traces (e.g. {input_path}/raw.jsonl)")
    cfg = load_filter_config(teacher, recipe, overrides)
    spec, source, workers = cfg.recipe, cfg.recipe_source, cfg.workers
    check_out_dir(input_path, out_dir, overwrite=cfg.overwrite)
    filters = build(spec, source)
    try:
        for f in filters:
            f.prepare()
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from e
    log.info("filtering %s with %s: %s (%d workers)", input_path, source,
             ", ".join(f.name for f in filters), workers)

    # ---- Stream: raw -> filters -> clean / rejects (each file appears whole or not at all)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = FilterReport()
    stats = ReadStats()
    started = time.monotonic()
    with atomic_jsonl(out_dir / "rejects.jsonl") as rejects, atomic_jsonl(out_dir / "clean.jsonl") as clean:

        def on_reject(trace: Any, name: str, reason: str) -> None:
            rejects.write({"filter": name, "reason": reason, "trace": trace.to_dict()})

        traces = read_traces(input_path, rejects=rejects, stats=stats)
        for trace in apply_filters(traces, filters, workers=workers, report=report, on_reject=on_reject,
                                   chunk_size=cfg.chunk_size):
            clean.write(trace)
        if report.n_in == 0:
            # Raised inside the `with`: the old clean.jsonl and rejects.jsonl stay as they were.
            raise ConfigError(
                f"{input_path}: no readable trace in {stats.lines + stats.torn} line(s) ({stats.bad} unreadable, "
                f"{stats.torn} torn); nothing written. A Trace has id, prompt_id, messages, reasoning, answer "
                "(distill.trace.Trace); convert the file, or point --input at raw.jsonl from `distill traces`")
    elapsed = time.monotonic() - started

    # ---- Report
    report.read_errors = stats.bad
    report.notes.update({
        "input": str(input_path.resolve()),
        "recipe_source": source,
        "recipe": [{name: settings} for name, settings in spec],
        "workers": workers,
        "seconds": round(elapsed, 2),
        "traces_per_second": round((report.n_in / elapsed) if elapsed else 0.0, 1),
    })
    skipped = {b: why for f in filters for b, why in getattr(f, "skipped", {}).items()}
    if skipped:
        report.notes["decontaminate_skipped"] = skipped
    if stats.torn:
        report.notes["torn_last_line"] = stats.torn
    report.save_json(out_dir / "filter_report.json")
    report.save_histogram(out_dir / "filter_lengths.png")
    report.print_table()
    if stats.bad:
        log.warning("%s: %d unreadable line(s) skipped (not a Trace); they are in %s with the reason",
                    input_path, stats.bad, out_dir / "rejects.jsonl")
    if skipped:
        log.warning("decontamination skipped %s (could not load them): see filter_report.json", ", ".join(skipped))
    log.info("wrote %s (%d kept of %d), rejects.jsonl, filter_report.json, filter_lengths.png in %.1fs",
             out_dir / "clean.jsonl", report.n_kept, report.n_in + report.read_errors, elapsed)
    if cfg.push_to_hub:
        from distill.hub import push_trace_set

        push_trace_set(out_dir, cfg.push_to_hub, endpoint=cfg.hub_endpoint, license=cfg.license)
    return report


def check_out_dir(input_path: Path, out_dir: Path, overwrite: bool = False) -> None:
    """Refuse to write over the input itself, or over the outputs of a run on another input."""
    outputs = [out_dir / name for name in ("clean.jsonl", "rejects.jsonl")]
    if any(o.exists() and o.resolve() == input_path.resolve() for o in outputs):
        raise ConfigError(f"--input {input_path} would be overwritten by this filter's own output; "
                          "pass --out to write elsewhere, or rename the input")
    if overwrite or not outputs[0].exists():
        return
    report = out_dir / "filter_report.json"
    try:
        earlier = json.loads(report.read_text()).get("input")
    except (OSError, ValueError):
        earlier = None
    if earlier is None:
        why = f"{outputs[0]} exists and was not written by `distill filter` (no readable {report.name})"
    elif Path(earlier).resolve() != input_path.resolve():  # reports before this one kept a relative path
        why = f"{outputs[0]} holds the filtered traces of another input ({earlier})"
    else:
        return
    raise ConfigError(f"{why}. Pass --out to write elsewhere, or overwrite=true to replace it")

"""A training mixture: several clean trace sets, each with a weight or a count, drawn with a seed.

    # students/7b.yaml, or a file given as MIXTURE=mix.yaml (its `mixture:` list)
    mixture:
      - {traces: openr1-math/default, weight: 0.5}          # half of out/traces/openr1-math/default/clean.jsonl
      - {traces: mixture-of-thoughts/code, count: 20000}    # exactly 20,000 traces of it
      - {traces: /data/my-clean.jsonl, weight: 1.0}         # a clean JSONL by path: all of it

`weight` is the fraction of a set to take (open-r1's dataset_mixture reads it the same way),
`count` the number of traces. The draw is seeded by the student's `seed` and the set's name, so
a rerun builds the same file byte for byte (resume checks its hash). The mixed traces go to
out/students/<size>/mixture.jsonl, in the order of the list; the trainer shuffles. What was
drawn from where is recorded in run.json and shown in card.md.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from distill.config import ConfigError
from distill.trace import TraceError, atomic_jsonl, read_traces

MIXTURE_FILE = "mixture.jsonl"


def mixture_problems(mixture: Any) -> list[str]:
    """Every problem with a `mixture:` list, worded with its fix; empty when it is valid."""
    if not isinstance(mixture, list) or not mixture:
        return ["'mixture' must be a non-empty list of {traces: <teacher>/<prompts> or a .jsonl, weight: 0-1 or count: N}"]
    out = []
    for i, entry in enumerate(mixture):
        where = f"mixture[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("traces"), str) or not entry["traces"]:
            out.append(f"{where} needs 'traces': <teacher>/<prompts> (out/traces/...) or a clean .jsonl path, got {entry!r:.80}")
            continue
        unknown = sorted(set(entry) - {"traces", "weight", "count"})
        if unknown:
            out.append(f"{where}: unknown key(s) {unknown}; an entry has traces and weight or count")
        has_weight, has_count = "weight" in entry, "count" in entry
        if has_weight == has_count:
            out.append(f"{where} ({entry['traces']}): give exactly one of weight (a fraction, 0-1) or count (traces)")
        elif has_weight and not (isinstance(entry["weight"], (int, float)) and 0 < entry["weight"] <= 1):
            out.append(f"{where} ({entry['traces']}): weight must be in (0, 1], the fraction of the set, got {entry['weight']!r}")
        elif has_count and not (isinstance(entry["count"], int) and not isinstance(entry["count"], bool) and entry["count"] >= 1):
            out.append(f"{where} ({entry['traces']}): count must be a whole number >= 1, got {entry['count']!r}")
    names = [e.get("traces") for e in mixture if isinstance(e, dict)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        out.append(f"mixture names {repeated} more than once; give each set once with its total weight or count")
    return out


def resolve(traces: str, out_root: Path) -> Path:
    """<teacher>/<prompts> -> out/traces/<teacher>/<prompts>/clean.jsonl; a .jsonl path as it is."""
    from distill.paths import traces_dir

    if traces.endswith((".jsonl", ".json")):
        return Path(traces).expanduser()
    if traces.count("/") != 1:
        raise ConfigError(f"mixture: traces {traces!r} is neither <teacher>/<prompts> nor a .jsonl path")
    return traces_dir(out_root, *traces.split("/")) / "clean.jsonl"


def _count(path: Path) -> int:
    try:
        return sum(1 for _ in read_traces(path))
    except TraceError as e:
        raise ConfigError(f"mixture: {e}. Rerun `distill filter` for that set") from None


def build_mixture(mixture: list[dict[str, Any]], out_root: Path, path: Path, seed: int) -> dict[str, Any]:
    """Draw the mixture into `path` (atomically); return the record for run.json and card.md."""
    from distill.students.data import file_sha256

    problems = mixture_problems(mixture)
    if problems:
        raise ConfigError("; ".join(problems))
    plan = []
    for entry in mixture:
        source = resolve(entry["traces"], out_root)
        if not source.is_file():
            raise ConfigError(f"mixture: {entry['traces']} -> {source}: no such file. Filter that set first "
                              f"(make filter TEACHER=<teacher> PROMPTS=<prompts>) or fix the name")
        available = _count(source)
        take = entry["count"] if "count" in entry else round(entry["weight"] * available)
        if take > available:
            raise ConfigError(f"mixture: {entry['traces']} asks for {take} traces and {source} has {available}; "
                              f"lower its count or use weight")
        # A str seed is hashed with sha512 by `random`: the same draw on every machine and Python.
        chosen = set(random.Random(f"{seed}:{entry['traces']}").sample(range(available), take))
        plan.append((entry, source, available, chosen))

    path.parent.mkdir(parents=True, exist_ok=True)
    sets = []
    with atomic_jsonl(path) as out:
        for entry, source, available, chosen in plan:
            for i, trace in enumerate(read_traces(source)):
                if i in chosen:
                    out.write(trace)
            sets.append({"traces": entry["traces"], "path": str(source), "sha256": file_sha256(source),
                         "available": available, "taken": len(chosen),
                         **{k: entry[k] for k in ("weight", "count") if k in entry}})
    if not any(s["taken"] for s in sets):
        raise ConfigError(f"mixture: every weight rounds to 0 traces ({', '.join(s['traces'] for s in sets)}); raise them")
    return {"seed": seed, "path": str(path), "sha256": file_sha256(path), "traces": sum(s["taken"] for s in sets),
            "sets": sets}


def render_mixture(record: dict[str, Any]) -> list[str]:
    """The card's Mixture section (markdown lines)."""
    lines = ["## Mixture", "", f"{record.get('traces', '?')} traces drawn with seed {record.get('seed', '?')} into "
             f"`{record.get('path', '?')}` (sha256 `{str(record.get('sha256', '?'))[:16]}`):", "",
             "| traces | asked | taken | of | sha256 |", "|---|---|---|---|---|"]
    for s in record.get("sets", []):
        asked = f"weight {s['weight']}" if "weight" in s else f"count {s.get('count')}"
        lines.append(f"| {s['traces']} | {asked} | {s['taken']} | {s['available']} | `{s['sha256'][:12]}` |")
    return [*lines, ""]


def mixture_override(path: str | Path) -> str:
    """MIXTURE=<file> -> the `mixture=[...]` override: the file's `mixture:` list (or a bare list)."""
    import json

    from distill.config import load_yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--mixture {path}: no such file (a YAML with a `mixture:` list of {{traces, weight | count}})")
    if file.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--mixture {path}: expected a .yaml file with a `mixture:` list")
    data = load_yaml(file)
    unknown = sorted(set(data) - {"mixture"})
    if "mixture" not in data or unknown:
        raise ConfigError(f"--mixture {path}: expected one key, `mixture:` (a list of {{traces, weight | count}}), "
                          f"got {sorted(data)}")
    return "mixture=" + json.dumps(data["mixture"])


def mixture_data(size: str, out: str | Path, overrides: list[str], other_data: object) -> Path | None:
    """out/students/<size>/mixture.jsonl when the preset (or an override) has a mixture, else None.

    `other_data` is what else would name the data (--data, TEACHER and PROMPTS): with a mixture, it must be empty.
    """
    from distill.paths import student_dir
    from distill.config import load_config, menu_path
    from distill.students.config import StudentConfig

    if not load_config(StudentConfig, menu_path("students", size), overrides).mixture:
        return None
    if other_data:
        raise ConfigError("the mixture names the training data; drop --data / TEACHER / PROMPTS, or the mixture")
    return student_dir(out, size) / MIXTURE_FILE

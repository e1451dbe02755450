"""card.md: what a student was trained on and how, rendered from run.json (and eval's report.json).

    write_card(Path("out/students/7b"))   # rerun after `make eval SIZE=7b` to add the results

run.json is the record `distill.students.train` keeps next to the checkpoints: the resolved
config, the data (path, sha256, counts of traces read, kept and dropped), the teachers named in
the traces, the filter report found beside clean.jsonl, and the final metrics. The card is
rebuilt from it, so it can be regenerated any time; `make student` rerun after training
refreshes it, and eval can call `write_card` after writing its report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from distill.trace import atomic_write_text

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"


def read_record(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def write_record(out_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_text(Path(out_dir) / RUN_RECORD, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def recipe_changes(old: dict[str, Any], new: dict[str, Any], control_keys: set[str]) -> list[str]:
    """'key: old -> new' for each recipe key that differs between a run's record and this run (run-control keys
    excepted): a resumed run must train what its checkpoints were trained on (`make student`, `make rl`)."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k not in control_keys and old.get(k) != new.get(k)]


def default_eval_report(out_dir: Path) -> Path:
    """out/students/<size> -> out/eval/<size>/report.json, where `make eval SIZE=<size>` writes it."""
    out_dir = Path(out_dir)
    return out_dir.parent.parent / "eval" / out_dir.name / "report.json"


def _table(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and not isinstance(r[k], (dict, list))]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def render_eval(report: Any) -> str:
    """A markdown view of eval's report.json, whatever its exact shape: rows of scores as a table, else JSON."""
    rows: list[dict[str, Any]] | None = None
    if isinstance(report, dict):
        for key in ("rows", "results", "table", "summary"):
            if isinstance(report.get(key), list) and all(isinstance(r, dict) for r in report[key]):
                rows = report[key]
                break
        if rows is None and report and all(isinstance(v, dict) for v in report.values()):
            rows = [{"name": k, **{kk: vv for kk, vv in v.items() if not isinstance(vv, (dict, list))}}
                    for k, v in report.items()]
    elif isinstance(report, list) and report and all(isinstance(r, dict) for r in report):
        rows = report
    if rows:
        return _table(rows)
    return "```json\n" + json.dumps(report, indent=2, default=str)[:20_000] + "\n```"


def render_card(record: dict[str, Any], eval_report: Any = None, eval_path: Path | None = None) -> str:
    cfg = record.get("config", {})
    data = record.get("data", {})
    results = record.get("results", {})
    out = [f"# Student: {record.get('size', '?')} (base {cfg.get('base', '?')})", ""]
    out += ["Distilled with `distill`: supervised fine-tuning on teacher reasoning traces"
            if cfg.get("kd", "none") == "none" else
            f"Distilled with `distill`: {cfg.get('kd')} distillation from {cfg.get('kd_teacher')}", ""]

    out += ["## Teacher", ""]
    teachers = data.get("teachers") or {}
    if teachers:
        out += [f"- `{name}`: {count} traces" for name, count in sorted(teachers.items(), key=lambda kv: -kv[1])]
    else:
        out.append("- (not recorded in the traces)")
    if cfg.get("kd_teacher"):
        out.append(f"- logits from `{cfg['kd_teacher']}` ({cfg.get('kd')}, beta {cfg.get('kd_beta')})")
    out.append("")

    out += ["## Data", ""]
    out += [f"- file: `{data.get('path', '?')}`",
            f"- sha256: `{data.get('sha256', '?')}`",
            (f"- traces read: {data.get('read', '?')}; trained on: {data.get('kept', '?')}; "
             f"dropped as longer than max_length {data.get('max_length', '?')} tokens: {data.get('too_long', '?')} "
             f"(dropped, never cut)"),
            (f"- tokens: {data.get('tokens', '?')}, of which under the loss (reasoning, answer, end of turn): "
             f"{data.get('loss_tokens', '?')}; longest kept trace {data.get('longest_kept', '?')} tokens"), ""]

    if record.get("mixture"):
        from distill.students.mixture import render_mixture

        out += render_mixture(record["mixture"])

    out += ["## Filters", ""]
    filters = record.get("filters")
    if filters is None:
        out.append("- no filter_report.json beside the data (traces made elsewhere?)")
    else:
        out.append("From `filter_report.json` beside the data:")
        out.append("")
        out.append("```json\n" + json.dumps(filters, indent=2, default=str)[:8000] + "\n```")
    out.append("")

    out += ["## Training", ""]
    out.append(f"Preset `{record.get('preset', '?')}`; launch: `{record.get('launch', 'in-process')}`.")
    out.append("")
    out.append("| hyperparameter | value |")
    out.append("|---|---|")
    for key in sorted(cfg):
        out.append(f"| {key} | {_fmt(cfg[key])} |")
    out.append("")

    out += ["## Results", ""]
    if results:
        for key in sorted(results):
            out.append(f"- {key}: {_fmt(results[key])}")
    else:
        out.append("- training has not finished")
    out.append("")
    out += ["### Evaluation", ""]
    if eval_report is not None:
        out.append(f"From `{eval_path}`:")
        out.append("")
        out.append(render_eval(eval_report))
    else:
        out.append(f"Not evaluated yet: run `make eval SIZE={record.get('size', '<size>')}`, then rerun "
                   f"`make student` (or `distill.students.card.write_card`) to add the results here.")
    out.append("")
    out += ["## Serving", "",
            ("The tokenizer carries the serving chat template (earlier turns' reasoning left out of the history); "
             "`chat_template_train.jinja` beside it is the training template with `{% generation %}` marks. "
             "The student ends its turn with the template's end-of-turn token, which is its eos."), ""]
    return "\n".join(out)


def write_card(out_dir: str | Path, eval_report: str | Path | None = None, render=render_card) -> Path:
    """(Re)write out_dir/card.md (and final/README.md) from out_dir/run.json and the eval report when there is one.
    `render(record, report, report_path)` makes the text (the RL stage passes its own)."""
    out_dir = Path(out_dir)
    record = read_record(out_dir)
    path = Path(eval_report) if eval_report else default_eval_report(out_dir)
    report = None
    if path.exists():
        try:
            report = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            log.warning("%s: not valid JSON (%s); card written without eval results", path, e)
    card = out_dir / "card.md"
    text = render(record, report, path)
    atomic_write_text(card, text)
    final = out_dir / "final"
    if final.is_dir():
        atomic_write_text(final / "README.md", text)
    return card

"""The side-by-side report: rows are benchmarks, columns original / student / rl / teacher (rl: when an RL
student from `make rl` was evaluated).

`build_report` turns per-(model, benchmark) correctness tables into plain data (report.json);
`markdown` and `plot` render it (report.md, report.png); `table` is the text printed at the end.

Gain is student minus original in pass@1 points, with a paired standard error over the problems
both columns have (the same problems make the difference much less noisy than either score).
"% of teacher" is the student's pass@1 as a share of the teacher's; "gap closed" is the share of
the original-to-teacher gap the student covers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.eval.metrics import Sample, mean_and_stderr, summarize

ROLES = ("original", "student", "rl", "teacher")

Table = dict[str, list[Sample]]
"""One model's results on one benchmark: prompt id -> its samples, in sample-index order."""


def build_report(
    tables: Mapping[str, Mapping[str, Table]],
    models: Mapping[str, Mapping[str, Any]],
    report_k: Sequence[int] = (1,),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """tables[benchmark][role] -> report data. Roles without results are left out of that row."""
    benchmarks: dict[str, Any] = {}
    for bench, by_role in tables.items():
        row: dict[str, Any] = {}
        for role in ROLES:
            table = by_role.get(role)
            if table:
                row[role] = summarize(list(table.values()), report_k)
        row.update(compare(by_role))
        benchmarks[bench] = row
    report = {**(extra or {}), "models": dict(models), "benchmarks": benchmarks}
    # The headline table as records too: the student's card.md renders `rows` as its results table.
    header, *body = rows(report)
    report["rows"] = [dict(zip(header, r)) for r in body]
    return report


def compare(by_role: Mapping[str, Table]) -> dict[str, Any]:
    """Gain of the student over the original (paired), share of the teacher's score, gap closed."""
    out: dict[str, Any] = {}
    original, student, teacher = (by_role.get(r) for r in ("original", "student", "teacher"))

    def p1(table: Table) -> float:
        return mean_and_stderr([_frac(s) for s in table.values()])[0]

    if original and student:
        common = [pid for pid in student if pid in original]
        if common:
            mean, se = mean_and_stderr([_frac(student[p]) - _frac(original[p]) for p in common])
            out["gain"] = {"mean": mean, "stderr": se, "problems": len(common)}
    if student and teacher:
        t = p1(teacher)
        out["teacher_share"] = p1(student) / t if t > 0 else None
        if original:
            o = p1(original)
            out["gap_closed"] = (p1(student) - o) / (t - o) if t > o else None
    return out


def _frac(samples: list[Sample]) -> float:
    return sum(s.correct for s in samples) / len(samples)


# ---------------------------------------------------------------------------------------------
# Rendering


def _cell(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return "-"
    p = summary["pass@1"]
    return f"{100 * p['mean']:.1f} ± {100 * p['stderr']:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The headline table: header row, then one row per benchmark (pass@1 in %, ± standard error).
    The rl column appears only when some benchmark has RL-student results."""
    roles = [r for r in ROLES if r != "rl" or any("rl" in row for row in report["benchmarks"].values())]
    out = [["benchmark", "k", *roles, "gain", "% of teacher", "gap closed"]]
    for bench, row in report["benchmarks"].items():
        ks = sorted({row[r]["k"] for r in ROLES if r in row})
        gain = row.get("gain")
        out.append([
            bench,
            "/".join(map(str, ks)) or "-",
            *(_cell(row.get(r)) for r in roles),
            f"{100 * gain['mean']:+.1f} ± {100 * gain['stderr']:.1f}" if gain else "-",
            _pct(row.get("teacher_share")),
            _pct(row.get("gap_closed")),
        ])
    return out


def table(report: Mapping[str, Any]) -> str:
    """Fixed-width text of `rows`, for the terminal."""
    data = rows(report)
    widths = [max(len(r[i]) for r in data) for i in range(len(data[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(report: Mapping[str, Any]) -> str:
    """report.md: the headline table, the models, then every metric per benchmark and model."""
    data = rows(report)
    md = ["# Eval report", ""]
    if report.get("title"):
        md += [report["title"], ""]
    md += [("pass@1 in % (mean over k samples per problem) ± standard error over problems. "
            "Gain: student - original, paired over the same problems."), ""]
    md.append("| " + " | ".join(data[0]) + " |")
    md.append("|" + "|".join(["---"] + ["---:"] * (len(data[0]) - 1)) + "|")
    md += ["| " + " | ".join(r) + " |" for r in data[1:]]
    md += ["", "## Models", ""]
    for role, info in report["models"].items():
        desc = ", ".join(f"{k}: `{v}`" for k, v in info.items() if v not in (None, ""))
        md.append(f"- **{role}**: {desc}")
    md += ["", "## All metrics", "",
           "| benchmark | model | problems | samples | metric | value |", "|---|---|---:|---:|---|---:|"]
    for bench, row in report["benchmarks"].items():
        for role in ROLES:
            s = row.get(role)
            if not s:
                continue
            for key, value in s.items():
                if key in ("problems", "samples", "k"):
                    continue
                text = (f"{100 * value['mean']:.1f} ± {100 * value['stderr']:.1f}" if isinstance(value, dict)
                        else f"{100 * value:.1f}%")
                md.append(f"| {bench} | {role} | {s['problems']} | {s['samples']} | {key} | {text} |")
    notes = report.get("notes") or []
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(md) + "\n"


def plot(report: Mapping[str, Any], path: str | Path) -> Path:
    """report.png: grouped bars of pass@1 per benchmark and model, with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    benches = list(report["benchmarks"])
    roles = [r for r in ROLES if any(r in report["benchmarks"][b] for b in benches)]
    colors = {"original": "#9e9e9e", "student": "#1f77b4", "rl": "#2ca02c", "teacher": "#ff7f0e"}
    width = 0.8 / max(1, len(roles))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(benches) + 2), 4))
    for i, role in enumerate(roles):
        xs, ys, es = [], [], []
        for j, b in enumerate(benches):
            s = report["benchmarks"][b].get(role)
            if s:
                xs.append(j + (i - (len(roles) - 1) / 2) * width)
                ys.append(100 * s["pass@1"]["mean"])
                es.append(100 * s["pass@1"]["stderr"])
        model = str(report.get("models", {}).get(role, {}).get("model") or "")
        label = f"{role} ({Path(model.rstrip('/')).name})" if model else role
        bars = ax.bar(xs, ys, width, yerr=es, capsize=3, label=label, color=colors[role])
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"pass@1 ± standard error, size {report.get('size', '?')}", fontsize=10)
    ax.legend(frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

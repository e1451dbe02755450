"""Stage 2: small composable trace filters, usable from Python and from YAML.

    from distill.filters import apply_filters, FilterReport, Finished, ThinkFormat, MathCorrect, Dedup
    from distill.trace import read_traces

    report = FilterReport()
    clean = apply_filters(read_traces("raw.jsonl"), [Finished(), ThinkFormat(), MathCorrect(), Dedup()],
                          workers=2, report=report)
    for trace in clean: ...
    report.print_table()

A filter annotates a trace (`annotate(trace)`: what it learns, returned as data, such as
math_correct's verdict in `meta`) and then judges it (`judge(trace)`: None to keep or a readable
reason to drop; it only reads); `check(trace)` does both for one trace. See `base.py`. `make filter`
(`distill.filters.run.run`) applies the recipe from the teacher YAML's `filters:` list, a
`--recipe` file, or the default R1 recipe (`recipe.R1_RECIPE`), and writes clean.jsonl,
rejects.jsonl, filter_report.json and filter_lengths.png.
"""

from __future__ import annotations

from typing import Any

from distill.filters.base import Item, TraceFilter
from distill.filters.basic import Finished, Length, ThinkFormat
from distill.filters.correct import MathCorrect
from distill.filters.dedup import Decontaminate, Dedup
from distill.filters.pipeline import apply_filters
from distill.filters.recipe import FILTERS, R1_RECIPE
from distill.filters.report import FilterReport
from distill.filters.select import Select
from distill.filters.text import Language, Readability, Repetition

__all__ = [
    "FILTERS",
    "R1_RECIPE",
    "Decontaminate",
    "Dedup",
    "FilterReport",
    "Item",
    "Finished",
    "Language",
    "Length",
    "MathCorrect",
    "Readability",
    "Repetition",
    "Select",
    "ThinkFormat",
    "TraceFilter",
    "apply_filters",
]


def __getattr__(name: str) -> Any:
    # CodeCorrect lives with the code sandbox (distill/filters/code.py); import it only when asked.
    if name == "CodeCorrect":
        from distill.filters.code import CodeCorrect

        return CodeCorrect
    raise AttributeError(f"module 'distill.filters' has no attribute {name!r}")

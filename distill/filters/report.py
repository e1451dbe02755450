"""What the filters did: counts per filter and reason, lengths before and after; table, JSON, PNG."""

from __future__ import annotations

import collections
import json
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.trace import Trace, atomic_write_text


def _category(reason: str) -> str:
    """'wrong: '7' != gold '5'' -> 'wrong': reasons start with a short category."""
    head = reason.split(":", 1)[0].strip()
    return head if len(head) <= 40 else head[:40] + "..."


@dataclass
class FilterReport:
    """Counts and lengths, filled in while `apply_filters` streams.

    Lengths are of the whole completion (reasoning + answer): in tokens when every input trace
    carries `completion_tokens` (the teacher's count), else in characters.
    """

    filters: list[str] = field(default_factory=list)
    n_in: int = 0
    n_kept: int = 0
    read_errors: int = 0
    """Lines of the input file that were not valid traces (sent to rejects.jsonl by the reader)."""
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: dict[str, collections.Counter[str]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    """Free-form facts for the JSON report (recipe, skipped benchmarks, timing)."""
    _chars_in: array = field(default_factory=lambda: array("q"), repr=False)
    _tokens_in: array = field(default_factory=lambda: array("q"), repr=False)
    _chars_out: array = field(default_factory=lambda: array("q"), repr=False)
    _tokens_out: array = field(default_factory=lambda: array("q"), repr=False)

    def start(self, names: list[str]) -> None:
        self.filters = list(names)

    def add_input(self, trace: Trace) -> None:
        self.n_in += 1
        self._chars_in.append(len(trace.reasoning) + len(trace.answer))
        self._tokens_in.append(-1 if trace.completion_tokens is None else trace.completion_tokens)

    def add_kept(self, trace: Trace) -> None:
        self.n_kept += 1
        self._chars_out.append(len(trace.reasoning) + len(trace.answer))
        self._tokens_out.append(-1 if trace.completion_tokens is None else trace.completion_tokens)

    def add_dropped(self, name: str, reason: str) -> None:
        self.dropped[name] += 1
        self.reasons.setdefault(name, collections.Counter())[_category(reason)] += 1

    # -- lengths ------------------------------------------------------------------------------

    @property
    def unit(self) -> str:
        return "tokens" if self._tokens_in and min(self._tokens_in) >= 0 else "chars"

    def lengths(self) -> tuple[list[int], list[int]]:
        """Completion lengths (before, after) in `self.unit`."""
        if self.unit == "tokens":
            return list(self._tokens_in), list(self._tokens_out)
        return list(self._chars_in), list(self._chars_out)

    @staticmethod
    def _stats(xs: list[int]) -> dict[str, float]:
        if not xs:
            return {"n": 0}
        s = sorted(xs)
        pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
        return {"n": len(s), "mean": round(sum(s) / len(s), 1), "p50": pick(0.5), "p90": pick(0.9), "max": s[-1]}

    # -- outputs ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        before, after = self.lengths()
        order = [n for n in ["read", *self.filters, "timeout"] if self.dropped.get(n) or n in self.filters]
        return {
            "in": self.n_in + self.read_errors,
            "read_errors": self.read_errors,
            "kept": self.n_kept,
            "dropped": {n: self.dropped.get(n, 0) for n in order},
            "reasons": {n: dict(self.reasons[n].most_common()) for n in order if n in self.reasons},
            "length_unit": self.unit,
            "length_before": self._stats(before),
            "length_after": self._stats(after),
            **self.notes,
        }

    def save_json(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def print_table(self, console: Any = None) -> None:
        """The filter table and the length table, with rich."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        d = self.to_dict()
        t = Table(title="filters", show_lines=False)
        t.add_column("step")
        t.add_column("traces", justify="right")
        t.add_column("share", justify="right")
        t.add_column("top reasons")
        total = max(d["in"], 1)
        t.add_row("in", str(d["in"]), "100.0%", "")
        if d["read_errors"]:  # lines that are not traces: counted in "in", so shown, never silent
            n = d["read_errors"]
            t.add_row("unreadable lines", str(n), f"{n / total:.1%}", "not a Trace: see rejects.jsonl", style="red")
        for name, n in d["dropped"].items():
            top = ", ".join(f"{c} {k}" for c, k in list(d["reasons"].get(name, {}).items())[:3])
            t.add_row(f"dropped by {name}", str(n), f"{n / total:.1%}", top)
        t.add_row("kept", str(d["kept"]), f"{d['kept'] / total:.1%}", "", style="bold")
        console.print(t)
        lt = Table(title=f"completion length ({d['length_unit']})")
        lt.add_column("")
        for col in ("n", "mean", "p50", "p90", "max"):
            lt.add_column(col, justify="right")
        for label, s in (("before", d["length_before"]), ("after", d["length_after"])):
            lt.add_row(label, *(str(s.get(c, "-")) for c in ("n", "mean", "p50", "p90", "max")))
        console.print(lt)

    def save_histogram(self, path: str | Path) -> None:
        """PNG: histogram of completion lengths before and after filtering (log-spaced bins)."""
        import matplotlib

        matplotlib.use("Agg")  # no display: a CLI run on a server
        import matplotlib.pyplot as plt
        import numpy as np

        before, after = self.lengths()
        fig, ax = plt.subplots(figsize=(7, 4))
        positive = [x for x in before if x > 0]
        if positive:
            bins = np.logspace(np.log10(max(1, min(positive))), np.log10(max(positive) + 1), 40)
            ax.hist(positive, bins=bins, alpha=0.5, label=f"before ({len(before)})")
            ax.hist([x for x in after if x > 0], bins=bins, alpha=0.7, label=f"after ({len(after)})")
            ax.set_xscale("log")
        ax.set_xlabel(f"completion length ({self.unit})")
        ax.set_ylabel("traces")
        ax.set_title("trace lengths before and after filtering")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)

"""Scores over a correctness table: pass@1 with its standard error, pass@k, cons@k, and rates.

The input is one list of `Sample`s per problem (k samples each, k may differ between problems
when a run was cut short). Definitions, as DeepSeek-R1 (section 3) and Chen et al. 2021 use them:

- pass@1: for each problem the fraction of its k samples that are correct, then the mean over
  problems. Its standard error is the standard deviation of those per-problem fractions over
  sqrt(number of problems): a clustered standard error, since samples of one problem are not
  independent ("Adding Error Bars to Evals", Miller 2024). It covers the noise of which
  problems the benchmark happened to contain as well as the sampling noise.
- pass@k: the unbiased estimator 1 - C(n-c, k) / C(n, k) per problem (n samples, c correct),
  averaged over problems: the chance that at least one of k samples drawn without replacement
  from the n is correct.
- cons@k: majority vote. The most frequent extracted answer among the first k samples wins
  (samples with no answer do not vote; a tie goes to the answer seen first) and the problem
  counts as solved when that answer is correct.
- truncation rate: the share of samples cut by max_tokens (finish_reason 'length').
- no-answer rate: the share of samples with no extractable final answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One scored completion: what the metrics need from a per-sample result."""

    correct: bool
    answer: str | None = None
    """Canonical form of the extracted final answer (the vote key for cons@k); None when none was found."""
    truncated: bool = False


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `n` samples of which `c` are correct (Chen et al. 2021).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), the numerically stable form of
    1 - C(n-c, k)/C(n, k): the binomials overflow floats for n in the hundreds.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} must be between 1 and the number of samples n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority_correct(samples: Sequence[Sample]) -> bool:
    """Is the majority-vote answer of `samples` correct? (ties: the answer seen first wins)."""
    votes = Counter(s.answer for s in samples if s.answer is not None)
    if not votes:
        return False
    # Counter keeps insertion order and max() returns the first maximal item: first seen wins a tie.
    winner = max(votes, key=votes.__getitem__)
    return next(s.correct for s in samples if s.answer == winner)


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / sqrt(n); 0 for n < 2)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, 0.0
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


@dataclass(frozen=True)
class Score:
    """A metric over problems: the mean and its clustered standard error."""

    mean: float
    stderr: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "stderr": self.stderr}


def pass_at_1(table: Sequence[Sequence[Sample]]) -> Score:
    """Mean over problems of the per-problem fraction of correct samples, with its standard error."""
    _check(table)
    return Score(*mean_and_stderr([sum(s.correct for s in row) / len(row) for row in table]))


def pass_at_k_table(table: Sequence[Sequence[Sample]], k: int) -> Score:
    """Unbiased pass@k averaged over problems; every problem needs at least k samples."""
    _check(table)
    short = min(len(row) for row in table)
    if k > short:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem; the fewest here is {short}")
    return Score(*mean_and_stderr([pass_at_k(len(row), sum(s.correct for s in row), k) for row in table]))


def cons_at_k(table: Sequence[Sequence[Sample]], k: int | None = None) -> Score:
    """Majority-vote accuracy over the first `k` samples of each problem (all samples when None)."""
    _check(table)
    return Score(*mean_and_stderr([float(majority_correct(row[:k] if k else row)) for row in table]))


def rate(table: Sequence[Sequence[Sample]], attr: str) -> float:
    """Share of all samples with `attr` true ('truncated'), or with no answer (attr='no_answer')."""
    samples = [s for row in table for s in row]
    if not samples:
        return math.nan
    if attr == "no_answer":
        return sum(s.answer is None for s in samples) / len(samples)
    return sum(bool(getattr(s, attr)) for s in samples) / len(samples)


def summarize(table: Sequence[Sequence[Sample]], ks: Sequence[int] = (1,)) -> dict[str, object]:
    """Every metric of one (model, benchmark) table, as plain data for report.json.

    `ks` lists the pass@k / cons@k to report; values above the fewest samples of any problem are
    skipped (a run with k=4 has no pass@64).
    """
    _check(table)
    short = min(len(row) for row in table)
    p1 = pass_at_1(table)
    out: dict[str, object] = {
        "problems": len(table),
        "samples": sum(len(row) for row in table),
        "k": short,
        "pass@1": p1.to_dict(),
    }
    # pass@1 is above, and a vote of one sample is no vote: only k > 1 from here.
    wanted = [k for k in sorted(set(ks) | {short}) if 1 < k <= short]
    for k in wanted:
        out[f"pass@{k}"] = pass_at_k_table(table, k).to_dict()
    for k in wanted:
        out[f"cons@{k}"] = cons_at_k(table, k).to_dict()
    out["truncation_rate"] = rate(table, "truncated")
    out["no_answer_rate"] = rate(table, "no_answer")
    return out


def _check(table: Sequence[Sequence[Sample]]) -> None:
    if not table:
        raise ValueError("no problems to score: the correctness table is empty")
    empty = [i for i, row in enumerate(table) if not row]
    if empty:
        raise ValueError(f"problem(s) at position {empty[:5]} have no samples; drop them or finish the run first")

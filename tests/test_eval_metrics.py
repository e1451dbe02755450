"""pass@1, pass@k and cons@k against naive implementations written straight from the definitions."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from distill.eval.metrics import (
    Sample,
    cons_at_k,
    majority_correct,
    pass_at_1,
    pass_at_k,
    pass_at_k_table,
    rate,
    summarize,
)


def random_table(rng: random.Random, problems: int, n: int) -> list[list[Sample]]:
    """Random correctness table. Answers come from a small pool so votes collide and tie;
    correctness is a property of the answer (as with a real checker), None answers are wrong."""
    table = []
    for _ in range(problems):
        gold = rng.choice("abcd")
        row = []
        for _ in range(n):
            answer = rng.choice(["a", "b", "c", "d", None])
            row.append(Sample(correct=answer == gold, answer=answer, truncated=rng.random() < 0.2))
        table.append(row)
    return table


def naive_pass_at_k(row: list[Sample], k: int) -> float:
    """Probability that a uniformly drawn k-subset of the samples holds a correct one: enumerate them all."""
    subsets = list(itertools.combinations(row, k))
    return sum(any(s.correct for s in sub) for sub in subsets) / len(subsets)


def naive_majority(row: list[Sample]) -> bool:
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for i, s in enumerate(row):
        if s.answer is None:
            continue
        counts[s.answer] = counts.get(s.answer, 0) + 1
        first_seen.setdefault(s.answer, i)
    if not counts:
        return False
    best = max(counts.values())
    winner = min((a for a in counts if counts[a] == best), key=first_seen.__getitem__)
    return row[first_seen[winner]].correct


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_naive_definitions(seed):
    rng = random.Random(seed)
    n = rng.choice([1, 3, 5, 8, 10])
    table = random_table(rng, problems=rng.randint(2, 12), n=n)

    per_problem = [sum(s.correct for s in row) / n for row in table]
    p1 = pass_at_1(table)
    assert p1.mean == pytest.approx(sum(per_problem) / len(per_problem))
    assert p1.stderr == pytest.approx(statistics.stdev(per_problem) / math.sqrt(len(table)))

    for k in range(1, n + 1):
        expected = statistics.fmean(naive_pass_at_k(row, k) for row in table)
        assert pass_at_k_table(table, k).mean == pytest.approx(expected, abs=1e-12), f"pass@{k}"
        expected_cons = statistics.fmean(naive_majority(row[:k]) for row in table)
        assert cons_at_k(table, k).mean == pytest.approx(expected_cons), f"cons@{k}"

    all_samples = [s for row in table for s in row]
    assert rate(table, "truncated") == pytest.approx(sum(s.truncated for s in all_samples) / len(all_samples))
    assert rate(table, "no_answer") == pytest.approx(sum(s.answer is None for s in all_samples) / len(all_samples))


def test_pass_at_k_large_n_is_stable_and_matches_binomials():
    # 1 - C(n-c, k)/C(n, k) with exact integers; the product form must agree where floats of
    # the binomials themselves would overflow (C(1000, 500) ~ 1e299, C(2000, 1000) overflows).
    for n, c, k in [(64, 3, 8), (1000, 1, 500), (2000, 7, 1000), (64, 0, 64), (64, 64, 1)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k) if n - c >= k else 1.0
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is just the fraction correct


def test_majority_vote_tie_and_no_answer():
    row = [Sample(False, "7"), Sample(True, "5"), Sample(True, "5"), Sample(False, "7")]
    assert majority_correct(row) is False  # 2-2 tie: '7' was seen first
    assert majority_correct(row[1:]) is True
    assert majority_correct([Sample(False, None), Sample(False, None)]) is False
    # samples without an answer do not vote, even when they outnumber the rest
    assert majority_correct([Sample(False, None)] * 5 + [Sample(True, "5")]) is True


def test_summarize_reports_what_k_allows():
    table = [[Sample(True, "1"), Sample(False, "2"), Sample(False, None, truncated=True), Sample(True, "1")]] * 3
    out = summarize(table, ks=(1, 2, 64))
    assert out["k"] == 4 and out["problems"] == 3 and out["samples"] == 12
    assert out["pass@1"] == {"mean": 0.5, "stderr": 0.0}
    assert out["pass@2"]["mean"] == pytest.approx(naive_pass_at_k(table[0], 2))
    assert "pass@4" in out and "cons@4" in out and "pass@64" not in out and "cons@1" not in out
    assert out["truncation_rate"] == pytest.approx(0.25) and out["no_answer_rate"] == pytest.approx(0.25)


def test_bad_tables_raise():
    with pytest.raises(ValueError, match="empty"):
        pass_at_1([])
    with pytest.raises(ValueError, match="no samples"):
        pass_at_1([[Sample(True)], []])
    with pytest.raises(ValueError, match="needs at least 4 samples"):
        pass_at_k_table([[Sample(True)] * 3], 4)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)

"""The checks inside bench/export_bench.py and bench/rl_bench.py that make a figure fail loudly when the sides
did different work (the benches themselves run in `make bench`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import export_bench  # noqa: E402
import rl_bench  # noqa: E402


def _result(student_pass: float, variants: dict[str, tuple[int, int]]) -> dict:
    def scores(samples: int, generated: int, p: float) -> dict:
        return {"benchmarks": {"toy-test": {"samples": samples}}, "pass@1_mean": p,
                "generation": {"generated": generated, "completion_tokens": 10 * generated, "tokens_per_s": 5.0}}

    return {"student": {**scores(8, 8, student_pass), "bytes": 1000},
            "variants": {name: {**scores(s, g, 0.4), "bytes": 300, "retained": 0.8, "runtime": "x"}
                         for name, (s, g) in variants.items()}}


def test_export_rows_compare_each_variant_with_the_student():
    student, rows = export_bench.rows({"fp8": _result(0.5, {"fp8": (8, 8)}), "gguf": _result(0.5, {"q8_0": (8, 8)})})
    assert student["mb"] == 0.001 and student["samples"] == 8
    assert rows["fp8"]["size_vs_student"] == 0.3 and rows["q8_0"]["retained"] == 0.8


@pytest.mark.parametrize("results, match", [
    ({"fp8": _result(0.5, {"fp8": (6, 6)})}, "scored 6 samples"),              # fewer problems than the student
    ({"fp8": _result(0.5, {"fp8": (8, 0)})}, r"\(0 generated in this run\)"),  # reused results, not measured
    ({"fp8": _result(0.5, {"fp8": (8, 8)}), "w8a8": _result(0.25, {"w8a8": (8, 8)})}, "not scored against the same"),
])
def test_export_rows_fail_loudly_when_the_sides_differ(results, match):
    with pytest.raises(SystemExit, match=match):
        export_bench.rows(results)


def test_generation_clock_counts_new_non_pad_tokens_and_time():
    import torch

    class Model:
        def generate(self, input_ids, **kwargs):
            new = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])  # pad id 0 after each completion's end
            return torch.cat([input_ids, new], dim=1)

    model = Model()
    clock = rl_bench.GenerationClock(model, pad_id=0)
    out = model.generate(input_ids=torch.ones(2, 3, dtype=torch.long))
    assert out.shape == (2, 7) and clock.sequences == 2 and clock.tokens == 4 and clock.seconds > 0
    figures = rl_bench.figures(clock, steps=1, wall=2.0, cpu=1.0)
    assert figures["generated_tokens_per_s"] == 2.0 and figures["completions"] == 2

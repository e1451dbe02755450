"""Training mixtures: several clean sets drawn by weight or count with a seed, recorded in card.md.

The end-to-end test runs `distill student --mixture` for two steps on the tiny fixture model; it
also checks the default run log (TensorBoard event files under the run's folder).
"""

from __future__ import annotations

import json

import pytest
from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

from distill.config import ConfigError
from distill.students.mixture import build_mixture, mixture_override, mixture_problems
from distill.trace import read_traces


def two_sets(root):
    a = write_clean(root / "traces" / "r1" / "gsm8k" / "clean.jsonl", arithmetic_traces(40, seed=1, teacher="r1"))
    b = write_clean(root / "traces" / "qwq" / "math" / "clean.jsonl", arithmetic_traces(30, seed=2, teacher="qwq"))
    return a, b


def test_weights_and_counts_are_drawn_with_the_seed(tmp_path):
    two_sets(tmp_path)
    mix = [{"traces": "r1/gsm8k", "weight": 0.25}, {"traces": "qwq/math", "count": 7}]
    record = build_mixture(mix, tmp_path, tmp_path / "m1.jsonl", seed=3)
    assert [s["taken"] for s in record["sets"]] == [10, 7] and record["traces"] == 17
    assert [s["available"] for s in record["sets"]] == [40, 30]
    teachers = [t.teacher["model"] for t in read_traces(tmp_path / "m1.jsonl")]
    assert teachers == ["r1"] * 10 + ["qwq"] * 7
    # Same seed: the same file byte for byte (a resumed run checks its hash); another seed: another draw.
    again = build_mixture(mix, tmp_path, tmp_path / "m2.jsonl", seed=3)
    other = build_mixture(mix, tmp_path, tmp_path / "m3.jsonl", seed=4)
    assert again["sha256"] == record["sha256"] and other["sha256"] != record["sha256"]
    # A set given by path works the same.
    by_path = build_mixture([{"traces": str(tmp_path / "traces" / "qwq" / "math" / "clean.jsonl"), "weight": 1.0}],
                            tmp_path, tmp_path / "m4.jsonl", seed=0)
    assert by_path["traces"] == 30


@pytest.mark.parametrize("mix, message", [
    ([{"traces": "r1/gsm8k"}], "exactly one of weight"),
    ([{"traces": "r1/gsm8k", "weight": 1.5}], r"weight must be in \(0, 1\]"),
    ([{"traces": "r1/gsm8k", "count": 0}], "count must be a whole number"),
    ([{"traces": "r1/gsm8k", "weight": 0.5, "wieght": 1}], "unknown key"),
    ([{"traces": "r1/gsm8k", "count": 1}, {"traces": "r1/gsm8k", "count": 2}], "more than once"),
    ([], "non-empty list"),
])
def test_bad_mixtures_are_named(mix, message):
    assert any(__import__("re").search(message, p) for p in mixture_problems(mix)), mixture_problems(mix)


def test_mixture_errors_say_what_is_missing(tmp_path):
    two_sets(tmp_path)
    with pytest.raises(ConfigError, match="asks for 99 traces.*has 30"):
        build_mixture([{"traces": "qwq/math", "count": 99}], tmp_path, tmp_path / "m.jsonl", seed=0)
    with pytest.raises(ConfigError, match="no such file. Filter that set first"):
        build_mixture([{"traces": "r1/aime", "count": 1}], tmp_path, tmp_path / "m.jsonl", seed=0)
    with pytest.raises(ConfigError, match="mixture\\[0\\].*exactly one of weight"):
        from distill.students.config import load_student_config

        load_student_config("tiny", ['mixture=[{"traces": "r1/gsm8k"}]'])
    bad = tmp_path / "mix.yaml"
    bad.write_text("mixtures: []\n")
    with pytest.raises(ConfigError, match="expected one key, `mixture:`"):
        mixture_override(bad)


def test_student_trains_on_a_mixture_file_and_records_it(tiny_qwen2, tmp_path, capsys):
    import torch

    from distill.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "out"
    two_sets(out)
    mix = tmp_path / "mix.yaml"
    mix.write_text("mixture:\n  - {traces: r1/gsm8k, weight: 0.5}\n  - {traces: qwq/math, count: 8}\n")
    assert main(["student", "--size", "tiny", "--mixture", str(mix), "--out", str(out),
                 *tiny_overrides(tiny_qwen2, "max_steps=2", "save_steps=100")]) == 0
    run = out / "students" / "tiny"
    record = json.loads((run / "run.json").read_text())
    assert record["mixture"]["traces"] == 28 and record["data"]["read"] == 28
    assert record["config"]["mixture"] == [{"traces": "r1/gsm8k", "weight": 0.5}, {"traces": "qwq/math", "count": 8}]
    card = (run / "card.md").read_text()
    assert "## Mixture" in card and "| r1/gsm8k | weight 0.5 | 20 | 40 |" in card and "| qwq/math | count 8 | 8 | 30 |" in card
    assert record["data"]["teachers"] == {"r1": 20, "qwq": 8}
    # The default run log: TensorBoard event files under the run's folder, with the loss in them.
    events = list((run / "checkpoints" / "runs").rglob("events.out.tfevents.*"))
    assert events and any(b"train/loss" in e.read_bytes() for e in events)
    # With a mixture, TEACHER / PROMPTS would name other data: refused.
    assert main(["student", "--size", "tiny", "--mixture", str(mix), "--teacher", "r1", "--prompts", "gsm8k",
                 "--out", str(out)]) == 2
    assert "the mixture names the training data" in capsys.readouterr().err

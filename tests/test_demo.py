"""The embedded default end to end, scaled down: sample -> filter -> train -> eval on CPU.

Builds a small toy teacher (worked solutions) and a smaller original student (answers only) in
a temporary cache, then runs `distill.toy.demo.run`, which calls the same stage code as
`make traces/filter/student/eval`. Levels 1-3 instead of 1-5 keep it within ~90 s on 2 cores.
"""

import json

import pytest
import yaml

from distill.config import REPO_ROOT

# Scaled-down models: the same task, fewer parameters and steps.
TEACHER = "toy://teacher?hidden_size=64&num_layers=2&intermediate_size=192&train_problems=1500&epochs=2&levels=1,2,3"
ORIGINAL = "toy://student?hidden_size=64&num_layers=2&intermediate_size=192&train_problems=1000&epochs=2&levels=1,2,3"


@pytest.fixture
def scaled_down(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    teacher = yaml.safe_load((REPO_ROOT / "teachers" / "tiny.yaml").read_text())
    teacher.update(model=TEACHER, sampling={**teacher["sampling"], "max_tokens": 96})
    student = yaml.safe_load((REPO_ROOT / "students" / "tiny.yaml").read_text())
    student.update(base=ORIGINAL)
    files = {
        "teacher": teacher,
        "student": student,
        "train": {"name": "toy", "toy": {"split": "train", "n": 400, "seed": 1, "levels": [1, 2, 3]}, "task": "math"},
        "test": {"name": "toy-test", "toy": {"split": "test", "n": 100, "levels": [2, 3]}, "task": "math"},
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(content))
    return paths


def test_scaled_down_demo_student_beats_original(tmp_path, scaled_down):
    from distill.toy.demo import run

    out = tmp_path / "out"
    summary = run(out, [f"teacher={scaled_down['teacher']}", f"size={scaled_down['student']}",
                        f"train_set={scaled_down['train']}", f"eval_set={scaled_down['test']}",
                        "prompts=400", "eval_problems=100", "unfiltered=false"])
    acc = summary["held_out_pass@1"]
    # Noise: with 100 problems the standard error of a pass@1 near 0.3 is ~0.05, and repeated runs
    # of this chain (different seeds) moved the original by +-0.04. A 0.15 margin is three of those.
    assert acc["student"] - acc["original"] >= 0.15, acc
    assert acc["teacher"] >= acc["student"] - 0.1, acc
    for f in ("raw.jsonl", "clean.jsonl", "rejects.jsonl", "filter_report.json"):
        assert (out / "traces" / "teacher" / "train" / f).exists(), f
    assert (out / "students" / "student" / "final" / "config.json").exists()
    assert (out / "students" / "student" / "card.md").exists()
    report = json.loads((out / "eval" / "student" / "report.json").read_text())
    assert set(next(iter(report["benchmarks"].values()))) >= {"original", "student", "teacher"}
    assert json.loads((out / "demo_report.json").read_text())["held_out_pass@1"] == acc

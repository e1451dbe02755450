"""The out/ layout: menu names keep their dots (SIZE=1.5b is out/students/1.5b, not out/students/1)."""

from __future__ import annotations

from pathlib import Path

from distill.paths import eval_dir, export_dir, menu_name, rl_dir, student_dir, traces_dir


def test_sizes_with_a_dot_keep_their_name():
    assert student_dir("out", "1.5b") == Path("out/students/1.5b")
    assert rl_dir("out", "1.5b-lora") == Path("out/rl/1.5b-lora")
    assert eval_dir("out", "students/1.5b.yaml") == Path("out/eval/1.5b")
    assert export_dir("out", "1.5b", "gguf") == Path("out/export/1.5b-gguf")
    assert traces_dir("out", "teachers/r1.yaml", "openr1-math") == Path("out/traces/r1/openr1-math")
    assert menu_name("tiny") == "tiny" and menu_name(Path("students/7b.yml")) == "7b"

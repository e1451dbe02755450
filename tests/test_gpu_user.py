"""What a GPU user hits first (issue 18): the toy-traces default, kernels, installs, provenance.

Pure Python or tiny CPU work only; the GPU paths are checked through the choices they make.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from distill.config import REPO_ROOT, ConfigError

GPU_PRESETS = sorted(p for p in (REPO_ROOT / "students").glob("*.yaml") if p.stem != "tiny")


# ---------------------------------------------------------------------------------------------
# 1. Only SIZE=tiny defaults to the toy traces


def make_n(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("stage", ["student", "eval"])
def test_make_passes_no_toy_teacher_or_prompts_to_a_gpu_size(stage):
    planned = make_n(stage, "SIZE=7b")
    assert "--teacher" not in planned and "--prompts" not in planned, planned
    planned = make_n(stage, "SIZE=7b", "TEACHER=r1", "PROMPTS=openr1-math")
    assert "--teacher r1" in planned


def test_student_of_a_gpu_size_without_teacher_and_prompts_stops_naming_them(tmp_path, capsys):
    from distill.cli import main

    assert main(["student", "--size", "7b", "--out", str(tmp_path), "dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert "needs TEACHER and PROMPTS" in err and "Only SIZE=tiny defaults to the toy traces" in err
    assert main(["student", "--size", "8b-lora", "--teacher", "r1", "--out", str(tmp_path), "dry_run=true"]) == 2
    assert "needs PROMPTS:" in capsys.readouterr().err
    assert not (tmp_path / "students").exists()


def test_tiny_defaults_to_the_toy_traces_and_others_read_what_they_are_given(tmp_path, capsys):
    from distill.students.config import training_data

    assert training_data("tiny", out=tmp_path, teacher=None, prompts=None) == tmp_path / "traces/tiny/toy/clean.jsonl"
    assert training_data("7b", out=tmp_path, teacher="r1", prompts="numinamath") == \
        tmp_path / "traces/r1/numinamath/clean.jsonl"
    assert training_data("7b", out=tmp_path, teacher=None, prompts=None, data="my.jsonl").name == "my.jsonl"
    # A preset may name its own traces (a user's copy of 7b.yaml); the toy ones stay tiny's alone.
    own = tmp_path / "mine.yaml"
    own.write_text((REPO_ROOT / "students" / "7b.yaml").read_text() + "traces: r1/numinamath\n")
    assert training_data(own, out=tmp_path, teacher=None, prompts=None) == tmp_path / "traces/r1/numinamath/clean.jsonl"
    with pytest.raises(ConfigError, match="make rl SIZE=70b needs TEACHER and PROMPTS"):
        training_data("70b", out=tmp_path, teacher=None, prompts=None, stage="rl")

    from distill.cli import main

    assert main(["student", "--size", "tiny", "--out", str(tmp_path), "dry_run=true"]) == 0
    assert f"data: {tmp_path / 'traces/tiny/toy/clean.jsonl'}" in capsys.readouterr().out


@pytest.mark.parametrize("path", GPU_PRESETS, ids=lambda p: p.stem)
def test_no_gpu_preset_names_toy_data(path):
    data = yaml.safe_load(path.read_text())
    text = repr({k: data.get(k) for k in ("traces", "eval", "eval_callback", "kd_teacher")})
    assert "toy" not in text and "tiny" not in text

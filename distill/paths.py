"""The `out/` layout, in one place: every stage, the demo and the CLI build their paths here.

    out/traces/<teacher>/<prompts>/   raw.jsonl, failures.jsonl, clean.jsonl, rejects.jsonl, filter_report.json
    out/students/<size>/              checkpoints/, final/, card.md, run.json
    out/eval/<size>/                  per-sample results, report.{json,md,png}
    out/rl/<size>/                    checkpoints/, final/, card.md
    out/export/<size>-<format>/       the exported model, eval.json

A name may be given as a menu entry (`r1`) or as a path to its YAML (`teachers/r1.yaml`): the
folder is named by its stem either way.
"""

from __future__ import annotations

from pathlib import Path


def traces_dir(out: str | Path, teacher: str, prompts: str) -> Path:
    """out/traces/<teacher>/<prompts>/"""
    return Path(out) / "traces" / Path(teacher).stem / Path(prompts).stem


def student_dir(out: str | Path, size: str) -> Path:
    """out/students/<size>/"""
    return Path(out) / "students" / Path(size).stem


def eval_dir(out: str | Path, size: str) -> Path:
    """out/eval/<size>/"""
    return Path(out) / "eval" / Path(size).stem


def rl_dir(out: str | Path, size: str) -> Path:
    """out/rl/<size>/"""
    return Path(out) / "rl" / Path(size).stem


def export_dir(out: str | Path, size: str, fmt: str) -> Path:
    """out/export/<size>-<format>/"""
    return Path(out) / "export" / f"{Path(size).stem}-{fmt}"

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


def menu_name(name: str | Path) -> str:
    """`7b`, `students/7b.yaml` -> `7b`; `1.5b` stays `1.5b` (Path("1.5b").stem would be "1")."""
    path = Path(name)
    return path.stem if path.suffix in (".yaml", ".yml") else path.name


def traces_dir(out: str | Path, teacher: str, prompts: str) -> Path:
    """out/traces/<teacher>/<prompts>/"""
    return Path(out) / "traces" / menu_name(teacher) / menu_name(prompts)


def student_dir(out: str | Path, size: str) -> Path:
    """out/students/<size>/"""
    return Path(out) / "students" / menu_name(size)


def eval_dir(out: str | Path, size: str) -> Path:
    """out/eval/<size>/"""
    return Path(out) / "eval" / menu_name(size)


def rl_dir(out: str | Path, size: str) -> Path:
    """out/rl/<size>/"""
    return Path(out) / "rl" / menu_name(size)


def export_dir(out: str | Path, size: str, fmt: str) -> Path:
    """out/export/<size>-<format>/"""
    return Path(out) / "export" / f"{menu_name(size)}-{fmt}"

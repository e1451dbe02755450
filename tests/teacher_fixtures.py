"""Helpers for the sampling tests: prompt sets and teacher YAMLs written into a tmp dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def write_prompt_set(folder: Path, problems: list[str], name: str = "set", ids: bool = True,
                     answers: list[Any] | None = None) -> Path:
    """A local JSONL of problems plus a datasets-style YAML pointing at it; returns the YAML path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, problem in enumerate(problems):
        row: dict[str, Any] = {"problem": problem, "answer": answers[i] if answers else str(i)}
        if ids:
            row["qid"] = f"q{i}"
        rows.append(row)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns: dict[str, Any] = {"problem": "problem", "answer": "answer"}
    if ids:
        columns["id"] = "qid"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"path": str(data), "columns": columns}))
    return path


def write_teacher(folder: Path, urls: list[str], name: str = "t", **fields: Any) -> Path:
    """An openai-backend teacher YAML for the fault server, with fast retries unless overridden."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {"backend": "openai", "model": "fault-model", "base_url": urls, "concurrency": 8,
                           "backoff": 0.02, "max_backoff": 0.1, "max_retries": 3, "timeout": 5,
                           "sampling": {"n": 1, "max_tokens": 64}}
    cfg.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

"""Prompt sets and benchmarks from datasets/*.yaml: a hub dataset, a local file, or the toy task.

(Interface fixed by the foundation; loaders are filled in by the sampling issue.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Prompt:
    """One problem, ready to send: the chat messages built with the set's instruction."""

    id: str
    """Stable id: the set's id column when it has one, else a hash of the problem text."""
    messages: list[dict[str, str]]
    reference: Any = None
    """Gold answer, normalised (AIME '023' -> '23'); a dict of tests for code."""
    task: str = "math"
    """'math', 'choice' or 'code'."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Source set, level, problem text without instruction, ..."""

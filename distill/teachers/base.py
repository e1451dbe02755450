"""What a teacher backend is: something that turns chat prompts into completions.

Backends (`openai_backend`, `hf_backend`, `vllm_backend`) implement only `generate`. Resume,
batching of the prompt stream, retries, ids and file writing live once, in `sample.py`; the
eval stage drives the very same backends to score students, originals and teachers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. Defaults follow DeepSeek's usage advice for R1."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    """Upper bound on generated tokens (reasoning + answer)."""
    n: int = 1
    """Completions per prompt."""
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Completion:
    """One completion, already split into reasoning and answer by the backend."""

    reasoning: str
    answer: str
    finish_reason: str | None
    """'stop' or 'length' (truncated); None when the server did not say."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    """Backend extras worth keeping (server model name, request id); never headers or keys."""


class Teacher(Protocol):
    name: str

    def generate(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order."""
        ...

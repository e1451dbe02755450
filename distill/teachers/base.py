"""What a teacher backend is: something that turns chat prompts into completions.

Backends (`openai_backend`, `hf_backend`, `vllm_backend`) implement `generate`, and say how they
want their work through `batching`:

    "batches"   a local engine (hf, vllm): `generate` takes whole lists of prompts, about
                `sequences_per_call(cfg)` sequences per call
    "requests"  a server (openai): one request per completion, many in flight; the backend also
                implements `acomplete` (one completion, failures raised as a classified
                `TeacherError`) and `aclose`, and `distill.teachers.loop` owns the concurrency,
                the retries and what a failure means, for sampling and eval alike

Resume, ids and file writing live once, in `sample.py` and `resume.py`; the eval stage drives the very same
backends through `generate` to score students, originals and teachers:

    from distill.teachers import TeacherConfig, load_teacher
    teacher = load_teacher(TeacherConfig(name="mine", backend="hf", model="/path/to/model"))
    completions = teacher.generate([[{"role": "user", "content": "1+1?"}]], SamplingParams(n=4))

A request that still fails after the retries comes back from `generate` as a Completion with
`finish_reason="error"` and the reason in `raw["error"]`, so one bad prompt does not end an
evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol


# DeepSeek's usage advice for R1 (and its evaluation protocol, R1 paper section 3), written once:
# the eval stage, its training callback and the demo take their defaults from here.
R1_TEMPERATURE = 0.6
R1_TOP_P = 0.95
R1_MAX_TOKENS = 32768


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. Defaults follow DeepSeek's usage advice for R1."""

    temperature: float = R1_TEMPERATURE
    top_p: float = R1_TOP_P
    max_tokens: int = R1_MAX_TOKENS
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
    batching: ClassVar[Literal["batches", "requests"]]
    """How this backend takes its work (see the module docstring)."""
    prompt_note: str | None
    """How this backend prompts a model with no chat template of its own (reported by the eval), or None."""

    @staticmethod
    def eval_chunk(batch_size: int) -> int:
        """Sequences the eval hands one `generate` call (its results are written after each call)."""
        ...

    def generate(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt, in prompt order."""
        ...


class BatchTeacher(Teacher, Protocol):
    """A local engine: whole lists of prompts per `generate` call (`batching = "batches"`)."""

    @staticmethod
    def sequences_per_call(cfg: Any) -> int:
        """Sequences (prompts x samples) to hand one `generate` call; a kill loses at most one call's worth."""
        ...


class RequestTeacher(Teacher, Protocol):
    """A teacher behind a server: one request per completion, many in flight (`batching = "requests"`)."""

    async def acomplete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        """One completion (`params.n` is ignored); raises `TeacherError` when the request fails."""
        ...

    async def aclose(self) -> None:
        """Close the connections opened in the running event loop."""
        ...


class TeacherError(Exception):
    """A failed request, classified so the caller knows what to do next.

    `retryable`: trying again may work (429, 5xx, timeout, dropped connection, empty content).
    `retry_after`: seconds the server asked us to wait (Retry-After), if it said.
    `fatal`: no request can succeed (bad key, unknown model, wrong URL): stop the whole run.
    `kind`: a short label for counts and failures.jsonl ('429', '5xx', 'timeout', 'empty', ...).
    """

    def __init__(self, message: str, *, kind: str = "error", retryable: bool = False,
                 retry_after: float | None = None, fatal: bool = False):
        super().__init__(message)
        self.kind, self.retryable, self.retry_after, self.fatal = kind, retryable, retry_after, fatal

"""EvalConfig: which benchmarks, how many samples, which sampling, which backend.

Built from these defaults, then the `eval:` section of the student preset (students/<size>.yaml),
then `key=value` overrides from the command line:

    distill eval --size 7b benchmarks=[aime24,math500] k.aime24=16 limit=20
    distill eval --size 7b greedy=true
    distill eval --size 7b data.math500=/data/math500.jsonl      # a local copy instead of the hub

Defaults are DeepSeek-R1's evaluation protocol (R1 paper, section 3): temperature 0.6, top_p
0.95, up to 32,768 generated tokens, k samples per problem (64 for AIME, 4 for MATH-500) and
pass@1 as the mean over those samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from distill.config import ConfigError

# k per benchmark. AIME and MATH-500 as in the R1 paper; the others scale with the set size so
# the standard error stays small (AMC23: 40 problems; GPQA-Diamond: 198; LiveCodeBench: hundreds).
DEFAULT_K = {
    "aime24": 64,
    "aime25": 64,
    "amc23": 16,
    "math500": 4,
    "gpqa-diamond": 8,
    "livecodebench": 4,
    "gsm8k-test": 1,
}


@dataclass(frozen=True)
class EvalConfig:
    benchmarks: list[str] = field(
        default_factory=lambda: ["aime24", "aime25", "amc23", "math500", "gpqa-diamond", "livecodebench"]
    )
    """Benchmark names from datasets/<name>.yaml (ls datasets/); a YAML path works too."""
    k: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_K))
    """Samples per problem, per benchmark (pass@1 is their mean). Override one: k.aime24=16."""
    default_k: int = 4
    """Samples per problem for a benchmark not listed in `k`."""
    report_k: list[int] = field(default_factory=lambda: [1, 8, 64])
    """pass@k / cons@k values to report besides pass@1 and pass@k / cons@k at the full k."""
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    """Upper bound on generated tokens per sample (reasoning + answer); cut samples count as truncated."""
    greedy: bool = False
    """Greedy decoding: temperature 0 and one sample per problem, whatever `k` says."""
    seed: int = 0
    """Base of the per-call sampling seeds. Results on disk are kept when it changes (they are
    samples of the same protocol), so a new seed only changes the samples still to be drawn."""
    backend: Literal["hf", "vllm", "openai"] = "hf"
    """How the student and the original base run: hf (transformers, CPU or GPU), vllm (GPU), openai (a server)."""
    backend_options: dict[str, Any] = field(default_factory=dict)
    """Extra teacher-config keys for that backend, e.g. batch_size=32, tensor_parallel_size=4, base_url=..."""
    teacher: str | None = None
    """Teacher to compare against (teachers/<name>.yaml); the --teacher flag wins over this."""
    original: str | None = None
    """The original base model; default: the base model named in students/<size>.yaml."""
    roles: list[str] = field(default_factory=lambda: ["original", "student", "teacher"])
    """Columns to generate. The report shows every column with results on disk, so columns can be
    run apart (roles=[original] on one machine, then roles=[student] on another with the same --out)."""
    rescore: bool = False
    """Re-check every stored sample with the current distill.verify instead of its stored verdict."""
    limit: int | None = None
    """Evaluate only the first N problems of each benchmark (quick checks; not comparable to full runs)."""
    data: dict[str, str] = field(default_factory=dict)
    """Per-benchmark local file replacing the YAML's source, e.g. data.math500=path/to/math500.jsonl."""
    chunk: int | None = None
    """Sequences (problems x k) per generate call; results are written after each call, so this bounds
    what a kill loses. Default: 4x the batch size on hf; 2048 on vllm and openai, which schedule
    large batches themselves. A problem's k samples always go in one call."""
    score_workers: int = 1
    """Worker processes for answer checking (math-verify); raise on many-core machines. 0 checks in
    this process: faster for tiny runs, but a check stuck in C code (a huge power) would hang the eval."""

    score_timeout: float = 5.0
    """Seconds to check one answer; past it the sample is unjudged and counts as wrong (noted in the report)."""
    answer_fallback: Literal["distill", "last_number"] = "distill"
    """How a math answer with no \\boxed{} is read: 'distill' (an "answer is" line, else the last math
    span; distill.verify.math) or 'last_number' (the last number of the text, as the Qwen2.5-Math
    parser behind SkyThought and many model cards does; looser, use it to compare with their numbers).
    Stored results are re-checked when it changes; nothing is regenerated."""

    def __post_init__(self) -> None:
        for name, k in {**self.k, "default_k": self.default_k}.items():
            if k < 1:
                raise ConfigError(f"eval config: k for '{name}' is {k}; it must be at least 1 sample per problem")
        unknown = [r for r in self.roles if r not in ("original", "student", "teacher")]
        if unknown:
            raise ConfigError(f"eval config: unknown role(s) {unknown} in `roles`; use original, student, teacher")
        if not self.benchmarks:
            raise ConfigError("eval config: `benchmarks` is empty; name at least one (ls datasets/)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"eval config: limit={self.limit}; use a positive number of problems, or leave it unset")
        if self.max_tokens < 1 or (self.chunk or 1) < 1 or self.score_workers < 0 or self.score_timeout <= 0:
            raise ConfigError("eval config: max_tokens, chunk and score_timeout must be positive, score_workers at least 0")
        if not (0.0 < self.top_p <= 1.0) or self.temperature < 0:
            raise ConfigError(f"eval config: need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    def chunk_for(self, backend: str, batch_size: int) -> int:
        """Sequences per generate call for a model on `backend` (see `chunk`)."""
        if self.chunk is not None:
            return self.chunk
        return 4 * batch_size if backend == "hf" else 2048

    def samples_for(self, benchmark: str) -> int:
        """k of `benchmark`: 1 in greedy mode (greedy samples are identical), else from `k`."""
        if self.greedy:
            return 1
        return self.k.get(benchmark, self.default_k)

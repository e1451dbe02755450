"""EvalConfig: which benchmarks, how many samples, which sampling, which backend.

Built from these defaults, then the `eval:` section of the student preset (students/<size>.yaml),
then `key=value` overrides from the command line:

    distill eval --size 7b benchmarks=[aime24,math500] k.aime24=16 limit=20
    distill eval --size 7b greedy=true
    distill eval --size 7b data.math500=/data/math500.jsonl      # a local copy instead of the hub
    distill eval --size 7b benchmarks=[aime25] data.aime25=mine.jsonl columns.aime25.problem=prompt

The preset's `limit` and `teacher` are about its own benchmarks (tiny: 200 toy-test problems
against the tiny teacher): a run that names other benchmarks does not inherit them, and the
preset settings that do apply are printed.

Defaults are DeepSeek-R1's evaluation protocol (R1 paper, section 3; the sampling values are
distill.teachers.base.R1_*): temperature 0.6, top_p 0.95, up to 32,768 generated tokens, k
samples per problem (64 for AIME, 4 for MATH-500) and pass@1 as the mean over those samples.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distill.config import ConfigError, coerce, load_config, merge, parse_overrides
from distill.teachers.base import R1_MAX_TOKENS, R1_TEMPERATURE, R1_TOP_P

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
    temperature: float = R1_TEMPERATURE
    top_p: float = R1_TOP_P
    max_tokens: int = R1_MAX_TOKENS
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
    roles: list[str] = field(default_factory=lambda: ["original", "student", "rl", "teacher"])
    """Columns to generate. The report shows every column with results on disk, so columns can be
    run apart (roles=[original] on one machine, then roles=[student] on another with the same --out)."""
    rescore: bool = False
    """Re-check every stored sample with the current distill.verify instead of its stored verdict."""
    limit: int | None = None
    """Evaluate only the first N problems of each benchmark (quick checks; not comparable to full runs)."""
    data: dict[str, str] = field(default_factory=dict)
    """Per-benchmark local file replacing the YAML's source, e.g. data.math500=path/to/math500.jsonl."""
    columns: dict[str, Any] = field(default_factory=dict)
    """Per-benchmark column names for a file whose columns differ from the YAML's, e.g.
    columns.aime25.problem=prompt (the keys of `columns:` in datasets/*.yaml)."""
    chunk: int | None = None
    """Sequences (problems x k) per generate call; results are written after each call, so this bounds
    what a kill loses. Default: 4x the batch size on hf; 2048 on vllm and openai, which schedule
    large batches themselves. A problem's k samples always go in one call."""
    score_workers: int = 1
    """Worker processes for answer checking (math-verify); raise on many-core machines. 0 checks in
    this process: faster for tiny runs, but a check stuck in C code (a huge power) would hang the eval."""

    score_timeout: float = 5.0
    """Seconds to check one answer; past it the sample is unjudged and counts as wrong (noted in the report)."""
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    """Where the report's figures are logged besides report.json/md/png: TensorBoard event files under
    out/eval/<size>/runs/ (local, no account; as training logs), wandb, or none."""
    answer_fallback: Literal["distill", "last_number"] = "distill"
    """How a math answer with no \\boxed{} is read: 'distill' (an "answer is" line, else the last math
    span; distill.verify.math) or 'last_number' (the last number of the text, as the Qwen2.5-Math
    parser behind SkyThought and many model cards does; looser, use it to compare with their numbers).
    Stored results are re-checked when it changes; nothing is regenerated."""

    def __post_init__(self) -> None:
        for name, k in {**self.k, "default_k": self.default_k}.items():
            if k < 1:
                raise ConfigError(f"eval config: k for '{name}' is {k}; it must be at least 1 sample per problem")
        unknown = [r for r in self.roles if r not in ("original", "student", "rl", "teacher")]
        if unknown:
            raise ConfigError(f"eval config: unknown role(s) {unknown} in `roles`; use original, student, rl, teacher")
        if not self.benchmarks:
            raise ConfigError("eval config: `benchmarks` is empty; name at least one (ls datasets/)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"eval config: limit={self.limit}; use a positive number of problems, or leave it unset")
        if self.max_tokens < 1 or (self.chunk or 1) < 1 or self.score_workers < 0 or self.score_timeout <= 0:
            raise ConfigError("eval config: max_tokens, chunk and score_timeout must be positive, score_workers at least 0")
        self._check_columns()
        if not (0.0 < self.top_p <= 1.0) or self.temperature < 0:
            raise ConfigError(f"eval config: need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    def _check_columns(self) -> None:
        from distill.prompts import Columns

        names = [f.name for f in dataclasses.fields(Columns)]
        for bench, cols in self.columns.items():
            if not isinstance(cols, dict):
                example = bench if bench in names else "problem"
                raise ConfigError(f"eval config: columns.{bench}={cols!r:.40} names no benchmark; write "
                                  f"columns.<benchmark>.<column key>=..., e.g. columns.{self.benchmarks[0]}.{example}="
                                  f"{cols if isinstance(cols, str) else 'prompt'}")
            for key in cols:
                if key not in names:
                    hint = difflib.get_close_matches(key, names, n=1)
                    raise ConfigError(f"eval config: columns.{bench}.{key}: unknown column key."
                                      f"{f' Did you mean {hint[0]!r}?' if hint else ''} Keys: {', '.join(names)}")

    def overrides_for(self, benchmark: str) -> list[str]:
        """key=value overrides of datasets/<benchmark>.yaml: its `data` file and `columns`."""
        out = [f"path={self.data[benchmark]}"] if benchmark in self.data else []
        for key, value in self.columns.get(benchmark, {}).items():
            text = "null" if value is None else (f"[{','.join(map(str, value))}]" if isinstance(value, list) else value)
            out.append(f"columns.{key}={text}")
        return out

    def chunk_for(self, backend: str, batch_size: int) -> int:
        """Sequences per generate call for a model on `backend` (see `chunk`)."""
        if self.chunk is not None:
            return self.chunk
        from distill.teachers import backend_class

        return backend_class(backend).eval_chunk(batch_size)  # each backend declares what suits it

    def samples_for(self, benchmark: str) -> int:
        """k of `benchmark`: 1 in greedy mode (greedy samples are identical), else from `k`."""
        if self.greedy:
            return 1
        return self.k.get(benchmark, self.default_k)


# Preset `eval:` keys that describe the preset's own benchmarks, not the model: a run on other
# benchmarks does not inherit them (tiny's limit of 200 and its toy teacher mean nothing on GSM8K).
BENCHMARK_SCOPED = ("limit", "teacher")


def load_eval_config(preset_path: str | Path, section: dict[str, Any],
                     overrides: list[str] | None) -> tuple[EvalConfig, list[str]]:
    """EvalConfig defaults < the preset's `eval:` section < key=value overrides; and lines saying
    which preset settings apply (printed by the eval, so no default acts unseen)."""
    cli = parse_overrides(overrides)
    section = dict(section)
    lines: list[str] = []
    own = section.get("benchmarks")
    if "benchmarks" in cli and own is not None:
        asked = coerce(cli["benchmarks"], list[str], "benchmarks")
        mine = coerce(own, list[str], f"{preset_path}: eval.benchmarks")
        if not set(asked) <= set(mine):
            dropped = {k: section.pop(k) for k in BENCHMARK_SCOPED if k in section and k not in cli}
            if dropped:
                lines.append(f"{preset_path}: eval {', '.join(f'{k}={v}' for k, v in dropped.items())} not applied: "
                             f"they are for its own benchmarks ({', '.join(mine)}); set them with key=value")
    applied = {k: v for k, v in section.items() if k not in cli and k != "benchmarks"}
    if applied:
        lines.append(f"{preset_path}: eval settings {', '.join(f'{k}={v}' for k, v in applied.items())} "
                     "(override with key=value)")
    # Start from the default k table so `k.aime24=16` changes one entry instead of replacing them all.
    cfg = load_config(EvalConfig, merge({"k": dict(DEFAULT_K)}, section), overrides)
    return cfg, lines

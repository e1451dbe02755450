"""`RLConfig`: the `rl:` block of a student preset (students/<size>.yaml), plus key=value overrides.

    cfg, preset = load_rl_config("1.5b", ["beta=0.0", "max_steps=200"])

The field docstrings are the help text. `problems()` collects every mistake before one
`ConfigError`, as `StudentConfig` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distill.config import ConfigError, load_config, menu_path
from distill.paths import menu_name
from distill.rl.rewards import REWARDS


@dataclass(frozen=True)
class RLConfig:
    """GRPO on the SFT student (TRL GRPOTrainer). Keys of the `rl:` block of students/<size>.yaml."""

    prompts: str | None = None
    """Prompt set with reference answers (datasets/<name>.yaml) when PROMPTS is not given; None: PROMPTS is required."""
    prompt_overrides: list[str] = field(default_factory=list)
    """key=value overrides of that prompt set, e.g. [toy.n=2000, toy.seed=7] or [path=/data/my.jsonl]."""
    limit: int | None = None
    """Use only the first N prompts."""

    # ---- rewards (distill.rl.rewards)
    rewards: list[str] = field(default_factory=lambda: list(REWARDS))
    """Reward terms: correct (distill.verify), format (one think block, non-empty answer), overlong (DAPO soft punishment)."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    """Weight per reward term (missing: 1.0)."""
    overlong_cache: int = 512
    """DAPO's L_cache: completions longer than max_completion_length - overlong_cache tokens are penalised linearly."""
    reward_workers: int = 0
    """Processes scoring answers (verify's pool); 0 scores math/choice in the trainer's process. Code always uses the pool."""
    score_timeout: float = 5.0
    """Seconds per answer check (math) before it counts as wrong."""

    # ---- sampling
    num_generations: int = 8
    """Completions per prompt (the GRPO group)."""
    max_completion_length: int = 2048
    temperature: float = 0.7
    top_p: float = 1.0

    # ---- batch: completions per optimizer step = per_device_batch_size x gradient_accumulation_steps, whole groups
    per_device_batch_size: int = 16
    gradient_accumulation_steps: int = 4

    # ---- optimisation
    learning_rate: float = 1.0e-6
    lr_scheduler: str = "cosine_with_min_lr"
    min_lr_rate: float = 0.1
    warmup_ratio: float = 0.1
    num_epochs: float = 1.0
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: num_epochs over the prompts)."""
    beta: float = 0.04
    """KL coefficient against the SFT student (the reference model); 0 loads no reference model."""
    loss_type: str = "dapo"
    """TRL's GRPO loss aggregation: grpo, dapo (token-level, TRL's default), dr_grpo, bnpo, ..."""
    scale_rewards: str = "group"
    """Divide advantages by the group's reward std (group), the batch's (batch), or not (none: Dr. GRPO)."""
    epsilon: float = 0.2
    num_iterations: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42

    # ---- hardware and kernels
    use_vllm: bool = False
    """Generate with vLLM colocated in the training process (GPU, `pip install -e '.[vllm]'`); false: transformers generate."""
    vllm_gpu_memory_utilization: float = 0.3
    """Share of GPU memory vLLM may take beside the trainer when colocated."""
    bf16: bool = True
    """bf16 mixed precision on GPU; CPU runs train in fp32."""
    gradient_checkpointing: bool = True
    attn_implementation: str | None = None
    use_liger_kernel: bool = False
    torch_threads: int | None = None

    # ---- checkpoints and logging
    save_steps: int = 100
    """Checkpoint every N optimizer steps; a rerun resumes from the last complete one."""
    save_total_limit: int = 2
    logging_steps: int = 1
    report_to: str = "tensorboard"
    """Where the run log goes: TensorBoard event files under out/rl/<size>/checkpoints/runs/ (local, as for
    training), wandb, or none."""
    log_completions: bool = False

    overwrite: bool = False
    """Start over: delete this run's checkpoints and final model instead of resuming."""

    def problems(self) -> list[str]:
        out: list[str] = []
        unknown = [r for r in self.rewards if r not in REWARDS]
        if unknown or not self.rewards:
            out.append(f"'rewards' = {self.rewards}: pick from {', '.join(REWARDS)}")
        extra = [k for k in self.reward_weights if k not in self.rewards]
        if extra:
            out.append(f"'reward_weights' names {extra}, which are not in rewards {self.rewards}")
        for name in ("num_generations", "per_device_batch_size", "gradient_accumulation_steps", "max_completion_length",
                     "save_steps", "logging_steps", "num_iterations"):
            if getattr(self, name) < 1:
                out.append(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            out.append("'num_generations' must be at least 2: GRPO compares completions within a prompt's group")
        elif (self.per_device_batch_size * self.gradient_accumulation_steps) % self.num_generations:
            out.append(f"per_device_batch_size {self.per_device_batch_size} x gradient_accumulation_steps "
                       f"{self.gradient_accumulation_steps} must be a multiple of num_generations {self.num_generations} "
                       f"(they count completions: each step samples whole groups of num_generations per prompt)")
        if not 0 <= self.overlong_cache < self.max_completion_length:
            out.append(f"'overlong_cache' must be in [0, max_completion_length), got {self.overlong_cache}")
        if self.learning_rate <= 0:
            out.append(f"'learning_rate' must be positive, got {self.learning_rate}")
        if self.beta < 0:
            out.append(f"'beta' must be >= 0, got {self.beta}")
        if self.temperature <= 0:
            out.append(f"'temperature' must be positive (GRPO samples), got {self.temperature}")
        if self.num_epochs <= 0 and self.max_steps <= 0:
            out.append("set num_epochs > 0 or max_steps > 0")
        if self.limit is not None and self.limit < 1:
            out.append(f"'limit' must be at least 1, got {self.limit}")
        return out

    def weights(self) -> list[float]:
        return [float(self.reward_weights.get(name, 1.0)) for name in self.rewards]


def load_rl_config(size: str | Path, overrides: list[str] | None = None) -> tuple[RLConfig, Path]:
    """The `rl:` block of students/<size>.yaml + key=value overrides, validated."""
    from distill.students.config import StudentConfig

    path = menu_path("students", size)
    block = load_config(StudentConfig, path).rl  # the preset, read through its own dataclass
    if block is None:
        raise ConfigError(f"{path} has no `rl:` block, so `make rl SIZE={menu_name(size)}` has no recipe; add one "
                          f"(see students/1.5b.yaml) or use a size that has it")
    cfg = load_config(RLConfig, block, overrides)
    problems = cfg.problems()
    if problems:
        where = f"{path} (rl:)" + (f" with {' '.join(overrides)}" if overrides else "")
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return cfg, path


__all__ = ["RLConfig", "load_rl_config"]

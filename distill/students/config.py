"""`StudentConfig`: one frozen dataclass per size preset (students/<size>.yaml), plus its checks.

    cfg = load_student_config("7b", ["learning_rate=5e-5"], nodes=2, gpus=8)

The field docstrings below are the help text (litgpt style). `validate` collects every problem
(base id, context length against the rope settings, batch arithmetic, LoRA and KD fields)
before raising one `ConfigError`, so a user fixes a preset in one pass.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from distill.config import ConfigError, load_config, menu_path
from distill.paths import menu_name, traces_dir


@dataclass(frozen=True)
class BaseInfo:
    """What we know about a published base without downloading it (the hub is often unreachable)."""

    family: Literal["qwen2", "llama3"]
    max_position_embeddings: int
    """From the base's config.json: the context the checkpoint was trained for."""
    rope_theta: float
    params_b: float
    """Parameters in billions, for the wall-time estimate."""
    vocab_rows: int
    """Embedding rows (padded beyond the tokenizer's length on Qwen2.5: 151,936 or 152,064)."""


# DeepSeek-R1's distillation bases (R1 paper, section 2.4 / table 5) and their config.json values.
KNOWN_BASES: dict[str, BaseInfo] = {
    "Qwen/Qwen2.5-Math-1.5B": BaseInfo("qwen2", 4096, 10_000.0, 1.54, 151_936),
    "Qwen/Qwen2.5-Math-7B": BaseInfo("qwen2", 4096, 10_000.0, 7.62, 152_064),
    "meta-llama/Llama-3.1-8B": BaseInfo("llama3", 131_072, 500_000.0, 8.03, 128_256),
    "Qwen/Qwen2.5-14B": BaseInfo("qwen2", 131_072, 1_000_000.0, 14.8, 152_064),
    "Qwen/Qwen2.5-32B": BaseInfo("qwen2", 131_072, 1_000_000.0, 32.8, 152_064),
    "meta-llama/Llama-3.3-70B-Instruct": BaseInfo("llama3", 131_072, 500_000.0, 70.6, 128_256),
}

TEMPLATE_OF_FAMILY = {"qwen2": "chatml", "llama3": "llama3"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class StudentConfig:
    """A student size preset: base model, recipe, hardware. Keys of students/<size>.yaml."""

    base: str
    """Base model: a hub id (Qwen/Qwen2.5-Math-7B), a local model dir, or toy://student (the embedded CPU model)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of `base`; pin it for reproducible runs."""
    tokenizer: str | None = None
    """A local folder with the base's tokenizer (tokenizer.json + tokenizer_config.json), read instead of the base's
    own: for air-gapped clusters, and for `rehearse` where the hub is unreachable. None: the base's tokenizer."""
    template: Literal["chatml", "llama3"] = "chatml"
    """Chat format the student learns (see distill/students/templates.py); must fit the base's special tokens."""
    traces: str | None = None
    """Traces to train on when TEACHER and PROMPTS are not given: `<teacher>/<prompts>` (out/traces/<teacher>/<prompts>/
    clean.jsonl) or a path to a clean JSONL. Only tiny names the toy traces; None: TEACHER and PROMPTS are required."""

    # ---- long context
    max_length: int = 32_768
    """Longest training sequence in tokens (prompt + reasoning + answer). Longer traces are dropped and counted, never cut."""
    rope_theta: float | None = None
    """Override the base's RoPE theta. Raise it with max_position_embeddings to train past the base's context (open-r1: 300000 for Qwen2.5-Math)."""
    max_position_embeddings: int | None = None
    """Override the base's context length; must be >= max_length."""

    # ---- batch arithmetic: per_device_batch_size * gradient_accumulation_steps * nodes * gpus_per_node = global_batch_size
    per_device_batch_size: int = 1
    """Sequences per device per forward pass."""
    gradient_accumulation_steps: int = 1
    """Forward passes per optimizer step. Recomputed from global_batch_size when NODES/GPUS change the device count."""
    global_batch_size: int | None = None
    """Sequences per optimizer step across all devices: the number a recipe publishes. None = no check."""
    nodes: int = 1
    """Machines the preset assumes (NODES= overrides)."""
    gpus_per_node: int = 1
    """Devices per machine the preset assumes (GPUS= overrides); 1 with no GPU means one CPU process."""

    # ---- optimisation
    learning_rate: float = 4.0e-5
    lr_scheduler: str = "cosine_with_min_lr"
    """A transformers scheduler name: cosine_with_min_lr, cosine, linear, constant_with_warmup, ..."""
    min_lr_rate: float = 0.1
    """Floor of cosine_with_min_lr as a fraction of learning_rate (R1 and open-r1 decay to one tenth)."""
    warmup_ratio: float = 0.03
    """Linear warmup as a fraction of all optimizer steps."""
    num_epochs: float = 3.0
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run num_epochs)."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    bf16: bool = True
    """bf16 mixed precision (GPU); the tiny CPU preset trains in fp32."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass: needed for 32k sequences, slower on small models."""
    attn_implementation: str | None = None
    """sdpa, flash_attention_2, ... (None: the transformers default). Packing keeps documents apart with either.
    flash_attention_2 needs the flash-attn package (`make install` on a GPU machine); when it cannot be imported
    the run falls back to sdpa, without padding_free, and says so loudly (distill.students.train.resolve_kernels)."""
    group_by_length: bool = False
    """Batch traces of similar length together (transformers' LengthGroupedSampler): less padding
    when packing is off. Batches stay random in order; within a batch lengths are close."""
    packing: bool = False
    """Pack several traces per row (best-fit decreasing, padding-free). Pays on GPU with varied lengths; slower on CPU for short rows."""
    padding_free: bool = False
    """Flatten each micro-batch into one row without padding (TRL's padding_free): flash-attention's varlen kernel
    attends within each trace, so no FLOP goes to padding. Needs a flash attn_implementation; pays with
    per_device_batch_size >= 2 (bench/attention_bench.py). Packing implies it."""
    use_liger_kernel: bool = False
    """Liger layer kernels (RMSNorm, RoPE, SwiGLU; GPU, installed by `make install` with the gpu extra); open-r1 uses
    them for its 7B recipe. TRL keeps its own chunked LM head instead of Liger's fused cross-entropy."""
    token_metrics: bool = True
    """Log SFTTrainer's per-step entropy and token accuracy (computed from the fused LM head on every step)."""
    fused_lm_head: bool = True
    """Compute the loss through TRL's chunked LM head, never holding the (tokens x vocab) logits: needed at 32k x 152k.
    Off (needs token_metrics: false) uses one full matmul, faster for small vocabularies on CPU."""

    # ---- parallelism
    parallelism: Literal["ddp", "zero3", "zero3_offload", "fsdp"] = "ddp"
    """How processes share the model: ddp (replicas), zero3 / zero3_offload (DeepSpeed), fsdp (FSDP2). Files under students/launch/."""
    context_parallel: int = 1
    """GPUs each sequence is split over (accelerate's ParallelismConfig cp_size, FSDP2): activations and logits per GPU
    shrink by this factor, for 32k sequences on 32B/70B. Needs parallelism: fsdp and attn_implementation: sdpa, and
    divides gpus_per_node; data-parallel groups = devices / context_parallel. The dry run's memory estimate offers it."""
    gpu_memory_gib: float = 80.0
    """Memory of one GPU, for the dry run's per-GPU estimate (distill.students.launch.memory_report): H100 80, H200 141."""
    shared_fs_timeout_s: float = 120.0
    """Multi-node: how long each node waits to see the marker rank 0 writes into the out dir (the shared-filesystem check)."""

    # ---- LoRA
    lora: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lora_special_tokens: bool = True
    """Also train the input- and output-embedding rows of the template's special tokens (PEFT trainable_token_indices),
    and no other row: a base that never saw <|eot_id|> (Llama-3.1-8B) must learn to write it, or the student never stops."""
    merge_lora: bool = True
    """Save final/ with the adapter merged into the base (serves anywhere); the adapter alone goes to adapter/."""

    # ---- checkpoints and logging
    save_steps: int = 500
    """Checkpoint every N optimizer steps; a rerun resumes from the last one."""
    save_total_limit: int = 2
    logging_steps: int = 10
    report_to: str = "tensorboard"
    """Where the run log goes: tensorboard (event files under <run>/checkpoints/runs/, the default: local, no
    account), wandb, trackio, ... or none. `tensorboard --logdir out/students` shows them."""
    push_to_hub: str | None = None
    """Hub repo (org/name) to upload final/ to with its model card once trained (distill/hub.py)."""
    push_checkpoints: bool = False
    """With push_to_hub: upload each checkpoint while training too, as a revision (branch) checkpoint-<step>."""
    hub_endpoint: str | None = None
    """Another hub than huggingface.co (a mirror, a local stub in tests); None: HF_ENDPOINT or the default."""
    dataset_num_proc: int | None = None
    """Processes for tokenising clean.jsonl (None: in the main process)."""
    torch_threads: int | None = None
    """torch.set_num_threads for CPU runs (None: torch's default)."""

    # ---- beyond SFT: logit and on-policy distillation from a local teacher sharing the vocabulary
    kd: Literal["none", "logit", "on_policy"] = "none"
    """none: SFT on the traces. logit: match the teacher's next-token distribution on the traces (GKD, lmbda=0).
    on_policy: the student samples, the teacher scores every token (TRL DistillationTrainer)."""
    kd_teacher: str | None = None
    """Teacher model for kd (hub id, local dir or toy://teacher). Must share the student's tokenizer."""
    kd_beta: float = 0.0
    """Generalized JSD interpolation: 0 forward KL (classic logit KD), 1 reverse KL (on-policy distillation), 0.5 JSD."""
    kd_temperature: float = 1.0
    kd_max_completion_length: int = 4096
    """On-policy: tokens the student samples per prompt."""

    # ---- eval during training (distill.eval.callback): {benchmarks: [...], every_steps: N, k: K, ...}
    eval_callback: dict[str, Any] | None = None
    """When set, distill.eval.callback.EvalCallback(tokenizer, **eval_callback) runs during training."""
    eval: dict[str, Any] | None = None
    """EvalConfig keys used by `make eval SIZE=<size>` (benchmarks, k, max_tokens, ...); read by distill.eval.run."""
    rl: dict[str, Any] | None = None
    """The GRPO recipe of `make rl SIZE=<size>` (distill.rl.config.RLConfig keys); SFT does not read it."""
    export: dict[str, Any] | None = None
    """`make export SIZE=<size>` settings (distill.export.run.ExportConfig keys, e.g. gguf_4bit); SFT does not read it."""

    # ---- data: several clean trace sets instead of one (distill/students/mixture.py)
    mixture: list[dict[str, Any]] | None = None
    """[{traces: <teacher>/<prompts> or a .jsonl, weight: 0-1 | count: N}, ...], drawn with `seed` into
    <run>/mixture.jsonl; `make student SIZE=7b MIXTURE=mix.yaml` reads the list from a file."""

    # ---- run control
    overwrite: bool = False
    """Start over: delete this run's checkpoints and final model instead of resuming."""
    dry_run: bool = False
    """Print the launch command and the wall-time estimate, train nothing."""
    rehearse: bool = False
    """Rehearse this preset on CPU (distill/students/rehearse.py): its own code path on a 2-layer random model of the
    base's architecture, with the base's tokenizer, into out/students/<size>-rehearsal/. Trains nothing real."""

    # ------------------------------------------------------------------------------------------

    @property
    def devices(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def data_parallel(self) -> int:
        """Groups that each take their own batch: devices, over context_parallel (one sequence spans a group)."""
        return self.devices // max(1, self.context_parallel)

    def base_info(self) -> BaseInfo | None:
        return KNOWN_BASES.get(self.base)

    def effective_context(self) -> tuple[int | None, float | None]:
        """(max_position_embeddings, rope_theta) the student trains with, as far as known without loading it."""
        info = self.base_info()
        mpe = self.max_position_embeddings or (info.max_position_embeddings if info else None)
        theta = self.rope_theta or (info.rope_theta if info else None)
        return mpe, theta

    def problems(self) -> list[str]:
        """Every problem with this preset, worded with its fix; empty when it is valid."""
        out: list[str] = []
        base = self.base
        if not base:
            out.append("'base' is empty: give a hub id (Qwen/Qwen2.5-Math-7B), a model dir, or toy://student")
        elif not (base.startswith(("toy://", "/", ".", "~")) or HUB_ID.match(base) or Path(base).exists()):
            out.append(f"'base' = {base!r} is neither a hub id (org/name), a path, nor toy://<name>")
        info = self.base_info()
        if info is not None and TEMPLATE_OF_FAMILY[info.family] != self.template:
            out.append(f"'template' = {self.template!r} does not fit {base} ({info.family}); "
                       f"use template: {TEMPLATE_OF_FAMILY[info.family]}")

        # Context: 32k traces on a 4k base need the positions and RoPE theta raised together.
        mpe, theta = self.effective_context()
        if mpe is not None and self.max_length > mpe:
            out.append(f"'max_length' = {self.max_length} exceeds the model's context ({mpe} positions); "
                       f"raise max_position_embeddings and rope_theta (open-r1: 32768 and 300000 for Qwen2.5-Math) "
                       f"or lower max_length")
        extends = info is not None and (self.max_position_embeddings or 0) > info.max_position_embeddings
        if extends and (not self.rope_theta or self.rope_theta <= info.rope_theta):
            out.append(f"'max_position_embeddings' = {self.max_position_embeddings} extends {base} past its "
                       f"{info.max_position_embeddings} positions but rope_theta stays {theta:g}; raise rope_theta "
                       f"too (open-r1 uses 300000 for 32768 positions on Qwen2.5-Math)")
        if self.max_position_embeddings is not None and self.max_position_embeddings < self.max_length:
            out.append(f"'max_position_embeddings' = {self.max_position_embeddings} is below max_length = {self.max_length}")

        # Batch arithmetic.
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "nodes", "gpus_per_node", "max_length",
                     "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                out.append(f"'{name}' must be at least 1, got {getattr(self, name)}")
        if self.global_batch_size is not None:
            got = self.per_device_batch_size * self.gradient_accumulation_steps * self.data_parallel
            if got != self.global_batch_size:
                cp = f" / context_parallel {self.context_parallel}" if self.context_parallel > 1 else ""
                out.append(f"batch arithmetic: per_device_batch_size {self.per_device_batch_size} x "
                           f"gradient_accumulation_steps {self.gradient_accumulation_steps} x {self.devices} devices "
                           f"({self.nodes} nodes x {self.gpus_per_node}){cp} = {got}, not global_batch_size "
                           f"{self.global_batch_size}")
        cp = f"context_parallel: {self.context_parallel}"
        if self.context_parallel < 1:
            out.append(f"'context_parallel' must be at least 1, got {self.context_parallel}")
        elif self.context_parallel > 1:
            if self.parallelism != "fsdp":
                out.append(f"{cp} needs parallelism: fsdp (accelerate's context parallelism runs on FSDP2)")
            if self.attn_implementation != "sdpa":
                out.append(f"{cp} needs attn_implementation: sdpa (the Trainer refuses {self.attn_implementation})")
            if self.packing or self.padding_free:
                out.append(f"{cp} needs packing: false and padding_free: false (it splits one causal sequence)")
            if self.gpus_per_node % self.context_parallel:
                out.append(f"{cp} must divide gpus_per_node = {self.gpus_per_node} (a sequence stays within a node)")
            if self.kd != "none":
                out.append(f"{cp} does not run with kd: {self.kd}; set context_parallel: 1")
        if not 0 <= self.warmup_ratio < 1:
            out.append(f"'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            out.append(f"'learning_rate' must be positive, got {self.learning_rate}")
        if self.num_epochs <= 0 and self.max_steps <= 0:
            out.append("set num_epochs > 0 or max_steps > 0")

        if self.lora and (self.lora_r < 1 or self.lora_alpha < 1 or not self.lora_target_modules):
            out.append("LoRA needs lora_r >= 1, lora_alpha >= 1 and at least one lora_target_modules entry")
        if self.tokenizer and not (Path(self.tokenizer).expanduser() / "tokenizer_config.json").exists():
            out.append(f"'tokenizer' = {self.tokenizer!r} is not a tokenizer folder (no tokenizer_config.json there); "
                       f"give a folder saved by save_pretrained, e.g. ../shared/data/tokenizers/qwen2.5")
        if self.kd != "none" and not self.kd_teacher:
            out.append(f"kd: {self.kd} needs 'kd_teacher' (a model sharing the student's tokenizer)")
        if not 0.0 <= self.kd_beta <= 1.0:
            out.append(f"'kd_beta' must be in [0, 1], got {self.kd_beta}")
        if not self.fused_lm_head and self.token_metrics:
            out.append("fused_lm_head: false needs token_metrics: false (the metrics come from the fused head)")
        if self.padding_free and not (self.attn_implementation or "").startswith("flash_attention"):
            out.append(f"padding_free: true needs attn_implementation: flash_attention_2 (or _3), got "
                       f"{self.attn_implementation!r}: the flat row has no attention mask, and only flash-attention's "
                       f"varlen kernel keeps its traces apart without computing the padding it saves")
        if self.kd != "none" and self.padding_free:
            out.append(f"kd: {self.kd} does not batch padding-free; set padding_free: false")
        if self.kd != "none" and self.packing:
            out.append(f"kd: {self.kd} does not pack sequences; set packing: false")
        if self.mixture is not None:
            from distill.students.mixture import mixture_problems

            out.extend(mixture_problems(self.mixture))
        if self.push_to_hub is not None and not HUB_ID.match(self.push_to_hub):
            out.append(f"'push_to_hub' = {self.push_to_hub!r} is not a hub repo id (org/name)")
        if self.push_checkpoints and not self.push_to_hub:
            out.append("push_checkpoints: true needs push_to_hub=<org/name> (where the revisions go)")
        if self.eval_callback is not None and not isinstance(self.eval_callback, dict):
            out.append("'eval_callback' must be a mapping of EvalCallback keyword arguments")
        return out

    def validate(self, where: str) -> StudentConfig:
        problems = self.problems()
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        return self

    def with_devices(self, nodes: int | None, gpus: int | None, where: str) -> StudentConfig:
        """The same recipe on other hardware: keep global_batch_size, recompute gradient accumulation."""
        new_nodes = nodes if nodes is not None else self.nodes
        new_gpus = gpus if gpus is not None else self.gpus_per_node
        if new_nodes < 1 or new_gpus < 1:
            raise ConfigError(f"{where}: NODES and GPUS must be at least 1, got {new_nodes} and {new_gpus}")
        accumulation = self.gradient_accumulation_steps
        if self.global_batch_size is not None:
            # One sequence spans context_parallel GPUs: each group of them takes one batch (validate names a bad value).
            cp = self.context_parallel if self.context_parallel > 0 and new_gpus % self.context_parallel == 0 else 1
            per_step = self.per_device_batch_size * new_nodes * new_gpus // cp
            if per_step < 1 or self.global_batch_size % per_step:
                raise ConfigError(
                    f"{where}: global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                    f"{self.per_device_batch_size} x {new_nodes} nodes x {new_gpus} GPUs"
                    f"{f' / context_parallel {cp}' if cp > 1 else ''} = {per_step}; pick a device "
                    f"count that divides it, or set per_device_batch_size (ARGS=\"per_device_batch_size=1\")")
            accumulation = self.global_batch_size // per_step
        return dataclasses.replace(self, nodes=new_nodes, gpus_per_node=new_gpus,
                                   gradient_accumulation_steps=accumulation)


def training_data(size: str | Path, *, out: str | Path, teacher: str | None, prompts: str | None,
                  data: str | Path | None = None, stage: str = "student") -> Path:
    """The clean JSONL a stage trains on: `data`; else TEACHER/PROMPTS's clean.jsonl; else the preset's `traces`.

    A GPU size never falls back to the toy traces: without TEACHER and PROMPTS (and without
    `traces:` in its preset) it stops with an error that names them. `make rl` / `make export`
    resolve their data the same way.
    """

    if data:
        return Path(data)
    if teacher and prompts:
        return traces_dir(out, teacher, prompts) / "clean.jsonl"
    path = menu_path("students", size)
    named = load_config(StudentConfig, path).traces
    if named and not (teacher or prompts):
        if named.endswith((".jsonl", ".json")):
            return Path(named).expanduser()
        if named.count("/") != 1:
            raise ConfigError(f"{path}: 'traces' = {named!r} is neither <teacher>/<prompts> nor a .jsonl path")
        return traces_dir(out, *named.split("/")) / "clean.jsonl"
    missing = " and ".join(n for n, v in (("TEACHER", teacher), ("PROMPTS", prompts)) if not v)
    raise ConfigError(
        f"make {stage} SIZE={menu_name(size)} needs {missing}: which traces to train on "
        f"(out/traces/<TEACHER>/<PROMPTS>/clean.jsonl). Only SIZE=tiny defaults to the toy traces. "
        f"Run e.g. `make {stage} SIZE={menu_name(size)} TEACHER=r1 PROMPTS=openr1-math` (ls teachers/ datasets/), "
        f"pass a file with --data, or name the traces in {path.name} (`traces: <teacher>/<prompts>`)")


def load_student_config(size: str | Path, overrides: list[str] | None = None, nodes: int | None = None,
                        gpus: int | None = None) -> tuple[StudentConfig, Path]:
    """students/<size>.yaml (or a YAML path) + key=value overrides + NODES/GPUS, validated.

    The preset is checked as written first (its batch arithmetic must add up), then overrides and
    the hardware apply: with a global_batch_size, gradient accumulation follows the device count and
    per-device batch, so `make student SIZE=7b GPUS=4` runs the published recipe on half the GPUs.
    """
    path = menu_path("students", size)
    load_config(StudentConfig, path).validate(str(path))
    cfg = load_config(StudentConfig, path, overrides)
    where = f"{path} with {' '.join(overrides)}" if overrides else str(path)
    if not any(o.split("=", 1)[0].strip() == "gradient_accumulation_steps" for o in overrides or []):
        cfg = cfg.with_devices(nodes, gpus, where)
    elif nodes is not None or gpus is not None:
        cfg = dataclasses.replace(cfg, nodes=nodes or cfg.nodes, gpus_per_node=gpus or cfg.gpus_per_node)
    return cfg.validate(where), path

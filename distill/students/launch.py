"""The accelerate launch for a size preset on NODES machines x GPUS devices.

    make student SIZE=70b NODES=4 GPUS=8     # on each node, with NODE_RANK and MASTER_ADDR set

`distill.students.train.run` trains in its own process when one device is enough, and otherwise
runs the command built here, which starts `python -m distill.students.train` once per device.
The accelerate config file comes from the preset's `parallelism` (students/launch/*.yaml):

- ddp.yaml: plain data parallel (replicas); also the CPU path (gloo) the tests use;
- zero3.yaml / zero3_offload.yaml: DeepSpeed ZeRO-3 (parameters, gradients, optimizer sharded;
  offload moves optimizer state and parameters to CPU RAM), from 14B and for 32k sequences;
- fsdp.yaml: FSDP2 full sharding, the alternative to ZeRO-3; with `context_parallel: N` the launch
  adds accelerate's ParallelismConfig flags (cp_size N), splitting each sequence over N GPUs.

`memory_report` is the per-GPU memory estimate the dry run prints, from the base's config.json
facts; `check_shared_filesystem` is what every node runs first in a multi-node job.

Multi-node: accelerate needs each node's rank and node 0's address. We read them from NODE_RANK
(or MACHINE_RANK, SLURM_NODEID) and MASTER_ADDR, the names torchrun and SLURM scripts use. The
out dir (data cache, checkpoints, resume) must be one filesystem shared by every node: the job
checks that first (`check_shared_filesystem`) and stops on every node with the fix when it is not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import REPO_ROOT, ConfigError
from distill.students.config import StudentConfig

LAUNCH_DIR = REPO_ROOT / "students" / "launch"
CONFIG_FILES = {
    "ddp": "ddp.yaml",
    "zero3": "zero3.yaml",
    "zero3_offload": "zero3_offload.yaml",
    "fsdp": "fsdp.yaml",
}
H100_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 SXM


def launch_config_file(cfg: StudentConfig) -> Path:
    return LAUNCH_DIR / CONFIG_FILES[cfg.parallelism]


def node_rank_and_master(env: dict[str, str] | None = None) -> tuple[int | None, str | None]:
    env = dict(os.environ if env is None else env)
    rank = next((env[k] for k in ("NODE_RANK", "MACHINE_RANK", "SLURM_NODEID") if env.get(k)), None)
    return (int(rank) if rank is not None else None), env.get("MASTER_ADDR")


def launch_command(cfg: StudentConfig, *, size: str | Path, data: str | Path, out_dir: str | Path,
                   overrides: list[str] | None = None, cpu: bool = False, machine_rank: int | str | None = None,
                   main_process_ip: str | None = None, main_process_port: int = 29500,
                   python: str = sys.executable) -> list[str]:
    """argv that starts `python -m distill.students.train` on cfg.gpus_per_node devices of this node.

    `cpu`: processes on CPU cores talking over gloo (accelerate's `--cpu` flag would start one
    process only, so the MULTI_GPU launcher runs and the Trainer is told `use_cpu`).
    """
    if cpu and cfg.parallelism != "ddp":
        raise ConfigError(f"parallelism '{cfg.parallelism}' needs GPUs; on CPU only ddp runs (gloo)")
    processes = cfg.nodes * cfg.gpus_per_node
    cmd = [python, "-m", "accelerate.commands.launch",
           "--config_file", str(launch_config_file(cfg)),
           "--num_machines", str(cfg.nodes),
           "--num_processes", str(processes),
           "--mixed_precision", "bf16" if cfg.bf16 and not cpu else "no"]
    if cfg.nodes > 1:
        if machine_rank is None or not main_process_ip:
            raise ConfigError(
                f"a {cfg.nodes}-node launch needs this node's rank and node 0's address: set NODE_RANK=0..{cfg.nodes - 1} "
                f"and MASTER_ADDR=<ip of node 0> on every node (under SLURM: NODE_RANK=$SLURM_NODEID "
                f"MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1))")
        cmd += ["--machine_rank", str(machine_rank), "--main_process_ip", main_process_ip]
    cmd += ["--main_process_port", str(main_process_port), *parallelism_flags(cfg)]
    # The parent already handled dry_run and overwrite; the per-device processes only train.
    passed = [o for o in overrides or [] if o.split("=", 1)[0].strip() not in ("dry_run", "overwrite")]
    cmd += ["-m", "distill.students.train", "--size", str(size), "--data", str(data), "--out-dir", str(out_dir),
            "--nodes", str(cfg.nodes), "--gpus", str(cfg.gpus_per_node), *passed]
    return cmd


def format_command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def estimate_hours(params_b: float, tokens: float, gpus: int, *, lora: bool = False, checkpointing: bool = True,
                   mfu: float = 0.35, peak_tflops: float = H100_BF16_TFLOPS) -> float:
    """Wall hours to train on `tokens` (all epochs together) with `gpus` GPUs at `mfu` of bf16 peak.

    FLOPs per token: forward 2N, backward 4N (2N with LoRA: no weight gradients for the frozen
    base), plus a second forward of 2N when activations are recomputed (gradient checkpointing).
    """
    per_token = 2 + (2 if lora else 4) + (2 if checkpointing else 0)
    flops = per_token * params_b * 1e9 * tokens
    return flops / (gpus * peak_tflops * 1e12 * mfu) / 3600


# ---------------------------------------------------------------------------------------------
# Context parallelism: accelerate's ParallelismConfig on FSDP2, set on the launch command line


def parallelism_flags(cfg: StudentConfig) -> list[str]:
    """accelerate launch flags for context parallelism: each sequence split over `context_parallel` GPUs.

    accelerate builds a ParallelismConfig(dp_shard_size, cp_size) from these (FSDP2 only); the
    Trainer then shards every batch along the sequence, so activations and logits per GPU shrink
    by cp_size while the parameters stay sharded over all GPUs (dp_shard x cp).
    """
    if cfg.context_parallel <= 1:
        return []
    # accelerate checks --use_parallelism_config against --use_fsdp/--fsdp_version before it reads the config file
    return ["--use_fsdp", "--fsdp_version", "2", "--use_parallelism_config",
            "--parallelism_config_dp_shard_size", str(cfg.devices // cfg.context_parallel),
            "--parallelism_config_cp_size", str(cfg.context_parallel)]


# ---------------------------------------------------------------------------------------------
# Shared filesystem: a multi-node run reads its data, writes its checkpoints and resumes in one out dir

SHARED_FS_MARKER = ".shared-fs-check"


def node_index(state) -> int:
    """This process's node: torchrun's GROUP_RANK, else NODE_RANK, else process index // processes per node."""
    for key in ("GROUP_RANK", "NODE_RANK", "MACHINE_RANK", "SLURM_NODEID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return state.process_index // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def wait_for_marker(marker: Path, token: str, timeout_s: float, poll_s: float = 0.5) -> str | None:
    """None once `marker` holds `token`; else, after timeout_s, what was seen instead."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            seen = marker.read_text()
            if seen.split("\n", 1)[0] == token:
                return None
            why = f"{marker} holds another launch's token (a stale marker), not this launch's"
        except FileNotFoundError:
            why = f"{marker} does not exist here"
        except OSError as e:
            why = f"{marker} cannot be read here ({e})"
        if time.monotonic() >= deadline:
            return why
        time.sleep(poll_s)


def check_shared_filesystem(folder: str | Path, timeout_s: float = 120.0, poll_s: float = 0.5) -> None:
    """Multi-node runs: stop on every node unless every node sees `folder` as rank 0 wrote it.

    Rank 0 writes a marker holding a token drawn for this launch (broadcast to all ranks); each
    node's local main process waits up to `timeout_s` for it (NFS may show a new file late), and
    the verdicts are gathered so that every node, node 0 included, stops with the same message
    instead of waiting in a collective. Call it in every process of the job, before tokenising.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, gather_object

    state = PartialState()
    folder = Path(folder)
    marker = folder / SHARED_FS_MARKER
    token = [uuid.uuid4().hex if state.is_main_process else None]
    broadcast_object_list(token)
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(f"{token[0]}\nwritten by rank 0 on {socket.gethostname()}\n")
        os.replace(tmp, marker)
    verdict = None
    if state.is_local_main_process:
        why = wait_for_marker(marker, token[0], timeout_s, poll_s)
        verdict = (node_index(state), socket.gethostname(), why)
    verdicts = [v for v in gather_object([verdict]) if v is not None]
    state.wait_for_everyone()
    if state.is_main_process:
        marker.unlink(missing_ok=True)
    failed = sorted((node, host, why) for node, host, why in verdicts if why)
    if failed:
        state.destroy_process_group()  # every rank stops here together; exiting with the group alive aborts
        nodes = ", ".join(f"node {node} ({host}): {why}" for node, host, why in failed)
        raise ConfigError(
            f"multi-node run: {folder} is not one filesystem shared by every node. Rank 0 wrote {marker.name} there "
            f"and after {timeout_s:g}s {nodes}. Data, checkpoints and resume all assume every node reads and writes "
            f"the same out dir. Fix: put the output on a filesystem mounted at the same path on every node (NFS, "
            f"Lustre, GPFS, ...) and launch with it, e.g. `make student ... OUT=/shared/out` with the traces under it "
            f"too; if the mount only shows new files late, raise shared_fs_timeout_s")


# ---------------------------------------------------------------------------------------------
# Memory per GPU: what a preset needs at its max_length, from the base's config.json facts

GIB = 2**30
OVERHEAD_GIB = 3.0  # CUDA context, NCCL buffers and allocator fragmentation: measured values run 2-4 GiB
LM_HEAD_TOKEN_TILE = 4096  # TRL's chunked LM head projects 4096 tokens x 32768 vocabulary entries at a time
LM_HEAD_VOCAB_TILE = 32_768
HEADROOM = 0.9  # an estimate above 90% of the GPU is called tight: the terms are +-10% and memory fragments


@dataclass(frozen=True)
class Architecture:
    """The config.json facts the memory estimate needs (decoder-only, SwiGLU MLP, grouped-query attention)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> Architecture:
        return cls(layers=c["num_hidden_layers"], hidden=c["hidden_size"], intermediate=c["intermediate_size"],
                   heads=c["num_attention_heads"], kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
                   vocab=c["vocab_size"], tied_embeddings=bool(c.get("tie_word_embeddings", False)),
                   qkv_bias=c.get("model_type") == "qwen2" or bool(c.get("attention_bias")))

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def layer_parameters(self) -> int:
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        attention = 2 * h * h + 2 * h * kv + ((h + 2 * kv) if self.qkv_bias else 0)
        return attention + 3 * h * i + 2 * h  # + gate/up/down projections, two RMSNorm weights

    def embedding_parameters(self) -> int:
        return self.vocab * self.hidden

    def parameters(self) -> int:
        heads = 1 if self.tied_embeddings else 2
        return self.layers * self.layer_parameters() + heads * self.embedding_parameters() + self.hidden

    def lora_parameters(self, r: int, targets: tuple[str, ...]) -> int:
        """A (r x in) and B (out x r) per targeted projection per layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                  "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes)


# config.json values of the KNOWN_BASES, for where neither the base folder nor students/bases/ has them.
ARCHITECTURES: dict[str, Architecture] = {
    "Qwen/Qwen2.5-Math-1.5B": Architecture(28, 1536, 8960, 12, 2, 151_936, tied_embeddings=True, qkv_bias=True),
    "Qwen/Qwen2.5-Math-7B": Architecture(28, 3584, 18_944, 28, 4, 152_064, qkv_bias=True),
    "meta-llama/Llama-3.1-8B": Architecture(32, 4096, 14_336, 32, 8, 128_256),
    "Qwen/Qwen2.5-14B": Architecture(48, 5120, 13_824, 40, 8, 152_064, qkv_bias=True),
    "Qwen/Qwen2.5-32B": Architecture(64, 5120, 27_648, 40, 8, 152_064, qkv_bias=True),
    "meta-llama/Llama-3.3-70B-Instruct": Architecture(80, 8192, 28_672, 64, 8, 128_256),
}


def architecture(base: str) -> Architecture | None:
    """The base's config.json facts: from its folder (a local base), students/bases/<name>.json, or ARCHITECTURES."""
    local = Path(base).expanduser() / "config.json"
    if base.startswith(("/", "~", ".")) and local.is_file():
        return Architecture.from_config(json.loads(local.read_text()))
    bases = REPO_ROOT / "students" / "bases" / f"{base.rsplit('/', 1)[-1]}.json"
    if bases.is_file():
        record = json.loads(bases.read_text())
        if record.get("base") == base and isinstance(record.get("config"), dict):
            return Architecture.from_config(record["config"])
    return ARCHITECTURES.get(base)


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of one GPU in GiB: model states + checkpointed activations + the larger of the
    two backward peaks (one layer recomputed, or the LM head and loss) + overhead."""

    terms: dict[str, tuple[float, str]]
    """name -> (GiB, how it is computed)."""
    total_gib: float
    gpu_gib: float

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.gpu_gib

    @property
    def comfortable(self) -> bool:
        return self.total_gib <= HEADROOM * self.gpu_gib


def estimate_memory(cfg: StudentConfig, arch: Architecture) -> MemoryEstimate:
    """Per-GPU memory of a training step at max_length, for ZeRO-3/FSDP sharding over cfg.devices GPUs.

    - model states: full fine-tuning keeps 16 B per parameter (bf16 weights and gradients, fp32
      master weights and Adam m, v; FSDP's fp32 weights and gradients make the same 16), sharded
      over all GPUs by ZeRO-3/FSDP, whole on every GPU under DDP, on the host under zero3_offload.
      LoRA keeps the frozen base at 2 B (bf16) and 16 B per adapter parameter.
    - gathered layers: ZeRO-3/FSDP gather the running layer and prefetch the next (bf16), plus the
      running layer's full gradient before it is reduce-scattered (full fine-tuning).
    - activations, per GPU tokens T = per_device_batch_size x max_length / context_parallel: with
      gradient checkpointing every layer keeps its input (T x hidden, bf16) and one layer at a time
      is recomputed: norms, q, k, v, attention and o_proj inputs (6 hidden + 2 kv) and the MLP's
      gate, up and product (3 intermediate; 4 without Liger, which recomputes the activation),
      plus the gradients in flight (2 intermediate + hidden). Flash-attention/sdpa hold no T x T.
    - LM head and loss: TRL's chunked head (fused_lm_head) holds one 4096 x 32768 fp32 tile, the
      gathered head and its fp32 gradient; the model's own loss holds T x vocab logits in bf16,
      their fp32 copy and fp32 gradient (10 B per entry: 40 GiB at 32k x 128k, what OOMs).
    """
    act = 2 if cfg.bf16 else 4  # bytes per activation element
    sharded = cfg.parallelism != "ddp"
    shards = cfg.devices if sharded else 1
    offload = cfg.parallelism == "zero3_offload"
    params = arch.parameters()
    h, kv, i, vocab = arch.hidden, arch.kv_dim, arch.intermediate, arch.vocab
    tokens = cfg.per_device_batch_size * cfg.max_length / max(1, cfg.context_parallel)
    where = f"/ {shards} GPUs" if sharded else "on every GPU (DDP)"
    terms: dict[str, tuple[float, str]] = {}

    if cfg.lora:
        adapter = arch.lora_parameters(cfg.lora_r, cfg.lora_target_modules)
        base_bytes = 0 if offload else act * params / shards
        terms["model states"] = ((base_bytes + 16 * adapter / shards) / GIB,
                                 f"frozen base {act} B x {params / 1e9:.2f}B + adapter 16 B x {adapter / 1e6:.0f}M "
                                 f"{where}{' (base on the host: zero3_offload)' if offload else ''}")
    else:
        terms["model states"] = (0.0 if offload else 16 * params / shards / GIB,
                                 f"16 B x {params / 1e9:.2f}B parameters {where}"
                                 + (" (on the host: zero3_offload)" if offload else ""))
    if sharded:
        units = 2 if cfg.lora else 3
        terms["gathered layers"] = (units * act * arch.layer_parameters() / GIB,
                                    f"{units} x {arch.layer_parameters() / 1e6:.0f}M parameters x {act} B "
                                    f"(running layer, prefetched layer{'' if cfg.lora else ', its full gradient'})")

    mlp = 3 if cfg.use_liger_kernel else 4
    per_token_layer = act * (6 * h + 2 * kv + mlp * i)
    in_flight = act * (2 * i + h)
    if cfg.gradient_checkpointing:
        terms["checkpointed activations"] = (arch.layers * tokens * h * act / GIB,
                                             f"{arch.layers} layers x {tokens:.0f} tokens x {h} x {act} B")
        layer_peak = tokens * (per_token_layer + in_flight)
        layer_how = f"one layer recomputed: {tokens:.0f} tokens x {(per_token_layer + in_flight) / 1e3:.0f} kB"
    else:
        terms["activations"] = (arch.layers * tokens * (h * act + per_token_layer) / GIB,
                                f"{arch.layers} layers x {tokens:.0f} tokens x {(h * act + per_token_layer) / 1e3:.0f} kB "
                                f"(no gradient checkpointing)")
        layer_peak = tokens * in_flight
        layer_how = f"gradients in flight: {tokens:.0f} tokens x {in_flight / 1e3:.0f} kB"

    logits = tokens * vocab * (act + 4 + 4)
    if cfg.fused_lm_head:
        head = (act * arch.embedding_parameters() if sharded else 0)  # the gathered head
        head += 0 if cfg.lora else 4 * arch.embedding_parameters()  # its fp32 gradient
        head += min(tokens, LM_HEAD_TOKEN_TILE) * min(vocab, LM_HEAD_VOCAB_TILE) * 4 + tokens * h * act
        head_how = f"TRL's chunked LM head (the full {tokens:.0f} x {vocab} logits would take {logits / GIB:.1f} GiB)"
    else:
        head = logits
        head_how = f"{tokens:.0f} x {vocab} logits x (bf16 + fp32 copy + fp32 gradient)"
    terms["backward peak"] = (max(layer_peak, head) / GIB,
                              f"the larger of {layer_how} = {layer_peak / GIB:.1f} GiB and LM head and loss = "
                              f"{head / GIB:.1f} GiB, {head_how}")
    terms["overhead"] = (OVERHEAD_GIB, "CUDA context, NCCL buffers, allocator fragmentation")
    total = sum(g for g, _ in terms.values())
    return MemoryEstimate(terms=terms, total_gib=total, gpu_gib=cfg.gpu_memory_gib)


def plan_report(cfg: StudentConfig, traces: int = 100_000, tokens_per_trace: int = 6_000) -> list[str]:
    """Dry-run lines computed from the preset (never parsed from its comments): the hardware of the
    launch and the wall time of `traces` traces of `tokens_per_trace` tokens for its epochs."""
    hardware = (f"hardware: {cfg.nodes} node(s) x {cfg.gpus_per_node} device(s) = {cfg.devices}, "
                f"{cfg.parallelism}{', bf16' if cfg.bf16 else ''}")
    arch = None if cfg.base.startswith("toy://") else architecture(cfg.base)
    if arch is None:
        return [hardware]
    tokens = traces * tokens_per_trace * cfg.num_epochs
    params = arch.parameters()
    hours = estimate_hours(params / 1e9, tokens, cfg.devices, lora=cfg.lora,
                           checkpointing=cfg.gradient_checkpointing)
    return [hardware, f"wall time: ~{hours:.1f} h for {traces:,} traces of ~{tokens_per_trace:,} tokens x "
                      f"{cfg.num_epochs:g} epochs ({tokens / 1e9:.1f}B tokens, {params / 1e9:.2f}B parameters, "
                      f"35% MFU of an H100's bf16 peak; linear in tokens)"]


def memory_report(cfg: StudentConfig) -> list[str]:
    """Dry-run lines: the estimate per GPU and, when it does not fit, the presets' ways out with their estimates."""
    if cfg.base.startswith("toy://"):
        return []  # the embedded CPU model: nothing to plan
    arch = architecture(cfg.base)
    if arch is None:
        return [f"memory per GPU: not estimated ({cfg.base}: no config.json facts here; see students/bases/)"]
    est = estimate_memory(cfg, arch)
    cp = f", sequence split over {cfg.context_parallel} GPUs" if cfg.context_parallel > 1 else ""
    verdict = "fits" if est.comfortable else "fits, tight: under 10% to spare" if est.fits else "DOES NOT FIT"
    lines = [f"memory per GPU: ~{est.total_gib:.1f} GiB of {est.gpu_gib:g} ({verdict}; estimate at max_length "
             f"{cfg.max_length}, {cfg.parallelism} over {cfg.devices} GPUs{cp}, "
             f"{'LoRA' if cfg.lora else 'full fine-tuning'})"]
    lines += [f"  {name:<25} {gib:6.1f}  {how}" for name, (gib, how) in est.terms.items()]
    if not est.comfortable:
        lines.append(f"  ways out, each estimated the same way to fit within {HEADROOM:.0%} of the GPU:")
        lines += [f"    {o}" for o in memory_options(cfg, arch)]
    return lines


def memory_options(cfg: StudentConfig, arch: Architecture) -> list[str]:
    """Context parallelism within a node, more nodes (sharded states), or the longest max_length that fits."""
    out = []
    for cp in (2, 4, 8):
        if cp > cfg.context_parallel and cfg.gpus_per_node % cp == 0:
            trial = dataclasses.replace(cfg, context_parallel=cp, parallelism="fsdp", attn_implementation="sdpa",
                                        padding_free=False, packing=False)
            est = estimate_memory(trial, arch)
            if est.comfortable:
                out.append(f"context parallelism: ARGS=\"parallelism=fsdp context_parallel={cp} attn_implementation=sdpa"
                           f"{' padding_free=false' if cfg.padding_free else ''}\" -> ~{est.total_gib:.1f} GiB "
                           f"(FSDP2 + accelerate's ParallelismConfig cp_size={cp}; each sequence split over {cp} GPUs "
                           f"of a node, so {cfg.devices // cp} data-parallel groups: gradient accumulation grows to "
                           f"keep global_batch_size)")
                break
    if cfg.parallelism != "ddp":
        for nodes in range(cfg.nodes + 1, 17):
            trial = dataclasses.replace(cfg, nodes=nodes)
            groups = cfg.per_device_batch_size * trial.devices // max(1, cfg.context_parallel)
            if cfg.global_batch_size and cfg.global_batch_size % groups:
                continue  # the published batch would not divide over these GPUs
            est = estimate_memory(trial, arch)
            if est.comfortable:
                out.append(f"more GPUs: NODES={nodes} -> ~{est.total_gib:.1f} GiB (states sharded over "
                           f"{trial.devices} GPUs)")
                break
    length = cfg.max_length - cfg.max_length % 1024
    while length >= 1024:
        est = estimate_memory(dataclasses.replace(cfg, max_length=length), arch)
        if est.comfortable:
            out.append(f"shorter sequences: ARGS=\"max_length={length}\" -> ~{est.total_gib:.1f} GiB (longer traces "
                       f"are dropped and counted, never cut)")
            break
        length -= 1024
    return out or ["none found: try zero3_offload (ARGS=\"parallelism=zero3_offload\", needs host RAM) or a larger GPU "
                   "(gpu_memory_gib=141 on H200)"]

"""The accelerate launch for a size preset on NODES machines x GPUS devices.

    make student SIZE=70b NODES=4 GPUS=8     # on each node, with NODE_RANK and MASTER_ADDR set

`distill.students.train.run` trains in its own process when one device is enough, and otherwise
runs the command built here, which starts `python -m distill.students.train` once per device.
The accelerate config file comes from the preset's `parallelism` (students/launch/*.yaml):

- ddp.yaml: plain data parallel (replicas); also the CPU path (gloo) the tests use;
- zero3.yaml / zero3_offload.yaml: DeepSpeed ZeRO-3 (parameters, gradients, optimizer sharded;
  offload moves optimizer state and parameters to CPU RAM), from 14B and for 32k sequences;
- fsdp.yaml: FSDP2 full sharding, the alternative to ZeRO-3.

Multi-node: accelerate needs each node's rank and node 0's address. We read them from NODE_RANK
(or MACHINE_RANK, SLURM_NODEID) and MASTER_ADDR, the names torchrun and SLURM scripts use.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

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
    cmd += ["--main_process_port", str(main_process_port)]
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

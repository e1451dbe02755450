"""Stage 3: fine-tune a student on clean.jsonl with TRL; resumable, multi-GPU, multi-node.

    make student SIZE=7b                                   # students/7b.yaml on traces/<teacher>/<prompts>/clean.jsonl
    make student SIZE=tiny ARGS="learning_rate=1e-3"       # key=value overrides any preset key
    make student SIZE=70b NODES=4 GPUS=8                   # on each node, with NODE_RANK and MASTER_ADDR set
    python -m distill.students.train --size 7b --data my/clean.jsonl --out-dir out/students/7b

Output, out/students/<size>/: checkpoints/ (every save_steps; a rerun resumes from the last
complete one), final/ (model, tokenizer with the serving template, generation config whose eos
is the end-of-turn token), adapter/ (LoRA runs), run.json (the record) and card.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from distill.config import ConfigError, to_dict
from distill.models import check_model, resolve_model
from distill.paths import menu_name
from distill.students.card import read_record, write_card, write_record
from distill.students.config import StudentConfig, load_student_config
from distill.students.launch import (check_shared_filesystem, format_command, launch_command, memory_report, plan_report,
                                     node_rank_and_master)

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption without changing what is trained.
RUN_CONTROL_KEYS = {
    "save_steps", "save_total_limit", "logging_steps", "report_to", "dataset_num_proc", "torch_threads",
    "eval_callback", "eval", "rl", "export", "overwrite", "dry_run", "token_metrics", "fused_lm_head", "nodes", "gpus_per_node",
    "per_device_batch_size", "gradient_accumulation_steps", "traces",
    # parallel layout and launch checks: global_batch_size stays, so the same steps on other hardware
    "context_parallel", "gpu_memory_gib", "shared_fs_timeout_s",
    # kernels: the same math at another speed (and what a machine without flash-attn falls back to)
    "attn_implementation", "use_liger_kernel", "padding_free",
    "push_to_hub", "push_checkpoints", "hub_endpoint",
}
# attn_implementation -> the module it needs; any other implementation needs nothing beyond torch.
FLASH_MODULES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def is_distributed_child() -> bool:
    """True inside a process started by accelerate/torchrun for a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N with trainer_state.json (written last by the Trainer); a torn save is skipped."""
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                    if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))), reverse=True)
    for step, path in found:
        if (path / "trainer_state.json").exists():
            return path
        log.warning("%s: incomplete checkpoint (killed while saving?), skipped", path)
    return None


def importable(module: str) -> str | None:
    """None when `module` imports; else why not (flash-attn built against another torch fails here, not at find_spec)."""
    import importlib

    try:
        importlib.import_module(module)
        return None
    except Exception as e:  # noqa: BLE001 - ImportError, or an OSError/RuntimeError from a CUDA build's binary
        return f"{type(e).__name__}: {e}".splitlines()[0][:200]


def resolve_kernels(cfg: StudentConfig, cuda: bool) -> tuple[StudentConfig, list[str]]:
    """The preset's attention and Liger kernels as this machine can run them, and what fell back.

    flash_attention_* without CUDA or without its package falls back to sdpa, and padding_free
    with it (the flat row would need flash-attention's varlen kernel); Liger without CUDA or
    liger-kernel falls back to the plain layers. Each fallback is a WARNING banner here and a line
    in run.json: a GPU run at a fraction of the preset's speed must not pass for a normal one.
    """
    fallbacks: list[str] = []
    attn = cfg.attn_implementation or ""
    if attn.startswith("flash_attention"):
        why = "no CUDA GPU" if not cuda else importable(FLASH_MODULES.get(attn, "flash_attn"))
        if why:
            fallbacks.append(f"attn_implementation {attn} -> sdpa{' and padding_free -> false' if cfg.padding_free else ''} "
                             f"({why})")
            cfg = dataclasses.replace(cfg, attn_implementation="sdpa", padding_free=False)
    if cfg.use_liger_kernel:
        why = "no CUDA GPU" if not cuda else importable("liger_kernel.transformers")
        if why:
            fallbacks.append(f"use_liger_kernel true -> false ({why})")
            cfg = dataclasses.replace(cfg, use_liger_kernel=False)
    if fallbacks:
        bar = "=" * 100
        log.warning("\n%s\nKERNEL FALLBACK: this run trains slower than the preset assumes (its wall time does not hold):\n"
                    "  %s\nOn a GPU machine, `make install` installs the gpu extra (flash-attn, liger-kernel); if flash-attn\n"
                    "does not build for this torch/CUDA, install a prebuilt wheel matching them (see README), or\n"
                    "accept sdpa with ARGS=\"attn_implementation=sdpa padding_free=false\" to silence this.\n%s",
                    bar, "\n  ".join(fallbacks), bar)
    return cfg, fallbacks


# ---------------------------------------------------------------------------------------------
# run(): the entry point distill/cli.py calls


def run(size: str, data: Path, out_dir: Path, nodes: int | None = None, gpus: int | None = None,
        overrides: list[str] | None = None) -> Path | None:
    """Train students/<size>.yaml on `data` into `out_dir`; returns out_dir/final (None on a dry run).

    One device: trains in this process. More: starts the accelerate launch for this node and waits.
    A rerun resumes from the last checkpoint; a finished run only refreshes card.md.
    """
    cfg, preset = load_student_config(size, overrides, nodes, gpus)
    out_dir, data = Path(out_dir), Path(data)
    if is_distributed_child():
        return train(cfg, data, out_dir, preset=preset, size=str(size))
    mixture = None
    if cfg.mixture:  # drawn here, once per node; the launched processes read the file (data)
        from distill.students.mixture import MIXTURE_FILE, build_mixture

        data = out_dir / MIXTURE_FILE
        # out/students/<size> -> out/: `traces: <teacher>/<prompts>` names out/traces/<teacher>/<prompts>/clean.jsonl
        mixture = build_mixture(cfg.mixture, out_root=out_dir.parent.parent, path=data, seed=cfg.seed)

    cpu = _no_cuda()
    command = None
    if cfg.devices > 1:
        rank, master = node_rank_and_master()
        if cfg.dry_run and cfg.nodes > 1:  # show the command with placeholders rather than refuse
            rank = rank if rank is not None else "$NODE_RANK"
            master = master or "$MASTER_ADDR"
        command = launch_command(cfg, size=preset, data=data, out_dir=out_dir, overrides=overrides,
                                 cpu=cpu and cfg.parallelism == "ddp", machine_rank=rank, main_process_ip=master,
                                 main_process_port=rendezvous_port(cfg))
    if cfg.dry_run:
        batch = cfg.per_device_batch_size * cfg.gradient_accumulation_steps * cfg.data_parallel
        groups = f" / context_parallel {cfg.context_parallel}" if cfg.context_parallel > 1 else ""
        print("\n".join([f"preset: {preset}", *plan_report(cfg), f"data: {data}",
                         (f"batch: {cfg.per_device_batch_size} per device x {cfg.gradient_accumulation_steps} "
                          f"accumulation x {cfg.devices} devices{groups} = {batch}"),
                         *memory_report(cfg),
                         f"launch: {format_command(command) if command else 'in this process (one device)'}"]))
        return None
    if cfg.devices > 1 and cpu and cfg.parallelism != "ddp":
        raise ConfigError(
            f"{preset}: assumes {cfg.nodes} node(s) x {cfg.gpus_per_node} GPUs with {cfg.parallelism}, and this machine "
            f"has no CUDA GPU. Run it on GPU machines, or try the pipeline on CPU with SIZE=tiny")

    final = out_dir / "final"
    finished = _finished(out_dir) and not cfg.overwrite
    prepare_run_dir(cfg, data, out_dir, preset, size=str(size), launch=format_command(command) if command else None)
    if mixture is not None:
        write_record(out_dir, {**read_record(out_dir), "mixture": mixture})
    if finished:
        log.info("%s is already trained with this recipe; card.md refreshed (overwrite=true to train again)", final)
        write_card(out_dir)
        push_student(cfg, out_dir)
        return final
    try:
        if command is None:
            train(cfg, data, out_dir, preset=preset, size=str(size))
        else:
            log.info("launching %d processes on this node: %s", cfg.gpus_per_node, format_command(command))
            env = dict(os.environ)
            env.setdefault("OMP_NUM_THREADS", str(cfg.torch_threads or 1))
            result = subprocess.run(command, env=env, check=False)
            if result.returncode != 0:
                raise TrainingFailed(f"training processes failed (exit {result.returncode}); rerun the same command "
                                     f"to resume from the last checkpoint in {out_dir / 'checkpoints'}")
    except BaseException:
        restore_aside(out_dir)
        raise
    drop_aside(out_dir)
    return final


class TrainingFailed(ConfigError):
    """The launched training processes failed: one message (their logs say why), not a traceback."""


def rendezvous_port(cfg: StudentConfig) -> int:
    """MASTER_PORT when set (every node must agree); on one node a free local port, so jobs can run side by side."""
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"])
    if cfg.nodes > 1:
        return 29500
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


def _finished(out_dir: Path) -> bool:
    return (out_dir / "final" / "config.json").exists() and bool(read_record(out_dir).get("results"))


RUN_FILES = ("checkpoints", "final", "adapter", "run.json", "card.md")
ASIDE = ".replaced"
"""Where overwrite=true moves the previous run until the new one has saved its final model."""


def set_aside(out_dir: Path) -> None:
    """overwrite=true: move the previous run to out_dir/.replaced instead of deleting it.

    Some inputs fail only after tokenising (every trace longer than max_length, a template the
    base's vocabulary lacks): the old model must survive those. A rename costs no disk; the old run
    is deleted once the new final/ is saved (`drop_aside`), or put back by `restore_aside`.
    """
    aside = out_dir / ASIDE
    keep_old = aside.is_dir()  # an earlier overwrite never finished: aside holds the last good run
    for name in RUN_FILES:
        p = out_dir / name
        if not p.exists():
            continue
        if keep_old:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        else:
            aside.mkdir(parents=True, exist_ok=True)
            os.replace(p, aside / name)


def restore_aside(out_dir: Path) -> None:
    """After a failed run: put the previous run back, unless the new one already made a checkpoint
    (then it resumes on the next call, and the previous run waits in .replaced)."""
    aside = out_dir / ASIDE
    if not aside.is_dir():
        return
    if last_complete_checkpoint(out_dir / "checkpoints") is not None:
        log.warning("the new run made checkpoints and will resume from them; the run it replaces is in %s", aside)
        return
    for name in RUN_FILES:
        p = out_dir / name
        if p.exists():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if (aside / name).exists():
            os.replace(aside / name, p)
    shutil.rmtree(aside, ignore_errors=True)
    log.info("the run replaced by overwrite=true is back in %s", out_dir)


def drop_aside(out_dir: Path) -> None:
    shutil.rmtree(out_dir / ASIDE, ignore_errors=True)


def prepare_run_dir(cfg: StudentConfig, data: Path, out_dir: Path, preset: Path, size: str,
                    launch: str | None) -> None:
    """Start over on overwrite; else refuse to resume checkpoints made with another recipe or other data.

    Every input is checked first (each line of the data, the base model's path): overwrite=true
    deletes the trained model, and a bad input must not cost it.
    """
    from distill.students.data import check_clean_file, file_sha256

    check_clean_file(data)
    check_model(cfg.base, "base")
    if cfg.overwrite:
        set_aside(out_dir)
    sha = file_sha256(data)
    record = read_record(out_dir)
    trained = last_complete_checkpoint(out_dir / "checkpoints") is not None or (out_dir / "final").is_dir()
    if trained and record.get("config"):
        old, new = record["config"], to_dict(cfg)
        changed = sorted(k for k in set(old) | set(new) if k not in RUN_CONTROL_KEYS and old.get(k) != new.get(k))
        if record.get("data_sha256") not in (None, sha):
            changed.append(f"data (sha256 {record['data_sha256'][:12]} -> {sha[:12]})")
        if changed:
            detail = ", ".join(c if c.startswith("data") else f"{c}: {old.get(c)!r} -> {new.get(c)!r}" for c in changed)
            raise ConfigError(
                f"{out_dir} holds checkpoints of another run ({detail}); resuming would mix two recipes. "
                f"Pass overwrite=true to start over, or --out elsewhere")
    out_dir.mkdir(parents=True, exist_ok=True)
    if trained and record.get("config"):
        return  # same recipe: keep the record (and its results) as they are
    write_record(out_dir, {"size": menu_name(size), "preset": str(preset), "config": to_dict(cfg),
                           "data_sha256": sha, "launch": launch or "in-process"})


# ---------------------------------------------------------------------------------------------
# train(): one process of the job (all of it on one device)


def tokenise_once(cfg: StudentConfig, data: Path, tokenizer, out_dir: Path, state):
    """build_dataset once per job: the global main process (rank 0 of all nodes) tokenises into
    out_dir/cache, every other process on every node reads that cache.

    Multi-node, that holds only when out_dir is one shared filesystem: the check runs first and
    stops every node with the fix otherwise (on separate disks each node would tokenise again, and
    checkpoints and resume would split across the nodes).
    """
    from distill.students.data import build_dataset

    if cfg.nodes > 1 and state.num_processes > 1:
        check_shared_filesystem(out_dir, timeout_s=cfg.shared_fs_timeout_s)
    with state.main_process_first():  # accelerate: the global main process, not each node's local one
        return build_dataset(data, tokenizer, cfg.max_length, num_proc=cfg.dataset_num_proc,
                             cache_dir=out_dir / "cache", keep_text=cfg.kd != "none")


def train(cfg: StudentConfig, data: Path, out_dir: Path, *, preset: Path | str = "", size: str = "",
          callbacks: list | None = None) -> Path:
    """Tokenise, build the TRL trainer, train (resuming), save final/ and card.md; returns out_dir/final."""
    import torch
    from accelerate import PartialState
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from distill.students.serving import THINK_TOKENS, ensure_think_tokens, init_think_rows
    from distill.students.templates import get_format, prepare_tokenizer, set_stop_tokens

    started = time.time()
    out_dir, data = Path(out_dir), Path(data)
    cpu = not torch.cuda.is_available()
    cfg, kernel_fallbacks = resolve_kernels(cfg, cuda=not cpu)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)

    ######################
    # Tokenizer and template
    ######################
    # A rehearsal (students/rehearse.py) trains a shrunk random model of the base's architecture, built beforehand.
    base = str(out_dir / "base") if cfg.rehearse else resolve_model(cfg.base, "base")
    fmt = get_format(cfg.template)
    if cfg.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(cfg.tokenizer))
    else:
        tokenizer = AutoTokenizer.from_pretrained(base, revision=cfg.revision)
    base_eos = prepare_tokenizer(tokenizer, fmt, where=cfg.base)
    # <think> / </think> as single tokens before anything is tokenised (students/serving.py: vLLM's
    # reasoning parser needs them; Qwen2.5 and Llama 3.x split them into three pieces).
    model_config = AutoConfig.from_pretrained(base, revision=cfg.revision)
    think = ensure_think_tokens(tokenizer, model_config.vocab_size)
    tokenizer.padding_side = "right"

    ######################
    # Data: tokenise with assistant masks; drop (and count) traces longer than max_length
    ######################
    # Rank 0 tokenises first and the others read its cache; hundreds of thousands of 32k-token
    # traces can take longer than the default 10-30 minute collective timeout they wait in.
    state = PartialState(cpu=cpu, timeout=timedelta(hours=3))
    dataset, stats = tokenise_once(cfg, data, tokenizer, out_dir, state)

    ######################
    # Training arguments (before the model: under ZeRO-3 they make from_pretrained load sharded)
    ######################
    common = training_arguments(cfg, out_dir, cpu=cpu, world_size=state.num_processes)

    if cfg.kd == "none":
        from trl import SFTConfig

        # Rows are already tokenised and length-checked, so SFTTrainer only builds labels from
        # assistant_masks (-100 elsewhere). max_length matters only for packing, where it is the row size.
        args = SFTConfig(**common, max_length=cfg.max_length if cfg.packing else None, packing=cfg.packing,
                         packing_strategy="bfd", padding_free=cfg.padding_free, dataset_num_proc=cfg.dataset_num_proc,
                         # context parallelism splits each row into 2 x cp chunks (load-balanced causal attention)
                         pad_to_multiple_of=2 * cfg.context_parallel if cfg.context_parallel > 1 else None)
    else:
        from distill.students.kd import kd_config

        args = kd_config(cfg.kd, common, beta=cfg.kd_beta, temperature=cfg.kd_temperature, max_length=cfg.max_length,
                         max_completion_length=cfg.kd_max_completion_length)

    ######################
    # Model: the base with its context raised where the preset says so
    ######################
    apply_context_overrides(model_config, cfg)
    dtype = torch.bfloat16 if cfg.bf16 and not cpu and (cfg.lora or cfg.parallelism.startswith("zero3")) else torch.float32
    model_kwargs: dict[str, Any] = {"config": model_config, "revision": cfg.revision, "dtype": dtype}
    if cfg.attn_implementation:
        model_kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(base, **model_kwargs)
    init_think_rows(model, think)
    stop_ids = set_stop_tokens(model, tokenizer, base_eos)
    log.info("student %s: %.2fM parameters, eos %s (%s), context %d", cfg.base,
             sum(p.numel() for p in model.parameters()) / 1e6, tokenizer.eos_token, stop_ids,
             model_config.max_position_embeddings)

    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        rows = special_token_rows(model, tokenizer, (*fmt.special_tokens, *THINK_TOKENS)) if cfg.lora_special_tokens else None
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM",
                                 trainable_token_indices=rows)

    callbacks = list(callbacks or [])
    if cfg.eval_callback:
        from distill.eval.callback import EvalCallback  # only when the preset asks for it

        callbacks.append(EvalCallback(tokenizer, **cfg.eval_callback))
    if cfg.push_checkpoints:
        from distill.hub import push_checkpoint_callback

        callbacks.append(push_checkpoint_callback(cfg.push_to_hub, endpoint=cfg.hub_endpoint))

    ######################
    # Trainer
    ######################
    if cfg.kd == "none":
        trainer = make_sft_trainer(cfg, model=model, args=args, dataset=dataset, tokenizer=tokenizer,
                                   peft_config=peft_config, callbacks=callbacks)
    else:
        from distill.students.kd import build_kd_trainer, load_teacher

        teacher = load_teacher(cfg.kd_teacher, model, tokenizer, dtype, cfg.attn_implementation)
        trainer = build_kd_trainer(cfg.kd, args=args, model=model, teacher=teacher, tokenizer=tokenizer,
                                   dataset=dataset, peft_config=peft_config, callbacks=callbacks)

    ######################
    # Training loop (resumes from the last complete checkpoint)
    ######################
    resume = last_complete_checkpoint(out_dir / "checkpoints")
    if resume is not None:
        log.info("resuming from %s", resume)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    fingerprints = replica_fingerprints(trainer, cfg)

    ######################
    # Save final model, tokenizer with the serving template, record and card
    ######################
    final = out_dir / "final"
    save_final(trainer, cfg, tokenizer, fmt, base, model_config, out_dir)
    if trainer.is_world_process_zero():
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        record = read_record(out_dir)
        record.update({
            "size": record.get("size") or Path(size or cfg.base).stem,
            "preset": record.get("preset") or str(preset),
            "config": to_dict(cfg),
            "data": stats.to_dict(),
            "data_sha256": stats.sha256,
            "filters": _filter_report(data),
            "results": {
                "final_loss": losses[-1] if losses else output.training_loss,
                "first_loss": losses[0] if losses else None,
                "mean_train_loss": output.training_loss,
                "optimizer_steps": trainer.state.global_step,
                "epochs": round(trainer.state.epoch or 0.0, 3),
                "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 1),
                "wall_s": round(time.time() - started, 1),
                "processes": state.num_processes,
                "eos": tokenizer.eos_token,
                "resumed_from": resume.name if resume else None,
                "kernels": {"attn_implementation": cfg.attn_implementation, "use_liger_kernel": cfg.use_liger_kernel,
                            "padding_free": cfg.padding_free, "fallbacks": kernel_fallbacks},
            },
        })
        if fingerprints:
            record["results"]["replica_sha256"] = fingerprints
        write_record(out_dir, record)
        write_card(out_dir)
        log.info("student saved to %s (final loss %s); card: %s", final, record["results"]["final_loss"],
                 out_dir / "card.md")
        push_student(cfg, out_dir)
    return final


def push_student(cfg: StudentConfig, out_dir: Path) -> None:
    """Upload final/ with its model card when the preset or ARGS say push_to_hub=<org/name>."""
    if cfg.push_to_hub:
        from distill.hub import push_student as push

        push(out_dir, cfg.push_to_hub, endpoint=cfg.hub_endpoint)


def special_token_rows(model, tokenizer, tokens: tuple[str, ...]) -> dict[str, list[int]]:
    """PEFT trainable_token_indices for LoRA: the rows of `tokens` in the input embedding and the LM head.

    The template's special tokens carry the turn structure and the stop; in a base that never
    used them (Llama-3.1-8B's <|eot_id|>) their rows are untrained, and LoRA on the projections
    cannot fix a row. Training those rows alone keeps the rest of the vocabulary as the base had
    it. With tied embeddings PEFT ties the two adapters.
    """
    ids = sorted({tokenizer.convert_tokens_to_ids(t) for t in tokens})
    names = {m: n.rsplit(".", 1)[-1] for n, m in model.named_modules()}
    rows = {names[model.get_input_embeddings()]: ids}
    head = model.get_output_embeddings()
    if head is not None:
        rows[names[head]] = ids
    return rows


def trainer_arguments(cfg: Any, out_dir: Path, *, cpu: bool) -> dict[str, Any]:
    """The TrainingArguments fields every stage's trainer takes the same way from its recipe (the
    student's SFT/KD config and the RL stage's GRPO config): batch, schedule, optimiser, checkpoints, logs."""
    kwargs: dict[str, Any] = {
        "output_dir": str(out_dir / "checkpoints"),
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,  # a float below 1 is a fraction of all steps in transformers 5
        "num_train_epochs": cfg.num_epochs,
        "max_steps": cfg.max_steps,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": cfg.bf16 and not cpu,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "logging_steps": cfg.logging_steps,
        "report_to": [] if cfg.report_to == "none" else [cfg.report_to],
        "use_cpu": cpu,
        "dataloader_num_workers": 0,
    }
    if cfg.lr_scheduler == "cosine_with_min_lr":
        kwargs["lr_scheduler_kwargs"] = {"min_lr_rate": cfg.min_lr_rate}
    return kwargs


def training_arguments(cfg: StudentConfig, out_dir: Path, *, cpu: bool, world_size: int) -> dict[str, Any]:
    """TrainingArguments fields shared by the SFT and KD configs."""
    kwargs = trainer_arguments(cfg, out_dir, cpu=cpu)
    kwargs.update({
        "activation_checkpointing": cfg.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        "use_liger_kernel": cfg.use_liger_kernel,
        "train_sampling_strategy": "group_by_length" if cfg.group_by_length else "random",
    })
    if cfg.gradient_checkpointing:
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    if cpu and world_size > 1:
        kwargs["ddp_backend"] = "gloo"
    if cfg.parallelism == "ddp" and world_size > 1:
        # Every trainable parameter gets a gradient each step; the unused-parameter search is an extra graph walk.
        kwargs["ddp_find_unused_parameters"] = False
    return kwargs


def apply_context_overrides(model_config, cfg: StudentConfig) -> None:
    """Raise RoPE theta and positions as the preset says; then check max_length against the real config."""
    if cfg.rope_theta is not None:
        rope = getattr(model_config, "rope_parameters", None)
        if isinstance(rope, dict):  # transformers 5 keeps theta in rope_parameters
            rope["rope_theta"] = cfg.rope_theta
        else:
            model_config.rope_theta = cfg.rope_theta
    if cfg.max_position_embeddings is not None:
        model_config.max_position_embeddings = cfg.max_position_embeddings
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and cfg.max_length > context:
        raise ConfigError(
            f"max_length {cfg.max_length} exceeds {cfg.base}'s context of {context} positions; set "
            f"max_position_embeddings and rope_theta (open-r1: 32768 and 300000 for Qwen2.5-Math) or lower max_length")


def make_sft_trainer(cfg: StudentConfig, *, model, args, dataset, tokenizer, peft_config, callbacks):
    from trl import SFTTrainer

    cls = SFTTrainer if cfg.token_metrics else LeanSFTTrainer(fused_lm_head=cfg.fused_lm_head)
    if peft_config is not None and getattr(peft_config, "trainable_token_indices", None):

        class _TokenRowsTrainer(cls):  # the loss reads the LM head with the trained token rows merged in
            def compute_loss(self, model, inputs, *args, **kwargs):
                with merged_token_rows(model):
                    return super().compute_loss(model, inputs, *args, **kwargs)

        cls = _TokenRowsTrainer
    return cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
               callbacks=callbacks)


def LeanSFTTrainer(fused_lm_head: bool = True):  # a class factory, so trl is imported only when training
    """SFTTrainer without the per-step entropy / token-accuracy metrics (token_metrics: false).

    The loss is SFTTrainer's: per-token NLL on the label tokens, summed and divided by the label
    tokens of the whole optimizer step (`num_items_in_batch`). With `fused_lm_head` it is computed
    as SFTTrainer does, through TRL's chunked LM head, which never holds the (tokens x vocab) logits
    (needed at 32k tokens x 152k vocab); without it, through the model's own loss on full logits:
    one matmul, faster for small vocabularies on CPU (bench/train_bench.py).
    """
    import torch
    from trl import SFTTrainer

    class _LeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not self.model.training or self.args.loss_type != "nll" or self.aux_loss_enabled \
                    or self.label_smoother is not None or self.compute_loss_func is not None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            if fused_lm_head:
                outputs = model(**inputs, fused_lm_head=True)
                num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
                loss = -outputs.log_probs.sum() / torch.as_tensor(num_tokens).clamp(min=1)
            else:
                # transformers' causal-LM loss: shifted cross-entropy, summed / num_items_in_batch when given.
                loss = model(**inputs, num_items_in_batch=num_items_in_batch).loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            return loss

        def log(self, logs, start_time=None):
            self._metrics["train"].clear()  # nothing collected per step; keep SFTTrainer.log from averaging stale lists
            super().log(logs, start_time)

    return _LeanSFTTrainer


class _MergedHead:
    """What TRL's fused LM head reads of `get_output_embeddings()`: `weight` and `bias`. PEFT's
    trainable-token wrapper (LoRA presets' special-token rows) has no `bias`, and its `weight` is
    the base's without the trained rows; this gives the merged weight, through which the rows'
    gradients flow, and the base head's bias."""

    def __init__(self, wrapper: Any):
        adapter = wrapper.token_adapter
        self.weight = adapter.get_merged_weights(adapter.active_adapters)
        self.bias = getattr(adapter.base_layer, "bias", None)


@contextlib.contextmanager
def merged_token_rows(model: Any):
    """While TRL's fused head runs: `get_output_embeddings()` of the base model returns the head with
    PEFT's trained token rows merged in (see _MergedHead); no-op without trainable token rows."""
    inner = model.module if hasattr(model, "module") else model  # DDP / DeepSpeed engine
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    head = inner.get_output_embeddings()
    if not hasattr(head, "token_adapter"):
        yield
        return
    adapter = head.token_adapter
    params = [adapter.base_layer.weight, *adapter.trainable_tokens_delta.values()]
    gathered: contextlib.AbstractContextManager = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for p in params):  # ZeRO-3: the head and the rows are partitioned
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(params)
    with gathered:
        shim = _MergedHead(head)
        inner.get_output_embeddings = lambda: shim
        try:
            yield
        finally:
            del inner.get_output_embeddings  # back to the class's method


def replica_fingerprints(trainer, cfg: StudentConfig) -> list[str] | None:
    """sha256 of every rank's parameters after training, gathered on all ranks (DDP replicas only).

    Data-parallel replicas must end bit-identical; a difference means a rank trained alone (e.g.
    a CPU launch without gloo) or diverged. Sharded runs (ZeRO-3, FSDP) hold no full replica.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or cfg.parallelism != "ddp":
        return None
    h = hashlib.sha256()
    for name, tensor in sorted(trainer.accelerator.unwrap_model(trainer.model).state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, h.hexdigest())
    if len(set(gathered)) > 1:
        raise RuntimeError(f"data-parallel replicas diverged after training: {gathered}")
    return gathered


def save_final(trainer, cfg: StudentConfig, tokenizer, fmt, base: str, model_config, out_dir: Path) -> None:
    """final/: full weights (LoRA merged when merge_lora), tokenizer with the serving template, eos = end of turn."""
    from distill.students.serving import add_legacy_rope_keys
    from distill.students.templates import save_serving_tokenizer

    final = out_dir / "final"
    target = out_dir / "adapter" if cfg.lora else final
    tmp = target.with_name(target.name + ".tmp")
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))  # gathers ZeRO-3 / FSDP shards; writes on rank 0
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    generation_config = unwrapped.generation_config
    if cfg.lora and cfg.merge_lora:
        # Merge on CPU from the saved adapter: works the same after DDP, ZeRO-3 or FSDP.
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(base, config=model_config, revision=cfg.revision,
                                                      dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
        merged = PeftModel.from_pretrained(merged, str(target)).merge_and_unload()
        merged.generation_config = generation_config
        merged.config.eos_token_id = unwrapped.config.eos_token_id
        merged.config.pad_token_id = unwrapped.config.pad_token_id
        tmp_final = final.with_name("final.tmp")
        shutil.rmtree(tmp_final, ignore_errors=True)
        merged.save_pretrained(str(tmp_final))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp_final, final)
    if final.is_dir():
        config = json.loads((final / "config.json").read_text())
        config["use_cache"] = True  # training turned it off for checkpointing; generation wants it
        add_legacy_rope_keys(config)  # rope_theta / rope_scaling for readers older than transformers 5
        (final / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        generation_config.save_pretrained(str(final))
        save_serving_tokenizer(tokenizer, fmt, final)
    if cfg.lora:
        save_serving_tokenizer(tokenizer, fmt, target)


def _filter_report(data: Path) -> Any:
    path = data.parent / "filter_report.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"error": f"{path} is not valid JSON"}


# ---------------------------------------------------------------------------------------------
# python -m distill.students.train: what the accelerate launch starts once per device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.students.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="students/<size>.yaml or a YAML path")
    parser.add_argument("--data", required=True, help="clean.jsonl to train on")
    parser.add_argument("--out-dir", required=True, help="run directory (checkpoints, final/, card.md)")
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--gpus", type=int, default=None)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        run(args.size, Path(args.data), Path(args.out_dir), args.nodes, args.gpus, args.overrides)
    except ConfigError as e:
        print(f"distill student: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 5: GRPO on the SFT student with rewards from `distill.verify` (TRL GRPOTrainer); resumable.

    make rl SIZE=tiny                                        # the toy student, CPU, ~3 minutes
    make rl SIZE=1.5b PROMPTS=openr1-math                    # open-r1's R1-Distill-Qwen-1.5B GRPO recipe, vLLM colocated
    make rl SIZE=7b PROMPTS=numinamath ARGS="beta=0.0 max_steps=500"
    distill rl --size 1.5b --prompts openr1-math --student my/model/dir

Reads the SFT student out/students/<size>/final and a prompt set with reference answers
(datasets/<name>.yaml); writes out/rl/<size>/: checkpoints/ (every save_steps; a rerun resumes
from the last complete one, also after kill -9), final/ (model + the student's tokenizer and
templates), run.json (the record) and card.md (rewards, KL beta, steps, generations per prompt,
and the eval table once `make eval` has run).

Everything a run needs is checked before the model loads: the student exists, every prompt has
a reference the `correct` reward can score, and an existing run folder holds the same recipe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from distill.config import ConfigError, to_dict
from distill.paths import menu_name
from distill.rl.config import RLConfig, load_rl_config
from distill.students.card import read_record, write_record

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption without changing what is trained.
RUN_CONTROL_KEYS = {"save_steps", "save_total_limit", "logging_steps", "report_to", "log_completions", "torch_threads",
                    "overwrite", "reward_workers", "score_timeout", "use_vllm", "vllm_gpu_memory_utilization",
                    "attn_implementation", "use_liger_kernel", "gradient_checkpointing", "prompts"}
DONE_MARK = "config.json"


def run(size: str, student: Path, out_dir: Path, prompts: str | None = None,
        overrides: list[str] | None = None, teacher: str | None = None) -> Path:
    """GRPO students/<size>.yaml's `rl:` recipe on `student` into `out_dir`; returns out_dir/final.

    A finished run (same recipe) only refreshes card.md; a different recipe in the folder is refused.
    """
    from distill.rl.card import write_card

    cfg, preset = load_rl_config(size, overrides)
    out_dir, student = Path(out_dir), Path(student)
    check_student(student, size)
    prompt_set = prompts or cfg.prompts
    if not prompt_set:
        raise ConfigError(f"make rl SIZE={menu_name(size)} needs PROMPTS: a prompt set with reference answers "
                          f"(ls datasets/, e.g. PROMPTS=openr1-math), or `prompts:` in the rl block of {preset.name}")
    rows = load_rl_prompts(prompt_set, cfg)
    fingerprint = {"student": student_fingerprint(student), "prompts": prompts_sha256(rows)}
    prepare_run_dir(cfg, out_dir, fingerprint)
    record = read_record(out_dir)
    if _finished(out_dir) and not cfg.overwrite:
        log.info("%s is already trained with this recipe; card.md refreshed (overwrite=true to train again)",
                 out_dir / "final")
        write_card(out_dir)
        return out_dir / "final"
    record.update({"size": menu_name(size), "preset": str(preset), "config": to_dict(cfg), "fingerprint": fingerprint,
                   "student": str(student), "teacher": teacher,
                   "prompts": {"set": prompt_set, "overrides": list(cfg.prompt_overrides), "count": len(rows),
                               "tasks": sorted({r["task"] for r in rows})}})
    write_record(out_dir, record)
    return train(cfg, student, rows, out_dir)


# ---------------------------------------------------------------------------------------------
# Checks, before any model loads


def check_student(student: Path, size: str) -> None:
    if not (student / "config.json").exists():
        raise ConfigError(f"no SFT student at {student} (no config.json): train it first with "
                          f"`make student SIZE={menu_name(size)} TEACHER=... PROMPTS=...`, or point --student at a "
                          f"model folder")


def load_rl_prompts(name: str, cfg: RLConfig) -> list[dict[str, Any]]:
    """The prompt set as GRPOTrainer rows (prompt messages, task, reference as JSON); refused when any
    prompt lacks a reference or has one the `correct` reward cannot score."""
    from distill.prompts import load_prompts
    from distill.rl.rewards import unscorable

    prompts = list(load_prompts(name, list(cfg.prompt_overrides), limit=cfg.limit))
    if not prompts:
        raise ConfigError(f"prompt set {name!r} has no prompts (limit={cfg.limit}); check datasets/{name}.yaml")
    bad = unscorable([p.task for p in prompts], [p.reference for p in prompts], workers=cfg.reward_workers)
    if bad:
        missing = sum(1 for _, why in bad if why == "no reference answer")
        examples = "; ".join(f"{prompts[i].id}: {why}" for i, why in bad[:3])
        fix = (f"point `columns.answer` (or columns.tests for code) of datasets/{Path(name).stem}.yaml at the "
               f"reference column" if missing else
               "fix or drop those rows (skip_references: [...] in the prompt set), or use task: math / choice / "
               "code with references distill.verify reads")
        raise ConfigError(f"prompt set {name!r}: {len(bad)} of {len(prompts)} prompts cannot be rewarded for "
                          f"correctness ({examples}{'; ...' if len(bad) > 3 else ''}). RL needs a reference answer "
                          f"the `correct` reward can check for every prompt: {fix}")
    return [{"prompt": p.messages, "task": p.task, "reference": json.dumps(p.reference), "prompt_id": p.id}
            for p in prompts]


def prompts_sha256(rows: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["prompt_id"], r["prompt"], r["reference"]]).encode())
    return h.hexdigest()


def student_fingerprint(student: Path) -> str:
    """Names, sizes and mtimes of the student's weights: a retrained student is another starting point."""
    from distill.eval.run import weights_fingerprint

    return weights_fingerprint(str(student)) or str(student)


def _finished(out_dir: Path) -> bool:
    return (out_dir / "final" / DONE_MARK).exists() and bool(read_record(out_dir).get("results"))


def prepare_run_dir(cfg: RLConfig, out_dir: Path, fingerprint: dict[str, str]) -> None:
    """Start over on overwrite; else refuse to resume checkpoints made with another recipe, student or prompts."""
    from distill.students.card import recipe_changes
    from distill.students.train import last_complete_checkpoint

    if cfg.overwrite:
        for name in ("checkpoints", "final", "run.json", "card.md"):
            p = out_dir / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    record = read_record(out_dir)
    trained = last_complete_checkpoint(out_dir / "checkpoints") is not None or (out_dir / "final").is_dir()
    if trained and record.get("config"):
        changed = recipe_changes(record["config"], to_dict(cfg), RUN_CONTROL_KEYS)
        old = record.get("fingerprint") or {}
        changed += [f"{k} ({old.get(k, '?')[:24]} -> {v[:24]})" for k, v in fingerprint.items() if old.get(k) != v]
        if changed:
            raise ConfigError(f"{out_dir} holds checkpoints of another RL run ({', '.join(changed)}); resuming would "
                              f"mix two recipes. Pass overwrite=true to start over, or --out elsewhere")
    out_dir.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# train(): GRPOTrainer on one process (vLLM colocated on GPU)


def grpo_arguments(cfg: RLConfig, out_dir: Path, cpu: bool) -> dict[str, Any]:
    """GRPOConfig fields from the recipe: the trainer fields every stage shares, then GRPO's own."""
    from distill.students.train import trainer_arguments

    kwargs = trainer_arguments(cfg, out_dir, cpu=cpu)
    kwargs.update({
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "beta": cfg.beta,
        "loss_type": cfg.loss_type,
        "scale_rewards": cfg.scale_rewards,
        "epsilon": cfg.epsilon,
        "num_iterations": cfg.num_iterations,
        "reward_weights": cfg.weights(),
        "activation_checkpointing": cfg.gradient_checkpointing and not cpu,
        "log_completions": cfg.log_completions,
        "use_liger_kernel": cfg.use_liger_kernel and not cpu,
        "use_vllm": cfg.use_vllm and not cpu,
    })
    if kwargs["activation_checkpointing"]:
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    if kwargs["use_vllm"]:
        kwargs.update(vllm_mode="colocate", vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization)
    else:
        # transformers' generate: no top-k cut (its default 50 is not what vLLM or eval sample).
        kwargs["generation_kwargs"] = {"top_k": None}
    return kwargs


def train(cfg: RLConfig, student: Path, rows: list[dict[str, Any]], out_dir: Path, callbacks: list | None = None) -> Path:
    """Build GRPOTrainer on the student, train (resuming), save final/, run.json and card.md."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from distill.rl.card import write_card
    from distill.rl.rewards import reward_functions
    from distill.students.train import last_complete_checkpoint

    started = time.time()
    cpu = not torch.cuda.is_available()
    if cfg.use_vllm and not cpu:
        try:
            import vllm  # noqa: F401
        except ImportError as e:
            raise ConfigError("use_vllm: true needs vLLM on this GPU machine: `pip install -e '.[vllm]'`, or "
                              "ARGS=\"use_vllm=false\" to generate with transformers (slower)") from e
    elif cfg.use_vllm:
        log.warning("use_vllm: true, but this machine has no CUDA GPU: generating with transformers instead")
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)

    ######################
    # Tokenizer and model: the SFT student as `make student` saved it (serving template, eos = end of turn)
    ######################
    tokenizer = AutoTokenizer.from_pretrained(student)
    dtype = torch.bfloat16 if cfg.bf16 and not cpu else torch.float32
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.attn_implementation and not cpu:
        model_kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(student, **model_kwargs)
    stop_ids = generation_stop_ids(model)

    ######################
    # Rewards (distill.verify) and the trainer
    ######################
    funcs = reward_functions(cfg.rewards, tokenizer, max_completion_length=cfg.max_completion_length,
                             overlong_cache=cfg.overlong_cache, stop_ids=stop_ids, workers=cfg.reward_workers,
                             timeout=cfg.score_timeout)
    args = GRPOConfig(**grpo_arguments(cfg, out_dir, cpu))
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=callbacks)

    ######################
    # Training loop (resumes from the last complete checkpoint)
    ######################
    resume = last_complete_checkpoint(out_dir / "checkpoints")
    if resume is not None:
        log.info("resuming from %s", resume)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    ######################
    # Save final model (with the student's tokenizer and templates), record and card
    ######################
    final = save_final(trainer, tokenizer, student, out_dir)
    record = read_record(out_dir)
    record["results"] = summarize_logs(trainer.state.log_history, cfg)
    record["results"].update({
        "optimizer_steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 3),
        "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 1),
        "wall_s": round(time.time() - started, 1),
        "resumed_from": resume.name if resume else None,
        "generation": "vllm (colocated)" if args.use_vllm else "transformers generate",
    })
    write_record(out_dir, record)
    write_card(out_dir)
    log.info("RL student saved to %s (reward %s -> %s); card: %s", final, record["results"].get("reward_first"),
             record["results"].get("reward_last"), out_dir / "card.md")
    return final


def generation_stop_ids(model: Any) -> list[int]:
    """The ids `generate` stops on (the student's generation_config: one id or a list), for the reward decoder."""
    eos = model.generation_config.eos_token_id
    return [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def summarize_logs(history: list[dict[str, Any]], cfg: RLConfig) -> dict[str, Any]:
    """First and last logged values of the reward terms, KL and completion length (means over the first and
    last quarter of the logged steps, so one noisy step does not decide them)."""
    logged = [h for h in history if "reward" in h]
    if not logged:
        return {}
    quarter = max(1, len(logged) // 4)
    keys = {"reward": "reward", **{f"rewards/{name}/mean": name for name in cfg.rewards}, "kl": "kl",
            "completions/mean_length": "completion_tokens"}
    out: dict[str, Any] = {"logged_steps": len(logged)}
    for key, short in keys.items():
        values = [h[key] for h in logged if key in h]
        if values:
            out[f"{short}_first"] = round(sum(values[:quarter]) / len(values[:quarter]), 4)
            out[f"{short}_last"] = round(sum(values[-quarter:]) / len(values[-quarter:]), 4)
    return out


def save_final(trainer, tokenizer, student: Path, out_dir: Path) -> Path:
    """final/: weights, the student's tokenizer (serving template) and training template, eos = end of turn."""
    final = out_dir / "final"
    tmp = final.with_name("final.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    model = trainer.accelerator.unwrap_model(trainer.model)
    config = json.loads((tmp / "config.json").read_text())
    config["use_cache"] = True
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    model.generation_config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    for name in ("chat_template_train.jinja",):
        if (student / name).exists():
            shutil.copy2(student / name, tmp / name)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


__all__ = ["RUN_CONTROL_KEYS", "generation_stop_ids", "run", "train"]

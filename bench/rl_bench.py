"""GRPO speed: the tiny preset's `rl:` recipe (`make rl SIZE=tiny`) against TRL's GRPOTrainer defaults.

    .venv/bin/python bench/rl_bench.py             # 8 optimizer steps of ours, 16 of TRL's defaults
    .venv/bin/python bench/rl_bench.py --quick     # 4 and 8

Same model (the toy teacher, `toy://teacher`: a trained model that thinks in the student's format,
built and cached on first use), same prompts (the tiny rl block's toy prompt set) and the same reward functions (distill.rl.rewards) on both sides;
what differs is what each side's configuration does with them:

- ours: `distill.rl.train.train` with the preset's rl block (its batch of prompts x generations,
  fp32, no activation checkpointing on CPU, one torch thread, no top-k cut);
- TRL defaults: `GRPOConfig` as it comes (8 completions per step, activation checkpointing,
  completions up to 512 tokens, every core), with only what CPU requires set (use_cpu, no bf16),
  the same learning rate and saving off.

Generation is timed around the model's own `generate` (TRL calls it on the unwrapped model), which
also counts the tokens it produced (non-pad tokens after the prompt). Figures per side: optimizer
steps and completions made, generated tokens/s and steps/s over the training wall time, and the
share of that time spent generating. Steps/s compares runs with different completions per step:
tokens/s is the like-for-like figure, and the ratio the report checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class GenerationClock:
    """Wraps `model.generate`: seconds spent in it, sequences and tokens it generated."""

    def __init__(self, model: Any, pad_id: int | None):
        self.seconds = 0.0
        self.sequences = 0
        self.tokens = 0
        original = model.generate

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = original(*args, **kwargs)
            self.seconds += time.perf_counter() - start
            prompt = kwargs.get("input_ids", args[0] if args else None)
            sequences = out.sequences if hasattr(out, "sequences") else out
            new = sequences[:, prompt.shape[1]:]
            self.sequences += new.shape[0]
            self.tokens += int((new != pad_id).sum()) if pad_id is not None else new.numel()
            return out

        model.generate = timed


def callback_for(clocks: list[GenerationClock], pad_id: int | None) -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            clocks.append(GenerationClock(model, pad_id))

    return Clock()


def figures(clock: GenerationClock, steps: int, wall: float, cpu: float) -> dict[str, Any]:
    return {"optimizer_steps": steps, "completions": clock.sequences, "generated_tokens": clock.tokens,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "generate_s": round(clock.seconds, 2),
            "generated_tokens_per_s": round(clock.tokens / wall, 1), "steps_per_s": round(steps / wall, 4),
            "generate_share": round(clock.seconds / wall, 3)}


def ours(model_dir: Path, rows: list[dict], cfg: Any, out: Path, steps: int, pad_id: int | None) -> dict[str, Any]:
    from distill.config import to_dict
    from distill.rl.train import train
    from distill.students.card import read_record, write_record

    clocks: list[GenerationClock] = []
    cfg = replace(cfg, max_steps=steps, save_steps=10_000, report_to="none", logging_steps=1)
    out.mkdir(parents=True)
    write_record(out, {"size": "tiny", "config": to_dict(cfg), "student": str(model_dir)})  # what `make rl` records first
    wall, cpu = time.perf_counter(), time.process_time()
    train(cfg, model_dir, rows, out, callbacks=[callback_for(clocks, pad_id)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps_done = read_record(out)["results"]["optimizer_steps"]
    return {**figures(clocks[0], steps_done, wall, cpu), "threads": cfg.torch_threads,
            "completions_per_step": cfg.per_device_batch_size * cfg.gradient_accumulation_steps}


def trl_defaults(model_dir: Path, rows: list[dict], cfg: Any, out: Path, steps: int, pad_id: int | None) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from distill.rl.rewards import reward_functions
    from distill.rl.train import generation_stop_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    args = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, max_steps=steps, learning_rate=cfg.learning_rate,
                      save_strategy="no", report_to="none", logging_steps=1)
    funcs = reward_functions(cfg.rewards, tokenizer, max_completion_length=args.max_completion_length,
                             overlong_cache=min(cfg.overlong_cache, args.max_completion_length - 1),
                             stop_ids=generation_stop_ids(model))
    clocks: list[GenerationClock] = []
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tokenizer, callbacks=[callback_for(clocks, pad_id)])
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {**figures(clocks[0], trainer.state.global_step, wall, cpu), "threads": torch.get_num_threads(),
            "completions_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps of ours (TRL's defaults run twice as many)")
    ap.add_argument("--quick", action="store_true", help="4 steps of ours, 8 of TRL's defaults")
    args = ap.parse_args(argv)
    steps = 4 if args.quick else args.steps

    from transformers import AutoTokenizer

    from distill.models import resolve_model
    from distill.rl.config import load_rl_config
    from distill.rl.train import load_rl_prompts

    cfg, _ = load_rl_config("tiny")
    model_dir = Path(resolve_model("toy://teacher"))
    rows = load_rl_prompts(cfg.prompts or "toy", cfg)
    pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id
    with tempfile.TemporaryDirectory(prefix="rl-bench-") as tmp:
        # TRL's defaults first: ours pins torch to its preset's thread count for the rest of the process.
        trl = trl_defaults(model_dir, rows, cfg, Path(tmp) / "trl", 2 * steps, pad_id)
        mine = ours(model_dir, rows, cfg, Path(tmp) / "ours", steps, pad_id)
    for name, side, want in (("ours", mine, steps), ("trl_defaults", trl, 2 * steps)):
        if side["optimizer_steps"] != want or side["completions"] != want * side["completions_per_step"]:
            raise SystemExit(f"{name}: {side['optimizer_steps']} steps and {side['completions']} completions, expected "
                             f"{want} and {want * side['completions_per_step']}: the run did other work than asked")
    result = {"model": str(model_dir), "prompts": len(rows), "ours": mine, "trl_defaults": trl,
              "tokens_per_s_ours_vs_trl": round(mine["generated_tokens_per_s"] / trl["generated_tokens_per_s"], 3),
              "steps_per_s_ours_vs_trl": round(mine["steps_per_s"] / trl["steps_per_s"], 3)}
    print(f"\nGRPO on {model_dir.name}, {len(rows)} toy prompts")
    print(f"{'side':14s} {'steps':>5s} {'compl.':>6s} {'tokens':>7s} {'wall s':>7s} {'tok/s':>7s} {'steps/s':>8s} "
          f"{'generating':>10s}")
    for name, s in (("ours", mine), ("trl_defaults", trl)):
        print(f"{name:14s} {s['optimizer_steps']:5d} {s['completions']:6d} {s['generated_tokens']:7d} {s['wall_s']:7.1f} "
              f"{s['generated_tokens_per_s']:7.1f} {s['steps_per_s']:8.3f} {s['generate_share']:10.0%}")
    print(f"ours / TRL defaults: generated tokens/s {result['tokens_per_s_ours_vs_trl']}, "
          f"steps/s {result['steps_per_s_ours_vs_trl']}")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

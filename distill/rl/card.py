"""card.md of an RL student: rewards, KL beta, steps, generations per prompt, and the eval table.

    write_card(Path("out/rl/7b"))    # `make eval SIZE=7b` calls it again to add the results

Rendered from out/rl/<size>/run.json (what `distill.rl.train` records) and out/eval/<size>/report.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.students import card as students_card
from distill.students.card import _fmt, render_eval

REWARD_TEXT = {
    "correct": "1 when `distill.verify` finds the answer part right against the reference, else 0 "
               "(math-verify for math, the gold letter for choice, the tests in the sandbox for code)",
    "format": "0 for exactly one think block and a non-empty answer after it (the `think_format` filter), else -1",
    "overlong": "DAPO's soft overlong punishment (arXiv:2503.14476, Eq. 13; open-r1's soft_overlong_punishment): "
                "0 up to max_completion_length - overlong_cache tokens, then linear down to -1 at the limit",
}


def render_card(record: dict[str, Any], eval_report: Any = None, eval_path: Path | None = None) -> str:
    cfg = record.get("config", {})
    results = record.get("results", {})
    prompts = record.get("prompts", {})
    weights = cfg.get("reward_weights") or {}
    out = [f"# RL student: {record.get('size', '?')} (GRPO on `{record.get('student', '?')}`)", "",
           "Reinforcement learning after distillation with `distill`: TRL's GRPOTrainer on the SFT student, "
           "rewards from `distill.verify` (the checker the filters and the eval use).", ""]

    out += ["## Rewards", "", "| reward | weight | what it scores |", "|---|---|---|"]
    out += [f"| {name} | {_fmt(float(weights.get(name, 1.0)))} | {REWARD_TEXT.get(name, '')} |"
            for name in cfg.get("rewards", [])]
    out.append("")

    out += ["## Recipe", ""]
    batch = cfg.get("per_device_batch_size", 0) * cfg.get("gradient_accumulation_steps", 0)
    out += [f"- KL beta (against the SFT student): {cfg.get('beta')}",
            f"- generations per prompt: {cfg.get('num_generations')}; completions per optimizer step: {batch} "
            f"({batch // max(1, cfg.get('num_generations') or 1)} prompts)",
            f"- optimizer steps: {results.get('optimizer_steps', '(training has not finished)')}",
            f"- loss: {cfg.get('loss_type')}, rewards scaled per {cfg.get('scale_rewards')}, clip epsilon "
            f"{cfg.get('epsilon')}; learning rate {cfg.get('learning_rate')} ({cfg.get('lr_scheduler')})",
            f"- sampling: temperature {cfg.get('temperature')}, top_p {cfg.get('top_p')}, up to "
            f"{cfg.get('max_completion_length')} tokens; {results.get('generation', '')}",
            f"- prompts: `{prompts.get('set', '?')}` {prompts.get('overrides') or ''} ({prompts.get('count', '?')} "
            f"prompts, tasks {', '.join(prompts.get('tasks', []))})",
            f"- preset: `{record.get('preset', '?')}` (the `rl:` block)", ""]
    out += ["| key | value |", "|---|---|"] + [f"| {k} | {_fmt(cfg[k])} |" for k in sorted(cfg)] + [""]

    out += ["## Training", ""]
    if results:
        out += [f"- {k}: {_fmt(results[k])}" for k in sorted(results)]
    else:
        out.append("- training has not finished")
    out.append("")

    out += ["## Evaluation", ""]
    if eval_report is not None:
        out += [f"From `{eval_path}` (original / student / rl / teacher):", "", render_eval(eval_report)]
    else:
        out.append(f"Not evaluated yet: run `make eval SIZE={record.get('size', '<size>')}`; it adds the rl column "
                   f"and rewrites this card.")
    out.append("")
    return "\n".join(out)


def write_card(out_dir: str | Path, eval_report: str | Path | None = None) -> Path:
    """(Re)write out_dir/card.md (and final/README.md) from run.json and the eval report when there is one."""
    return students_card.write_card(out_dir, eval_report, render=render_card)

"""Student training side by side: the tiny preset vs TRL's SFTTrainer with its defaults vs a bare PyTorch loop.

    .venv/bin/python bench/peers_training.py            # 400 toy traces x 3 epochs (39 steps of 32)
    .venv/bin/python bench/peers_training.py --quick    # 160 traces x 2 epochs (10 steps of 32; ~1.5 minutes)

Same model (the toy student's architecture, randomly initialised), same tokenised rows, same batch
size and number of optimizer steps; each run in its own process (one torch thread) so its peak RSS
is its own. The work is each side's own count (the trainers' optimizer steps and non-pad input
tokens, the bare loop's batches): the bench stops with an error when they differ, as they did
when students/tiny.yaml's max_steps made the preset run 1,000 steps against 20 counted. The
assets, the bare loop and the preset run are bench/train_bench.py's:
- `bare`: a plain loop: pad, forward, backward, clip, AdamW, schedule; nothing else;
- `tiny`: `distill student --size tiny` (students/tiny.yaml through distill.students.train);
- `trl_defaults`: `SFTTrainer(model, SFTConfig(output_dir, use_cpu=True, per_device_train_batch_size=32,
  num_train_epochs=E), train_dataset=rows)`: every other setting TRL's default (bf16 autocast,
  gradient checkpointing, per-step entropy and accuracy metrics, lr 2e-5 linear), what a user who
  picks TRL directly gets on this machine.
Figures: non-pad tokens/s of the training loop alone (not loading or tokenising), in wall and in
CPU seconds, best of --reps in each process; peak RSS; ratios to the bare loop (target: tiny >= 0.85),
in CPU seconds (steadier when other work shares the cores) and in wall seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_bench


def run_trl_defaults(root: str, model_dir: str, data: str, epochs: int, reps: int) -> dict:
    """TRL's SFTTrainer as its docs show it, on the rows the other runs train on."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(train_bench.THREADS)
    from distill.students.config import load_student_config
    from distill.students.data import build_dataset
    from distill.students.templates import get_format, prepare_tokenizer

    cfg, _ = load_student_config("tiny", [f"base={model_dir}"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    prepare_tokenizer(tok, get_format(cfg.template))
    # Already tokenised (input_ids, assistant_masks): SFTTrainer trains on the rows as they are.
    dataset, _ = build_dataset(data, tok, cfg.max_length, cache_dir=Path(root) / "trl-cache")
    best: dict = {}
    for rep in range(reps):
        clock = train_bench.trainer_clock()
        args = SFTConfig(output_dir=str(Path(root) / f"trl-defaults-{rep}"), use_cpu=True,
                         per_device_train_batch_size=cfg.per_device_batch_size, num_train_epochs=epochs)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok, callbacks=[clock])
        result = trainer.train()
        run = {**clock.result(result.training_loss), "bf16": bool(args.bf16),
               "gradient_checkpointing": bool(args.gradient_checkpointing)}
        best = train_bench.best_of(best, run)
    return {**best, "peak_rss_mb": train_bench._peak_rss_mb()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="160 traces x 2 epochs")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--reps", type=int, default=2, help="repetitions in each process; the best one counts")
    args = parser.parse_args(argv)
    n = args.traces or (160 if args.quick else 400)
    epochs = args.epochs or (2 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="peers-training-") as tmp:
        model_dir, data = train_bench.build_assets(Path(tmp), n)
        common = (tmp, str(model_dir), str(data), epochs)
        runs = {
            "bare": train_bench.in_subprocess("run_bare", *common, [], args.reps),
            "tiny": train_bench.in_subprocess("run_trl", *common, [], args.reps),
            "trl_defaults": train_bench.in_subprocess(run_trl_defaults, *common, args.reps),
        }

    # Every side's own count of its work (optimizer steps, non-pad tokens fed to the model) must agree.
    train_bench.check_same_work(runs, same_steps=list(runs))
    steps = runs["bare"]["steps"]
    figures: dict = {"traces": n, "epochs": epochs, "steps": steps, "threads": train_bench.THREADS,
                     "tokens": runs["bare"]["tokens"], "trl_defaults_steps": runs["trl_defaults"]["steps"],
                     "trl_defaults_bf16": runs["trl_defaults"]["bf16"],
                     "trl_defaults_gradient_checkpointing": runs["trl_defaults"]["gradient_checkpointing"]}
    for name, r in runs.items():
        figures[name] = {"tokens_per_s": round(r["tokens_per_s"], 1), "tokens_per_cpu_s": round(r["tokens_per_cpu_s"], 1),
                         "peak_rss_mb": round(r["peak_rss_mb"], 1), "mean_loss": round(r["mean_loss"], 4)}
    for name in ("tiny", "trl_defaults"):
        figures[f"{name}_vs_bare"] = round(runs[name]["tokens_per_cpu_s"] / runs["bare"]["tokens_per_cpu_s"], 3)
        figures[f"{name}_vs_bare_wall"] = round(runs[name]["tokens_per_s"] / runs["bare"]["tokens_per_s"], 3)
        figures[f"{name}_rss_vs_bare"] = round(runs[name]["peak_rss_mb"] / runs["bare"]["peak_rss_mb"], 3)
    figures["tiny_vs_trl_defaults"] = round(runs["tiny"]["tokens_per_cpu_s"] / runs["trl_defaults"]["tokens_per_cpu_s"], 3)

    print(f"{'run':<14} {'tok/s':>9} {'tok/CPU s':>10} {'peak RSS MB':>11} {'vs bare (CPU)':>13} {'(wall)':>7}")
    for name in runs:
        f = figures[name]
        ratio = (f"{figures[f'{name}_vs_bare']:>13.3f} {figures[f'{name}_vs_bare_wall']:>7.3f}" if name != "bare"
                 else f"{'1':>13} {'1':>7}")
        print(f"{name:<14} {f['tokens_per_s']:>9.0f} {f['tokens_per_cpu_s']:>10.0f} {f['peak_rss_mb']:>11.0f} {ratio}")
    print(f"{steps} optimizer steps and {figures['tokens']:,} non-pad tokens in every run (each run's own count); "
          f"TRL defaults ran {figures['trl_defaults_steps']} "
          f"steps with bf16={figures['trl_defaults_bf16']}, gradient checkpointing="
          f"{figures['trl_defaults_gradient_checkpointing']}")
    return figures


if __name__ == "__main__":
    main()

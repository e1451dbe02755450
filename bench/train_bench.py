"""Student-trainer throughput: the tiny preset through TRL against a bare PyTorch loop.

    .venv/bin/python bench/train_bench.py            # 400 toy traces, 3 epochs per run
    .venv/bin/python bench/train_bench.py --quick    # 160 traces, 2 epochs (~1.5 minutes; no packed training run)

Same model (the toy student's architecture, randomly initialised), same tokenised rows, same
batch size, optimizer and learning rate; each run in its own process so peak RSS is its own.
Figures: non-pad (real) tokens per second, peak RSS, ratio TRL / bare loop (target >= 0.85),
and the fraction of non-pad tokens per batch with and without packing (target >= 0.95 packed).
Runs: `bare` (a plain loop), `tiny` (students/tiny.yaml as shipped: SFTTrainer without the
per-step entropy/accuracy metrics, loss on full logits), `sft_defaults` (the same with SFTTrainer's
defaults: metrics on, chunked LM head) and `tiny_packed` (bfd packing, padding-free; not in --quick).
Throughput is measured on the training loop alone, best of --reps, in wall and in CPU seconds
(steadier when other work shares the cores); the ratios use CPU seconds. Each side's work is its
own count (the trainer's optimizer steps and non-pad input tokens, the bare loop's batches), and
the bench stops with an error when the runs' counts differ.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THREADS = 1  # one core per run: the machine is shared, and ratios are steadier single-threaded


def build_assets(root: Path, n_traces: int) -> tuple[Path, Path]:
    """A toy-architecture student (random init) and `n_traces` toy traces in clean.jsonl."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from distill.toy import task
    from distill.toy.models import SPECS, toy_messages
    from distill.toy.tokenizer import build_tokenizer
    from distill.trace import Trace, trace_id, write_traces

    items = list(task.toy_problems("train", n_traces, seed=1, levels=(1, 2, 3, 4)))
    traces = [Trace(id=trace_id(it["id"], 0, "bench"), prompt_id=it["id"], messages=toy_messages(it["problem"]),
                    reasoning=it["reasoning"], answer=it["solution"], finish_reason="stop",
                    teacher={"model": "toy://teacher"}) for it in items]
    data = root / "clean.jsonl"
    write_traces(data, traces)
    spec = SPECS["student"]
    model_dir = root / "student"
    corpus = [m["content"] for t in traces for m in t.messages] + [t.completion for t in traces]
    tok = build_tokenizer(model_dir, corpus=corpus, vocab_size=400, model_max_length=512)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                         num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
                         num_key_value_heads=max(1, spec.num_heads // 2), max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         bos_token_id=None)
    Qwen2ForCausalLM(config).save_pretrained(model_dir)
    return model_dir, data


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def trainer_clock():
    """A TrainerCallback timing the training loop alone (not loading, tokenising or saving) and
    reading the work the trainer itself did: its optimizer steps and the non-pad tokens it fed the
    model (`num_input_tokens_seen`), so a preset's max_steps can never make the bench count other work."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            args.include_num_input_tokens_seen = "non_padding"  # read per batch by the training loop
            self.tokens0, self.steps0 = state.num_input_tokens_seen, state.global_step
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_train_end(self, args, state, control, **kwargs):
            self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
            self.tokens = int(state.num_input_tokens_seen - self.tokens0)
            self.steps = state.global_step - self.steps0

        def result(self, mean_loss: float) -> dict:
            return {"tokens_per_s": self.tokens / self.wall, "tokens_per_cpu_s": self.tokens / self.cpu,
                    "tokens": self.tokens, "steps": self.steps, "mean_loss": mean_loss}

    return Clock()


def best_of(best: dict, result: dict) -> dict:
    """Keep the fastest rep's rates; the work (tokens, steps) must be the same in every rep."""
    for key in ("tokens", "steps"):
        if key in best and best[key] != result[key]:
            raise RuntimeError(f"two repetitions of one run did different work: {key} {best[key]} vs {result[key]}")
    return {k: max(best.get(k, 0), v) if k.startswith("tokens_per") else v for k, v in result.items()}


def check_same_work(runs: dict[str, dict], same_steps: list[str]) -> None:
    """Fail loudly unless every run fed the model the same non-pad tokens, and the runs in
    `same_steps` (same batch size) took the same optimizer steps: a ratio of rates is only a
    comparison when both sides did the same work."""
    tokens = {name: r["tokens"] for name, r in runs.items()}
    steps = {name: runs[name]["steps"] for name in same_steps}
    if len(set(tokens.values())) > 1 or len(set(steps.values())) > 1:
        raise RuntimeError(f"the runs did different work, so their rates do not compare: tokens {tokens}, "
                           f"optimizer steps {steps}")


def run_trl(root: str, model_dir: str, data: str, epochs: int, extra: list[str], reps: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from distill.students.config import load_student_config
    from distill.students.train import train

    # max_steps=-1: `epochs` decides, as in the bare loop (students/tiny.yaml sets max_steps: 1000).
    cfg, _ = load_student_config("tiny", [f"base={model_dir}", f"num_epochs={epochs}", "max_steps=-1",
                                          "save_steps=100000", "logging_steps=100000", f"torch_threads={THREADS}",
                                          *extra])
    best: dict = {}
    for rep in range(reps):
        out = Path(root) / ("run-" + "-".join(extra or ["default"]).replace("=", "") + f"-{rep}")
        clock = trainer_clock()
        train(cfg, Path(data), out, callbacks=[clock])
        record = json.loads((out / "run.json").read_text())
        assert clock.steps == record["results"]["optimizer_steps"], (clock.steps, record["results"])
        best = best_of(best, clock.result(record["results"]["mean_train_loss"]))
    return {**best, "peak_rss_mb": _peak_rss_mb()}


def run_bare(root: str, model_dir: str, data: str, epochs: int, extra: list[str], reps: int) -> dict:
    """The same rows, batches, AdamW, lr schedule and clipping as the preset: nothing else."""
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(THREADS)
    from distill.students.config import load_student_config
    from distill.students.data import build_dataset
    from distill.students.templates import get_format, prepare_tokenizer

    cfg, _ = load_student_config("tiny", [f"base={model_dir}"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    prepare_tokenizer(tok, get_format(cfg.template))
    dataset, stats = build_dataset(data, tok, cfg.max_length, cache_dir=Path(root) / "bare-cache")
    rows = [(r["input_ids"], r["assistant_masks"]) for r in dataset]
    best: dict = {}
    for _ in range(reps):
        result = _bare_loop(model_dir, rows, tok.pad_token_id, cfg, epochs)
        assert result["tokens"] == stats.tokens * epochs
        best = best_of(best, result)
    return {**best, "peak_rss_mb": _peak_rss_mb()}


def _bare_loop(model_dir: str, rows: list, pad_id: int, cfg, epochs: int) -> dict:
    import math

    import torch
    from transformers import AutoModelForCausalLM, get_scheduler

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    bs = cfg.per_device_batch_size
    steps = epochs * math.ceil(len(rows) / bs)
    sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=math.ceil(cfg.warmup_ratio * steps),
                          num_training_steps=steps, scheduler_specific_kwargs={"min_lr_rate": cfg.min_lr_rate})
    gen = torch.Generator().manual_seed(0)
    start, start_cpu = time.perf_counter(), time.process_time()
    tokens, losses = 0, []
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        for i in range(0, len(order), bs):
            batch = [rows[j] for j in order[i:i + bs]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad_id)
            labels = torch.full((len(batch), width), -100)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            for k, (x, m) in enumerate(batch):
                ids[k, :len(x)] = torch.tensor(x)
                labels[k, :len(x)] = torch.where(torch.tensor(m) == 1, torch.tensor(x), -100)
                attn[k, :len(x)] = 1
            loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(attn.sum())
            losses.append(loss.item())
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {"tokens_per_s": tokens / wall, "tokens_per_cpu_s": tokens / cpu, "tokens": tokens, "steps": len(losses),
            "mean_loss": sum(losses) / len(losses)}


def non_pad_fractions(model_dir: str, data: str, root: str) -> dict:
    """Share of real tokens in the batches SFTTrainer feeds the model, padded vs packed (bfd, padding-free)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(THREADS)
    from distill.students.config import load_student_config
    from distill.students.data import build_dataset
    from distill.students.templates import get_format, prepare_tokenizer

    cfg, _ = load_student_config("tiny", [f"base={model_dir}"])
    tok = AutoTokenizer.from_pretrained(model_dir)
    prepare_tokenizer(tok, get_format(cfg.template))
    dataset, _ = build_dataset(data, tok, cfg.max_length, cache_dir=Path(root) / "frac-cache")
    out = {}
    for packing in (False, True):
        args = SFTConfig(output_dir=str(Path(root) / "frac"), per_device_train_batch_size=cfg.per_device_batch_size,
                         packing=packing, max_length=cfg.max_length if packing else None, use_cpu=True,
                         report_to=[], activation_checkpointing=False, bf16=False)
        trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, train_dataset=dataset,
                             processing_class=tok)
        real = total = 0
        fills = []
        for batch in trainer.get_train_dataloader():
            if "attention_mask" in batch:
                real += int(batch["attention_mask"].sum())
                total += batch["attention_mask"].numel()
            else:  # padding-free: one flattened row; positions restart at 0 for every trace
                real += int(batch["input_ids"].shape[1])
                total += int(batch["input_ids"].numel())
        if packing:
            fills = [sum(r) / cfg.max_length for r in trainer.train_dataset["seq_lengths"]]
            out["packed_row_fill"] = sum(fills) / len(fills)
        out["non_pad_fraction_packed" if packing else "non_pad_fraction_padded"] = real / total
    return out


def _worker(fn, queue, *args) -> None:
    try:
        queue.put((globals()[fn] if isinstance(fn, str) else fn)(*args))
    except Exception as e:  # noqa: BLE001 - report to the parent instead of leaving it waiting on the queue
        queue.put({"error": f"{type(e).__name__}: {e}"})


def in_subprocess(fn, *args) -> dict:
    """fn (a name in this module, or a module-level function of another, e.g. bench/peers_training.py)
    in a fresh spawned process: its own peak RSS, no state shared between runs."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(fn, queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)}: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="160 traces x 2 epochs, 2 repetitions, no packed run")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None, help="repetitions per run; the best one counts")
    args = parser.parse_args(argv)
    n = args.traces or (160 if args.quick else 400)
    epochs = args.epochs or (2 if args.quick else 3)
    reps = args.reps or (2 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        root = Path(tmp)
        model_dir, data = build_assets(root, n)
        common = (tmp, str(model_dir), str(data), epochs)
        runs = {
            "bare": in_subprocess("run_bare", *common, [], reps),
            "tiny": in_subprocess("run_trl", *common, [], reps),
            "sft_defaults": in_subprocess("run_trl", *common, ["token_metrics=true", "fused_lm_head=true"], reps),
        }
        if not args.quick:
            # Packed rows of 512 hold ~5 toy traces: 3 rows per step is about the tokens of 16 padded traces.
            runs["tiny_packed"] = in_subprocess("run_trl", *common, ["packing=true", "per_device_batch_size=3",
                                                                     "global_batch_size=3"], reps)
        fractions = in_subprocess("non_pad_fractions", str(model_dir), str(data), tmp)
    # Packed rows take fewer, fuller steps: the same tokens, other step counts.
    check_same_work(runs, same_steps=["bare", "tiny", "sft_defaults"])

    figures: dict = {"traces": n, "epochs": epochs, "threads": THREADS, "reps": reps,
                     "steps": runs["bare"]["steps"], "tokens": runs["bare"]["tokens"]}
    for name, r in runs.items():
        figures[f"{name}_tokens_per_s"] = round(r["tokens_per_s"], 1)
        figures[f"{name}_tokens_per_cpu_s"] = round(r["tokens_per_cpu_s"], 1)
        figures[f"{name}_peak_rss_mb"] = round(r["peak_rss_mb"], 1)
        figures[f"{name}_mean_loss"] = round(r["mean_loss"], 4)
    for name in runs:
        if name != "bare":
            # CPU seconds are steadier than wall seconds on a shared machine; both are reported.
            figures[f"ratio_{name}_vs_bare"] = round(runs[name]["tokens_per_cpu_s"] / runs["bare"]["tokens_per_cpu_s"], 3)
            figures[f"ratio_{name}_vs_bare_wall"] = round(runs[name]["tokens_per_s"] / runs["bare"]["tokens_per_s"], 3)
    figures["rss_ratio_tiny_vs_bare"] = round(runs["tiny"]["peak_rss_mb"] / runs["bare"]["peak_rss_mb"], 3)
    figures.update({k: round(v, 4) for k, v in fractions.items()})
    width = max(len(k) for k in figures)
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    print(f"targets: ratio_tiny_vs_bare >= 0.85 ({'met' if figures['ratio_tiny_vs_bare'] >= 0.85 else 'MISSED'}), "
          f"non_pad_fraction_packed >= 0.95 ({'met' if figures['non_pad_fraction_packed'] >= 0.95 else 'MISSED'})")
    return figures


if __name__ == "__main__":
    main()

"""Attention compute spent on real tokens: the 7b preset's batching, padded vs padding-free, on Sky-T1 lengths.

    .venv/bin/python bench/attention_bench.py            # every sky-t1-* trace in ../shared/data, 1,000 shuffles
    .venv/bin/python bench/attention_bench.py --quick    # 100 shuffles

Computed from lengths, no GPU. Each real long-CoT trace (NovaSky's Sky-T1 outputs in
../shared/data/traces/skythought: question + generation) is rendered with the student's training
template and counted with the Qwen2.5 tokenizer (the 7b base's); traces over the preset's
max_length are dropped, as `make student` drops them. The preset's micro-batches
(per_device_batch_size traces, drawn in random order) are then costed both ways:

- padded (sdpa, the presets before flash attention): every row is padded to the longest trace of its
  micro-batch, so causal attention costs B x Lmax^2 / 2 per micro-batch and the linear layers
  B x Lmax tokens; the real work is sum(L^2) / 2 and sum(L);
- padding-free (flash_attention_2 with TRL's padding_free): the micro-batch is one flat row and
  flash-attention's varlen kernel attends within each trace: exactly sum(L^2) / 2 and sum(L).

Figures: the share of attention FLOPs (and of token positions, the linear layers' cost) spent on
real tokens, mean over shuffles with the worst shuffle.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def trace_lengths(template: str, max_length: int) -> tuple[list[int], int]:
    """Token counts of every Sky-T1 trace as the student trains on it; and how many exceed max_length."""
    from transformers import AutoTokenizer

    from distill.students.templates import get_format

    tok = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers" / "qwen2.5"))
    tok.chat_template = get_format(template).train
    lengths = []
    for path in sorted((SHARED / "traces" / "skythought").glob("sky-t1-*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            for generation in row["code"]:
                messages = [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": generation}]
                lengths.append(len(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]))
    kept = [n for n in lengths if n <= max_length]
    return kept, len(lengths) - len(kept)


def padded_shares(lengths: list[int], batch: int, shuffles: int, seed: int = 0) -> dict:
    """Real / computed attention and token positions for padded micro-batches of `batch` traces in random order."""
    rng = random.Random(seed)
    attention, tokens = [], []
    order = list(lengths)
    for _ in range(shuffles):
        rng.shuffle(order)
        real_att = real_tok = paid_att = paid_tok = 0
        for i in range(0, len(order) - batch + 1, batch):  # the Trainer drops no last batch; the remainder is noise here
            rows = order[i:i + batch]
            longest = max(rows)
            real_att += sum(n * n for n in rows)
            real_tok += sum(rows)
            paid_att += batch * longest * longest
            paid_tok += batch * longest
        attention.append(real_att / paid_att)
        tokens.append(real_tok / paid_tok)
    return {"attention_real_share": round(sum(attention) / shuffles, 4), "attention_real_share_worst": round(min(attention), 4),
            "token_real_share": round(sum(tokens) / shuffles, 4)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 shuffles instead of 1,000")
    parser.add_argument("--size", default="7b", help="the student preset whose batching is costed")
    args = parser.parse_args(argv)
    if not (SHARED / "traces" / "skythought").is_dir():
        figures = {"skipped": f"{SHARED} is absent (only a developer checkout has ../shared/data)"}
        print(json.dumps(figures))
        return figures

    from distill.students.config import load_student_config

    cfg, _ = load_student_config(args.size)
    lengths, dropped = trace_lengths(cfg.template, cfg.max_length)
    lengths_sorted = sorted(lengths)
    before = padded_shares(lengths, cfg.per_device_batch_size, 100 if args.quick else 1000)
    figures = {
        "preset": args.size, "per_device_batch_size": cfg.per_device_batch_size, "max_length": cfg.max_length,
        "attn_implementation": cfg.attn_implementation, "padding_free": cfg.padding_free,
        "traces": len(lengths), "dropped_over_max_length": dropped,
        "length_median": lengths_sorted[len(lengths) // 2], "length_p90": lengths_sorted[int(0.9 * len(lengths))],
        "length_max": lengths_sorted[-1],
        "padded": before,
        # flash-attention varlen on the flat row: no padding position is computed, no cross-trace attention.
        "padding_free_share": {"attention_real_share": 1.0, "token_real_share": 1.0},
        "attention_flops_saved": round(1 - before["attention_real_share"], 4),
    }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()

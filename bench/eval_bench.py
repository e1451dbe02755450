"""Eval stage speed: hf-backend generation on CPU, eval-loop overhead, and answer-checking throughput.

    .venv/bin/python bench/eval_bench.py            # 128 new tokens, 3 repeats; all 1,170 real outputs
    .venv/bin/python bench/eval_bench.py --quick    # 32 new tokens, 1 repeat; 300 real outputs (~1 min)

Figures:
- generation (torch threads: --threads, default 1): new tokens/s and problems/s of distill's hf backend (`HFTeacher.generate`, the
  code `make eval` runs) with a tiny randomly initialised Qwen2 (~1M parameters, the toy
  tokenizer) at batch 1, 8 and 32, one sample per problem, sampling at temperature 0.6;
- eval loop: problems/s of `distill.eval.results.evaluate` (generate + score with distill.verify
  + append the JSONL results) at batch 32, as a share of the bare generate rate (best of the
  repeats for both);
- scoring: samples/s of the eval's scorer (`score_completions`, math-verify in worker processes)
  on the real SkyThought outputs in ../shared/data/traces/skythought, with 1 and 2 workers.
On a shared 2-core machine the figures move with the load: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def tiny_model(folder: Path) -> Path:
    """A ~1M-parameter Qwen2 with the toy tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from distill.toy.tokenizer import build_tokenizer

    tok = build_tokenizer(folder)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    return folder


def problems(n: int) -> list:
    # The embedded toy task's held-out split, through the same loader a benchmark goes through.
    from distill.prompts import PromptSetConfig, ToySource, load_prompts

    cfg = PromptSetConfig(name="toy-bench", toy=ToySource(split="test", n=n, seed=0))
    return list(load_prompts(cfg))


def generation(model_dir: Path, max_tokens: int, repeats: int) -> dict:
    import torch

    from distill.teachers import TeacherConfig, load_teacher
    from distill.teachers.base import SamplingParams

    out: dict = {"model_params_m": None, "max_new_tokens": max_tokens, "torch_threads": torch.get_num_threads()}
    prompts = problems(32)
    for batch in (1, 8, 32):
        backend = load_teacher(TeacherConfig(name="bench", backend="hf", model=str(model_dir), batch_size=batch,
                                             device="cpu"))
        out["model_params_m"] = round(sum(p.numel() for p in backend.model.parameters()) / 1e6, 2)
        params = SamplingParams(max_tokens=max_tokens, n=1, seed=0)  # R1 temperature and top_p
        backend.generate([prompts[0].messages], params)  # warm-up
        best_tok, best_prob = 0.0, 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            outs = backend.generate([p.messages for p in prompts[:batch]], params)
            dt = time.perf_counter() - t
            tokens = sum(c.completion_tokens or 0 for cs in outs for c in cs)
            best_tok, best_prob = max(best_tok, tokens / dt), max(best_prob, batch / dt)
        out[f"batch{batch}_tokens_per_s"] = round(best_tok)
        out[f"batch{batch}_problems_per_s"] = round(best_prob, 2)
    return out


def eval_loop(model_dir: Path, max_tokens: int, repeats: int, bare_problems_per_s: float) -> dict:
    from distill.eval.results import ResultStore, evaluate, run_key, score_completions
    from distill.teachers import TeacherConfig, load_teacher
    from distill.teachers.base import Completion, SamplingParams

    prompts = problems(64)
    backend = load_teacher(TeacherConfig(name="bench", backend="hf", model=str(model_dir), batch_size=32, device="cpu"))
    params = SamplingParams(max_tokens=max_tokens)  # R1 temperature and top_p
    backend.generate([p.messages for p in prompts[:32]], params)  # warm-up, as for the bare figures
    score_completions([(prompts[0], Completion("", "\\boxed{1}", "stop"))], workers=0)
    best = 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:  # a fresh results file: nothing to resume
            store = ResultStore(Path(tmp) / "toy.jsonl", run_key({"model": "bench"}, params))
            t = time.perf_counter()
            progress = evaluate(store, prompts, 1, params, lambda: backend, {"role": "bench"}, chunk=32,
                                score_workers=1)
            best = max(best, progress.generated / (time.perf_counter() - t))
    return {"problems": len(prompts), "problems_per_s": round(best, 2),
            "share_of_bare_generate": round(best / bare_problems_per_s, 2) if bare_problems_per_s else None}


def scoring(limit: int | None) -> dict:
    from distill.eval.results import score_completions
    from distill.prompts import load_prompts
    from distill.teachers.base import Completion
    from distill.trace import split_reasoning

    items = []
    for path in sorted((SHARED / "traces" / "skythought").glob("*.jsonl")):
        bench = path.stem.rsplit("_", 1)[1]
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        prompts = load_prompts(bench, [f"path={path}", "columns.problem=question", "columns.id=idx", "columns.keep=[]"])
        for p, row in zip(prompts, rows):
            reasoning, answer, _ = split_reasoning(row["code"][0], ("<|begin_of_thought|>", "<|end_of_thought|>"))
            items.append((p, Completion(reasoning, answer, None)))
    if limit:
        items = items[::max(1, len(items) // limit)][:limit]  # spread over every file
    out: dict = {"samples": len(items), "mean_chars": round(sum(len(c.reasoning) + len(c.answer) for _, c in items) / len(items))}
    score_completions(items[:1], workers=0)  # import math-verify once, as a long eval would have
    for workers in (1, 2):
        t = time.perf_counter()
        score_completions(items, workers=workers)  # the eval default: 5 s per answer
        out[f"samples_per_s_w{workers}"] = round(len(items) / (time.perf_counter() - t), 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 new tokens, 1 repeat, 300 real outputs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared, loaded 2-core machine two threads "
                             "contend and generation runs 5-40x slower; raise it on an idle machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    max_tokens, repeats, limit = (32, 1, 300) if args.quick else (128, 3, None)

    figures: dict = {"quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = tiny_model(Path(tmp))
        figures["generation_hf_cpu"] = generation(model_dir, max_tokens, repeats)
        figures["eval_loop_batch32"] = eval_loop(model_dir, max_tokens, repeats,
                                                 figures["generation_hf_cpu"]["batch32_problems_per_s"])
    if (SHARED / "traces" / "skythought").is_dir():
        figures["scoring_real_outputs"] = scoring(limit)
    else:
        figures["scoring_real_outputs"] = {"skipped": f"{SHARED} is absent (only a developer checkout has ../shared/data)"}
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()

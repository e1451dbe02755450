"""Exports against the student they came from: size on disk, CPU tokens/s and pass@1 kept, per format.

    .venv/bin/python bench/export_bench.py                    # every format, 200 held-out problems x 8 samples
    .venv/bin/python bench/export_bench.py --quick            # 50 problems x 2
    .venv/bin/python bench/export_bench.py --student out/students/tiny/final --formats fp8,gguf

Each format goes through `make export`'s own code (distill.export.run) into a fresh output root,
so nothing is reused from an earlier run: the student column is sampled once (by the first
format) and every export is scored on the same problems, samples per problem and seeds. The
figures come from each export's eval.json: bytes of the weights, pass@1, `retained` (export /
student) and the generation work (completion tokens and seconds of the sampling, model load included).

The model is the trained toy student (`out/students/tiny/final` after `make demo`) when there is
one, else the toy teacher (`toy://teacher`, a trained model of the same Qwen2 architecture, built
and cached on first use): a model that solves some of the problems, or retained means nothing.

Runtimes differ by format, and the tokens/s say so: the fp32 student and the fp8/w8a8 exports run in
transformers on CPU (compressed-tensors in fake quant: dequantized weights, quantized inputs, so
slower than the student, and not what vLLM's kernels do on a GPU), the GGUFs in llama.cpp's
llama-server with its CPU kernels. On CPU these figures measure accuracy kept and size; speed of the
8-bit formats belongs to a GPU run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FORMATS = ("fp8", "w8a8", "gguf")


def model_under_test(student: str | None) -> tuple[Path, str]:
    if student:
        return Path(student), "given"
    demo = REPO / "out" / "students" / "tiny" / "final"
    if (demo / "config.json").exists():
        return demo, "the demo's filtered student"
    from distill.models import resolve_model

    return Path(resolve_model("toy://teacher")), "the toy teacher (no trained student in out/)"


def calibration_file(root: Path) -> Path:
    """Clean traces for w8a8's static scales: the demo's when present, else toy traces rendered from the task."""
    demo = REPO / "out" / "traces" / "tiny" / "toy" / "clean.jsonl"
    if demo.exists():
        return demo
    from distill.toy.task import toy_problems
    from distill.trace import Trace, write_traces

    path = root / "calibration.jsonl"
    write_traces(path, (Trace(id=f"cal-{p['id']}", prompt_id=str(p["id"]),
                              messages=[{"role": "user", "content": p["problem"]}], reasoning=p["reasoning"],
                              answer=p["solution"], reference=p["answer"], finish_reason="stop")
                        for p in toy_problems("train", 256, seed=11)))
    return path


def export_once(fmt: str, model: Path, root: Path, limit: int, k: int, data: Path) -> dict[str, Any]:
    from distill.export.run import run

    started = time.monotonic()
    result = run(size="tiny", fmt=fmt, student=model, out=root, data=data, overrides=[f"eval.limit={limit}", f"eval.default_k={k}"])
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def rows(results: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The student's figures and one row per variant, checked to score the same work."""
    student: dict[str, Any] | None = None
    out: dict[str, dict[str, Any]] = {}
    for fmt, r in results.items():
        s = r["student"]
        if student is None:
            student = {"bytes": s["bytes"], "mb": round(s["bytes"] / 1e6, 3), "pass@1": s["pass@1_mean"], **_work(s)}
        elif s["pass@1_mean"] != student["pass@1"]:
            raise SystemExit(f"{fmt}: the student's pass@1 {s['pass@1_mean']} differs from the first format's "
                             f"{student['pass@1']}; the exports were not scored against the same samples")
        for name, v in r["variants"].items():
            work = _work(v)
            if work["samples"] != student["samples"] or work["generated"] != work["samples"]:
                raise SystemExit(f"{name}: scored {work['samples']} samples ({work['generated']} generated in this "
                                 f"run), the student {student['samples']}: the sides did different work")
            out[name] = {"bytes": v["bytes"], "mb": round(v["bytes"] / 1e6, 3), "size_vs_student": round(v["bytes"] / student["bytes"], 3),
                         "pass@1": v["pass@1_mean"], "retained": v["retained"], "runtime": v.get("runtime"), **work}
    assert student is not None
    return student, out


def _work(scores: dict[str, Any]) -> dict[str, Any]:
    samples = sum(b["samples"] for b in scores["benchmarks"].values())
    gen = scores.get("generation") or {}
    return {"samples": samples, "generated": gen.get("generated"), "completion_tokens": gen.get("completion_tokens"),
            "tokens_per_s": gen.get("tokens_per_s")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default=None, help="model folder to export (default: the demo's student, else toy://teacher)")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--limit", type=int, default=200, help="held-out problems")
    ap.add_argument("--k", type=int, default=8, help="samples per problem on every side: at the preset's 2, fp8's "
                    "retained ranged 0.93-1.03 between runs; more samples steady it")
    ap.add_argument("--quick", action="store_true", help="50 problems x 2 samples")
    args = ap.parse_args(argv)
    limit, k = (50, 2) if args.quick else (args.limit, args.k)
    model, which = model_under_test(args.student)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        root = Path(tmp)
        data = calibration_file(root)
        for fmt in formats:
            results[fmt] = export_once(fmt, model, root, limit, k, data)
    student, variants = rows(results)

    print(f"\nexports of {model} ({which}), {limit} held-out problems x {k}, {student['samples']} samples each side")
    print(f"{'format':10s} {'MB':>8s} {'size':>6s} {'tokens/s':>9s} {'pass@1':>7s} {'retained':>8s}  runtime")
    print(f"{'student':10s} {student['bytes'] / 1e6:8.3f} {1:6.2f} {student['tokens_per_s'] or 0:9.1f} "
          f"{student['pass@1']:7.1%} {1:8.3f}  transformers fp32")
    for name, v in variants.items():
        print(f"{name:10s} {v['bytes'] / 1e6:8.3f} {v['size_vs_student']:6.2f} {v['tokens_per_s'] or 0:9.1f} "
              f"{v['pass@1']:7.1%} {v['retained'] if v['retained'] is not None else float('nan'):8.3f}  {v['runtime']}")
    return {"model": which, "problems": limit, "k": k, "student": student, "variants": variants,
            "wall_s": {fmt: r["wall_s"] for fmt, r in results.items()}}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

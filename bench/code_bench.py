"""Code verification throughput and the fixed cost of one sandboxed run.

    .venv/bin/python bench/code_bench.py            # all 200 LeetCode reference solutions, 20 start-up runs
    .venv/bin/python bench/code_bench.py --quick    # 60 solutions, 10 start-up runs (~30 s)
    .venv/bin/python bench/code_bench.py --mode fallback

Figures:
- solutions/s verifying the rllm LeetCode set (../shared/data/code/leetcode_test.json: each a
  `check(candidate)` run in its own sandbox) with 1 and 2 workers, and the speed-up;
- the fixed cost of one sandboxed run (an empty program through the whole path: slot, harness,
  rlimits, uid drop, namespaces, cleanup) in bubblewrap and fallback mode, against a bare
  `python -c pass` and a bare `python -I -S -c pass` (the sandbox starts Python with -I -S),
  medians of N runs.
On a shared 2-core machine the figures move with the load: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 1)


def startup_costs(runs: int) -> dict:
    from distill.verify.sandbox import get_sandbox

    py = sys.executable
    out = {
        "bare_python_ms": _median_ms(lambda: subprocess.run([py, "-c", "pass"], check=True), runs),
        "bare_python_IS_ms": _median_ms(
            lambda: subprocess.run([py, "-I", "-S", "-c", "pass"], check=True), runs
        ),
    }
    modes = ["fallback"] + (["bwrap"] if shutil.which("bwrap") else [])
    for mode in modes:
        box = get_sandbox(mode)
        box.run({"kind": "stdio", "code": "pass"})  # warm the page cache
        out[f"{mode}_run_ms"] = _median_ms(lambda box=box: box.run({"kind": "stdio", "code": "pass"}), runs)
        out[f"{mode}_overhead_ms"] = round(out[f"{mode}_run_ms"] - out["bare_python_ms"], 1)
    return out


def throughput(n: int, mode: str) -> dict:
    from distill.verify.code import verify_many

    rows = json.loads((SHARED / "code" / "leetcode_test.json").read_text())[:n]
    answers, tests = [r["solutions"] for r in rows], [r["tests"] for r in rows]
    out: dict = {"problems": len(rows)}
    for workers in (1, 2):
        t = time.perf_counter()
        results = verify_many(answers, tests, workers=workers, extract=False, mode=mode)
        dt = time.perf_counter() - t
        out[f"passed_w{workers}"] = sum(r.passed for r in results)
        out[f"solutions_per_s_w{workers}"] = round(len(rows) / dt, 2)
    out["speedup_2_over_1"] = round(out["solutions_per_s_w2"] / out["solutions_per_s_w1"], 2)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 solutions, 10 start-up runs")
    parser.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "bwrap", "fallback"],
        help="sandbox mode for the throughput runs (default: bwrap when installed)",
    )
    args = parser.parse_args(argv)
    n, runs = (60, 10) if args.quick else (200, 20)

    figures: dict = {"quick": args.quick}
    figures["startup"] = startup_costs(runs)
    if (SHARED / "code" / "leetcode_test.json").exists():
        from distill.verify.sandbox import get_sandbox

        figures["leetcode"] = {"mode": get_sandbox(args.mode).mode, **throughput(n, args.mode)}
    else:
        figures["leetcode"] = {
            "skipped": f"{SHARED} is absent (only a developer checkout has ../shared/data)"
        }
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()

"""Benchmark of stage 1 (teacher sampling) against a server that answers after a fixed latency.

    .venv/bin/python bench/sample_bench.py            # 10k/30k/100k prompts in the memory runs
    .venv/bin/python bench/sample_bench.py --quick    # 2k/5k/10k, about two minutes

What it reports, for the one client there is (the openai SDK in this process):
- realistic: requests/s at 256 in flight and 2 s per request (128 requests/s ideal) as a fraction
  of the ideal concurrency / latency, with the client's CPU per request. A reasoning teacher takes
  minutes per request, so this is already tens of times the rate a real run asks of the client;
- stress: the same at 0.2 s per request (1,280 requests/s ideal), where the client's CPU (~1 ms
  per request through the SDK) and two shared cores are what limit it;
- peak RSS of the client process as the prompt count grows (target: flat), and its CPU seconds;
- the CPU per sample of our orchestration alone (a backend that answers at once), to separate
  it from the HTTP client's cost.

The server is tests/fault_server.py in its own process (no faults, only latency); each client
run is `distill.teachers.sample.run` in a fresh process, so CPU and peak RSS are its own. Every
run compares the requests the client wrote with those the server answered (its /stats) and
stops when they differ. The server and client share this machine's cores: on a loaded 2-core
box the figures are a floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(args: argparse.Namespace) -> None:
    """One client run in this (fresh) process; prints its figures as JSON on the last line."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    # Import the client stack before the clock starts: the figures are about sampling, not start-up.
    import openai  # noqa: F401

    import distill.teachers.openai_backend  # noqa: F401
    from distill.teachers.sample import run

    if args.fake:
        _use_instant_teacher()

    def cpu_now() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    cpu0 = cpu_now()
    start = time.monotonic()
    summary = run(args.teacher, args.prompts, args.out)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu_now() - cpu0
    print(json.dumps({"written": summary["written"], "failed": summary["failed"], "wall_s": wall, "cpu_s": cpu,
                      "peak_rss_mb": after.ru_maxrss / 1024}))


@contextlib.contextmanager
def fault_server(latency: float, *extra: str) -> Iterator[str]:
    """tests/fault_server.py in its own process (its CPU is not the client's); yields its base URL."""
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "fault_server.py"), "--latency", str(latency),
                               *extra], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # "READY http://127.0.0.1:PORT/v1"
        if not line.startswith("READY"):
            raise RuntimeError(f"fault server did not start: {line!r}")
        yield line.split()[1]
    finally:
        server.kill()  # the server this function started, by PID
        server.wait()


def _use_instant_teacher() -> None:
    """Swap the backend for one that answers at once: what is left is our orchestration's cost."""
    import asyncio

    import distill.teachers
    from distill.teachers.base import Completion

    class Instant:
        name = "instant"
        batching = "requests"

        async def acomplete(self, messages, params):
            await asyncio.sleep(0)
            return Completion(reasoning="Work it out step by step.\nSo it is 5.", answer="The answer is \\boxed{5}.",
                              finish_reason="stop", prompt_tokens=40, completion_tokens=30,
                              raw={"id": "chatcmpl-0", "model": "bench"})

        async def aclose(self):
            pass

    distill.teachers.load_teacher = lambda cfg: Instant()


def _write_prompts(folder: Path, n: int) -> Path:
    data = folder / f"bench-{n}.jsonl"
    with open(data, "w") as f:
        f.writelines(json.dumps({"id": i, "problem": f"Problem {i}: a train leaves at {i % 97} km/h; how far after "
                                 f"{i % 13 + 1} hours? Give the distance in km.", "answer": str((i % 97) * (i % 13 + 1))})
                     + "\n" for i in range(n))
    path = folder / f"bench-{n}.yaml"
    path.write_text(f"name: bench\npath: {data}\ncolumns: {{id: id}}\n")
    return path


def _client(folder: Path, url: str, concurrency: int, prompts: Path, tag: str, fake: bool = False) -> dict:
    """One `distill traces` run in a fresh process against the server at `url` (none for fake=True)."""
    teacher = folder / f"teacher-{concurrency}.yaml"
    teacher.write_text(f"backend: openai\nmodel: bench\nbase_url: [{url}]\nconcurrency: {concurrency}\n"
                       "timeout: 60\nsampling: {n: 1, max_tokens: 256}\n")
    out = folder / f"out-{tag}"
    before = None if fake else server_requests(url)
    proc = subprocess.run([sys.executable, __file__, "--child", "--teacher", str(teacher), "--prompts", str(prompts),
                           "--out", str(out)] + (["--fake"] if fake else []), capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"client run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with open(prompts.with_suffix(".jsonl"), "rb") as f:  # _write_prompts: one request per line
        check_requests(f"client run {tag}", result, sum(1 for _ in f))
    if before is not None:
        answered = server_requests(url) - before
        if answered != result["written"]:
            raise RuntimeError(f"client run {tag}: the client wrote {result['written']} traces, the server answered "
                               f"{answered} requests; a rate over either would not be the rate of this work")
    return result


def server_requests(url: str) -> int:
    """Chat requests the fault server has answered so far (GET <base_url>/stats)."""
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as resp:
        return int(json.load(resp)["requests"])


def check_requests(who: str, result: dict, requests: int) -> None:
    """Fail loudly unless a client answered every request it was given: a rate over other work
    (samples skipped as already done, failed or dropped) is not the rate of this work."""
    if result["written"] != requests or result.get("failed"):
        raise RuntimeError(f"{who}: {result['written']} written and {result.get('failed', 0)} failed of {requests} "
                           "requests; its rate would count other work than the other runs")


def throughput(folder: Path, url: str, latency: float, concurrency: int, seconds: float, tag: str) -> dict:
    """One run of about `seconds` (at least 8 latencies, so ramp-up and the last wave stay small)."""
    ideal = concurrency / latency
    n = concurrency * max(8, round(seconds / latency))  # whole waves: the ideal rate is exact
    r = _client(folder, url, concurrency, _write_prompts(folder, n), tag)
    rate = r["written"] / r["wall_s"]
    return {"latency_s": latency, "concurrency": concurrency, "requests": r["written"],
            "requests_per_s": round(rate, 1), "ideal_per_s": round(ideal, 1), "fraction_of_ideal": round(rate / ideal, 3),
            "client_cpu_s": round(r["cpu_s"], 2), "cpu_ms_per_request": round(1000 * r["cpu_s"] / r["written"], 3),
            "client_cores_busy": round(r["cpu_s"] / r["wall_s"], 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="Throughput and memory of `distill traces` against a fixed-latency server.")
    p.add_argument("--quick", action="store_true", help="small prompt counts in the memory runs")
    p.add_argument("--latency", type=float, default=2.0, help="realistic setting: seconds per request")
    p.add_argument("--stress-latency", type=float, default=0.2, help="stress setting: seconds per request")
    p.add_argument("--concurrency", type=int, default=256, help="requests in flight")
    p.add_argument("--seconds", type=float, default=None, help="target duration of each throughput run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--teacher", help=argparse.SUPPRESS)
    p.add_argument("--prompts", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return {}

    seconds = args.seconds or (8.0 if args.quick else 20.0)
    memory_counts = [2_000, 5_000, 10_000] if args.quick else [10_000, 30_000, 100_000]
    c = args.concurrency
    results: dict = {"load_avg_1min": round(os.getloadavg()[0], 2)}
    print(f"{'setting':>9} {'latency s':>9} {'in flight':>9} {'requests':>9} {'req/s':>8} {'ideal':>8} {'fraction':>8} "
          f"{'CPU ms/req':>10} {'cores':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for setting, latency in (("realistic", args.latency), ("stress", args.stress_latency)):
            with fault_server(latency) as url:
                row = throughput(folder, url, latency, c, seconds, setting)
            results[setting] = row
            print(f"{setting:>9} {latency:>9.2f} {c:>9} {row['requests']:>9} {row['requests_per_s']:>8.1f} "
                  f"{row['ideal_per_s']:>8.1f} {row['fraction_of_ideal']:>8.3f} {row['cpu_ms_per_request']:>10.3f} "
                  f"{row['client_cores_busy']:>6.2f}")

        print(f"\nmemory at {c} in flight and {args.stress_latency:g} s per request as the prompt count grows")
        print(f"{'prompts':>9} {'peak RSS MB':>11} {'client CPU s':>12} {'req/s':>8}")
        results["memory"] = {}
        with fault_server(args.stress_latency) as url:
            for n in memory_counts:
                r = _client(folder, url, c, _write_prompts(folder, n), f"m{n}")
                row = {"peak_rss_mb": round(r["peak_rss_mb"], 1), "client_cpu_s": round(r["cpu_s"], 2),
                       "requests_per_s": round(r["written"] / r["wall_s"], 1), "written": r["written"]}
                results["memory"][n] = row
                print(f"{n:>9} {row['peak_rss_mb']:>11.1f} {row['client_cpu_s']:>12.2f} {row['requests_per_s']:>8.1f}")
        n = memory_counts[-1]
        r = _client(folder, "http://127.0.0.1:9/v1", c, _write_prompts(folder, n), "fake", fake=True)
        results["orchestration_cpu_ms_per_sample"] = round(1000 * r["cpu_s"] / r["written"], 3)
        print(f"\nour orchestration alone (a teacher that answers at once, {n:,} samples): "
              f"{results['orchestration_cpu_ms_per_sample']:.3f} ms CPU per sample; the rest of the client's "
              "CPU per request is the openai SDK and its HTTP transport")
        small, large = memory_counts[0], memory_counts[-1]
        growth = (results["memory"][large]["peak_rss_mb"] - results["memory"][small]["peak_rss_mb"]) * 1024 * 1024
        results["rss_bytes_per_prompt"] = round(growth / (large - small), 1)
        print(f"RSS growth {small:,} -> {large:,} prompts: {results['rss_bytes_per_prompt']:.0f} bytes per prompt")
    results["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    print(f"load average (1 min) before / after: {results['load_avg_1min']} / {results['load_avg_1min_after']}")
    return results


if __name__ == "__main__":
    main()

"""Teacher sampling side by side: distill's OpenAI-compatible client vs Bespoke Curator vs the ideal.

    .venv/bin/python bench/peers_sampling.py            # 10,000 requests at concurrency 64 and 256
    .venv/bin/python bench/peers_sampling.py --quick    # 2,000 requests (~1.5 minutes)
    .venv/bin/python bench/peers_sampling.py --requests 10000 --concurrency 256

One server (tests/fault_server.py, the one bench/sample_bench.py uses: no faults, a fixed latency
per request) on 127.0.0.1 answers both clients. The ideal is concurrency / latency requests/s.
The latency is 0.5 s, so that 256 in flight (512 requests/s) tests whether a client keeps its
requests in flight, not whether 2 shared cores can run it: our client needs ~1.1 ms of CPU per
request (~0.55 core at 512/s); at bench/sample_bench.py's 0.2 s, 1,280 requests/s would need 1.4
cores for the client alone, next to the server. A reasoning teacher takes seconds to minutes.
Each client run is a fresh process, so its CPU seconds (user + system, from the clock's start to
its end) and peak RSS are its own:
- ours: `distill.teachers.sample.run` (prompts file in, raw.jsonl out), started the way
  bench/sample_bench.py starts it;
- Curator: `curator.LLM(backend="openai", backend_params={"base_url": ..., "max_concurrent_requests": C})`
  on a list of the same prompts (rows in, an Arrow dataset out), with its request-per-minute and
  token-per-minute limits raised far above what the server can do, so only the concurrency bounds
  it, as for ours. Its progress display, telemetry, viewer and cache reuse are off and its cache is
  a temporary folder; a guard in its process refuses (and counts) any connection that is not to
  loopback, and the count is reported.

Curator pins `datasets<4` (distill needs `datasets>=4`) and a dozen other packages, so it cannot share
.venv: it lives in its own environment, .venv/peers/curator (override with --curator-python), made on
first use with pip from the `bench` extra in pyproject.toml. Without it (no registry, failed install)
Curator's figures are "not measured", with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sample_bench

REPO = Path(__file__).resolve().parents[1]
CURATOR_VENV = REPO / ".venv" / "peers" / "curator"
LOOPBACK = ("127.", "::1", "localhost")


# ---------------------------------------------------------------------------- Curator's process
# This part runs under Curator's own interpreter: standard library and Curator only, no distill.


def _guard_network(blocked: list[str]) -> None:
    """Refuse any connection or name lookup that leaves loopback, and record it."""
    import socket

    def allowed(host: object) -> bool:
        return host is None or str(host).startswith(LOOPBACK) or str(host) == ""

    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address[0]):
            blocked.append(f"connect {address[0]}:{address[1]}")
            raise ConnectionRefusedError(f"bench guard: {address[0]} is not loopback")
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address[0]):
            blocked.append(f"connect {address[0]}:{address[1]}")
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if not allowed(name):
            blocked.append(f"resolve {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"bench guard: {name} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo


def _curator_child(args: argparse.Namespace) -> None:
    """One Curator run in this fresh process; prints its figures as JSON on the last line."""
    blocked: list[str] = []
    _guard_network(blocked)
    import importlib.util
    import logging

    logging.basicConfig(level=logging.WARNING)
    # Curator counts tokens with tiktoken's cl100k_base, which tiktoken downloads unless cached;
    # litellm (a Curator dependency) ships that file, but points tiktoken at it only when it is used.
    litellm = importlib.util.find_spec("litellm")
    if litellm and litellm.submodule_search_locations:
        tokenizers = Path(litellm.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tokenizers))
    # Imports before the clock, as for ours: the figures are about sampling, not start-up.
    from bespokelabs import curator

    class Teacher(curator.LLM):
        def prompt(self, row: dict) -> str:  # one user message, as ours sends
            return row["problem"]

    rows = [{"problem": problem} for problem in _problems(args.requests)]
    ideal = args.concurrency / args.latency
    llm = Teacher(
        model_name="bench", backend="openai", generation_params={"max_tokens": 256},
        backend_params={
            "base_url": args.url, "api_key": "EMPTY", "request_timeout": 60,
            "max_concurrent_requests": args.concurrency,
            # Far above what the server can answer: only the concurrency limits Curator, as for ours.
            "max_requests_per_minute": int(100 * ideal * 60), "max_tokens_per_minute": 10**12,
        },
    )
    rss_ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    response = llm(rows, working_dir=args.out)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    dataset = response.dataset
    written = sum(1 for r in dataset["response"] if r)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"written": written, "failed": args.requests - written, "wall_s": wall, "cpu_s": cpu,
                      "peak_rss_mb": after.ru_maxrss / 1024, "rss_ready_mb": rss_ready, "blocked": blocked}))


def _problems(n: int) -> list[str]:
    """The prompts bench/sample_bench.py writes, so both clients send the same text."""
    return [f"Problem {i}: a train leaves at {i % 97} km/h; how far after {i % 13 + 1} hours? Give the distance in km."
            for i in range(n)]


# ---------------------------------------------------------------------------- the parent


def curator_python(explicit: str | None, install: bool) -> tuple[str | None, str]:
    """Curator's interpreter, made on first use; (None, reason) when it cannot be had."""
    python = Path(explicit) if explicit else CURATOR_VENV / "bin" / "python"
    # Found, not imported: importing Curator takes seconds and writes under ~/.cache.
    probe = [str(python), "-c", "import importlib.util, sys; sys.exit(not importlib.util.find_spec('bespokelabs.curator'))"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return str(python), ""
    if explicit:
        return None, f"--curator-python {explicit} cannot import bespokelabs.curator"
    if not install:
        return None, f"{CURATOR_VENV} has no Curator and --no-install was given"
    import tomllib

    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("optional-dependencies", {}).get("bench")
    if not spec:
        return None, "pyproject.toml has no `bench` extra naming bespokelabs-curator"
    print(f"installing {' '.join(spec)} into {CURATOR_VENV} (its own environment: it pins datasets<4), "
          "about 2 minutes, once", flush=True)
    steps = [[sys.executable, "-m", "venv", str(CURATOR_VENV)],
             [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *spec]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None, f"`{' '.join(step)}` failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return None, f"{python} cannot import bespokelabs.curator after installing {spec}"
    return str(python), ""


def _curator_env(tmp: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp),  # Curator writes an id file under ~/.cache/curator at import
        "CURATOR_CACHE_DIR": str(tmp / "curator-cache"),
        "CURATOR_DISABLE_CACHE": "1",  # a fresh run id every time: no answers reused from a previous repeat
        "CURATOR_DISABLE_RICH_DISPLAY": "1",  # measure the engine, not the terminal display
        "TELEMETRY_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else litellm fetches its price list at import
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "OPENAI_API_KEY": "EMPTY",
    }


def run_curator(python: str, folder: Path, url: str, concurrency: int, requests: int, latency: float, tag: str) -> dict:
    out = folder / f"curator-{tag}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CURATOR_", "OPENAI_", "BESPOKE_"))}
    env.pop("PYTHONPATH", None)
    env.update(_curator_env(folder))
    proc = subprocess.run([python, __file__, "--curator-child", "--url", url, "--concurrency", str(concurrency),
                           "--requests", str(requests), "--latency", str(latency), "--out", str(out)],
                          capture_output=True, text=True, cwd=folder, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"Curator run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(folder: Path, url: str, concurrency: int, requests: int, tag: str) -> dict:
    return sample_bench._client(folder, url, concurrency, sample_bench._write_prompts(folder, requests), tag)


def _row(r: dict, ideal: float) -> dict:
    rate = r["written"] / r["wall_s"]
    row = {"requests_per_s": round(rate, 1), "fraction_of_ideal": round(rate / ideal, 3),
           "client_cpu_s": round(r["cpu_s"], 2), "cpu_ms_per_request": round(1000 * r["cpu_s"] / max(1, r["written"]), 3),
           "peak_rss_mb": round(r["peak_rss_mb"], 1), "written": r["written"], "failed": r["failed"]}
    if "rss_ready_mb" in r:
        row["rss_before_run_mb"] = round(r["rss_ready_mb"], 1)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true", help="2,000 requests per run instead of 10,000")
    p.add_argument("--requests", type=int, default=None, help="requests per client run (default 10,000)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    p.add_argument("--latency", type=float, default=0.5, help="server latency per request, seconds")
    p.add_argument("--curator-python", help="an interpreter that has bespokelabs-curator (default: "
                   f"{CURATOR_VENV.relative_to(REPO)}, made on first use)")
    p.add_argument("--no-install", action="store_true", help="do not make Curator's environment if it is missing")
    p.add_argument("--curator-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.requests = args.requests or (2_000 if args.quick else 10_000)
    if args.curator_child:
        args.concurrency = args.concurrency[0]
        _curator_child(args)
        return {}

    python, reason = curator_python(args.curator_python, not args.no_install)
    figures: dict = {"latency_s": args.latency, "requests": args.requests, "curator": "measured" if python else reason}
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "fault_server.py"), "--latency", str(args.latency)],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # "READY http://127.0.0.1:PORT/v1"
        if not line.startswith("READY"):
            raise RuntimeError(f"fault server did not start: {line!r}")
        url = line.split()[1]
        with tempfile.TemporaryDirectory(prefix="peers-sampling-") as tmp:
            folder = Path(tmp)
            for c in args.concurrency:
                ideal = c / args.latency
                fig: dict = {"ideal_requests_per_s": ideal, "ours": _row(run_ours(folder, url, c, args.requests, f"c{c}"), ideal)}
                if python:
                    r = run_curator(python, folder, url, c, args.requests, args.latency, f"c{c}")
                    sample_bench.check_requests(f"Curator at concurrency {c}", r, args.requests)
                    fig["curator"] = _row(r, ideal)
                    figures["curator_non_loopback_attempts"] = figures.get("curator_non_loopback_attempts", 0) + len(r["blocked"])
                    if r["blocked"]:
                        figures["curator_non_loopback_examples"] = sorted(set(r["blocked"]))[:5]
                    fig["ours_vs_curator"] = round(fig["ours"]["requests_per_s"] / fig["curator"]["requests_per_s"], 3)
                    fig["cpu_ours_vs_curator"] = round(fig["ours"]["client_cpu_s"] / fig["curator"]["client_cpu_s"], 3)
                figures[f"c{c}"] = fig
                _print(c, fig)
    finally:
        server.kill()  # the server this script started, by PID
        server.wait()
    return figures


def _print(c: int, fig: dict) -> None:
    print(f"concurrency {c}: ideal {fig['ideal_requests_per_s']:.0f} req/s")
    for name in ("ours", "curator"):
        if name in fig:
            r = fig[name]
            print(f"  {name:<8} {r['requests_per_s']:>8.1f} req/s ({r['fraction_of_ideal']:.3f} of ideal)  "
                  f"CPU {r['client_cpu_s']:.2f} s ({r['cpu_ms_per_request']:.3f} ms/req)  peak RSS {r['peak_rss_mb']:.0f} MB"
                  f"  failed {r['failed']}")
    if "ours_vs_curator" in fig:
        print(f"  ours / Curator: {fig['ours_vs_curator']:.2f}x requests/s, {fig['cpu_ours_vs_curator']:.2f}x CPU", flush=True)


if __name__ == "__main__":
    main()

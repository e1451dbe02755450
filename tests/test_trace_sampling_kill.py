"""kill -9 `distill traces` at random moments, restart it, and count: exactly prompts x n unique ids.

The server (tests/fault_server.py, in this process) answers after 30 ms and injects a random
retryable fault into 10% of attempts, so kills land while requests are in flight, between
retries and while lines are being written.
"""

from __future__ import annotations

import pytest

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from fault_server import FaultServer
from teacher_fixtures import write_prompt_set, write_teacher

from distill.trace import read_traces

pytestmark = pytest.mark.slow  # every test here starts processes or trains end to end

PROMPTS, N = 50, 3
REPO = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _start(teacher: Path, prompt_set: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "distill.cli", "traces", "--teacher", str(teacher), "--prompts", str(prompt_set),
         "--out", str(out), f"n={N}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)


def test_sigkill_at_random_moments_never_loses_or_duplicates(tmp_path):
    rng = random.Random(1234)
    prompt_set = write_prompt_set(tmp_path, [f"Question number {i}?" for i in range(PROMPTS)])
    raw = tmp_path / "out" / "traces" / "t" / "set" / "raw.jsonl"
    total = PROMPTS * N
    kills_mid_run = 0
    with FaultServer(latency=0.03, fault_rate=0.1, seed=5) as server:
        teacher = write_teacher(tmp_path, server.urls, concurrency=4, backoff=0.01, max_backoff=0.05,
                                max_retries=20)
        # Kill 1: during start-up. Kills 2-5: once the file passes a random size, so each lands
        # mid-run, with requests in flight.
        targets = [None] + sorted(rng.sample(range(5, total - 10), 4))
        for target in targets:
            proc = _start(teacher, prompt_set, tmp_path / "out")
            if target is None:
                time.sleep(rng.uniform(0.05, 0.5))
            else:
                deadline = time.monotonic() + 20
                while _lines(raw) < target and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0, 0.05))
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert finished is False or proc.returncode == 0, proc.stderr.read().decode()[-2000:]
            proc.stderr.close()
            kills_mid_run += 0 < _lines(raw) < total
            ids = [json.loads(line)["id"] for line in raw.read_text().splitlines()] if raw.exists() else []
            assert len(ids) == len(set(ids)), "a restart duplicated a sample"
        # A kill can also tear the line being written: simulate one, as the kernel would leave it.
        with open(raw, "ab") as f:
            f.write(b'{"id": "torn-by-a-kill", "prompt_id": "set/q0", "reasoning": "half a li')
        proc = _start(teacher, prompt_set, tmp_path / "out")
        assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
        proc.stderr.close()

    assert kills_mid_run >= 3
    traces = list(read_traces(raw))  # every line parses as a Trace
    ids = [t.id for t in traces]
    assert len(ids) == len(set(ids)) == total
    assert {(t.prompt_id, t.sample_index) for t in traces} == {(f"set/q{i}", k) for i in range(PROMPTS) for k in range(N)}
    assert (raw.parent / "raw.jsonl.torn").read_bytes().startswith(b'{"id": "torn-by-a-kill"')
    assert server.stats()["faults"], "the fault server injected nothing: the test would not exercise retries"

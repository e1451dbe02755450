"""Stage 1 orchestration against our fault-injecting OpenAI-compatible server on 127.0.0.1.

Every test runs the real `distill.teachers.sample.run` with the real openai client; only the
server is ours (tests/fault_server.py), so each fault is injected exactly when we want it.
"""

from __future__ import annotations

import logging

import pytest
from fault_server import FaultServer
from teacher_fixtures import read_lines, write_prompt_set, write_teacher

from distill.config import ConfigError
from distill.teachers.resume import RunLock
from distill.teachers.sample import SamplingStopped, run
from distill.trace import read_traces


def ids_of(path):
    return [r["id"] for r in read_lines(path)]


def test_every_fault_ends_as_a_trace_or_a_failure(tmp_path):
    problems = {
        "ok": "Plain question.",
        "429": "Rate limited once. [fault:429*1]",
        "429ms": "Rate limited twice. [fault:429ms*2]",
        "500": "Server error twice. [fault:500*2]",
        "503": "Always unavailable. [fault:503]",
        "hang": "Hangs once past the timeout. [fault:hang*1]",
        "empty": "Empty content once. [fault:empty*1]",
        "null": "Null content once. [fault:null*1]",
        "emptybody": "Empty body once. [fault:emptybody*1]",
        "badjson": "Malformed JSON once. [fault:badjson*1]",
        "nochoices": "No choices once. [fault:nochoices*1]",
        "drop": "Connection dropped once. [fault:drop*1]",
        "alwaysempty": "Always empty. [fault:empty]",
        "400": "Bad request. [fault:400]",
        "reasoning": "DeepSeek style. [reply:reasoning]",
        "prefilled": "Template opened the thinking. [reply:prefilled]",
        "length": "Cut off. [reply:length]",
    }
    names = list(problems)
    prompt_set = write_prompt_set(tmp_path, list(problems.values()))
    with FaultServer(hang=3.0) as server:
        teacher = write_teacher(tmp_path, server.urls, timeout=0.5, max_retries=3)
        # With a seed, sample k is sent with seed + k: each sample has its own attempt count there.
        summary = run(teacher, prompt_set, tmp_path / "out", overrides=["n=2", "seed=1"])
        attempts = dict(server.attempts)
        # Every request went through the openai SDK (its User-Agent), whose own retries are off.
        assert list(server.user_agents) == ["AsyncOpenAI"]

    traces = {(t.prompt_id, t.sample_index): t for t in read_traces(tmp_path / "out" / "raw.jsonl")}
    failures = {(f["prompt_id"], f["sample_index"]): f for f in read_lines(tmp_path / "out" / "failures.jsonl")}
    # Every sample is accounted for exactly once.
    assert len(traces) + len(failures) == 2 * len(problems)
    assert not set(traces) & set(failures)
    assert summary["written"] == len(traces) and summary["failed"] == len(failures)

    def trace(name, k=0):
        return traces[(f"set/q{names.index(name)}", k)]

    def failure(name, k=0):
        return failures[(f"set/q{names.index(name)}", k)]

    for name, k_faults in [("429", 1), ("429ms", 2), ("500", 2), ("hang", 1), ("empty", 1), ("null", 1),
                           ("emptybody", 1), ("badjson", 1), ("nochoices", 1), ("drop", 1)]:
        for k in range(2):
            assert trace(name, k).meta["attempts"] == k_faults + 1, name
    # Permanent faults: retryable ones use the whole budget (1 + max_retries attempts, and the
    # server saw exactly that many: the openai client's own retries are off); a 400 is not retried.
    assert failure("503")["attempts"] == 4 and failure("503")["kind"] == "5xx"
    assert failure("alwaysempty")["attempts"] == 4 and failure("alwaysempty")["kind"] == "empty"
    assert failure("400")["attempts"] == 1 and "HTTP 400" in failure("400")["reason"]
    assert sum(len(v) for v in attempts.values()) == server.requests
    # Retry-After: 1 was honoured for both samples of that prompt, and nothing else waited that long.
    slow = [times for times in attempts.values() if len(times) == 2 and times[1] - times[0] >= 0.9]
    assert len(slow) == 2 and all(t[1] - t[0] >= 1.0 for t in slow)
    # Reasoning from reasoning_content, from <think>...</think>, and from a prefilled template.
    r = trace("reasoning")
    assert r.reasoning.startswith("The problem:") and r.answer.startswith("The answer is") and r.reasoning_tokens
    p = trace("prefilled")
    assert p.reasoning.startswith("The problem:") and "</think>" not in p.reasoning and p.answer.startswith("The answer")
    length = trace("length")
    assert length.finish_reason == "length" and length.answer == "" and length.reasoning.endswith("But wait")
    ok = trace("ok")
    assert ok.finish_reason == "stop" and ok.prompt_tokens and ok.completion_tokens
    assert ok.teacher["backend"] == "openai" and ok.reference == "0" and ok.task == "math"
    assert summary["retries"]["429"] == 2 * (1 + 2) and summary["retries"]["timeout"] == 2
    assert trace("ok").meta["attempts"] == trace("ok", 1).meta["attempts"] == 1


def test_resume_skips_done_samples_and_adds_new_ones(tmp_path):
    prompt_set = write_prompt_set(tmp_path, [f"Question {i}." for i in range(12)])
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls)
        run(teacher, prompt_set, tmp_path / "out", overrides=["n=2"])
        assert server.requests == 24
        again = run(teacher, prompt_set, tmp_path / "out", overrides=["n=2"])
        assert server.requests == 24 and again["already_done"] == 24 and again["written"] == 0
        more = run(teacher, prompt_set, tmp_path / "out", overrides=["n=3"])
        assert server.requests == 36 and more["written"] == 12
        # Endpoints and concurrency are not part of the ids: moving replicas resumes the same run.
        moved = run(teacher, prompt_set, tmp_path / "out", overrides=["n=3", "teacher.concurrency=2", "teacher.timeout=9"])
        assert moved["written"] == 0
    ids = ids_of(tmp_path / "out" / "raw.jsonl")
    assert len(ids) == len(set(ids)) == 36


def test_failures_are_retried_by_the_next_run(tmp_path):
    prompt_set = write_prompt_set(tmp_path, ["Fine.", "Fails three times. [fault:500*3]"])
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls, max_retries=1)
        first = run(teacher, prompt_set, tmp_path / "out")
        assert first["failed"] == 1 and first["failures_left"] == 1
        assert read_lines(tmp_path / "out" / "failures.jsonl")[0]["prompt_id"] == "set/q1"
        second = run(teacher, prompt_set, tmp_path / "out")  # attempt 3 fails, attempt 4 succeeds
    assert second["written"] == 1 and second["recovered_failures"] == 1 and second["failures_left"] == 0
    assert read_lines(tmp_path / "out" / "failures.jsonl") == []
    assert sorted(t.prompt_id for t in read_traces(tmp_path / "out" / "raw.jsonl")) == ["set/q0", "set/q1"]


def test_a_refused_key_stops_the_run_at_once(tmp_path):
    prompt_set = write_prompt_set(tmp_path, [f"Q{i} [fault:401]" for i in range(200)])
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls, concurrency=4)
        with pytest.raises(SamplingStopped, match="HTTP 401.*rerun the same command"):
            run(teacher, prompt_set, tmp_path / "out")
    assert server.requests <= 4 + 1  # the requests already in flight, not 200


def test_a_dead_server_stops_the_run_instead_of_filling_failures(tmp_path):
    prompt_set = write_prompt_set(tmp_path, [f"Q{i} [fault:503]" for i in range(100)])
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls, max_retries=0, max_consecutive_failures=10, concurrency=2)
        with pytest.raises(SamplingStopped, match="last 10 samples all failed"):
            run(teacher, prompt_set, tmp_path / "out")
    assert 10 <= len(read_lines(tmp_path / "out" / "failures.jsonl")) <= 12


def test_the_api_key_never_reaches_an_output(tmp_path, monkeypatch, capsys, caplog):
    key = "sk-planted-7f3a9c2e51d04b8f"
    monkeypatch.setenv("PLANTED_KEY", key)
    # echokey: a leaky server repeats the Authorization header in its error body.
    prompt_set = write_prompt_set(tmp_path, ["Fine.", "Leaky proxy. [fault:echokey]", "Once leaky. [fault:echokey*1]"])
    caplog.set_level(logging.DEBUG)
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls, api_key_env="PLANTED_KEY", max_retries=2)
        summary = run(teacher, prompt_set, tmp_path / "out", overrides=["n=2"])
    assert summary["failed"] == 2 and summary["written"] == 4
    out_files = sorted(p for p in (tmp_path / "out").iterdir() if p.is_file())
    assert {p.name for p in out_files} >= {"raw.jsonl", "failures.jsonl", "traces.log", "run.json", "summary.json"}
    for path in out_files:
        assert key not in path.read_text(errors="replace"), path.name
    captured = capsys.readouterr()
    assert key not in captured.out + captured.err + caplog.text
    # The key was really sent (the server echoed it) and was scrubbed, not merely absent.
    assert "Bearer ***" in (tmp_path / "out" / "failures.jsonl").read_text()
    assert '"api_key_env": "PLANTED_KEY"' in (tmp_path / "out" / "run.json").read_text()


def test_missing_key_fails_before_any_work_and_names_the_variable(tmp_path, monkeypatch, capsys):
    from distill.cli import main

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    prompt_set = write_prompt_set(tmp_path, ["Q."])
    with pytest.raises(ConfigError, match=r"DEEPSEEK_API_KEY.*not set.*make demo"):
        run("r1", prompt_set, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["traces", "--teacher", "r1", "--prompts", str(prompt_set), "--out", str(tmp_path / "cli")]) == 2
    assert "DEEPSEEK_API_KEY" in capsys.readouterr().err


def test_shards_partition_the_prompts(tmp_path):
    prompt_set = write_prompt_set(tmp_path, [f"Question {i}." for i in range(40)])
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls)
        for i in range(3):
            run(teacher, prompt_set, tmp_path / f"shard{i}", shard=f"{i}/3")
    shards = [{t.prompt_id for t in read_traces(tmp_path / f"shard{i}" / "raw.jsonl")} for i in range(3)]
    assert sum(map(len, shards)) == 40 and set.union(*shards) == {f"set/q{i}" for i in range(40)}
    assert all(len(s) >= 5 for s in shards)  # a hash split, not everything in one shard
    with pytest.raises(ConfigError, match="i must be in 0..N-1"):
        run(teacher, prompt_set, tmp_path / "bad", shard="3/3")


def test_limit_and_duplicate_prompts(tmp_path):
    # No id column: ids hash the problem text, so the repeated problem is one prompt.
    prompt_set = write_prompt_set(tmp_path, ["Same.", "Other.", "Same.", "Third.", "Fourth."], ids=False)
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls)
        summary = run(teacher, prompt_set, tmp_path / "out", overrides=["n=2"])
        assert summary["duplicate_prompts"] == 1 and summary["written"] == 8
        limited = run(teacher, prompt_set, tmp_path / "lim", overrides=["limit=2"])
        assert limited["prompts_seen"] == 2 and server.requests == 8 + 2
    ids = ids_of(tmp_path / "out" / "raw.jsonl")
    assert len(ids) == len(set(ids)) == 8


def test_requests_spread_over_endpoints_within_the_concurrency_bound(tmp_path):
    prompt_set = write_prompt_set(tmp_path, [f"Question {i}." for i in range(60)])
    with FaultServer(latency=0.05, ports=2) as server:
        teacher = write_teacher(tmp_path, server.urls, concurrency=6)
        run(teacher, prompt_set, tmp_path / "out")
    counts = sorted(server.by_port.values())
    assert sum(counts) == 60 and counts[0] >= 20  # least-busy choice keeps them close to even
    assert server.max_in_flight == 6


def test_one_writer_per_folder_and_no_silent_mixing_of_configs(tmp_path):
    prompt_set = write_prompt_set(tmp_path, ["Q1.", "Q2."])
    with FaultServer() as server:
        teacher = write_teacher(tmp_path, server.urls)
        (tmp_path / "out").mkdir()
        with RunLock(tmp_path / "out" / ".lock"), pytest.raises(ConfigError, match="another `distill traces`"):
            run(teacher, prompt_set, tmp_path / "out")
        run(teacher, prompt_set, tmp_path / "out")
        with pytest.raises(ConfigError, match=r"another teacher config \(sampling: .*0\.9"):
            run(teacher, prompt_set, tmp_path / "out", overrides=["temperature=0.9"])
        mixed = run(teacher, prompt_set, tmp_path / "out", overrides=["temperature=0.9", "allow_mixed=true"])
    assert mixed["written"] == 2 and mixed["traces_in_file"] == 4


def test_unknown_override_names_the_key(tmp_path):
    prompt_set = write_prompt_set(tmp_path, ["Q."])
    teacher = write_teacher(tmp_path, ["http://127.0.0.1:9/v1"])
    with pytest.raises(ConfigError, match="unknown key 'temprature'.*Did you mean 'temperature'"):
        run(teacher, prompt_set, tmp_path / "out", overrides=["temprature=0.5"])
    with pytest.raises(ConfigError, match="unknown key 'splt'.*Did you mean 'split'"):
        run(teacher, prompt_set, tmp_path / "out", overrides=["prompts.splt=test"])


def test_generate_for_eval_returns_n_per_prompt_and_marks_failures(tmp_path):
    from distill.teachers import SamplingParams, load_teacher

    with FaultServer() as server:
        teacher = load_teacher(write_teacher(tmp_path, server.urls, max_retries=1))
        chats = [[{"role": "user", "content": f"Q{i}{' [fault:503]' if i == 1 else ''}"}] for i in range(3)]
        out = teacher.generate(chats, SamplingParams(n=2, max_tokens=16, seed=7))
        again = teacher.generate(chats[:1], SamplingParams(n=1, max_tokens=16))  # a fresh event loop works
    assert [len(c) for c in out] == [2, 2, 2] and len(again) == 1
    assert all(c.finish_reason == "stop" for i in (0, 2) for c in out[i])
    assert [c.finish_reason for c in out[1]] == ["error", "error"] and "HTTP 503" in out[1][0].raw["error"]
    # seed + k per sample: the two samples of a prompt are different requests.
    assert out[0][0].raw["id"] != out[0][1].raw["id"]


def test_keyset_answers_like_a_set_across_merges(monkeypatch):
    import random

    from distill.teachers.resume import KeySet

    monkeypatch.setattr(KeySet, "_BUFFER", 64)  # many merges of the recent keys into the sorted array
    rng = random.Random(0)
    keys = [rng.getrandbits(64) for _ in range(2000)] + [0, 2**64 - 1]
    ks, ref = KeySet(), set()
    for i, k in enumerate(keys):
        assert (k in ks) == (k in ref)
        ks.add(k)
        ref.add(k)
        if i % 97 == 0:
            ks.add(k)  # adding again changes nothing
    probes = keys + [rng.getrandbits(64) for _ in range(2000)]
    assert [p in ks for p in probes] == [p in ref for p in probes]
    assert len(ks) == len(ref)

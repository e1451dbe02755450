"""Trace record and JSONL IO: validation errors name file/line/field; torn lines are set aside, counted, never read."""

import json
import signal
import subprocess
import sys

import pytest

from distill.trace import (
    JsonlWriter, ReadStats, Trace, TraceError, atomic_jsonl, read_traces, split_reasoning, trace_id, write_traces,
)


def test_roundtrip_and_completion(tmp_path, make_trace):
    t = make_trace(meta={"correct": True})
    write_traces(tmp_path / "a.jsonl", [t, make_trace(sample_index=1, id="x1")])
    back = list(read_traces(tmp_path / "a.jsonl"))
    assert back[0] == t and back[1].id == "x1"
    assert t.completion == "<think>\nWe add 2 and 3.\n2 + 3 = 5.\nSo the sum is 5.\n</think>\n\nThe sum is \\boxed{5}."


def test_trace_id_is_stable_and_distinct():
    assert trace_id("p1", 0, "k") == trace_id("p1", 0, "k")
    assert len({trace_id("p1", 0, "k"), trace_id("p1", 1, "k"), trace_id("p2", 0, "k"), trace_id("p1", 0, "k2")}) == 4


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>\nabc\n</think>\n\nAnswer 5", ("abc", "Answer 5", True)),
        ("abc\n</think>\n\nAnswer 5", ("abc", "Answer 5", True)),  # template prefilled <think>\n
        ("<think>\nstill thinking", ("still thinking", "", False)),  # truncated
    ],
)
def test_split_reasoning(text, expected):
    assert split_reasoning(text) == expected


def test_split_reasoning_custom_delimiters():
    text = "<|begin_of_thought|>\nhm\n<|end_of_thought|>\n\n<|begin_of_solution|>x<|end_of_solution|>"
    r, a, closed = split_reasoning(text, ("<|begin_of_thought|>", "<|end_of_thought|>"))
    assert (r, closed) == ("hm", True) and a.startswith("<|begin_of_solution|>")


def test_bad_lines_name_file_line_and_field(tmp_path, make_trace):
    path = tmp_path / "raw.jsonl"
    good = make_trace().to_json()
    bad_type = json.dumps({**make_trace().to_dict(), "sample_index": "zero"})
    path.write_text(good + "\n" + "{not json\n" + bad_type + "\n")
    with pytest.raises(TraceError, match=r"raw.jsonl:2: not valid JSON"):
        list(read_traces(path))
    path.write_text(good + "\n" + bad_type + "\n")
    with pytest.raises(TraceError, match=r"raw.jsonl:2: field 'sample_index' must be int"):
        list(read_traces(path))
    path.write_text(json.dumps({**make_trace().to_dict(), "answr": "x"}) + "\n")
    with pytest.raises(TraceError, match=r"raw.jsonl:1: unknown field\(s\) \['answr'\]"):
        list(read_traces(path))
    path.write_text(json.dumps({**make_trace().to_dict(), "prompt_id": ""}) + "\n")
    with pytest.raises(TraceError, match=r"field 'prompt_id' must be a non-empty string"):
        list(read_traces(path))


def test_bad_lines_can_go_to_rejects(tmp_path, make_trace):
    path = tmp_path / "raw.jsonl"
    path.write_text(make_trace().to_json() + "\n{oops\n" + json.dumps({"id": "a"}) + "\n" + make_trace(id="b").to_json() + "\n")
    stats = ReadStats()
    with JsonlWriter(tmp_path / "rejects.jsonl") as rejects:
        ids = [t.id for t in read_traces(path, rejects=rejects, stats=stats)]
    assert len(ids) == 2 and stats.bad == 2
    reasons = [json.loads(l)["reason"] for l in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert "raw.jsonl:2: not valid JSON" in reasons[0] and "raw.jsonl:3: field 'prompt_id'" in reasons[1]


WRITER = """
import os, sys, time
from distill.trace import JsonlWriter, Trace
w = JsonlWriter(sys.argv[1])
for i in range(3):
    w.write(Trace(id=f"t{i}", prompt_id=f"p{i}", reasoning="r" * 50, answer="a"))
# A long trace whose line is cut half-way, as a kill during the write would leave it.
line = Trace(id="t3", prompt_id="p3", reasoning="x" * 100_000).to_json().encode()
os.write(w.fd, line[: len(line) // 2])
print("half", flush=True)
time.sleep(60)
"""


def test_writer_killed_mid_line_is_detected_and_set_aside(tmp_path):
    path = tmp_path / "raw.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not path.read_bytes().endswith(b"\n")

    # A reader never parses the torn line, and counts it.
    stats = ReadStats()
    assert [t.id for t in read_traces(path, stats=stats)] == ["t0", "t1", "t2"]
    assert stats.torn == 1

    # The next writer sets it aside (kept in .torn, counted) and appends cleanly after the last good line.
    with JsonlWriter(path) as w:
        assert w.torn == 1
        w.write(Trace(id="t3", prompt_id="p3", reasoning="redone"))
    torn = (tmp_path / "raw.jsonl.torn").read_bytes()
    assert torn.startswith(b'{"id": "t3"') and len(torn) > 50_000
    stats = ReadStats()
    assert [t.id for t in read_traces(path, stats=stats)] == ["t0", "t1", "t2", "t3"]
    assert stats.torn == 0 and stats.bad == 0
    with JsonlWriter(path) as w:
        assert w.torn == 0


def test_atomic_jsonl_keeps_old_file_on_failure(tmp_path, make_trace):
    path = tmp_path / "clean.jsonl"
    write_traces(path, [make_trace()])
    before = path.read_text()
    with pytest.raises(RuntimeError):
        with atomic_jsonl(path) as w:
            w.write(make_trace(id="new"))
            raise RuntimeError("crash mid-write")
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clean.jsonl"]


def test_newer_schema_is_refused(make_trace):
    with pytest.raises(TraceError, match="newer than this distill"):
        Trace.from_dict({**make_trace().to_dict(), "schema": 99}, where="f.jsonl:1")

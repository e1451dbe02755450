"""`distill eval`: the side-by-side report end to end, resume, and the errors it promises.

The end-to-end test runs real tiny models through the hf backend. The resume tests swap the
backend for a scripted one (same `Teacher` protocol) whose answers are known, so the scores and
the exact set of regenerated samples can be checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from distill.config import ConfigError
from distill.eval import run as eval_run
from distill.teachers.base import Completion

PROBLEMS = [
    {"id": "a", "problem": "Compute 2 + 3.", "answer": "005"},  # zero-padded like AIME
    {"id": "b", "problem": "Compute 4 * 2.", "answer": 8.0},  # a float like AMC
    {"id": "c", "problem": "Compute 9 - 7.", "answer": "2"},
]
GOLD = {"Compute 2 + 3.": "5", "Compute 4 * 2.": "8", "Compute 9 - 7.": "2"}


@pytest.fixture
def setup(tmp_path):
    """A 3-problem local benchmark, a size preset whose base is a (never loaded) hub id, a student dir."""
    data = tmp_path / "bench3.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    bench = tmp_path / "bench3.yaml"
    bench.write_text(yaml.safe_dump({"path": str(data), "task": "math",
                                     "columns": {"problem": "problem", "answer": "answer", "id": "id"}}))
    size = tmp_path / "mysize.yaml"
    size.write_text(yaml.safe_dump({"base": "org/base-model"}))
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text("{}")
    teacher = tmp_path / "teach.yaml"
    teacher.write_text(yaml.safe_dump({"name": "teach", "backend": "hf", "model": "org/teacher-model"}))
    return {"bench": bench, "size": size, "student": student, "teacher": teacher, "out": tmp_path / "out" / "eval" / "mysize"}


class Scripted:
    """A backend with known answers. Per prompt, the j-th completion it ever makes is correct
    when j is even, so every problem ends with ceil(k/2) correct of k whatever the interruptions.
    `die_on_call` raises on that generate call, before producing anything (a kill mid-call)."""

    batching = "batches"
    prompt_note = None

    def __init__(self, name, log, die_on_call=None):
        self.name, self.log, self.die_on_call = name, log, die_on_call
        self.made: dict[str, int] = {}

    def generate(self, prompts, params):
        self.log.append({"model": self.name, "prompts": [m[-1]["content"].split("\n")[0] for m in prompts],
                         "n": params.n, "seed": params.seed, "temperature": params.temperature})
        if self.die_on_call is not None and len(self.log) == self.die_on_call:
            raise KeyboardInterrupt("killed")
        out = []
        for messages in prompts:
            problem = messages[-1]["content"].split("\n")[0]
            row = []
            for _ in range(params.n):
                j = self.made.get(problem, 0)
                self.made[problem] = j + 1
                answer = GOLD[problem] if j % 2 == 0 else "41"
                row.append(Completion(reasoning="thinking", answer=f"So \\boxed{{{answer}}}.", finish_reason="stop",
                                      completion_tokens=5))
            out.append(row)
        return out


def patch_backends(monkeypatch, log, die_on_call=None):
    made = {}

    def fake_load(tcfg):
        made[tcfg.model] = Scripted(tcfg.model, log, die_on_call)
        return made[tcfg.model]

    monkeypatch.setattr(eval_run, "_load_teacher", fake_load)
    return made


def run(setup, *overrides, teacher=True):
    return eval_run.run(size=str(setup["size"]), student=setup["student"],
                        teacher=str(setup["teacher"]) if teacher else None, out_dir=setup["out"],
                        overrides=[f"benchmarks=[{setup['bench']}]", "score_workers=0", *overrides])


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_resume_continues_without_redoing_finished_samples(setup, monkeypatch, capsys):
    calls: list[dict] = []
    patch_backends(monkeypatch, calls, die_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        run(setup, "k.bench3=4", "chunk=1", "report_k=[2]")
    student_file = setup["out"] / "student" / "bench3.jsonl"
    original_file = setup["out"] / "original" / "bench3.jsonl"
    first = lines(original_file)
    assert len(first) == 4 and {r["prompt_id"] for r in first} == {"bench3/a"}  # one chunk written, then killed
    assert not student_file.exists()
    # A kill can also tear the line being written: the next writer sets it aside, it is redone.
    with open(original_file, "a") as f:
        f.write('{"role": "original", "prompt_id": "bench3/b", "sampl')

    calls.clear()
    patch_backends(monkeypatch, calls)
    report = run(setup, "k.bench3=4", "chunk=1", "report_k=[2]")
    # Only what was missing was asked for: problems b and c of the original, everything else fresh.
    asked = [(c["model"], p, c["n"]) for c in calls for p in c["prompts"]]
    assert [a for a in asked if a[0] == "org/base-model"] == [
        ("org/base-model", "Compute 4 * 2.", 4), ("org/base-model", "Compute 9 - 7.", 4)]
    for path in (original_file, student_file, setup["out"].parent / "teachers" / "teach" / "bench3.jsonl"):
        recs = lines(path)
        keys = [(r["prompt_id"], r["sample_index"]) for r in recs]
        assert len(keys) == len(set(keys)) == 12, path
    assert (original_file.parent / "bench3.jsonl.torn").exists()

    row = report["benchmarks"]["bench3"]
    for role in ("original", "student", "teacher"):
        assert row[role]["pass@1"]["mean"] == pytest.approx(0.5)  # 2 of 4 correct on every problem
        assert row[role]["pass@2"]["mean"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
        assert row[role]["cons@4"]["mean"] == pytest.approx(1.0)  # 2-2 tie: the gold came first
        assert row[role]["samples"] == 12 and row[role]["truncation_rate"] == 0.0
    assert row["gain"]["mean"] == 0.0 and row["teacher_share"] == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "bench3" in out and "50.0 ± 0.0" in out

    # A third run with everything in place loads no model at all.
    calls.clear()
    monkeypatch.setattr(eval_run, "_load_teacher", lambda tcfg: pytest.fail(f"loaded {tcfg.model}"))
    again = run(setup, "k.bench3=4", "chunk=1", "report_k=[2]")
    assert again["benchmarks"] == report["benchmarks"]


def test_raising_k_tops_up_and_protocol_change_starts_over(setup, monkeypatch):
    calls: list[dict] = []
    patch_backends(monkeypatch, calls)
    run(setup, "k.bench3=2", "roles=[student]")
    first_seeds = {c["seed"] for c in calls}
    calls.clear()
    patch_backends(monkeypatch, calls)
    report = run(setup, "k.bench3=4", "roles=[student]")
    assert [c["n"] for c in calls] == [2]  # samples 2 and 3 of each problem only
    assert not first_seeds & {c["seed"] for c in calls}  # new draws, not a replay of samples 0-1
    assert report["benchmarks"]["bench3"]["student"]["samples"] == 12

    # Another max_tokens is another protocol: old samples stay in the file but are not mixed in.
    calls.clear()
    patch_backends(monkeypatch, calls)
    report = run(setup, "k.bench3=2", "roles=[student]", "max_tokens=100")
    assert [c["n"] for c in calls] == [2]
    assert report["benchmarks"]["bench3"]["student"]["samples"] == 6
    assert len(lines(setup["out"] / "student" / "bench3.jsonl")) == 18

    # Greedy: one sample per problem at temperature 0, whatever k says.
    calls.clear()
    patch_backends(monkeypatch, calls)
    report = run(setup, "k.bench3=4", "roles=[student]", "greedy=true")
    assert [(c["n"], c["temperature"]) for c in calls] == [(1, 0.0)]
    assert report["benchmarks"]["bench3"]["student"]["k"] == 1


def test_cached_teacher_is_reused_without_naming_it(setup, monkeypatch):
    calls: list[dict] = []
    patch_backends(monkeypatch, calls)
    # A student that came out of `make student` has a run.json beside final/: its card gets the results.
    (setup["student"].parent / "run.json").write_text(json.dumps({"size": "mysize"}))
    run(setup, "k.bench3=2")
    card = (setup["student"].parent / "card.md").read_text()
    assert "| bench3 | 2 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 |" in card
    monkeypatch.setattr(eval_run, "_load_teacher", lambda tcfg: pytest.fail(f"loaded {tcfg.model}"))
    report = run(setup, "k.bench3=2", teacher=False)
    assert report["models"]["teacher"]["cached"] is True
    assert report["benchmarks"]["bench3"]["teacher"]["pass@1"]["mean"] == pytest.approx(0.5)


def test_rescore_rechecks_stored_texts(setup, monkeypatch):
    patch_backends(monkeypatch, [])
    run(setup, "k.bench3=2", "roles=[student]")
    path = setup["out"] / "student" / "bench3.jsonl"
    # Pretend an older checker judged every sample wrong.
    path.write_text("".join(json.dumps({**r, "correct": False}) + "\n" for r in lines(path)))
    monkeypatch.setattr(eval_run, "_load_teacher", lambda tcfg: pytest.fail(f"loaded {tcfg.model}"))
    assert run(setup, "k.bench3=2", "roles=[student]")["benchmarks"]["bench3"]["student"]["pass@1"]["mean"] == 0.0
    again = run(setup, "k.bench3=2", "roles=[student]", "rescore=true")
    assert again["benchmarks"]["bench3"]["student"]["pass@1"]["mean"] == pytest.approx(0.5)


def test_changing_the_answer_fallback_rechecks_without_regenerating(setup, monkeypatch):
    patch_backends(monkeypatch, [])
    run(setup, "k.bench3=2", "roles=[student]")
    path = setup["out"] / "student" / "bench3.jsonl"
    gold = {p["id"]: GOLD[p["problem"]] for p in PROBLEMS}
    # Unboxed answers, too long to be a bare value: only the last-number reading finds them.
    path.write_text("".join(json.dumps({**r, "answer": f"Adding up all of it, the total comes to {gold[r['prompt_id'].split('/')[-1]]}"})
                            + "\n" for r in lines(path)))
    monkeypatch.setattr(eval_run, "_load_teacher", lambda tcfg: pytest.fail(f"loaded {tcfg.model}"))
    # The stored verdicts were made on the boxed texts: without rescore they stand.
    assert run(setup, "k.bench3=2", "roles=[student]")["benchmarks"]["bench3"]["student"]["pass@1"]["mean"] == pytest.approx(0.5)
    assert run(setup, "k.bench3=2", "roles=[student]", "rescore=true")["benchmarks"]["bench3"]["student"]["pass@1"]["mean"] == 0.0
    # A new fallback is noticed from the stored lines and re-checked, with nothing regenerated.
    report = run(setup, "k.bench3=2", "roles=[student]", "answer_fallback=last_number")
    assert report["benchmarks"]["bench3"]["student"]["pass@1"]["mean"] == 1.0
    assert report["protocol"]["answer_fallback"] == "last_number"
    with pytest.raises(ConfigError, match="answer_fallback"):
        run(setup, "roles=[student]", "answer_fallback=last_digit")


def test_columns_run_apart_merge_in_one_report(setup, monkeypatch):
    calls: list[dict] = []
    patch_backends(monkeypatch, calls)
    first = run(setup, "k.bench3=2", "roles=[original]")
    assert set(first["benchmarks"]["bench3"]) == {"original"}
    calls.clear()
    second = run(setup, "k.bench3=2", "roles=[student]")
    assert {c["model"] for c in calls} == {str(setup["student"])}  # the original was not run again
    row = second["benchmarks"]["bench3"]
    assert {"original", "student", "gain"} <= set(row) and "teacher" not in row


def test_errors_say_what_to_do(setup, monkeypatch, tmp_path):
    patch_backends(monkeypatch, [])
    with pytest.raises(ConfigError, match="train it first with `make student SIZE=mysize`"):
        eval_run.run(size=str(setup["size"]), student=tmp_path / "nope", teacher=None, out_dir=setup["out"],
                     overrides=[f"benchmarks=[{setup['bench']}]"])
    with pytest.raises(ConfigError, match="Did you mean 'math500'"):
        run(setup, "benchmarks=[math50]")
    with pytest.raises(ConfigError, match=r"data\.aime24=PATH"):  # the hub is unreachable in tests
        run(setup, "benchmarks=[aime24]")
    with pytest.raises(ConfigError, match="does not exist"):
        run(setup, "benchmarks=[aime24]", f"data.aime24={tmp_path / 'missing.jsonl'}")
    with pytest.raises(ConfigError, match="unknown role"):
        run(setup, "roles=[studnet]")
    with pytest.raises(ConfigError, match="Did you mean 'max_tokens'"):
        run(setup, "max_token=5")
    bad = tmp_path / "nobase.yaml"
    bad.write_text("template: chatml\n")
    with pytest.raises(ConfigError, match="key 'base'"):
        eval_run.run(size=str(bad), student=setup["student"], teacher=None, out_dir=setup["out"], overrides=[])
    # The preset is read as a StudentConfig (as `make student` reads it), so a misspelt section is caught.
    bad.write_text("base: m\nevla: {limit: 2}\n")
    with pytest.raises(ConfigError, match="unknown key 'evla' for StudentConfig. Did you mean 'eval'"):
        eval_run.run(size=str(bad), student=setup["student"], teacher=None, out_dir=setup["out"], overrides=[])


def test_compare_report_with_tiny_models_on_hf_backend(setup, tiny_qwen2, tiny_llama, capsys):
    """Original, student and teacher as real (random) tiny models through distill's hf backend."""
    setup["size"].write_text(yaml.safe_dump({"base": str(tiny_qwen2)}))
    setup["teacher"].write_text(yaml.safe_dump({"name": "teach", "backend": "hf", "model": str(tiny_qwen2),
                                                "prefill": "<think>\n"}))
    report = eval_run.run(size=str(setup["size"]), student=tiny_llama, teacher=str(setup["teacher"]),
                          out_dir=setup["out"], overrides=[f"benchmarks=[{setup['bench']}]", "k.bench3=2",
                                                           "max_tokens=6", "backend_options.device=cpu"])
    row = report["benchmarks"]["bench3"]
    for role in ("original", "student", "teacher"):
        assert row[role]["problems"] == 3 and row[role]["samples"] == 6 and row[role]["k"] == 2
        # 6 random tokens never close a thought or a box: all cut by max_tokens, no answer.
        assert row[role]["truncation_rate"] == 1.0 and row[role]["no_answer_rate"] == 1.0
    assert report["models"]["student"]["model"] == str(tiny_llama)
    assert report["protocol"]["temperature"] == 0.6 and report["protocol"]["top_p"] == 0.95

    out = setup["out"]
    recs = lines(out / "student" / "bench3.jsonl")
    assert len(recs) == 6 and all(r["completion_tokens"] == 6 and r["finish_reason"] == "length" for r in recs)
    assert {r["reference"] for r in recs} == {"5", "8", "2"}  # normalised by the loader
    md = (out / "report.md").read_text()
    assert "| benchmark | k | original | student | teacher | gain | % of teacher | gap closed |" in md
    assert "| bench3 | 2 | 0.0 ± 0.0 | 0.0 ± 0.0 | 0.0 ± 0.0 |" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "runs").glob("events.out.tfevents.*"))  # the figures in the local tracker too
    assert json.loads((out / "report.json").read_text())["benchmarks"] == json.loads(json.dumps(report["benchmarks"]))
    printed = capsys.readouterr().out
    assert "original" in printed and "student" in printed and "teacher" in printed

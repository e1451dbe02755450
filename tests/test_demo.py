"""The demo chain, scaled down: does distillation really help on the toy task?

`make demo` takes minutes; this runs the same `distill.toy.demo.run` (build teacher and original,
sample, filter with the R1 recipe, train the student with the tiny preset's trainer, evaluate) on
a smaller version of the task: two-step problems only, smaller models, fewer traces and steps.
Everything is built from scratch in a temporary cache, so the time below includes the builds.

The margin. Measured on the 2-core dev machine (`DISTILL_TEST_DEMO_SEED=<s> pytest -s
tests/test_demo.py`, 62-64 s each, ~40 s of it building the two models): on 140 held-out two-step
problems the original scores 11.4% and the teacher 93.6%; the student, over student seeds 42 / 1 / 2,
95.0% / 65.0% / 80.0% (+83.6 / +53.6 / +68.6 points). Seed-to-seed spread is ~15 points and the
binomial noise of 140 problems ~4, so the asserted 35 points is about twice the spread below the
mean. At 400 steps the same seeds gave +43.6 / +29.3 / +26.4: the student was still learning.
Before the toy task dropped its spaces (`7-5`, not `7 - 5`; distill/toy/task.py) these were
+33.6 / +50.7 / +41.4 at 400 steps, and before the original learned generic copying (`copy_rows`)
+48 / +19 / +2 at 700 steps: the student sometimes never left its loss plateau.
"""

from __future__ import annotations

import os

import pytest
import yaml

from distill.config import REPO_ROOT

TEACHER = ("toy://teacher?levels=2&hidden_size=64&num_layers=2&intermediate_size=256&train_problems=560"
           "&epochs=30&learning_rate=0.003&batch_size=32")
ORIGINAL = ("toy://student?levels=1,2&hidden_size=64&num_layers=2&intermediate_size=192&train_problems=600"
            "&epochs=10&learning_rate=0.003&batch_size=32&copy_rows=600")
STEPS = 600
SEED = int(os.environ.get("DISTILL_TEST_DEMO_SEED", "42"))  # to re-measure the spread


@pytest.mark.slow
def test_scaled_down_demo_student_beats_its_original(tmp_path, monkeypatch):
    from distill.toy.demo import run

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(yaml.safe_dump({
        "backend": "hf", "model": TEACHER, "device": "cpu", "batch_size": 256,
        "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 96, "n": 1},
    }))
    train, test = tmp_path / "toy2.yaml", tmp_path / "toy2-test.yaml"
    train.write_text(yaml.safe_dump({"name": "toy2", "task": "math",
                                     "toy": {"split": "train", "n": 560, "seed": 1, "levels": [2]}}))
    test.write_text(yaml.safe_dump({"name": "toy2-test", "task": "math",
                                    "toy": {"split": "test", "n": 140, "seed": 0, "levels": [2]}}))
    preset = yaml.safe_load((REPO_ROOT / "students" / "tiny.yaml").read_text())
    preset.update(base=ORIGINAL, learning_rate=3e-3, save_steps=1000, seed=SEED,
                  eval={"benchmarks": [str(test)], "max_tokens": 96, "teacher": str(teacher)})
    student = tmp_path / "student.yaml"
    student.write_text(yaml.safe_dump(preset))

    summary = run(tmp_path / "out", [f"teacher={teacher}", f"size={student}", f"train_set={train}",
                                      f"eval_set={test}", "prompts=560", "eval_problems=140",
                                      "unfiltered=false", f"student_steps={STEPS}"])
    acc = summary["held_out_pass@1"]
    print(acc, summary["seconds"])
    assert acc["student"] - acc["original"] >= 0.35, acc


def test_copy_rows_are_deterministic_and_teach_no_arithmetic():
    from distill.toy.task import copy_problems

    rows = list(copy_problems(200, seed=3))
    assert rows == list(copy_problems(200, seed=3)) and rows != list(copy_problems(200, seed=4))
    for row in rows:
        line = row["problem"].removeprefix("Write ").removesuffix(" three times.")
        assert row["text"] == f"{line}\n{line}\n{line}"
        assert "=" not in row["text"] and "boxed" not in row["text"]  # nothing evaluated, no answer format


@pytest.mark.slow
def test_two_students_train_at_once_and_a_failed_child_is_reported(tmp_path, tiny_llama):
    import torch
    from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

    from distill.students.card import read_record
    from distill.toy.demo import _train_both

    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(16))
    ov = tiny_overrides(tiny_llama, "max_steps=3", "per_device_batch_size=4", "global_batch_size=4",
                        "save_steps=100", "eval=null")
    first = {"size": "tiny", "data": data, "out_dir": tmp_path / "a", "overrides": ov}
    second = {"size": "tiny", "data": data, "out_dir": tmp_path / "b", "overrides": ov}
    threads = torch.get_num_threads()
    _train_both(first, second)
    assert torch.get_num_threads() == threads  # the eval after it gets every thread back
    half = max(1, threads // 2)
    for name, want in (("a", max(1, threads - half)), ("b", half)):
        assert (tmp_path / name / "final" / "model.safetensors").exists()
        assert read_record(tmp_path / name)["config"]["torch_threads"] == want
    assert "Tokenising traces" in (tmp_path / "b" / "train.log").read_text()  # the child's output went there

    broken = dict(second, data=tmp_path / "missing.jsonl", out_dir=tmp_path / "c")
    with pytest.raises(RuntimeError, match=r"unfiltered student failed \(exit code 1\); see .*c/train\.log"):
        _train_both(dict(first, out_dir=tmp_path / "d"), broken)
    assert "missing.jsonl" in (tmp_path / "c" / "train.log").read_text()


def test_toy_uri_query_sets_the_spec_and_caches_each_spec_apart(tmp_path, monkeypatch):
    from distill.toy import models

    built = []

    def fake_train(spec, out):  # the spec is what matters here, not minutes of training
        built.append(spec)
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "train_toy", fake_train)
    path = models.resolve_model("toy://teacher?epochs=3.5&levels=2,3&reasoning=false&hidden_size=64")
    spec = built[0]
    assert (spec.epochs, spec.levels, spec.reasoning, spec.hidden_size) == (3.5, (2, 3), False, 64)
    assert spec.num_layers == models.SPECS["teacher"].num_layers  # the rest from the default spec
    assert models.resolve_model("toy://teacher?epochs=3.5&levels=2,3&reasoning=false&hidden_size=64") == path
    models.resolve_model("toy://teacher?epochs=3")
    assert len(built) == 2 and built[1].epochs == 3 and isinstance(built[1].epochs, int)
    assert path.parent == tmp_path / "toy" and path.name.startswith("teacher-")
    with pytest.raises(ValueError, match="unknown toy spec key 'depth'; valid: hidden_size"):
        models.resolve_model("toy://teacher?depth=3")
    with pytest.raises(ValueError, match="Unknown toy model 'toy://critic'"):
        models.resolve_model("toy://critic")


def test_toy_scratchpad_rewrites_the_problem_line_by_line_to_its_answer():
    from distill.toy.task import reasoning_text, toy_problems

    items = list(toy_problems("train", 300, seed=5))
    assert {it["level"] for it in items} == {1, 2, 3, 4, 5}
    for it in items:
        expr = it["problem"].removeprefix("Compute ").removesuffix(".")
        lines = it["reasoning"].split("\n")
        assert lines[0] == expr and " " not in it["reasoning"]  # no spaces: each one would cost a token
        assert len(lines) == it["level"] + 1 and lines[-1] == "=" + it["answer"]
        for before, after in zip(lines, lines[1:]):
            assert after.startswith("=") and eval(after[1:]) == eval(before.lstrip("=")) == int(it["answer"])
            assert len(after) - 1 == len(before.lstrip("=")) - 2  # one operation evaluated, the rest copied
    assert reasoning_text([(7, "-", 5, 2), (2, "+", 3, 5)]) == "7-5+3\n=2+3\n=5"


def test_demo_passes_dotted_stage_keys_on_as_overrides():
    from distill.config import ConfigError, load_config
    from distill.toy.demo import DemoConfig, dotted

    cfg = load_config(DemoConfig, {}, ["student.learning_rate=1e-3", "student.eval.k.toy=2", "rl=true",
                                       "rl_block.max_steps=60", "student.lora_target_modules=[q_proj,v_proj]"])
    assert dotted(cfg.student) == ["learning_rate=1e-3", "eval.k.toy=2", "lora_target_modules=[q_proj,v_proj]"]
    assert cfg.rl and dotted(cfg.rl_block) == ["max_steps=60"]
    with pytest.raises(ConfigError, match="unknown key 'studnet'.*Did you mean 'student'"):
        load_config(DemoConfig, {}, ["studnet.learning_rate=1e-3"])


def test_toy_steps_keeps_right_scratchpads_and_names_the_first_wrong_line(make_trace):
    import random

    from distill.toy.steps import ToySteps, wrong_step
    from distill.toy.task import INSTRUCTION, toy_problems

    items = list(toy_problems("train", 300, seed=5))
    rng = random.Random(0)
    for it in items:
        prompt = f"{it['problem']}\n\n{INSTRUCTION}"
        assert wrong_step(prompt, it["reasoning"]) is None, it
        lines = it["reasoning"].split("\n")
        if len(lines) < 3:
            continue
        # One wrong value in the middle of the chain, whatever the final line says, is caught at its line.
        n = rng.randrange(1, len(lines) - 1)
        value, rest = lines[n][1], lines[n][2:]
        lines[n] = f"={(int(value) + 1) % 10}{rest}"
        reason = wrong_step(prompt, "\n".join(lines))
        assert reason is not None and reason.startswith(f"wrong step: line {n + 1} "), (it, reason)
    prompt = f"Compute 7-3+5-2-5+1.\n\n{INSTRUCTION}"
    lucky = "7-3+5-2-5+1\n=3+5-2-5+1\n=7-2-5+1\n=5-5+1\n=1+1\n=3"  # a real teacher sample: answer right, steps not
    assert wrong_step(prompt, lucky) == "wrong step: line 2 '=3+5-2-5+1' should be '=4+5-2-5+1' (7-3 is 4)"
    assert wrong_step(prompt, "7-3+5-2-5+1\n=4+5-2-5+1") == "unfinished: the last line '=4+5-2-5+1' still has an operation"
    assert wrong_step(prompt, "7-3+5+2-5+1\n=4+5+2-5+1").startswith("wrong step: line 1 '7-3+5+2-5+1' is not the problem")
    assert wrong_step("What is 2+3?", "2+3\n=5") == "not a toy problem: the prompt has no 'Compute <expression>.'"

    f = ToySteps()
    right = make_trace(messages=[{"role": "user", "content": prompt}], reasoning=lucky.replace(
        "=3+5-2-5+1\n=7-2-5+1\n=5-5+1\n=1+1", "=4+5-2-5+1\n=9-2-5+1\n=7-5+1\n=2+1"), answer="\\boxed{3}", reference="3")
    wrong = make_trace(messages=[{"role": "user", "content": prompt}], reasoning=lucky, answer="\\boxed{3}", reference="3")
    assert f.check(right) is None and f.check(wrong).startswith("wrong step: line 2")



def test_toy_steps_is_switched_on_from_the_command_line_and_sends_lucky_chains_to_rejects(tmp_path, make_trace):
    import json

    from distill.config import load_config
    from distill.filters.run import load_filter_config
    from distill.filters.run import run as run_filter
    from distill.toy.demo import DemoConfig, dotted
    from distill.toy.task import INSTRUCTION

    cfg = load_config(DemoConfig, {}, ["prompts=12000", "filter.toy_steps=true"])
    assert dotted(cfg.filter) == ["toy_steps=true"]
    names = [n for n, _ in load_filter_config("tiny", None, dotted(cfg.filter)).recipe]
    assert "toy_steps" not in [n for n, _ in load_filter_config("tiny", None, []).recipe]  # opt-in
    assert names.index("toy_steps") > names.index("math_correct")

    messages = [{"role": "user", "content": f"Compute 7-3+5-2-5+1.\n\n{INSTRUCTION}"}]
    right = make_trace(prompt_id="right", messages=messages, reference="3", answer="The answer is \\boxed{3}.",
                       reasoning="7-3+5-2-5+1\n=4+5-2-5+1\n=9-2-5+1\n=7-5+1\n=2+1\n=3")
    lucky = make_trace(prompt_id="lucky", messages=messages, reference="3", answer="The answer is \\boxed{3}.",
                       reasoning="7-3+5-2-5+1\n=3+5-2-5+1\n=7-2-5+1\n=5-5+1\n=1+1\n=3")
    raw = tmp_path / "raw.jsonl"
    raw.write_text(right.to_json() + "\n" + lucky.to_json() + "\n")
    run_filter(raw, tmp_path, teacher="tiny", overrides=["toy_steps=true", "decontaminate=false", "workers=0"])
    assert [json.loads(line)["prompt_id"] for line in (tmp_path / "clean.jsonl").open()] == ["right"]
    rejected = [json.loads(line) for line in (tmp_path / "rejects.jsonl").open()]
    assert len(rejected) == 1 and "line 2 '=3+5-2-5+1' should be '=4+5-2-5+1'" in json.dumps(rejected[0])


def test_demo_help_lists_the_demo_keys_from_its_config(capsys):
    from distill.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for key in ("prompts=3000", "student_steps=1000", "rl=false", "student.<key>=", "filter.<key>=", "rl_block.<key>="):
        assert key in text, key

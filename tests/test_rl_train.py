"""Stage 5 end to end on tiny CPU models: GRPO moves the weights, saves, records, resumes and refuses.

The student is the conftest's tiny Qwen2 after 24 SFT steps on one-line sums (a random model
would write no reasoning block and never stop, so every completion in a group would get the same
reward: zero advantage, zero gradient, and the weight check below would be vacuous). The RL
recipe is a preset YAML written per test, with a handful of steps on one torch thread.
"""

from __future__ import annotations

import json
import types

import pytest
from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

from distill.config import ConfigError
from distill.rl.train import prepare_run_dir, run, train

RL = {"num_generations": 4, "per_device_batch_size": 8, "gradient_accumulation_steps": 1, "max_completion_length": 48,
      "overlong_cache": 16, "temperature": 1.0, "learning_rate": 5.0e-3, "warmup_ratio": 0.0,
      "lr_scheduler": "constant", "beta": 0.04, "max_steps": 3, "save_steps": 1, "logging_steps": 1,
      "torch_threads": 1, "bf16": False, "gradient_checkpointing": False}


def write_preset(folder, **changes):
    import yaml

    path = folder / "rl-test.yaml"
    path.write_text(yaml.safe_dump({"base": "toy://student", "rl": {**RL, **changes}}))
    return path


def write_prompts(folder, rows, task="math"):
    import yaml

    data = folder / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "sums.yaml"
    path.write_text(yaml.safe_dump({"name": "sums", "path": str(data), "task": task, "instruction": ""}))
    return path


def sum_rows(n, seed=1):
    return [{"problem": t.messages[0]["content"], "answer": t.reference} for t in arithmetic_traces(n, seed=seed)]


def _state(path):
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


@pytest.fixture(scope="module")
def student(tiny_qwen2, tmp_path_factory):
    """The tiny Qwen2 after 24 SFT steps: writes <think>...</think> and a boxed sum, often wrong."""
    import torch

    from distill.students.train import run as run_student

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rl-student")
    data = write_clean(root / "clean.jsonl", arithmetic_traces(48))
    return run_student("tiny", data, root / "students" / "tiny",
                       overrides=tiny_overrides(tiny_qwen2, "max_steps=24", "save_steps=50", "learning_rate=1e-2"))


@pytest.fixture(scope="module")
def trained(student, tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-run")
    preset, prompts = write_preset(root), write_prompts(root, sum_rows(16))
    out = root / "rl" / "tiny"
    final = run(str(preset), student, out, prompts=str(prompts))
    return types.SimpleNamespace(root=root, preset=preset, prompts=prompts, out=out, final=final, student=student)


def test_grpo_steps_change_the_weights_and_log_the_rewards(trained):
    before, after = _state(trained.student), _state(trained.final)
    assert before.keys() == after.keys()
    changed = [k for k in before if not before[k].equal(after[k])]
    assert len(changed) > len(before) // 2, f"only {changed} changed"

    results = json.loads((trained.out / "run.json").read_text())["results"]
    assert results["optimizer_steps"] == 3
    # The rewards were computed, and varied within groups (else there was no gradient to follow).
    assert -2.0 <= results["reward_first"] <= 1.0 and "correct_first" in results and "format_first" in results
    history = json.loads((trained.out / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    logs = [h for h in history["log_history"] if "reward" in h]
    assert len(logs) == 3 and any(h["reward_std"] > 0 for h in logs)
    assert list((trained.out / "checkpoints" / "runs").rglob("events.out.tfevents.*"))  # the local run log


def test_final_model_keeps_the_students_tokenizer_and_stop(trained):
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(trained.final)
    assert tok.eos_token == "<|im_end|>"
    assert tok.chat_template == AutoTokenizer.from_pretrained(trained.student).chat_template   # the serving template
    assert (trained.final / "chat_template_train.jinja").exists()
    assert GenerationConfig.from_pretrained(trained.final).eos_token_id in (tok.eos_token_id, [tok.eos_token_id])
    assert json.loads((trained.final / "config.json").read_text())["use_cache"] is True


def test_card_records_rewards_beta_steps_generations(trained):
    card = (trained.out / "card.md").read_text()
    assert "| correct | 1 |" in card and "| format | 1 |" in card and "DAPO" in card
    assert "KL beta (against the SFT student): 0.04" in card
    assert "generations per prompt: 4; completions per optimizer step: 8 (2 prompts)" in card
    assert "optimizer steps: 3" in card
    assert "Not evaluated yet: run `make eval SIZE=rl-test`" in card
    assert (trained.final / "README.md").read_text() == card


def test_finished_run_is_kept_and_another_recipe_is_refused(trained):
    mtime = (trained.final / "model.safetensors").stat().st_mtime_ns
    run(str(trained.preset), trained.student, trained.out, prompts=str(trained.prompts), overrides=["save_steps=7"])
    assert (trained.final / "model.safetensors").stat().st_mtime_ns == mtime   # run control: nothing retrained
    with pytest.raises(ConfigError, match=r"holds checkpoints of another RL run \(beta: 0.04 -> 0.0\)"):
        run(str(trained.preset), trained.student, trained.out, prompts=str(trained.prompts), overrides=["beta=0.0"])
    other = write_prompts(trained.root / "other", sum_rows(16, seed=5)) if (trained.root / "other").mkdir() is None \
        else None
    with pytest.raises(ConfigError, match=r"another RL run \(prompts \("):
        run(str(trained.preset), trained.student, trained.out, prompts=str(other))


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(student, tmp_path):
    """A crash after step 2 (checkpoint-2 on disk, as a kill -9 leaves it) and a rerun: the run ends at
    step 4 from checkpoint-2, with the weights of an uninterrupted run."""
    import torch
    from transformers import TrainerCallback

    from distill.rl.config import load_rl_config
    from distill.rl.train import load_rl_prompts, prompts_sha256, student_fingerprint

    torch.set_num_threads(1)
    preset, prompts = write_preset(tmp_path, max_steps=4, save_steps=2), write_prompts(tmp_path, sum_rows(16))
    run(str(preset), student, tmp_path / "whole", prompts=str(prompts))

    class Crash(Exception):
        pass

    class KillAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Crash

    cfg, _ = load_rl_config(str(preset))
    rows = load_rl_prompts(str(prompts), cfg)
    killed = tmp_path / "killed"
    prepare_run_dir(cfg, killed, {"student": student_fingerprint(student), "prompts": prompts_sha256(rows)})
    with pytest.raises(Crash):
        train(cfg, student, rows, killed, callbacks=[KillAt()])
    assert sorted(p.name for p in (killed / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2"]
    assert not (killed / "final").exists()

    run(str(preset), student, killed, prompts=str(prompts))
    resumed = json.loads((killed / "run.json").read_text())["results"]
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["optimizer_steps"] == 4
    a, b = _state(tmp_path / "whole" / "final"), _state(killed / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


# ---------------------------------------------------------------------------------------------
# Errors before any step runs (each one fast: no model is loaded)


def test_missing_student_names_make_student(tmp_path):
    with pytest.raises(ConfigError, match=r"no SFT student at .*: train it first with `make student SIZE=rl-test"):
        run(str(write_preset(tmp_path)), tmp_path / "nope", tmp_path / "rl", prompts=str(write_prompts(tmp_path, [])))


def test_prompts_without_references_are_refused(student, tmp_path):
    rows = [{"problem": "What is 1 + 1?", "answer": "2"}, {"problem": "What is 2 + 2?", "answer": ""}]
    with pytest.raises(ConfigError, match=r"1 of 2 prompts cannot be rewarded .*sums/.*: no reference answer.*"
                                          r"columns.answer"):
        run(str(write_preset(tmp_path)), student, tmp_path / "rl", prompts=str(write_prompts(tmp_path, rows)))
    assert not (tmp_path / "rl").exists()


def test_answers_the_reward_cannot_score_are_refused(student, tmp_path):
    rows = [{"problem": "What is f(2) + 3?", "answer": "\\operatorname{f}(2) + 3"}]   # math-verify reads just 3
    with pytest.raises(ConfigError, match=r"cannot be rewarded .*gold_unparsable.*skip_references"):
        run(str(write_preset(tmp_path)), student, tmp_path / "rl", prompts=str(write_prompts(tmp_path, rows)))


def test_a_preset_without_rl_block_or_prompts_is_refused(student, tmp_path):
    (tmp_path / "plain.yaml").write_text("base: toy://student\n")
    with pytest.raises(ConfigError, match=r"has no `rl:` block"):
        run(str(tmp_path / "plain.yaml"), student, tmp_path / "rl", prompts="toy")
    with pytest.raises(ConfigError, match=r"needs PROMPTS"):
        run(str(write_preset(tmp_path)), student, tmp_path / "rl")
    with pytest.raises(ConfigError, match=r"per_device_batch_size 6 x gradient_accumulation_steps 1 must be a multiple of num_generations 4"):
        run(str(write_preset(tmp_path)), student, tmp_path / "rl", prompts="toy", overrides=["per_device_batch_size=6"])


def test_eval_adds_the_rl_column_and_the_rl_card_gets_the_table(trained):
    from distill.eval.report import rows
    from distill.eval.run import run as run_eval

    out = trained.root / "eval" / "rl-test"
    report = run_eval(size=str(trained.preset), student=trained.student, teacher=None, out_dir=out, rl=trained.final,
                      overrides=[f"benchmarks=[{trained.prompts}]", "limit=4", "default_k=1", "max_tokens=48",
                                 "roles=[student,rl]"])
    header, row = rows(report)
    assert header[:4] == ["benchmark", "k", "original", "student"] and header[4] == "rl"
    assert row[4] != "-" and report["benchmarks"]["sums"]["rl"]["problems"] == 4
    assert (out / "rl" / "sums.jsonl").exists()
    card = (trained.out / "card.md").read_text()
    assert f"From `{out / 'report.json'}`" in card and "| rl |" in card
    # Without an RL model the table keeps its three columns.
    plain = run_eval(size=str(trained.preset), student=trained.student, teacher=None, out_dir=trained.root / "e2",
                     overrides=[f"benchmarks=[{trained.prompts}]", "limit=4", "default_k=1", "max_tokens=48",
                                "roles=[student]"])
    assert "rl" not in rows(plain)[0]


def test_demo_reports_the_rl_column_and_its_target():
    from distill.toy.demo import render, summarize

    def report(rl):
        roles = {"original": 0.245, "student": 0.71, "teacher": 0.525, **({"rl": rl} if rl is not None else {})}
        return {"benchmarks": {"toy-test": {r: {"pass@1": {"mean": v}} for r, v in roles.items()}}}

    target = "RL student >= SFT student + 5 points"
    summary = summarize(report(0.76), None, None, {}, 1.0)
    assert summary["held_out_pass@1"]["student_rl"] == 0.76 and summary["targets"][target] is True
    assert "| 24.5% | 71.0% | - | 76.0% | 52.5% |" in render(summary) and f"| {target} | yes |" in render(summary)
    assert summarize(report(0.755), None, None, {}, 1.0)["targets"][target] is False
    off = summarize(report(None), None, None, {}, 1.0)
    assert off["held_out_pass@1"]["student_rl"] is None and f"| {target} | - |" in render(off)

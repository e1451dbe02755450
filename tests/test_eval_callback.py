"""EvalCallback in a real transformers Trainer: scores logged at the right steps, beside the loss,
through Trainer.log (so report_to integrations see them), with the model left in training mode."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

from distill.config import ConfigError
from distill.eval.callback import EvalCallback


@pytest.fixture
def bench(tmp_path):
    data = tmp_path / "bench3.jsonl"
    rows = [{"id": "a", "problem": "Compute 2 + 3.", "answer": "5"}, {"id": "b", "problem": "Compute 4 * 2.", "answer": "8"},
            {"id": "c", "problem": "Compute 9 - 7.", "answer": "2"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "bench3.yaml"
    path.write_text(yaml.safe_dump({"path": str(data), "columns": {"problem": "problem", "answer": "answer", "id": "id"}}))
    return path


class Recorder(TrainerCallback):
    """Stands in for a report_to integration: those are callbacks that receive `on_log`."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs or {})))


class ModeSpy(TrainerCallback):
    """Runs right after EvalCallback at each step end: is the model back in training mode?"""

    def __init__(self):
        self.modes = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.modes.append(model.training)


def train(tmp_path, model_path, callback, steps=4, save_steps=500):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_path, padding_side="right")  # a training tokenizer pads right
    model = AutoModelForCausalLM.from_pretrained(model_path)
    ids = tok("Compute 2 + 3. The answer is \\boxed{5}.")["input_ids"]
    dataset = [{"input_ids": ids, "labels": ids}] * 8
    recorder, spy = Recorder(), ModeSpy()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=steps, per_device_train_batch_size=2,
                             logging_steps=1, save_steps=save_steps, report_to="none", use_cpu=True,
                             disable_tqdm=True, learning_rate=1e-3)
    # The recorder comes first, so it can only see the scores if they go through Trainer.log.
    trainer = Trainer(model=model, args=args, train_dataset=dataset, callbacks=[recorder, callback(tok), spy])
    trainer.train()
    return trainer, recorder, spy


def test_scores_logged_every_n_steps_beside_the_loss(tmp_path, tiny_qwen2, bench):
    trainer, recorder, spy = train(tmp_path, tiny_qwen2, lambda tok: EvalCallback(
        tok, benchmarks=[str(bench)], limit=2, k=2, max_tokens=4, every_steps=2, score_workers=0, at_train_end=False))
    history = trainer.state.log_history
    evals = [h for h in history if "eval_bench3_pass@1" in h]
    assert [h["step"] for h in evals] == [2, 4]
    loss_steps = {h["step"] for h in history if "loss" in h}
    assert {2, 4} <= loss_steps  # the loss is logged at the evaluated steps too
    for h in evals:
        assert h["eval_bench3_pass@1"] == 0.0 and h["eval_bench3_truncated"] == 1.0  # 4 random tokens: cut
        assert "eval_bench3_pass@2" in h and "eval_bench3_pass@1_stderr" in h
    assert [s for s, logs in recorder.logs if "eval_bench3_pass@1" in logs] == [2, 4]
    assert spy.modes == [True] * 4  # the eval switched to eval mode and back
    samples = [json.loads(x) for x in (tmp_path / "run" / "eval_samples" / "step-2.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {s["prompt_id"] for s in samples} == {"bench3/a", "bench3/b"}
    assert all(s["completion_tokens"] == 4 and s["finish_reason"] == "length" for s in samples)


def test_default_schedule_is_checkpoints_plus_the_end(tmp_path, tiny_qwen2, bench):
    trainer, _, _ = train(tmp_path, tiny_qwen2, lambda tok: EvalCallback(
        tok, benchmarks=[str(bench)], limit=1, max_tokens=2, greedy=True, score_workers=0), steps=3, save_steps=2)
    evals = [h for h in trainer.state.log_history if "eval_bench3_pass@1" in h]
    assert [h["step"] for h in evals] == [2, 3]  # checkpoint at 2, then after the last step
    assert "eval_bench3_pass@2" not in evals[0]


def test_bad_callback_config_fails_before_training(tiny_qwen2, bench):
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    with pytest.raises(ConfigError, match="Did you mean 'every_steps'"):
        EvalCallback(tok, benchmarks=[str(bench)], every_step=10)
    with pytest.raises(ValueError, match="every_steps=0"):
        EvalCallback(tok, benchmarks=[str(bench)], every_steps=0)

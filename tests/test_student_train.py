"""The student trainer end to end on tiny CPU models: learning, saving, resuming, LoRA, 2-process DDP.

Every run is students/tiny.yaml with the fixture model as base and a handful of steps, one
torch thread (deterministic on CPU, and the machine is shared).
"""

from __future__ import annotations

import json
import sys
import types

import pytest
from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

from distill.config import ConfigError
from distill.students.train import prepare_run_dir, run, train

STEPS = 24


def _state(path):
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def assistant_nll(model_dir, rows) -> float:
    """Mean NLL per assistant token (the loss the trainer minimises), computed by hand from the logits."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask in rows:
            logits = model(torch.tensor([ids])).logits[0, :-1]
            logp = torch.log_softmax(logits.float(), -1)
            target = torch.tensor(ids[1:])
            keep = torch.tensor(mask[1:]) == 1
            total += -logp[keep].gather(1, target[keep, None]).sum().item()
            count += int(keep.sum())
    return total / count


@pytest.fixture(scope="module")
def trained(tiny_qwen2, tmp_path_factory):
    """One finished tiny run under <root>/students/tiny, shared by the tests that only read its outputs."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("student-run")
    data = write_clean(root / "traces" / "clean.jsonl", arithmetic_traces(48))
    (data.parent / "filter_report.json").write_text(json.dumps({"kept": 48, "dropped": {"finished": 2}}))
    out = root / "students" / "tiny"
    final = run("tiny", data, out, overrides=tiny_overrides(tiny_qwen2, f"max_steps={STEPS}", "save_steps=10",
                                                            "learning_rate=1e-2"))
    return types.SimpleNamespace(root=root, data=data, out=out, final=final, base=tiny_qwen2)


def test_training_lowers_the_loss_and_changes_the_weights(trained):
    from transformers import AutoTokenizer

    from distill.students.data import tokenize_messages, trace_messages
    from distill.students.templates import FORMATS, prepare_tokenizer

    tok = AutoTokenizer.from_pretrained(trained.base)
    prepare_tokenizer(tok, FORMATS["chatml"])
    rows = [tuple(tokenize_messages(tok, trace_messages(t)).values()) for t in arithmetic_traces(48)]
    before, after = assistant_nll(trained.base, rows), assistant_nll(trained.final, rows)
    assert after < before - 0.5, (before, after)  # lr 1e-2 for 24 steps: far more than noise

    old, new = _state(trained.base), _state(trained.final)
    changed = [k for k in old if not (old[k] == new[k]).all()]
    assert len(changed) == len(old), f"unchanged: {set(old) - set(changed)}"

    record = json.loads((trained.out / "run.json").read_text())
    assert record["results"]["optimizer_steps"] == STEPS
    assert record["results"]["final_loss"] < record["results"]["first_loss"]


def test_final_model_carries_the_serving_template_and_stops_on_end_of_turn(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from distill.students.templates import FORMATS

    tok = AutoTokenizer.from_pretrained(trained.final)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.chat_template == FORMATS["chatml"].serve
    assert (trained.final / "chat_template_train.jinja").read_text() == FORMATS["chatml"].train
    gen = GenerationConfig.from_pretrained(trained.final)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert tok.convert_tokens_to_ids("<|im_end|>") in eos
    config = json.loads((trained.final / "config.json").read_text())
    assert config["use_cache"] is True and config["eos_token_id"] == tok.eos_token_id
    # What serving stacks read (students/serving.py): legacy RoPE keys and one-token <think>.
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] and "rope_scaling" in config
    assert [len(tok.encode(t, add_special_tokens=False)) for t in ("<think>", "</think>")] == [1, 1]

    # Served with its own template, it has learned to open its turn with <think>.
    import torch

    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    think = tok.convert_tokens_to_ids("<think>")
    probs = {}
    for name, path in (("base", trained.base), ("student", trained.final)):
        with torch.no_grad():
            logits = AutoModelForCausalLM.from_pretrained(path)(**prompt).logits[0, -1]
        probs[name] = torch.softmax(logits, -1)[think].item()
    assert probs["student"] > 20 * probs["base"], probs  # ~50x after 24 steps; a random model gives ~1/len(vocab)


def test_card_records_teacher_filters_data_hash_and_hyperparameters(trained):
    import hashlib

    card = (trained.out / "card.md").read_text()
    assert "`tiny-teacher`: 48 traces" in card
    assert hashlib.sha256(trained.data.read_bytes()).hexdigest() in card
    assert "traces read: 48; trained on: 48; dropped as longer than max_length 512 tokens: 0" in card
    assert '"finished": 2' in card  # the filter report found beside clean.jsonl
    assert "| learning_rate | 0.01 |" in card and "| max_steps | 24 |" in card
    assert "Not evaluated yet" in card
    assert (trained.final / "README.md").read_text() == card


def test_rerun_after_training_refreshes_the_card_with_eval_results(trained):
    report = trained.root / "eval" / "tiny" / "report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"rows": [{"model": "student", "benchmark": "math500", "pass@1": 0.4125},
                                           {"model": "original", "benchmark": "math500", "pass@1": 0.1}]}))
    stamp = (trained.final / "model.safetensors").stat().st_mtime_ns
    run("tiny", trained.data, trained.out, overrides=tiny_overrides(trained.base, f"max_steps={STEPS}",
                                                                    "save_steps=10", "learning_rate=1e-2"))
    assert (trained.final / "model.safetensors").stat().st_mtime_ns == stamp, "a finished run must not retrain"
    card = (trained.out / "card.md").read_text()
    assert "| model | benchmark | pass@1 |" in card and "| student | math500 | 0.4125 |" in card

    # Another recipe in the same folder is refused, not silently ignored or mixed.
    with pytest.raises(ConfigError, match=r"another run \(learning_rate: 0.01 -> 0.001\).*overwrite=true"):
        run("tiny", trained.data, trained.out, overrides=tiny_overrides(trained.base, f"max_steps={STEPS}",
                                                                        "save_steps=10", "learning_rate=1e-3"))


class Crash(Exception):
    pass


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_loss(tiny_qwen2, tmp_path):
    """Uninterrupted vs killed after step 6 and rerun: same final loss and weights, bit for bit on CPU."""
    import torch
    from transformers import TrainerCallback

    from distill.students.config import load_student_config

    torch.set_num_threads(1)
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(40))
    overrides = tiny_overrides(tiny_qwen2, "max_steps=10", "save_steps=4", "per_device_batch_size=8",
                               "global_batch_size=8", "learning_rate=3e-3")
    run("tiny", data, tmp_path / "whole", overrides=overrides)
    whole = json.loads((tmp_path / "whole" / "run.json").read_text())["results"]

    class KillAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise Crash

    cfg, preset = load_student_config("tiny", overrides)
    killed = tmp_path / "killed"
    prepare_run_dir(cfg, data, killed, preset, size="tiny", launch=None)
    with pytest.raises(Crash):
        train(cfg, data, killed, callbacks=[KillAt()])
    assert sorted(p.name for p in (killed / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4"]
    assert not (killed / "final").exists()

    with pytest.raises(ConfigError, match=r"holds checkpoints of another run \(max_steps: 10 -> 12\)"):
        run("tiny", data, killed, overrides=[*overrides, "max_steps=12"])

    run("tiny", data, killed, overrides=overrides)
    resumed = json.loads((killed / "run.json").read_text())["results"]
    assert resumed["resumed_from"] == "checkpoint-4"
    assert resumed["optimizer_steps"] == whole["optimizer_steps"] == 10
    assert resumed["final_loss"] == whole["final_loss"]
    a, b = _state(tmp_path / "whole" / "final"), _state(killed / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lean_trainer_computes_sft_trainers_loss(tiny_qwen2, tmp_path):
    """token_metrics=false drops SFTTrainer's per-step metrics, not any part of the loss; the unfused head is the same loss."""
    import torch

    torch.set_num_threads(1)
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(16))
    losses = {}
    for name, extra in {"sft": ["token_metrics=true", "fused_lm_head=true"],
                        "lean": ["token_metrics=false", "fused_lm_head=true"],
                        "unfused": ["token_metrics=false", "fused_lm_head=false"]}.items():
        out = tmp_path / name
        run("tiny", data, out, overrides=tiny_overrides(tiny_qwen2, "max_steps=3", "save_steps=10",
                                                        "per_device_batch_size=16", "gradient_accumulation_steps=2",
                                                        "global_batch_size=32", *extra))
        history = json.loads((out / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
        losses[name] = [h["loss"] for h in history if "loss" in h]
        assert ("mean_token_accuracy" in history[0]) == (name == "sft")
    assert len(losses["sft"]) == 3 and losses["sft"] == losses["lean"]
    assert losses["unfused"] == pytest.approx(losses["sft"], rel=1e-5)


def test_lora_saves_adapter_and_merged_model(tiny_qwen2, tmp_path):
    import torch

    torch.set_num_threads(1)
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(16))
    out = tmp_path / "lora"
    run("tiny", data, out, overrides=tiny_overrides(tiny_qwen2, "lora=true", "lora_r=4", "lora_alpha=8",
                                                    "lora_target_modules=[q_proj,v_proj]", "max_steps=4",
                                                    "save_steps=10", "learning_rate=1e-2",
                                                    "lora_special_tokens=false"))  # rows: test_gpu_user.py
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    base, merged = _state(tiny_qwen2), _state(out / "final")
    assert set(merged) == set(base), "final/ is a plain model, loadable without peft"
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(".q_proj." in k or ".v_proj." in k for k in changed), changed
    assert (out / "final" / "chat_template_train.jinja").exists()


@pytest.mark.slow
def test_two_process_data_parallel_ends_with_identical_replicas(tiny_qwen2, tmp_path):
    """GPUS=2 on CPU: two real processes (gloo); each rank hashes its own weights after training."""
    import hashlib

    import torch

    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(32))
    out = tmp_path / "ddp"
    run("tiny", data, out, gpus=2, overrides=tiny_overrides(tiny_qwen2, "max_steps=4", "save_steps=10",
                                                            "per_device_batch_size=4", "global_batch_size=16"))
    results = json.loads((out / "run.json").read_text())["results"]
    assert results["processes"] == 2
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["gradient_accumulation_steps"] == 2  # global batch 16 kept: 4 per device x 2 x 2 processes
    ranks = results["replica_sha256"]
    assert len(ranks) == 2 and ranks[0] == ranks[1]

    # The fingerprint is of the trained weights: recompute it from what rank 0 saved.
    from transformers import AutoModelForCausalLM

    state = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    assert h.hexdigest() == ranks[0]
    assert not all(torch.equal(state[k], v) for k, v in _state(tiny_qwen2).items())


def test_eval_callback_is_switched_on_from_the_preset(tiny_qwen2, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    seen = {}

    class EvalCallback(TrainerCallback):
        def __init__(self, tokenizer, **kwargs):
            seen["tokenizer"], seen["kwargs"], seen["steps"] = tokenizer, kwargs, []

        def on_step_end(self, args, state, control, **kwargs):
            seen["steps"].append(state.global_step)

    module = types.ModuleType("distill.eval.callback")
    module.EvalCallback = EvalCallback
    monkeypatch.setitem(sys.modules, "distill.eval.callback", module)
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(8))
    run("tiny", data, tmp_path / "out", overrides=tiny_overrides(
        tiny_qwen2, "max_steps=2", "save_steps=10", "eval_callback={benchmarks: [toy], every_steps: 1, k: 2}"))
    assert seen["kwargs"] == {"benchmarks": ["toy"], "every_steps": 1, "k": 2}
    assert seen["tokenizer"].eos_token == "<|im_end|>" and seen["steps"] == [1, 2]


def test_missing_data_says_which_stage_makes_it(tiny_qwen2, tmp_path):
    with pytest.raises(ConfigError, match=r"nope.jsonl: no such file. Run `make traces` and `make filter` first"):
        run("tiny", tmp_path / "nope.jsonl", tmp_path / "out", overrides=tiny_overrides(tiny_qwen2))


def test_dry_run_prints_the_launch(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("NODE_RANK", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert run("70b", tmp_path / "clean.jsonl", tmp_path / "out", overrides=["dry_run=true"]) is None
    printed = capsys.readouterr().out
    # Computed from the preset (not read from its comments): the wall time follows the epochs asked for.
    assert "hardware: 8 node(s) x 8 device(s) = 64, zero3, bf16" in printed and "wall time: ~8.5 h" in printed
    run("70b", tmp_path / "clean.jsonl", tmp_path / "out", overrides=["dry_run=true", "num_epochs=4"])
    assert "wall time: ~17.0 h" in capsys.readouterr().out
    assert "--num_machines 8 --num_processes 64 --mixed_precision bf16 --machine_rank '$NODE_RANK'" in printed
    assert run("7b", tmp_path / "clean.jsonl", tmp_path / "out", gpus=1, overrides=["dry_run=true"]) is None
    assert "2 per device x 64 accumulation x 1 devices = 128" in capsys.readouterr().out
    # For real, a multi-GPU preset on a machine without CUDA is refused with the way out.
    with pytest.raises(ConfigError, match="has no CUDA GPU.*SIZE=tiny"):
        run("7b", tmp_path / "clean.jsonl", tmp_path / "out")


def test_packed_rows_keep_each_trace_to_itself(tiny_qwen2, tmp_path):
    """packing: true packs traces into rows, padding-free; every trace must score as if it were alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from distill.students.config import load_student_config
    from distill.students.data import build_dataset
    from distill.students.templates import FORMATS, prepare_tokenizer
    from distill.students.train import make_sft_trainer

    torch.set_num_threads(1)
    cfg, _ = load_student_config("tiny", tiny_overrides(tiny_qwen2, "packing=true"))
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    prepare_tokenizer(tok, FORMATS["chatml"])
    dataset, _ = build_dataset(write_clean(tmp_path / "clean.jsonl", arithmetic_traces(12)), tok, 512,
                               cache_dir=tmp_path / "cache")
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    args = SFTConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, packing=True, max_length=200,
                     use_cpu=True, report_to=[], bf16=False, activation_checkpointing=False)
    trainer = make_sft_trainer(cfg, model=model, args=args, dataset=dataset, tokenizer=tok, peft_config=None,
                               callbacks=[])
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # flattened, no padding

    def nll(ids, labels, **kw):
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, use_cache=False, **kw).logits[0, :-1], -1)
        target, keep = labels[0, 1:], labels[0, 1:] != -100
        return -logp[keep].gather(1, target[keep, None]).sum()

    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    assert len(starts) - 1 >= 4, "several traces share the packed batch"
    rows = {tuple(r) for r in dataset["input_ids"]}
    total_alone = 0.0
    for a, b in zip(starts, starts[1:]):
        ids, labels = batch["input_ids"][:, a:b], batch["labels"][:, a:b]
        assert tuple(ids[0].tolist()) in rows, "a trace was cut or merged"
        total_alone += nll(ids, labels)
    packed = nll(batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
    assert packed == pytest.approx(float(total_alone), rel=1e-4)

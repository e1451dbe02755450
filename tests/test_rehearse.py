"""Every GPU preset rehearsed on CPU (distill/students/rehearse.py): its own code path on a 2-layer model of the
base's real architecture, with the family's real tokenizer from ../shared/data/tokenizers.

One in-process rehearsal per preset (3 steps, 1 process, no kill); one with kill -9 + resume; one with 2 DDP processes.
"""

from __future__ import annotations

import json
import time

import pytest

from distill.config import REPO_ROOT

pytestmark = pytest.mark.slow  # every test here starts processes or trains end to end

PRESETS = sorted(p.stem for p in (REPO_ROOT / "students").glob("*.yaml") if p.stem != "tiny")
FAMILY = {"chatml": "qwen2.5", "llama3": "llama3.1"}


@pytest.fixture(autouse=True)
def cheap_dataset_fingerprints(monkeypatch):
    """datasets keys its cache by dill-hashing each map function, with the tokenizer it holds: Qwen2Tokenizer keeps its
    151k-entry vocab and merges as Python objects, ~5 s per hash on 2 busy cores (Llama's: 0.5 s), several per run.
    Each rehearsal here starts from an empty cache, so a random key changes nothing but the time."""
    from datasets import arrow_dataset, fingerprint

    for module in (fingerprint, arrow_dataset):  # map() calls it by the name it imported
        monkeypatch.setattr(module, "update_fingerprint", lambda *a, **k: fingerprint.generate_random_fingerprint())


def tokenizer_of(shared_data, size: str) -> str:
    import yaml

    template = yaml.safe_load((REPO_ROOT / "students" / f"{size}.yaml").read_text())["template"]
    return str(shared_data / "tokenizers" / FAMILY[template])


def test_every_gpu_preset_is_covered():
    assert len(PRESETS) == 12 and {"1.5b", "70b-lora"} <= set(PRESETS)


@pytest.mark.parametrize("size", PRESETS)
def test_preset_rehearses_clean(size, shared_data, tmp_path, monkeypatch):
    import torch

    from distill.students.rehearse import run

    torch.set_num_threads(1)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    started = time.time()
    tok = f"tokenizer={tokenizer_of(shared_data, size)}"
    # -lora presets without the special-token rows: with them, TRL's fused LM head fails (the test below).
    report = run(size, tmp_path, overrides=[tok], processes=1, kill=False)
    assert report.clean, report.text()
    names = [c.name for c in report.checks]
    assert {"architecture", "context", "max_length", "LR schedule", "final/", "card.md"} <= set(names)
    assert ("LoRA merge" in names) == size.endswith("-lora")
    s = report.summary
    assert s["too_long"] == 2 and s["kept"] == 24  # the two planted traces past max_length, dropped and counted
    assert s["global_batch"] == json.loads((tmp_path / "students" / f"{size}-rehearsal" / "rehearsal.json").read_text()
                                           )["summary"]["global_batch"]
    assert s["gpu_hours"] > 0 and s["optimizer_steps"] >= 1
    out = tmp_path / "students" / f"{size}-rehearsal"
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and "rope_theta" in config  # legacy key beside rope_parameters
    if FAMILY[report.summary["config"]["template"]] == "llama3.1":
        assert config["rope_scaling"]["rope_type"] == "llama3"  # Llama 3.x's scaling survives into final/
    assert (out / "card.md").read_text().startswith("> **Rehearsal, not a student**")
    print(f"\n{size}: {time.time() - started:.0f} s\n{report.text()}")


def test_lora_special_token_rows_train_through_the_fused_head(shared_data, tmp_path, monkeypatch):
    """TRL's fused LM head (SFTTrainer's loss) reads lm_head.weight and .bias, and PEFT wraps the head
    when lora_special_tokens trains the template's rows: every -lora preset stopped at its first step
    ('TrainableTokensWrapper' object has no attribute 'bias'). Now the head is read with the rows
    merged in, and training moves exactly those output rows."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from distill.students.rehearse import run
    from distill.students.serving import THINK_TOKENS
    from distill.students.templates import get_format

    monkeypatch.setenv("TQDM_DISABLE", "1")
    report = run("8b-lora", tmp_path, overrides=[f"tokenizer={tokenizer_of(shared_data, '8b-lora')}",
                                                 "learning_rate=5e-2"], processes=1, kill=False)
    assert report.clean, report.text()
    out = tmp_path / "students" / "8b-lora-rehearsal"
    tok = AutoTokenizer.from_pretrained(out / "final")
    rows = sorted({tok.convert_tokens_to_ids(t) for t in (*get_format("llama3").special_tokens, *THINK_TOKENS)})

    def head(folder):
        weights = {}
        for f in sorted(folder.glob("*.safetensors")):
            weights.update(load_file(f))
        return weights["lm_head.weight"]

    before, after = head(out / "base"), head(out / "final")
    changed = (before != after).any(dim=1).nonzero().flatten().tolist()
    assert changed and set(changed) <= set(rows), (changed, rows)
    assert torch.equal(before[[i for i in range(before.shape[0]) if i not in rows][:1000]],
                       after[[i for i in range(after.shape[0]) if i not in rows][:1000]])


def test_kill_9_mid_run_resumes_to_the_same_end(shared_data, tmp_path, monkeypatch):
    """Killed with SIGKILL after its first checkpoint and rerun: same final loss as a run never killed."""
    import torch

    from distill.students.rehearse import run

    torch.set_num_threads(1)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    tok = [f"tokenizer={tokenizer_of(shared_data, '8b-lora')}"]
    report = run("8b-lora", tmp_path / "killed", overrides=tok, processes=1, kill=True)
    assert report.clean, report.text()
    check = next(c for c in report.checks if c.name == "kill -9 + resume")
    assert "resumed from checkpoint-" in check.detail
    whole = run("8b-lora", tmp_path / "whole", overrides=tok, processes=1, kill=False)
    losses = [json.loads((p / "students" / "8b-lora-rehearsal" / "run.json").read_text())["results"]["final_loss"]
              for p in (tmp_path / "killed", tmp_path / "whole")]
    assert whole.clean and losses[0] == losses[1], losses


def test_two_process_ddp_rehearsal(shared_data, tmp_path):
    """2 CPU processes over gloo: the trainer as DDP replicas, FSDP2 fully_shard on its own; ZeRO-3 named as not rehearsed."""
    from distill.students.rehearse import run

    report = run("8b", tmp_path, overrides=[f"tokenizer={tokenizer_of(shared_data, '8b')}"], processes=2, kill=False)
    assert report.clean, report.text()
    assert any(c.name == "DDP" and c.ok for c in report.checks)
    assert any(c.name == "FSDP2 fully_shard" and c.ok for c in report.checks)  # the sharded path, outside the Trainer
    assert any("DeepSpeed zero3" in n for n in report.not_rehearsed)


def test_offline_without_a_tokenizer_says_how_to_give_one(tmp_path, monkeypatch):
    from distill.config import ConfigError
    from distill.students.rehearse import run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"tokenizer=../shared/data/tokenizers/llama3.1"):
        run("70b", tmp_path, processes=1, kill=False)


def test_base_facts_match_the_known_parameter_counts():
    """students/bases/*.json: each builds its class at full size on the meta device with the published size."""
    from distill.students.config import KNOWN_BASES
    from distill.students.rehearse import BASES_DIR, real_parameters

    for path in sorted(BASES_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["source"]["config"].startswith("https://huggingface.co/" + doc["base"])
        assert real_parameters(doc["config"]) == pytest.approx(KNOWN_BASES[doc["base"]].params_b, rel=0.01), path
        assert doc["config"]["vocab_size"] == KNOWN_BASES[doc["base"]].vocab_rows

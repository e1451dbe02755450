"""Logit and on-policy distillation on tiny CPU models, the padded-vocabulary case, and the GOLD error."""

from __future__ import annotations

import json

import pytest
from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

from distill.students.kd import PAD_ROW_BIAS, align_vocab, check_shared_vocab, output_rows
from distill.students.train import run


def _tiny_model(tok, rows: int, hidden: int, seed: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(
        vocab_size=rows, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None))


@pytest.fixture(scope="module")
def padded_teacher(tiny_qwen2, tmp_path_factory):
    """A wider teacher on the student's tokenizer with 64 padded embedding rows (like Qwen2.5-7B vs 1.5B)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    path = tmp_path_factory.mktemp("padded-teacher")
    _tiny_model(tok, len(tok) + 64, 48, seed=1).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def kd_data(tmp_path_factory):
    return write_clean(tmp_path_factory.mktemp("kd") / "clean.jsonl", arithmetic_traces(16))


def test_align_vocab_trims_padded_rows_without_changing_real_logits(tiny_tokenizer_path):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_path)
    n = len(tok)
    teacher = _tiny_model(tok, n + 64, 32, seed=2).eval()
    ids = torch.tensor([tok.encode("Let a = 7. So the answer is 42.")])
    with torch.no_grad():
        before = teacher(ids).logits
    align_vocab(teacher, student_rows=n + 8, vocab_size=n)
    with torch.no_grad():
        after = teacher(ids).logits
    assert output_rows(teacher) == teacher.config.vocab_size == n + 8
    assert torch.equal(after[..., :n], before[..., :n])


def test_align_vocab_pads_rows_the_teacher_gives_no_probability(tiny_tokenizer_path):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_path)
    n = len(tok)
    teacher = _tiny_model(tok, n, 32, seed=3).eval()
    ids = torch.tensor([tok.encode("The quick brown fox.")])
    with torch.no_grad():
        before = teacher(ids).logits
    align_vocab(teacher, student_rows=n + 128, vocab_size=n)
    with torch.no_grad():
        after = teacher(ids).logits
    assert after.shape[-1] == n + 128 and torch.equal(after[..., :n], before[..., :n])
    assert torch.all(after[..., n:] < PAD_ROW_BIAS / 2)
    assert torch.softmax(after, -1)[..., n:].sum() == 0  # exactly zero mass on the padding rows
    # Tied embeddings stay tied, so the head and the input table are one tensor of the new size.
    assert teacher.get_input_embeddings().weight.shape[0] == n + 128


def test_different_tokenizers_raise_pointing_to_gold(tiny_tokenizer_path, tmp_path):
    from transformers import AutoTokenizer

    from distill.toy.tokenizer import build_tokenizer

    ours = AutoTokenizer.from_pretrained(tiny_tokenizer_path)
    other = build_tokenizer(tmp_path / "other", corpus=["completely different words here, zebra xylophone"] * 3,
                            vocab_size=300)
    with pytest.raises(ValueError, match=r"do not share a vocabulary \(.*tokens only in the student's.*GOLD "
                                         r"\(trl.experimental.gold.GOLDTrainer\)"):
        check_shared_vocab(ours, other, "student-x", "teacher-y")
    assert check_shared_vocab(ours, ours) == len(ours)


def test_kd_run_with_a_foreign_teacher_fails_before_training(tiny_qwen2, kd_data, tmp_path):

    from distill.toy.tokenizer import build_tokenizer

    other_tok = build_tokenizer(tmp_path / "foreign", corpus=["zebra xylophone quartz"] * 3, vocab_size=300)
    _tiny_model(other_tok, len(other_tok), 32, seed=4).save_pretrained(tmp_path / "foreign")
    with pytest.raises(ValueError, match="GOLD"):
        run("tiny", kd_data, tmp_path / "out", overrides=tiny_overrides(
            tiny_qwen2, "kd=logit", f"kd_teacher={tmp_path / 'foreign'}", "max_steps=2"))
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("mode", ["logit", "on_policy"])
def test_kd_mode_trains_the_student_toward_a_padded_vocab_teacher(tiny_qwen2, padded_teacher, kd_data, tmp_path, mode):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    out = tmp_path / mode
    run("tiny", kd_data, out, overrides=tiny_overrides(
        tiny_qwen2, f"kd={mode}", f"kd_teacher={padded_teacher}", "kd_max_completion_length=12", "max_steps=6",
        "save_steps=10", "per_device_batch_size=4", "global_batch_size=4", "learning_rate=1e-2"))
    record = json.loads((out / "run.json").read_text())
    losses = [h["loss"] for h in json.loads((out / "checkpoints" / "checkpoint-6" / "trainer_state.json")
                                            .read_text())["log_history"] if "loss" in h]
    assert len(losses) == 6 and all(0 <= x < 10 for x in losses)
    if mode == "logit":  # the same teacher traces every epoch: the divergence must shrink
        assert losses[-1] < losses[0]
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2).state_dict()
    final = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    assert final["model.embed_tokens.weight"].shape == base["model.embed_tokens.weight"].shape  # student rows kept
    assert not all(torch.equal(base[k], final[k]) for k in base)
    assert record["config"]["kd"] == mode
    assert f"{mode} distillation from {padded_teacher}" in (out / "card.md").read_text()

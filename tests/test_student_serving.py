"""Saved students that serving stacks read right: legacy RoPE keys, single-token <think> / </think>.

On the real Qwen2.5 and Llama-3.1 tokenizers in ../shared/data (skipped without them) and on configs
of both families built locally.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, Qwen2Config

from distill.students.serving import (
    THINK_TOKENS,
    add_legacy_rope_keys,
    ensure_think_tokens,
    init_think_rows,
    single_token_id,
    write_serving_config,
)
from distill.students.templates import get_format, prepare_tokenizer

FAMILIES = {"qwen2.5": ("chatml", 151936, "added"), "llama3.1": ("llama3", 128256, "reserved")}
TRACE = [
    {"role": "user", "content": "What is 7-5+3?"},
    {"role": "assistant", "content": "<think>\n7-5+3\n=2+3\n=5\n</think>\n\nThe answer is \\boxed{5}."},
]


def _tokenizer(shared_data, family):
    return AutoTokenizer.from_pretrained(shared_data / "tokenizers" / family)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_think_tokens_become_single_tokens_of_the_real_vocabularies(shared_data, family, tmp_path):
    template, rows, how = FAMILIES[family]
    tok = _tokenizer(shared_data, family)
    assert all(single_token_id(tok, t) is None for t in THINK_TOKENS)  # split into <th, ink, > today
    think = ensure_think_tokens(tok, rows)
    assert think.how == how and all(len(p) == 3 for p in think.pieces.values())
    ids = [think.ids[t] for t in THINK_TOKENS]
    if family == "llama3.1":
        assert ids == [128013, 128014] and len(tok) == rows  # R1-Distill-Llama's ids, no new row
    else:
        assert ids == [151665, 151666] and len(tok) == 151667 <= rows
    assert tok.decode(tok.encode("<think>\nx</think>", add_special_tokens=False), skip_special_tokens=True) == (
        "<think>\nx</think>"
    )
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert [again.get_vocab()[t] for t in THINK_TOKENS] == ids  # what vLLM's deepseek_r1 parser looks up
    assert ensure_think_tokens(again, rows).how == "present"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_training_masks_keep_their_meaning(shared_data, family):
    """The assistant mask covers the same text (reasoning, answer, end of turn) with and without the tokens."""
    template, rows, _ = FAMILIES[family]
    texts = []
    for with_think in (False, True):
        tok = _tokenizer(shared_data, family)
        if with_think:
            ensure_think_tokens(tok, rows)
        prepare_tokenizer(tok, get_format(template), where=family)
        enc = tok.apply_chat_template(TRACE, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
        texts.append((tok.decode(masked), len(masked), masked))
    (before, n_before, _), (after, n_after, masked) = texts
    assert before == after and before.startswith("<think>") and n_after < n_before
    think = ensure_think_tokens(_tokenizer(shared_data, family), rows)
    assert masked[0] == think.ids["<think>"] and think.ids["</think>"] in masked


def test_think_rows_start_as_the_mean_of_their_pieces(shared_data):
    tok = _tokenizer(shared_data, "qwen2.5")
    config = Qwen2Config(vocab_size=151936, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    think = ensure_think_tokens(tok, config.vocab_size)
    init_think_rows(model, think)
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    for token, token_id in think.ids.items():
        assert torch.allclose(emb[token_id], before_in[think.pieces[token]].mean(0))
        assert torch.allclose(out[token_id], before_out[think.pieces[token]].mean(0))
    changed = (emb != before_in).any(dim=1).nonzero().flatten().tolist()
    assert changed == sorted(think.ids.values())  # no other row touched


def test_legacy_rope_keys_for_both_families(tmp_path):
    llama = LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                        rope_theta=500000.0)
    qwen = Qwen2Config(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=1, rope_theta=300000.0)
    for name, config, theta in (("llama", llama, 500000.0), ("qwen", qwen, 300000.0)):
        path = tmp_path / name
        config.save_pretrained(path)
        saved = json.loads((path / "config.json").read_text())
        assert "rope_theta" not in saved and "rope_parameters" in saved  # transformers 5's layout
        write_serving_config(path)
        saved = json.loads((path / "config.json").read_text())
        assert saved["rope_theta"] == theta
        if name == "llama":
            assert saved["rope_scaling"]["rope_type"] == "llama3" and saved["rope_scaling"]["factor"] == 8.0
            assert "rope_theta" not in saved["rope_scaling"]
        else:
            assert saved["rope_scaling"] is None
        reread = AutoConfig.from_pretrained(path)
        assert reread.rope_parameters == config.rope_parameters  # transformers still reads it the same
    assert add_legacy_rope_keys({"vocab_size": 3}) == {"vocab_size": 3}

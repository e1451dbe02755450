"""Shared fixtures: a locally trained tokenizer and tiny Qwen2 / Llama models built from config.

No test touches a hub. Real third-party data lives in ../shared/data; tests that need it use
the `shared_data` fixture, which skips with a reason when the folder is absent (a user's clone).
"""

from __future__ import annotations

import os
from pathlib import Path

# Set before transformers is imported anywhere in the session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip: it is present in CI and on dev machines, not in a user's clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only a developer checkout has ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory) -> Path:
    """Byte-level BPE (vocab 512) with ChatML roles, <think> specials and a {% generation %} template."""
    from distill.toy.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny-tokenizer")
    build_tokenizer(path)
    return path


def _save_tiny(path: Path, tokenizer_path: Path, arch: str) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    common = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    model.generation_config.do_sample = True  # `transformers serve` samples only when asked here
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory, tiny_tokenizer_path) -> Path:
    """Randomly initialised 2-layer Qwen2 (~40k params), saved like a hub checkpoint."""
    return _save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), tiny_tokenizer_path, "qwen2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, tiny_tokenizer_path) -> Path:
    """Randomly initialised 2-layer Llama, same tokenizer as tiny_qwen2."""
    return _save_tiny(tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer_path, "llama")


@pytest.fixture
def make_trace():
    """`make_trace(**overrides)`: a valid, correct, finished Trace; each test varies one field."""
    from distill.trace import Trace, trace_id

    def factory(**overrides):
        fields = dict(
            id=trace_id(overrides.get("prompt_id", "p0"), overrides.get("sample_index", 0), "test"),
            prompt_id="p0",
            sample_index=0,
            messages=[{"role": "user", "content": "What is 2 + 3? Please reason step by step, and put your final answer within \\boxed{}."}],
            reasoning="We add 2 and 3.\n2 + 3 = 5.\nSo the sum is 5.",
            answer="The sum is \\boxed{5}.",
            finish_reason="stop",
            prompt_tokens=20,
            completion_tokens=30,
            teacher={"model": "test", "backend": "hf"},
            reference="5",
        )
        fields.update(overrides)
        return Trace(**fields)

    return factory

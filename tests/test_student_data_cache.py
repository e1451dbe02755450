"""The tokenised-data cache key: stable for the same data and tokenizer, new when either changes."""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
from student_fixtures import arithmetic_traces, write_clean  # noqa: E402

from distill.students.data import build_dataset  # noqa: E402
from distill.students.templates import get_format, prepare_tokenizer  # noqa: E402


def _tokenizer(path):
    tok = AutoTokenizer.from_pretrained(path)
    prepare_tokenizer(tok, get_format("chatml"))
    return tok


def test_cache_is_reused_for_the_same_inputs_and_rebuilt_for_another_tokenizer(tiny_tokenizer_path, tmp_path):
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(6))
    tok = _tokenizer(tiny_tokenizer_path)
    first, _ = build_dataset(data, tok, 512, cache_dir=tmp_path / "cache")
    again, _ = build_dataset(data, _tokenizer(tiny_tokenizer_path), 512, cache_dir=tmp_path / "cache")
    assert again._fingerprint == first._fingerprint and again["input_ids"] == first["input_ids"]
    other = _tokenizer(tiny_tokenizer_path)
    other.add_tokens([arithmetic_traces(1)[0].reasoning.split()[0]])  # a word the traces contain: their ids change
    changed, _ = build_dataset(data, other, 512, cache_dir=tmp_path / "cache")
    assert changed._fingerprint != first._fingerprint and changed["input_ids"] != first["input_ids"]

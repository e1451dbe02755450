"""clean.jsonl -> tokenised rows: long traces dropped and counted (never cut), bad lines named, data hashed."""

from __future__ import annotations

import hashlib
import json

import pytest
from student_fixtures import arithmetic_traces, write_clean

from distill.students.data import build_dataset, tokenize_messages, trace_messages
from distill.students.templates import FORMATS, prepare_tokenizer
from distill.trace import TraceError, assistant_text


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_path)
    prepare_tokenizer(tokenizer, FORMATS["chatml"])
    return tokenizer


def test_trace_becomes_prompt_plus_one_assistant_turn(make_trace):
    trace = make_trace()
    messages = trace_messages(trace)
    assert messages[:-1] == trace.messages
    assert messages[-1] == {"role": "assistant", "content": assistant_text(trace.reasoning, trace.answer)}


def test_long_traces_are_dropped_and_counted_never_cut(tok, make_trace, tmp_path):
    traces = [make_trace(id=f"t{i}", prompt_id=f"p{i}", reasoning="step. " * n) for i, n in enumerate([1, 5, 40, 80, 2])]
    lengths = [len(tokenize_messages(tok, trace_messages(t))["input_ids"]) for t in traces]
    limit = sorted(lengths)[2]  # keeps the three shortest, exactly at the limit included
    data = write_clean(tmp_path / "clean.jsonl", traces)

    dataset, stats = build_dataset(data, tok, limit, cache_dir=tmp_path / "cache")
    assert (stats.read, stats.kept, stats.too_long) == (5, 3, 2)
    assert stats.longest_dropped == max(lengths) and stats.longest_kept == limit
    assert sorted(len(r) for r in dataset["input_ids"]) == sorted(n for n in lengths if n <= limit)
    for row in dataset:  # every kept row is whole: it ends with the end-of-turn token, inside the loss
        assert row["input_ids"][-1] == tok.eos_token_id and row["assistant_masks"][-1] == 1
    assert stats.tokens == sum(n for n in lengths if n <= limit)
    assert stats.loss_tokens == sum(sum(r) for r in dataset["assistant_masks"])
    assert stats.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    assert stats.teachers == {"test": 5}


def test_all_too_long_is_an_error_with_the_fix(tok, tmp_path):
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(3))
    with pytest.raises(ValueError, match=r"all 3 traces are longer than max_length=8 tokens.*raise max_length"):
        build_dataset(data, tok, 8, cache_dir=tmp_path / "cache")


def test_bad_line_is_named_by_file_and_line(tok, tmp_path):
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(2))
    with open(data, "a") as f:
        f.write(json.dumps({"id": "x", "prompt_id": "p", "reasoning": 3}) + "\n")
    with pytest.raises(TraceError, match=r"clean.jsonl:3: field 'reasoning' must be str"):
        build_dataset(data, tok, 512, cache_dir=tmp_path / "cache")


def test_missing_and_empty_files(tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="Run `make filter` first"):
        build_dataset(tmp_path / "absent.jsonl", tok, 512)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no traces to train on"):
        build_dataset(tmp_path / "empty.jsonl", tok, 512, cache_dir=tmp_path / "cache")


def test_changed_file_is_not_served_from_the_cache(tok, tmp_path):
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(4))
    _, first = build_dataset(data, tok, 512, cache_dir=tmp_path / "cache")
    write_clean(data, arithmetic_traces(6, seed=1))
    dataset, second = build_dataset(data, tok, 512, cache_dir=tmp_path / "cache")
    assert (first.kept, second.kept, len(dataset)) == (4, 6, 6) and first.sha256 != second.sha256


def test_keep_text_columns_for_distillation(tok, tmp_path):
    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(2))
    dataset, _ = build_dataset(data, tok, 512, cache_dir=tmp_path / "cache", keep_text=True)
    assert set(dataset.column_names) == {"input_ids", "assistant_masks", "messages", "prompt"}
    assert dataset[0]["prompt"] == arithmetic_traces(2)[0].messages

"""Prompt sets: every datasets/*.yaml loads, local benchmark files load offline with normalised
references, multiple choice shuffles stably, code sets decode LiveCodeBench tests, errors name
file, row and column."""

from __future__ import annotations

import base64
import itertools
import json
import pickle
import sys
import types
import zlib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from distill.config import ConfigError, load_config
from distill.prompts import (
    MATH_INSTRUCTION,
    PromptSetConfig,
    load_prompt_config,
    load_prompts,
    normalize_reference,
    shard_of,
)

REPO = Path(__file__).resolve().parents[1]


def test_every_dataset_yaml_loads():
    paths = sorted((REPO / "datasets").rglob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        cfg = load_config(PromptSetConfig, path)
        assert cfg.source in ("hub", "path", "toy"), path
    assert not (REPO / "datasets" / "__init__.py").exists()  # would shadow HF `datasets`
    names = {p.stem for p in paths}
    assert {"gsm8k-train", "math500", "aime24", "aime25", "amc23", "gpqa-diamond", "livecodebench"} <= names
    assert names & {"openr1-math", "numinamath"}


@pytest.mark.parametrize("value, fmt, want", [
    ("023", "auto", "23"), ("000", "auto", "0"), (27.0, "auto", "27"), ("27.0", "auto", "27"), (27, "auto", "27"),
    ("1,234", "auto", "1234"), (" -5 ", "auto", "-5"), ("0.5", "auto", "0.5"), (0.5, "auto", "0.5"),
    ("\\frac{14}{3}", "auto", "\\frac{14}{3}"), ("(1,2)", "auto", "(1,2)"), ("1, 2", "auto", "1, 2"),
    ("She pays 5 * 2 = <<5*2=10>>10.\n#### 1,234", "gsm8k", "1234"), ("#### 72", "gsm8k", "72"),
    ("023", "text", "023"), (None, "auto", None),
])
def test_normalize_reference(value, fmt, want):
    assert normalize_reference(value, fmt) == want


def test_gsm8k_reference_without_marker_is_an_error():
    with pytest.raises(ValueError, match="####"):
        normalize_reference("no marker here", "gsm8k")


@pytest.mark.parametrize("name, file, rows, first_id", [
    ("aime24", "benchmarks/aime24.jsonl", 30, "aime24/60"),
    ("amc23", "benchmarks/amc23.jsonl", 40, "amc23/0"),
    ("math500", "benchmarks/math500.jsonl", 500, "math500/test/precalculus/807.json"),
    ("gsm8k-test", "benchmarks/gsm8k_test.jsonl", 1319, None),
    ("gsm8k-train", "prompts/gsm8k_train.jsonl", 7473, None),
    ("humaneval", "code/humaneval.jsonl.gz", 164, "humaneval/HumanEval/0"),
])
def test_benchmark_files_load_offline_with_stable_unique_ids(shared_data, name, file, rows, first_id):
    stream = load_prompts(name, [f"path={shared_data / file}"])
    prompts = list(stream)
    assert len(prompts) == rows == stream.total or stream.total is None
    ids = [p.id for p in prompts]
    assert len(set(ids)) == rows
    assert ids == [p.id for p in load_prompts(name, [f"path={shared_data / file}"])]  # stable
    if first_id:
        assert ids[0] == first_id
    assert all(p.messages[-1]["role"] == "user" for p in prompts)


def test_aime_and_amc_references_equal_the_integers(shared_data):
    raw = [json.loads(line) for line in (shared_data / "benchmarks/aime24.jsonl").read_text().splitlines()]
    assert any(r["answer"].startswith("0") for r in raw)  # the file really is zero-padded
    aime = list(load_prompts("aime24", [f"path={shared_data / 'benchmarks/aime24.jsonl'}"]))
    assert [int(p.reference) for p in aime] == [int(r["answer"]) for r in raw]
    assert all(p.reference == str(int(p.reference)) for p in aime)
    amc = list(load_prompts("amc23", [f"path={shared_data / 'benchmarks/amc23.jsonl'}"]))
    assert amc[0].reference == "27" and all("." not in p.reference for p in amc)


def test_gsm8k_references_and_instruction(shared_data):
    prompts = list(load_prompts("gsm8k-train", [f"path={shared_data / 'prompts/gsm8k_train.jsonl'}"], limit=50))
    raw = [json.loads(line) for line in (shared_data / "prompts/gsm8k_train.jsonl").read_text().splitlines()[:50]]
    assert [p.reference for p in prompts] == [r["answer"].split("####")[-1].strip().replace(",", "") for r in raw]
    content = prompts[0].messages[0]["content"]
    assert content == f"{raw[0]['question'].strip()}\n\n{MATH_INSTRUCTION}"
    assert prompts[0].meta["problem"] == raw[0]["question"].strip()


def test_json_array_file_and_skip_references(tmp_path):
    rows = [{"problem": "Prove it.", "answer": "proof"}, {"problem": "1+1", "answer": "2"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    prompts = list(load_prompts("numinamath", [f"path={tmp_path / 'a.json'}", "columns.keep=[]"]))
    assert [p.reference for p in prompts] == ["2"]
    assert prompts[0].id == "numinamath/" + __import__("hashlib").sha256(b"1+1").hexdigest()[:16]


def test_parquet_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem": ["a?", "b?"], "answer": [1.0, 2.0], "uuid": ["x", "y"]}), tmp_path / "p.parquet")
    stream = load_prompts("openr1-math", [f"path={tmp_path / 'p.parquet'}", "columns.keep=[]"])
    assert [(p.id, p.reference) for p in stream] == [("openr1-math/x", "1"), ("openr1-math/y", "2")]
    assert stream.total == 2


def _gpqa_file(tmp_path, n=40):
    rows = [{"Question": f"Which is right {i}?", "Correct Answer": f"right {i}", "Incorrect Answer 1": f"w1 {i}",
             "Incorrect Answer 2": f"w2 {i}", "Incorrect Answer 3": f"w3 {i}", "Record ID": f"rec{i}",
             "High-level domain": "Physics", "Subdomain": "Optics"} for i in range(n)]
    path = tmp_path / "gpqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_multiple_choice_shuffles_with_a_fixed_seed_and_the_gold_letter(tmp_path):
    path = _gpqa_file(tmp_path)
    prompts = list(load_prompts("gpqa-diamond", [f"path={path}"]))
    for i, p in enumerate(prompts):
        assert p.task == "choice" and p.reference in "ABCD"
        assert p.meta["choices"][p.reference] == f"right {i}"
        assert f"{p.reference}) right {i}" in p.messages[0]["content"]
        assert sorted(p.meta["choices"].values()) == sorted([f"right {i}", f"w1 {i}", f"w2 {i}", f"w3 {i}"])
    letters = Counter(p.reference for p in prompts)
    assert len(letters) == 4 and max(letters.values()) < 20  # shuffled, not always 'A'
    # Stable: the same per prompt across loads, and independent of row order.
    again = {p.id: p.reference for p in load_prompts("gpqa-diamond", [f"path={path}"])}
    assert again == {p.id: p.reference for p in prompts}
    reversed_path = tmp_path / "rev.jsonl"
    reversed_path.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))
    assert {p.id: p.reference for p in load_prompts("gpqa-diamond", [f"path={reversed_path}"])} == again
    other_seed = {p.id: p.reference for p in load_prompts("gpqa-diamond", [f"path={path}", "choice_seed=1"])}
    assert other_seed != again


def _lcb_private(cases):
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def test_livecodebench_tests_are_decoded_into_the_reference(tmp_path):
    public = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    private = [{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}, {"input": "0 0\n", "output": "0\n", "testtype": "stdin"}]
    rows = [
        {"question_content": "Add two numbers.", "question_id": "abc001_a", "public_test_cases": json.dumps(public),
         "private_test_cases": _lcb_private(private), "starter_code": "", "metadata": "{}", "platform": "atcoder",
         "difficulty": "easy", "contest_date": "2024-09-01"},
        {"question_content": "Return the sum.", "question_id": "lc1", "public_test_cases": "[]",
         "private_test_cases": _lcb_private([{"input": "[1, 2]", "output": "3", "testtype": "functional"}]),
         "starter_code": "class Solution:\n    def add(self, a, b):\n        ", "metadata": '{"func_name": "add"}',
         "platform": "leetcode", "difficulty": "easy", "contest_date": "2024-09-02"},
    ]
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stdin, functional = load_prompts("livecodebench", [f"path={path}"])
    assert stdin.task == "code" and stdin.id == "livecodebench/abc001_a"
    assert stdin.reference == {"cases": [{"input": c["input"], "output": c["output"]} for c in public + private]}
    assert stdin.meta["num_public_tests"] == 1 and stdin.meta["platform"] == "atcoder"
    assert "standard input" in stdin.messages[0]["content"]
    assert functional.reference == {"cases": [{"input": "[1, 2]", "output": "3"}], "fn_name": "add"}
    assert "class Solution" in functional.messages[0]["content"] and functional.meta["starter_code"].startswith("class")


def test_code_references_are_what_the_code_verifier_runs(shared_data, tmp_path):
    from distill.verify.code import parse_tests

    humaneval = list(load_prompts("humaneval", [f"path={shared_data / 'code/humaneval.jsonl.gz'}"], limit=5))
    for p in humaneval:
        spec = parse_tests(p.reference)
        assert spec.kind == "check" and spec.entry_point and "def check" in spec.check
    # A column that already holds a tests dict (the rllm LeetCode set's `tests`), as it is.
    path = tmp_path / "lc.yaml"
    path.write_text(yaml.safe_dump({"path": str(shared_data / "code/leetcode_test.json"), "task": "code",
                                    "reference_format": "tests", "columns": {"problem": "problem", "tests": ["tests"]}}))
    leetcode = list(load_prompts(path, limit=5))
    assert all(parse_tests(p.reference).kind == "check" for p in leetcode)


def test_pickled_code_in_test_data_is_refused(tmp_path):
    evil = base64.b64encode(zlib.compress(pickle.dumps(types.SimpleNamespace(x=1)))).decode()
    row = {"question_content": "x", "question_id": "e", "public_test_cases": "[]", "private_test_cases": evil,
           "starter_code": "", "metadata": "{}", "platform": "p", "difficulty": "d", "contest_date": "c"}
    path = tmp_path / "evil.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match=r"evil.jsonl row 1: column 'private_test_cases'.*refusing to unpickle"):
        list(load_prompts("livecodebench", [f"path={path}"]))


def test_errors_name_file_row_and_column(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl row 1: no column 'problem' \(set by columns.problem\).*"
                                          r"\['answer', 'question'\].*columns.problem="):
        list(load_prompts("math500", [f"path={path}"]))
    path.write_text('{"problem": "q", "answer": "1", "unique_id": "a", "subject": "s", "level": 1}\n{"problem": \n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not valid JSON"):
        list(load_prompts("math500", [f"path={path}"]))
    with pytest.raises(ConfigError, match="does not exist"):
        list(load_prompts("math500", [f"path={tmp_path / 'missing.jsonl'}"]))
    with pytest.raises(ConfigError, match="unknown key 'colums'.*Did you mean 'columns'"):
        load_prompt_config("math500", ["colums.problem=x"])
    with pytest.raises(ConfigError, match="No datasets entry 'math5000'.*Did you mean 'math500'"):
        load_prompts("math5000")
    bad_yaml = tmp_path / "nosource.yaml"
    bad_yaml.write_text("split: train\n")
    with pytest.raises(ConfigError, match="no source.*hub.*path.*toy"):
        load_prompts(bad_yaml)


def test_hub_sets_fail_offline_with_a_way_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"cannot open hub dataset 'HuggingFaceH4/aime_2024'.*path="):
        list(load_prompts("aime24"))


def test_shards_split_by_id_hash_and_limit(shared_data):
    path = f"path={shared_data / 'benchmarks/math500.jsonl'}"
    all_ids = [p.id for p in load_prompts("math500", [path])]
    shards = [[p.id for p in load_prompts("math500", [path], shard=f"{i}/4")] for i in range(4)]
    assert sorted(itertools.chain(*shards)) == sorted(all_ids)
    assert all(shard_of(pid, 4) == i for i, ids in enumerate(shards) for pid in ids)
    assert all(90 < len(s) < 160 for s in shards)
    assert [p.id for p in load_prompts("math500", [path], shard="1/4", limit=7)] == shards[1][:7]


def test_toy_source_is_loaded_lazily(tmp_path, monkeypatch):
    calls = []

    def toy_problems(split="train", n=1000, seed=0, levels=(1, 2, 3, 4, 5)):
        calls.append((split, n, seed))
        for i in range(n):
            yield {"id": f"{split}-{seed}-{i}", "problem": f"Compute {i} + 1.", "answer": str(i + 1), "level": 1}

    fake = types.ModuleType("distill.toy.task")
    fake.toy_problems = toy_problems
    monkeypatch.setitem(sys.modules, "distill.toy.task", fake)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"toy": {"split": "test", "n": 5, "seed": 3}}))
    stream = load_prompts(path)
    assert calls == [] and stream.total == 5  # nothing generated before iteration
    prompts = list(stream)
    assert calls == [("test", 5, 3)]
    assert [p.id for p in prompts] == [f"toy/test-3-{i}" for i in range(5)]
    assert prompts[2].reference == "3" and prompts[2].meta["level"] == 1


def test_the_real_toy_task_feeds_a_prompt_set(tmp_path):
    pytest.importorskip("distill.toy.task", reason="distill/toy/task.py is written by the toy issue")
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"toy": {"split": "train", "n": 20, "seed": 0}}))
    prompts = list(load_prompts(path))
    assert len(prompts) == len({p.id for p in prompts}) == 20
    assert all(p.reference and p.meta["level"] and p.messages[0]["content"].endswith(MATH_INSTRUCTION) for p in prompts)
    assert [p.id for p in load_prompts(path)] == [p.id for p in prompts]

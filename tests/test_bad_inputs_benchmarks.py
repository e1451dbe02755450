"""Benchmarks from the wild: GPQA as commonly distributed, a benchmark file with
other column names given from the eval command line, and preset eval defaults that stay with
the preset's own benchmark. Pure Python: no model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import ConfigError, load_config, load_yaml
from distill.eval.config import EvalConfig, load_eval_config
from distill.eval.run import load_benchmark
from distill.prompts import load_prompts
from distill.verify.choice import score

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Which particle mediates the electromagnetic force?"
LETTERED = f"{QUESTION}\n\n(A) gluon\n(B) W boson\n(C) photon\n(D) graviton"
OPTIONS = {"A": "gluon", "B": "W boson", "C": "photon", "D": "graviton"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def gpqa_yaml(tmp_path: Path, rows: list[dict], columns: str) -> Path:
    data = write_jsonl(tmp_path / "gpqa.jsonl", rows)
    path = tmp_path / "gpqa-chat.yaml"
    path.write_text(f"path: {data}\ntask: choice\ncolumns: {columns}\n")
    return path


def test_gpqa_as_chat_messages_with_lettered_options_and_a_choices_dict(tmp_path):
    rows = [{"id": "q1", "answer": "C", "choices": OPTIONS,
             "prompt": [{"role": "system", "content": "You are a physicist."},
                        {"role": "user", "content": LETTERED}]}]
    (prompt,) = load_prompts(gpqa_yaml(tmp_path, rows, "{problem: prompt, answer: answer, choices: choices, id: id}"))
    assert prompt.reference == "C" and prompt.meta["choices"] == OPTIONS
    assert prompt.messages[0] == {"role": "system", "content": "You are a physicist."}
    user = prompt.messages[1]["content"]
    assert user.startswith(LETTERED) and user.count("photon") == 1  # options already in the text: not repeated
    assert score("So the answer is \\boxed{C}.", prompt.reference).correct


@pytest.mark.parametrize("row, columns", [
    # HF-style {label, text} choices, the gold given as the option's text
    ({"question": QUESTION, "choices": {"label": list("ABCD"), "text": list(OPTIONS.values())}, "answer": "photon"},
     "{problem: question, answer: answer, choices: choices}"),
    # a list of options, the gold as a 0-based index (MMLU style)
    ({"question": QUESTION, "options": list(OPTIONS.values()), "answer": 2},
     "{problem: question, answer: answer, choices: options}"),
    # options only in the text, the gold letter nested (verl style)
    ({"prompt": [{"role": "user", "content": LETTERED}], "reward_model": {"ground_truth": "(C)"}},
     "{problem: prompt, answer: reward_model.ground_truth}"),
])
def test_other_gpqa_shapes(tmp_path, row, columns):
    (prompt,) = load_prompts(gpqa_yaml(tmp_path, [row], columns))
    assert prompt.reference == "C" and prompt.meta["choices"] == OPTIONS
    text = prompt.messages[-1]["content"]
    assert "C) photon" in text and text.count("photon") == 1


def test_gpqa_with_a_gold_that_is_no_option(tmp_path):
    rows = [{"question": QUESTION, "choices": OPTIONS, "answer": "electron"}]
    with pytest.raises(ConfigError, match="gold answer 'electron' is neither an option letter"):
        list(load_prompts(gpqa_yaml(tmp_path, rows, "{problem: question, answer: answer, choices: choices}")))


def test_the_shipped_gpqa_yaml_still_shuffles_its_distractors():
    row = {"Question": QUESTION, "Correct Answer": "photon", "Incorrect Answer 1": "gluon",
           "Incorrect Answer 2": "W boson", "Incorrect Answer 3": "graviton", "Record ID": "r1",
           "High-level domain": "Physics", "Subdomain": "HEP"}
    from distill.prompts import load_prompt_config, make_prompt

    prompt = make_prompt(load_prompt_config("gpqa-diamond"), row)
    assert prompt.meta["choices"][prompt.reference] == "photon"


# ---------------------------------------------------------------------------------------------
# `distill eval benchmarks=[aime25] data.aime25=file.jsonl` on a file with a `prompt` column


@pytest.fixture
def aime_like(tmp_path) -> Path:
    return write_jsonl(tmp_path / "aime25.jsonl", [{"id": f"{i}", "prompt": f"Find {i} + 1.", "answer": str(i + 1)}
                                                   for i in range(3)])


def test_eval_suggests_the_problem_column_in_eval_syntax(aime_like):
    cfg = load_config(EvalConfig, {}, ["benchmarks=[aime25]", f"data.aime25={aime_like}"])
    with pytest.raises(ConfigError) as e:
        load_benchmark("aime25", cfg)
    message = str(e.value)
    assert "columns.aime25.problem=prompt" in message
    assert "data.aime25=PATH" not in message  # the file is already given
    assert "columns.problem=answer" not in message


def test_eval_takes_columns_per_benchmark_from_the_command_line(aime_like):
    cfg = load_config(EvalConfig, {}, ["benchmarks=[aime25]", f"data.aime25={aime_like}",
                                       "columns.aime25.problem=prompt"])
    prompts = load_benchmark("aime25", cfg)
    assert [p.reference for p in prompts] == ["1", "2", "3"]
    assert prompts[0].messages[0]["content"].startswith("Find 0 + 1.")


@pytest.mark.parametrize("override, match", [
    ("columns.problem=prompt", r"names no benchmark; write columns.<benchmark>.<column key>=.*"
                               r"columns.aime25.problem=prompt"),
    ("columns.aime25.problme=prompt", "unknown column key. Did you mean 'problem'"),
])
def test_eval_columns_misspelt(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(EvalConfig, {}, ["benchmarks=[aime25]", override])


# ---------------------------------------------------------------------------------------------
# The tiny preset's eval: block belongs to toy-test


def tiny_eval() -> tuple[Path, dict]:
    path = REPO / "students" / "tiny.yaml"
    return path, load_yaml(path)["eval"]


def test_preset_limit_and_teacher_stay_with_the_presets_benchmark():
    path, section = tiny_eval()
    cfg, lines = load_eval_config(path, section, ["benchmarks=[gsm8k-test]"])
    assert cfg.limit is None and cfg.teacher is None
    assert any("limit=200, teacher=tiny not applied" in line for line in lines), lines
    assert any("max_tokens=256" in line for line in lines), lines  # what does apply is printed


def test_preset_defaults_apply_to_its_own_benchmark_and_are_printed():
    path, section = tiny_eval()
    cfg, lines = load_eval_config(path, section, ["limit=20"])
    assert cfg.benchmarks == ["toy-test"] and cfg.limit == 20 and cfg.teacher == "tiny"
    assert lines and "teacher=tiny" in lines[0] and "limit=200" not in lines[0]


def test_a_chat_copy_of_gpqa_through_the_shipped_yaml(tmp_path):
    """The command in datasets/gpqa-diamond.yaml's header, as eval overrides."""
    data = write_jsonl(tmp_path / "gpqa.jsonl", [{"prompt": [{"role": "user", "content": LETTERED}],
                                                  "choices": OPTIONS, "answer": "C"}])
    bench = "columns.gpqa-diamond"
    cfg = load_config(EvalConfig, {}, ["benchmarks=[gpqa-diamond]", f"data.gpqa-diamond={data}",
                                       f"{bench}.problem=prompt", f"{bench}.answer=answer", f"{bench}.choices=choices",
                                       f"{bench}.id=null", f"{bench}.keep=[]"])
    (prompt,) = load_benchmark("gpqa-diamond", cfg)
    assert prompt.reference == "C" and prompt.messages[0]["content"].count("photon") == 1

"""`distill import`: published trace sets -> Traces, one fixture per set in its documented columns.

Each fixture is a few rows written to a tmp JSONL in the columns the set's hub card documents
(OpenR1-Math-220k, Mixture-of-Thoughts, OpenThoughts-114k / OpenThoughts3, Bespoke-Stratos-17k,
s1K-1.1, LIMO) and read through the sources/*.yaml entry with `path=`, the same
`datasets.load_dataset` path a hub import takes. The real Sky-T1 outputs in ../shared/data go
through import and then `distill filter`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.cli import main
from distill.config import REPO_ROOT, ConfigError
from distill.imports import import_subset, load_source_config, split_last_boxed
from distill.trace import read_traces

SOURCES = sorted((REPO_ROOT / "sources").rglob("*.yaml"))
R1_TEXT = "<think>\nLet me add 2 and 3.\n2+3=5.\n</think>\n\nThe answer is $\\boxed{5}$."
STRATOS_TEXT = ("<|begin_of_thought|>\n\nAdd them: 2+3=5.\n\n<|end_of_thought|>\n\n"
                "<|begin_of_solution|>\n\nThe sum is $\\boxed{5}$.\n\n<|end_of_solution|>")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def do_import(tmp_path, source, rows, subset="default", overrides=()):
    data = write_jsonl(tmp_path / f"{source}.jsonl", rows)
    cfg = load_source_config(source, [f"path={data}", f"cache_dir={tmp_path / 'hf-cache'}", *overrides])
    out = tmp_path / "out" / "traces" / source / subset
    record = import_subset(cfg, subset, out)
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return list(read_traces(out / "raw.jsonl")), rejects, record


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_every_source_yaml_loads(path):
    cfg = load_source_config(path)
    assert cfg.teacher["model"] and cfg.subsets and cfg.name == path.stem
    assert cfg.hub or path.stem == "sky-t1"  # sky-t1 is local files only


def test_published_sets_are_all_on_the_menu():
    names = {p.stem for p in SOURCES}
    assert {"openr1-math", "mixture-of-thoughts", "openthoughts-114k", "openthoughts3", "bespoke-stratos",
            "s1k", "limo"} <= names


def test_openr1_math_one_trace_per_generation(tmp_path):
    row = {"problem": "What is 2+3?", "solution": "5", "answer": "5.0", "problem_type": "Algebra",
           "question_type": "math-word-problem", "source": "olympiads", "uuid": "u-1",
           "is_reasoning_complete": [True, False], "generations": [R1_TEXT, "<think>\nI keep going and going"],
           "correctness_math_verify": [True, False], "correctness_llama": None, "finish_reasons": ["stop", "length"],
           "correctness_count": 1, "messages": [{"role": "user", "content": "What is 2+3?"},
                                                {"role": "assistant", "content": R1_TEXT}]}
    traces, rejects, record = do_import(tmp_path, "openr1-math", [row])
    assert not rejects and record["counts"] == {"rows": 1, "traces": 2}
    first, second = traces
    assert first.reasoning == "Let me add 2 and 3.\n2+3=5." and first.answer == "The answer is $\\boxed{5}$."
    assert first.reference == "5" and first.finish_reason == "stop" and first.task == "math"
    assert first.messages == [{"role": "user", "content": "What is 2+3?"}]
    assert first.prompt_id == "openr1-math/default/u-1" and [t.sample_index for t in traces] == [0, 1]
    assert first.meta["correctness_math_verify"] is True and second.meta["correctness_math_verify"] is False
    assert first.meta["imported_from"].endswith(":default") and first.meta["source"] == "olympiads" and first.meta["problem_type"] == "Algebra"
    # An unclosed thought is kept whole as reasoning with no answer: the filter's think_format drops it.
    assert second.answer == "" and second.finish_reason == "length"
    assert first.teacher["model"] == "deepseek-ai/DeepSeek-R1" and first.teacher["backend"] == "import"
    assert first.teacher["subset"] == "default" and "served_model" in first.teacher
    assert len({t.id for t in traces}) == 2


def test_mixture_of_thoughts_messages_and_code_subset(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Write a program that prints 5."},
                          {"role": "assistant", "content": "<think>\nprint it\n</think>\n\n```python\nprint(5)\n```"}],
             "num_tokens": 42, "source": "open-r1/codeforces-cots"}]
    traces, rejects, _ = do_import(tmp_path, "mixture-of-thoughts", rows, subset="code")
    (t,) = traces
    assert not rejects and t.task == "code" and t.reference is None
    assert t.reasoning == "print it" and t.answer.startswith("```python")
    assert t.meta["num_tokens"] == 42 and t.meta["problem"] == "Write a program that prints 5."
    assert t.prompt_id.startswith("mixture-of-thoughts/code/")


@pytest.mark.parametrize("source", ["openthoughts-114k", "bespoke-stratos"])
def test_stratos_format_markers_and_system_prompt(tmp_path, source):
    rows = [{"system": "Your role as an assistant involves thoroughly exploring questions ... <|begin_of_thought|>",
             "conversations": [{"from": "user", "value": "Return your final response within \\boxed{}. 2+3?"},
                               {"from": "assistant", "value": STRATOS_TEXT}]}]
    (t,), rejects, _ = do_import(tmp_path, source, rows)
    assert not rejects
    assert t.reasoning == "Add them: 2+3=5." and t.answer == "The sum is $\\boxed{5}$."
    assert [m["role"] for m in t.messages] == ["user"]  # the format-teaching system prompt is left out
    assert "<|" not in t.completion


def test_openthoughts3_sharegpt_human_gpt(tmp_path):
    rows = [{"difficulty": 6, "source": "nvidia/OpenCodeReasoning", "domain": "math",
             "conversations": [{"from": "human", "value": "What is 2+3?"}, {"from": "gpt", "value": R1_TEXT}]}]
    (t,), rejects, _ = do_import(tmp_path, "openthoughts3", rows)
    assert not rejects and t.messages == [{"role": "user", "content": "What is 2+3?"}]
    assert t.teacher["model"] == "Qwen/QwQ-32B" and t.meta["difficulty"] == 6 and t.answer.endswith("$\\boxed{5}$.")


def test_s1k_separate_reasoning_and_answer_columns(tmp_path):
    rows = [{"solution": "The sum is 5.", "question": "What is 2+3?", "cot_type": "math", "source_type": "x",
             "metadata": "{}", "gemini_thinking_trajectory": "g", "gemini_attempt": "g",
             "deepseek_thinking_trajectory": "2 plus 3 is 5.", "deepseek_attempt": "Final answer: $\\boxed{5}$",
             "gemini_grade": "Yes", "gemini_grade_reason": "", "deepseek_grade": "Yes", "deepseek_grade_reason": ""}]
    (t,), rejects, _ = do_import(tmp_path, "s1k", rows)
    assert not rejects and t.reasoning == "2 plus 3 is 5." and t.answer == "Final answer: $\\boxed{5}$"
    assert t.reference == "The sum is 5." and t.meta["deepseek_grade"] == "Yes"


def test_limo_answer_is_the_paragraph_with_the_last_box(tmp_path):
    solution = "First, 2+3.\n\nWe try \\boxed{4}? No.\n\nCounting again gives 5.\n\n**Final Answer**\n\\boxed{5}"
    rows = [{"question": "What is 2+3?", "solution": solution, "answer": "5"},
            {"question": "Unboxed?", "solution": "no box here", "answer": "1"}]
    traces, rejects, _ = do_import(tmp_path, "limo", rows)
    assert not rejects
    assert traces[0].answer == "**Final Answer**\n\\boxed{5}" and traces[0].reasoning.endswith("gives 5.")
    assert traces[1].answer == "" and traces[1].reasoning == "no box here"
    assert split_last_boxed("\\boxed{1}") == ("", "\\boxed{1}", True)


def test_bad_rows_go_to_rejects_with_the_reason(tmp_path):
    good = {"messages": [{"role": "user", "content": "2+3?"}, {"role": "assistant", "content": R1_TEXT}],
            "num_tokens": 1, "source": "s"}
    rows = [good,
            {"messages": [{"role": "user", "content": "only a question"}], "num_tokens": 1, "source": "s"},
            {"messages": [{"role": "user", "content": "2+4?"}, {"role": "assistant", "content": ""}],
             "num_tokens": 1, "source": "s"},
            good]  # the same row again
    traces, rejects, record = do_import(tmp_path, "mixture-of-thoughts", rows, subset="math")
    assert len(traces) == 1
    assert [r["row"] for r in rejects] == [2, 3, 4]
    assert "no assistant turn" in rejects[0]["reason"] and "no completion text" in rejects[1]["reason"]
    assert "duplicate" in rejects[2]["reason"] and "row 1" in rejects[2]["reason"]
    assert rejects[0]["raw"]["messages"][0]["content"] == "only a question"
    assert record["counts"]["rejected"] == 3


def test_a_column_missing_from_the_set_stops_before_writing(tmp_path):
    rows = [{"question": "2+3?", "solution": "x", "answer": "5"}]
    with pytest.raises(ConfigError, match=r"columns.problem='problem'.*did you mean 'question'.*its columns are"):
        do_import(tmp_path, "openr1-math", rows)
    assert not (tmp_path / "out" / "traces" / "openr1-math" / "default" / "raw.jsonl").exists()


def test_a_crashed_import_resumes_without_duplicates(tmp_path, monkeypatch):
    rows = [{"question": f"What is {i}+1?", "solution": f"so\n\n\\boxed{{{i + 1}}}", "answer": str(i + 1)}
            for i in range(20)] + [{"question": "", "solution": "x", "answer": "0"}]
    clean, _, _ = do_import(tmp_path / "clean", "limo", rows)

    import distill.trace as trace_mod

    real_write, calls = trace_mod.JsonlWriter.write, {"n": 0}

    def dying_write(self, record):
        calls["n"] += 1
        if calls["n"] == 8:
            # What a kill -9 mid-write leaves: half a line, then the process is gone.
            import os
            os.write(self.fd, b'{"id": "half')
            raise KeyboardInterrupt
        return real_write(self, record)

    monkeypatch.setattr(trace_mod.JsonlWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        do_import(tmp_path / "crash", "limo", rows)
    monkeypatch.setattr(trace_mod.JsonlWriter, "write", real_write)
    resumed, rejects, record = do_import(tmp_path / "crash", "limo", rows)
    assert [t.to_dict() for t in resumed] == [t.to_dict() for t in clean]
    assert len(rejects) == 1 and record["counts"]["already_imported"] == 7 and record["counts"]["traces"] == 13
    # A third run writes nothing new.
    again, rejects, record = do_import(tmp_path / "crash", "limo", rows)
    assert len(again) == 20 and len(rejects) == 1 and record["counts"].get("traces", 0) == 0


def test_cli_import_then_filter_on_real_sky_t1(tmp_path, shared_data, capsys):
    src = shared_data / "traces" / "skythought" / "sky-t1-5k-14b_aime24.jsonl"
    out = tmp_path / "out"
    assert main(["import", "--source", "sky-t1", "--subset", "aime24", "--out", str(out), f"path={src}",
                 f"cache_dir={tmp_path / 'hf-cache'}", "teacher.model=NovaSky-AI/Sky-T1-14B"]) == 0
    folder = out / "traces" / "sky-t1" / "aime24"
    traces = list(read_traces(folder / "raw.jsonl"))
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    assert len(traces) == len(rows) == 30
    # SkyThought's README: only 8 of the 30 14B AIME outputs close their thought.
    assert sum(bool(t.answer) for t in traces) == 8
    assert all("<|begin_of_solution|>" not in t.answer and "<|end_of_thought|>" not in t.reasoning for t in traces)
    assert {t.teacher["model"] for t in traces} == {"NovaSky-AI/Sky-T1-14B"}
    assert [t.meta["score"] for t in traces] == [r["score"][0] for r in rows]
    # The filter stage takes the import as it takes sampled traces.
    assert main(["filter", "--teacher", "sky-t1", "--prompts", "aime24", "--out", str(out),
                 "decontaminate=false", "workers=0"]) == 0
    clean = list(read_traces(folder / "clean.jsonl"))
    assert 0 < len(clean) <= 8
    # Every kept trace was scored right by SkyThought's own grader too.
    assert all(t.meta["score"] for t in clean)


def test_cli_import_errors_are_one_line(tmp_path, capsys):
    assert main(["import", "--source", "openr1-mathh", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'openr1-math'" in capsys.readouterr().err
    assert main(["import", "--source", "sky-t1", "--out", str(tmp_path)]) == 2
    assert "no source" in capsys.readouterr().err

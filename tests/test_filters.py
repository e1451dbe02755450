"""Unit tests per filter (make_trace factory), apply_filters, recipes from YAML, and `run` end to end."""

from __future__ import annotations

import json

import pytest

from distill.config import ConfigError
from distill.filters import (
    Decontaminate,
    Dedup,
    FilterReport,
    Finished,
    Language,
    Length,
    MathCorrect,
    Readability,
    Repetition,
    Select,
    ThinkFormat,
    apply_filters,
)
from distill.filters.recipe import apply_overrides, build, load_recipe, r1_recipe
from distill.filters.run import run
from distill.trace import trace_id

LOOP = "Wait, maybe I should check the previous step again because something seems off here.\n\n"


# ---- finished / think_format / length ------------------------------------------------------

def test_finished(make_trace):
    assert Finished()(make_trace())
    assert Finished().check(make_trace(finish_reason="length")).startswith("truncated")
    assert Finished().check(make_trace(finish_reason="content_filter")).startswith("not finished")
    assert Finished()(make_trace(finish_reason=None))
    assert not Finished(require_reason=True)(make_trace(finish_reason=None))


def test_think_format_split_and_errors(make_trace):
    t = make_trace(reasoning="", answer="<think>\nLet me add.\n</think>\n\nIt is \\boxed{5}.")
    assert ThinkFormat().check(t) is None
    assert (t.reasoning, t.answer) == ("Let me add.", "It is \\boxed{5}.")
    prefilled = make_trace(reasoning="", answer="Let me add.\n</think>\n\n\\boxed{5}")  # template prefilled <think>
    assert ThinkFormat()(prefilled) and prefilled.reasoning == "Let me add."
    assert ThinkFormat().check(make_trace(reasoning="", answer="<think>never closes")).startswith("unclosed reasoning")
    assert ThinkFormat().check(make_trace(answer="")).startswith("empty answer")
    assert ThinkFormat().check(make_trace(reasoning="", answer="just an answer")).startswith("no reasoning block")
    assert ThinkFormat().check(make_trace(answer="5 <think>more</think> 6")).startswith("several reasoning blocks")
    assert ThinkFormat().check(make_trace(reasoning="a </think> b")).startswith("several reasoning blocks")


def test_think_format_custom_delimiters(make_trace):
    sky = ThinkFormat(think=("<|begin_of_thought|>", "<|end_of_thought|>"),
                      solution=("<|begin_of_solution|>", "<|end_of_solution|>"))
    raw = "<|begin_of_thought|>\n\nthink\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n\\boxed{5}\n\n<|end_of_solution|>"
    t = make_trace(reasoning="", answer=raw)
    assert sky.check(t) is None and t.answer == "\\boxed{5}" and t.reasoning == "think"
    cut = make_trace(reasoning="", answer=raw.split("<|end_of_solution|>")[0])
    assert sky.check(cut).startswith("unclosed answer")
    # With R1 delimiters the Sky-T1 text has no reasoning block at all.
    assert ThinkFormat().check(make_trace(reasoning="", answer=raw)).startswith("no reasoning block")


def test_length_chars_and_tokens(make_trace, tiny_tokenizer_path):
    t = make_trace(reasoning="x" * 100, answer="\\boxed{5}")
    assert Length(max_reasoning=99).check(t) == "reasoning too long: 100 chars > max 99"
    assert Length(min_answer=10).check(t).startswith("answer too short: 9 chars")
    assert Length(max_reasoning=100, min_answer=9)(t)
    tok = Length(tokenizer=str(tiny_tokenizer_path), max_reasoning=10)
    reason = tok.check(make_trace(reasoning="word " * 50))
    assert reason.startswith("reasoning too long") and "tokens" in reason
    with pytest.raises(ValueError, match="cannot load tokenizer.*local tokenizer folder"):
        Length(tokenizer="/nonexistent/tokenizer").prepare()


# ---- math_correct --------------------------------------------------------------------------

def test_math_correct_writes_meta(make_trace):
    ok = make_trace()
    assert MathCorrect()(ok) and ok.meta["correct"] is True and ok.meta["verify"]["extracted"] == "5"
    wrong = make_trace(answer="\\boxed{6}")
    assert MathCorrect().check(wrong).startswith("wrong:") and wrong.meta["correct"] is False


def test_math_correct_boxed_in_reasoning_not_answer(make_trace):
    # The reasoning boxed the right value, the answer states another: the answer is what counts.
    t = make_trace(reasoning="Maybe \\boxed{5}? Let me recheck.", answer="The answer is 7.")
    assert MathCorrect().check(t).startswith("wrong:") and t.meta["verify"]["extracted"] == "7"
    t = make_trace(reasoning="So \\boxed{5}.", answer="I am done thinking about this problem now.")
    assert MathCorrect().check(t).startswith("no_answer")


def test_math_correct_answer_fallback_matches_the_eval_setting(make_trace):
    t = make_trace(answer="Putting the two steps of the problem together we get 5 in the end")
    assert MathCorrect().check(t).startswith("no_answer")
    assert MathCorrect(answer_fallback="last_number").check(t) is None and t.meta["verify"]["method"] == "last_number"
    with pytest.raises(ValueError, match="answer_fallback 'last'"):
        MathCorrect(answer_fallback="last")


def test_math_correct_nested_boxes_and_choice(make_trace):
    assert MathCorrect()(make_trace(answer="\\boxed{\\boxed{5}}"))
    assert MathCorrect()(make_trace(task="choice", answer="The answer is \\boxed{B}", reference="B"))
    assert not MathCorrect()(make_trace(task="choice", answer="\\boxed{C}", reference="B"))
    code = make_trace(task="code", answer="print(1)", reference={"tests": []})
    assert MathCorrect()(code) and "correct" not in code.meta   # code_correct's job


def test_math_correct_unverifiable_reported_apart(make_trace):
    t = make_trace(reference="\\begin{pmatrix")
    assert MathCorrect().check(t).startswith("unverifiable (gold_unparsable)")
    assert t.meta["correct"] is None
    assert MathCorrect(keep_unverifiable=True)(make_trace(reference=None))


# ---- language / repetition / readability ---------------------------------------------------

def test_language_cjk_in_english_problem(make_trace):
    english = "We add the two numbers carefully and check the result once more. " * 10
    assert Language()(make_trace(reasoning=english))
    mixed = english + "所以我们需要再检查一下这个结果是否正确。" * 2
    reason = Language().check(make_trace(reasoning=mixed))
    assert reason.startswith("mixed languages") and "cjk" in reason
    # One stray character is not mixing; Greek letters are math, not a language.
    assert Language()(make_trace(reasoning=english + " 的"))
    assert Language()(make_trace(reasoning=english + " θ = π/2 and σ is small, φ too, ω, λ, μ"))


def test_language_follows_the_prompt(make_trace):
    zh = [{"role": "user", "content": "计算二加三等于多少？请逐步推理。"}]
    chinese = "我们把二和三相加，得到五。所以答案是五。检查一下：二加三确实等于五。" * 5
    # Variables and short function names in Latin letters are fine in Chinese math (x, sin, log).
    assert Language()(make_trace(messages=zh, reasoning=chinese + " 设 x = 2, sin x, log y"))
    assert not Language()(make_trace(messages=zh, reasoning="Let us add these numbers together carefully " * 10))


def test_repetition_loop_at_the_end(make_trace):
    body = " ".join(f"Step {i}: we compute the value {i * 7} and compare it to the bound." for i in range(200))
    assert Repetition()(make_trace(reasoning=body))
    looping = body + "\n\n" + LOOP * 8 + "Wait, maybe"
    reason = Repetition().check(make_trace(reasoning=looping))
    assert reason.startswith("looping tail: the last") and "should check the previous step" in reason


def test_repetition_loop_that_starts_late_and_recovers(make_trace):
    # 90% of the text is fine, then a paragraph repeats 6 times, then the model finishes.
    body = "\n\n".join(f"Now consider case {i}, where the remainder is {i % 5} and the sum grows by {i}." for i in range(300))
    t = make_trace(reasoning=body + "\n\n" + LOOP * 6 + "Finally the sum is 5.")
    assert Repetition().check(t).startswith("repeated line: 6 times")
    assert Repetition(line_repeats=7)(t)


def test_repetition_ignores_restated_equations(make_trace):
    eq = "a^2 b^2 - 27 a b + 23 a + 23 b = 0\n"
    text = "".join(f"Case {i}: we expand it.\n{eq}" for i in range(8))
    assert Repetition()(make_trace(reasoning=text + "done"))


def test_repetition_ngram_ratio(make_trace):
    # A loop whose repeats vary by one number: no exact tail or line, but the 10-grams repeat.
    sentence = ("then we try again with the same approach as before, and once more we get nothing new "
                "at all, so we go back to the start of the whole argument and redo the computation")
    text = " ".join(f"{sentence} {i}" for i in range(60))
    assert Repetition(tail_repeats=99, line_repeats=99).check(make_trace(reasoning=text)).startswith("repeated n-grams")


def test_readability(make_trace):
    assert Readability()(make_trace())
    wall = " ".join(["word"] * 301)
    assert Readability().check(make_trace(reasoning=wall)).startswith("long paragraph: 301 words")
    code = "Let me check with code.\n```python\nprint(2 + 3)\n```\nIt prints 5."
    assert Readability().check(make_trace(reasoning=code)).startswith("code block in math reasoning")
    assert Readability()(make_trace(reasoning=code, task="code"))
    layout = "Long division:\n```\n  12\n x 3\n----\n  36\n```\nso 36."
    assert Readability()(make_trace(reasoning=layout))
    assert Readability().check(make_trace(reasoning="def f(x):\n    return x\nprint(f(5))")).startswith("code block")


# ---- dedup / decontaminate -----------------------------------------------------------------

def _t(make_trace, i, prompt="What is 2 + 3?", reasoning=None, pid=None):
    pid = pid or f"p{i}"
    return make_trace(id=trace_id(pid, i, "t"), prompt_id=pid, sample_index=i,
                      messages=[{"role": "user", "content": prompt}],
                      reasoning=reasoning or f"Unique reasoning number {i} about apples and pears.")


def test_dedup_exact_and_near_completions(make_trace):
    base = " ".join(f"line {i} of a long derivation with several steps" for i in range(40))
    d = Dedup()
    assert d(_t(make_trace, 0, reasoning=base))
    assert d.check(_t(make_trace, 1, reasoning="  " + base.upper())).startswith("exact duplicate")
    near = base.replace("line 39 of", "line 39 in")
    assert d.check(_t(make_trace, 2, reasoning=near)).startswith("near duplicate")
    assert d(_t(make_trace, 3, reasoning="Something else entirely, about triangles and their angles here."))


def test_dedup_prompts_keeps_all_samples_of_one_prompt(make_trace):
    d = Dedup(on="prompt")
    q = ("Find all real numbers x such that x squared minus five x plus six equals zero, then compute the "
         "product of the roots, the sum of their squares and the sum of their cubes, and report the sum of them.")
    assert d(_t(make_trace, 0, prompt=q, pid="a")) and d(_t(make_trace, 1, prompt=q, pid="a"))
    assert d.check(_t(make_trace, 2, prompt=q + " ", pid="b")).startswith("exact duplicate: same prompt as a")
    assert not d(_t(make_trace, 3, prompt=q, pid="b"))   # every sample of the dropped prompt
    assert d.check(_t(make_trace, 4, prompt=q.replace("of them", "of those"), pid="c")).startswith("near duplicate")


def test_dedup_memory_is_bounded(make_trace):
    d = Dedup(max_index=10)
    for i in range(50):
        d(_t(make_trace, i, reasoning=f"record {i} " + " ".join(f"w{i}_{j}" for j in range(20))))
    assert len(d._gens) == 2 and all(len(g.keys) <= 5 for g in d._gens)


def test_decontaminate_texts_short_problems_and_boilerplate(make_trace):
    bench = "Let $x$ be the number of ordered pairs of positive integers such that $x+y=10$. Find $x$."
    dc = Decontaminate(texts=[bench, "Compute $\\dbinom{31}{28}$."])
    assert dc.check(_t(make_trace, 0, prompt="Solve: let x be the number of ordered pairs of positive integers such that x + y = 10. Find x")).startswith("contaminated: texts")
    assert dc.check(_t(make_trace, 1, prompt="Please compute \\dbinom{31}{28} for me.")).startswith("contaminated: texts: contains the whole problem")
    assert dc(_t(make_trace, 2, prompt="How many apples does Tom have if he buys 3 and eats one?"))
    # An instruction shared by every benchmark problem is boilerplate, not contamination.
    instr = " Please reason step by step, and put your final answer within a box."
    many = [f"Problem {i}: compute the sum of {i} and {i + 1} and the cube of {i}.{instr}" for i in range(30)]
    dc = Decontaminate(texts=many)
    assert dc(_t(make_trace, 3, prompt="Tom has 3 apples and buys 2 more; how many?" + instr))
    assert not dc(_t(make_trace, 4, prompt=many[7]))


def test_decontaminate_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Decontaminate(files=[str(tmp_path / "nope.jsonl")]).prepare()
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"b.jsonl:1: no text field problem or question or prompt.*decontaminate.field"):
        Decontaminate(files=[str(bad)]).prepare()
    dc = Decontaminate(benchmarks=["no-such-benchmark"], missing="warn")
    dc.prepare()
    assert "no-such-benchmark" in dc.skipped
    with pytest.raises(ValueError, match="no-such-benchmark.*could not be loaded.*missing=warn"):
        Decontaminate(benchmarks=["no-such-benchmark"]).prepare()


# ---- select and apply_filters --------------------------------------------------------------

def _samples(make_trace, pid, answers, lengths=None):
    out = []
    for i, a in enumerate(answers):
        out.append(make_trace(id=trace_id(pid, i, "t"), prompt_id=pid, sample_index=i,
                              answer=f"\\boxed{{{a}}}", completion_tokens=(lengths or [10] * 99)[i]))
    return out


def test_select_pass_rate_window_counts_dropped_samples(make_trace):
    easy = _samples(make_trace, "easy", [5, 5, 5, 5])
    hard = _samples(make_trace, "hard", [5, 4, 4, 4])
    hard[1].finish_reason = "length"          # dropped by `finished`, still a failed attempt
    mid = _samples(make_trace, "mid", [5, 4, 5, 4], lengths=[30, 10, 20, 10])
    report = FilterReport()
    kept = list(apply_filters(easy + hard + mid, [Finished(), MathCorrect(), Select(keep="shortest", pass_rate=(0.3, 0.8))],
                              report=report))
    assert [(t.prompt_id, t.sample_index) for t in kept] == [("mid", 2)]
    assert kept[0].meta["pass_rate"] == 0.5 and kept[0].meta["n_samples"] == 4
    assert report.reasons["select"] == {"pass rate out of window": 5, "not selected": 1}
    assert report.dropped["finished"] == 1


def test_select_first_k_and_all(make_trace):
    ts = _samples(make_trace, "p", [5, 5, 4, 5])
    firsts = list(apply_filters(ts, [MathCorrect(), Select(keep="first", k=2)]))
    assert [t.sample_index for t in firsts] == [0, 1]
    ts = _samples(make_trace, "p", [5, 5, 4, 5])
    assert len(list(apply_filters(ts, [MathCorrect(), Select()]))) == 3


def test_select_streams_with_a_window_and_rejects_scattered_prompts(make_trace):
    a, b = _samples(make_trace, "a", [5, 5]), _samples(make_trace, "b", [5, 5])
    interleaved = [a[0], b[0], a[1], b[1]]
    assert len(list(apply_filters(interleaved, [MathCorrect(), Select(window=2)]))) == 4
    with pytest.raises(ValueError, match="samples of prompt 'a' are not together.*select.window"):
        list(apply_filters(interleaved, [MathCorrect(), Select(window=1)]))
    with pytest.raises(ValueError, match="no meta\\['correct'\\].*math_correct"):
        list(apply_filters(_samples(make_trace, "c", [5]), [Select()]))


def test_apply_filters_workers_match_inline(make_trace):
    base = " ".join(f"line {i} of a long derivation with several steps" for i in range(40))

    def traces():
        out = []
        for i in range(30):
            # exact copies (i % 5 == 1 repeats i - 1), near copies (one word changed), unique ones;
            # a few raw completions ThinkFormat must split (the worker's rewrite comes back).
            text = base + (f" variant {i - 1}" if i % 5 == 1 else f" variant {i}")
            text = text.replace("line 3 ", "row 3 ") if i % 5 == 2 else text
            t = _t(make_trace, i, prompt=f"Problem {i // 3 if i < 27 else 0}: what is 2 + 3?",
                   reasoning=text if i % 5 in (0, 1, 2) else None, pid=f"p{i // 3}")
            t.answer = f"\\boxed{{{5 if i % 3 else 6}}}"
            if i % 4 == 3:
                t.answer, t.reasoning = f"<think>\n{t.reasoning}\n</think>\n\n{t.answer}", ""
            t.finish_reason = "length" if i % 7 == 0 else "stop"
            out.append(t)
        return out

    recipes = [lambda: [Finished(), ThinkFormat(), MathCorrect(), Dedup()],
               lambda: [Dedup(on="prompt"), Finished(), ThinkFormat(), MathCorrect(), Dedup(), Select(keep="shortest")]]
    for recipe in recipes:
        seen: list = []
        inline = [t.to_dict() for t in apply_filters(traces(), recipe(),
                                                     on_reject=lambda t, n, r: seen.append((t.id, n, r, t.to_dict())))]
        pooled_rejects: list = []
        pooled = [t.to_dict() for t in apply_filters(traces(), recipe(), workers=2, chunk_size=3,
                                                     on_reject=lambda t, n, r: pooled_rejects.append((t.id, n, r, t.to_dict())))]
        assert inline == pooled and seen == pooled_rejects
        assert len(inline) == 30 - len(seen)
        assert {"finished", "math_correct", "dedup"} <= {n for _, n, _, _ in seen}
        assert any(r.startswith("near duplicate") for *_, r, _ in seen) and any(r.startswith("exact") for *_, r, _ in seen)
        assert any(t["reasoning"] and "<think>" not in t["answer"] and t["sample_index"] % 4 == 3 for t in inline)


def test_apply_filters_rejects_non_filters():
    with pytest.raises(TypeError, match="is not a filter"):
        list(apply_filters([], [lambda t: True]))


# ---- recipes -------------------------------------------------------------------------------

def test_recipe_yaml_and_did_you_mean(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("filters:\n  - finished\n  - think_format: {think: ['<a>', '</a>']}\n"
                    "  - select: {keep: shortest, pass_rate: [0.1, 0.9]}\n  - language: false\n")
    filters = build(load_recipe(path))
    assert [f.name for f in filters] == ["finished", "think_format", "select"]
    assert filters[1].think == ("<a>", "</a>") and filters[2].pass_rate == (0.1, 0.9)
    path.write_text("filters:\n  - finnished\n")
    with pytest.raises(ConfigError, match="unknown filter 'finnished'. Did you mean 'finished'"):
        load_recipe(path)
    path.write_text("filters:\n  - math_correct: {timout: 3}\n")
    with pytest.raises(ConfigError, match="unknown key 'timout'.*Did you mean 'timeout'"):
        build(load_recipe(path), str(path))
    path.write_text("filters:\n  - select: {keep: longest}\n")
    with pytest.raises(ConfigError, match="'longest' is not one of"):
        build(load_recipe(path))


def test_r1_recipe_switches():
    names = [n for n, _ in r1_recipe()]
    assert names[:3] == ["finished", "think_format", "language"] and "math_correct" in names
    recipe = apply_overrides(r1_recipe(), {"language": "false", "length": {"max_reasoning": "100"},
                                           "select": "true", "math_correct": {"timeout": "9"}})
    names = [n for n, _ in recipe]
    assert "language" not in names and names[-1] == "select" and names.index("length") == 2
    built = {f.name: f for f in build(recipe)}
    assert built["length"].max_reasoning == 100 and built["math_correct"].timeout == 9.0
    with pytest.raises(ConfigError, match="unknown filter 'langauge'. Did you mean 'language'"):
        apply_overrides(r1_recipe(), {"langauge": "false"})


def test_filter_config_one_override_rule():
    """Each key is a FilterConfig field or a filter's name, whose dotted fields are that filter's settings."""
    from distill.filters.run import FilterConfig, load_filter_config

    cfg = load_filter_config(None, None, ["workers=3", "chunk_size=8", "overwrite=true", "language=false",
                                          "dedup.on=prompt", "length=true", "push_to_hub=me/set"])
    assert isinstance(cfg, FilterConfig) and (cfg.workers, cfg.chunk_size, cfg.overwrite) == (3, 8, True)
    recipe = dict(cfg.recipe)
    assert "language" not in recipe and recipe["dedup"] == {"on": "prompt"} and recipe["length"] == {}
    assert cfg.push_to_hub == "me/set" and cfg.recipe_source.startswith("R1 recipe")
    assert [n for n, _ in load_filter_config(None, None, ["filters=[finished,math_correct]"]).recipe] == [
        "finished", "math_correct"]
    with pytest.raises(ConfigError, match="unknown key 'workres'. Did you mean 'workers'"):
        load_filter_config(None, None, ["workres=3"])
    with pytest.raises(ConfigError, match="workers must be 0"):
        load_filter_config(None, None, ["workers=-1"])


def test_teacher_filters_are_read_through_teacher_config(tmp_path, monkeypatch):
    from distill.filters.run import load_filter_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "teachers").mkdir()
    mine = tmp_path / "teachers" / "mine.yaml"
    mine.write_text("backend: hf\nmodel: m\nfilters: [finished, {dedup: {on: prompt}}]\n")
    cfg = load_filter_config("mine", None, ["dedup.on=completion"])
    assert cfg.recipe == [("finished", {}), ("dedup", {"on": "completion"})] and cfg.recipe_source.endswith("mine.yaml")
    # A typo in the teacher YAML is caught by TeacherConfig, not silently read past as raw YAML.
    mine.write_text("backend: hf\nmodel: m\nfiltres: [finished]\n")
    with pytest.raises(ConfigError, match="unknown key 'filtres' for TeacherConfig. Did you mean 'filters'"):
        load_filter_config("mine", None, [])
    assert load_filter_config("not-a-menu-teacher", None, []).recipe_source.startswith("R1 recipe")


# ---- run: the `make filter` stage ----------------------------------------------------------

def test_run_writes_outputs(tmp_path, make_trace, capsys):
    raw = tmp_path / "raw.jsonl"
    lines = [_t(make_trace, i).to_json() for i in range(6)]
    wrong = _t(make_trace, 6)
    wrong.answer = "\\boxed{7}"
    lines += [wrong.to_json(), "{not json", json.dumps({"id": "x", "prompt_id": "p", "reasoning": 5})]
    raw.write_text("\n".join(lines) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("filters: [finished, think_format, math_correct, dedup]\n")
    report = run(raw, tmp_path / "out", teacher="no-such-teacher", recipe=str(recipe), overrides=["workers=0"])
    out = tmp_path / "out"
    clean = [json.loads(x) for x in (out / "clean.jsonl").read_text().splitlines()]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(clean) == 6 and all(c["meta"]["correct"] for c in clean)
    by_filter = {r["filter"]: r for r in rejects}
    assert set(by_filter) == {"read", "math_correct"} and len(rejects) == 3
    assert by_filter["math_correct"]["trace"]["answer"] == "\\boxed{7}"
    assert any("raw.jsonl:9: field 'reasoning'" in r["reason"] for r in rejects)
    summary = json.loads((out / "filter_report.json").read_text())
    assert summary["in"] == 9 and summary["kept"] == 6 and summary["read_errors"] == 2
    assert summary["dropped"]["math_correct"] == 1 and summary["reasons"]["math_correct"] == {"wrong": 1}
    assert (out / "filter_lengths.png").read_bytes()[:4] == b"\x89PNG"
    assert "dropped by math_correct" in capsys.readouterr().out
    assert report.n_kept == 6


def test_run_uses_teacher_filters_and_reports_errors(tmp_path, make_trace, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teachers").mkdir()
    # Read as a TeacherConfig (its `filters` field), so it is a whole teacher: backend and model.
    (tmp_path / "teachers" / "mine.yaml").write_text("backend: hf\nmodel: m\nfilters: [finished]\n")
    raw = tmp_path / "raw.jsonl"
    raw.write_text(_t(make_trace, 0, reasoning=" ").to_json() + "\n")   # fails think_format, passes finished
    assert run(raw, tmp_path / "o", teacher="mine").n_kept == 1
    assert run(raw, tmp_path / "o", teacher="mine", recipe="r1", overrides=["decontaminate=false"]).n_kept == 0
    with pytest.raises(ConfigError, match="no such file"):
        run(tmp_path / "missing.jsonl", tmp_path / "o", teacher="mine")
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        run(raw, tmp_path / "o", teacher="mine", overrides=["length={tokenizer: /nope}"])

"""Eval scoring through the benchmark loader and distill.verify, on real benchmark files and real outputs.

- Answer conventions: AIME "023" equals 23, AMC 27.0 equals 27, GSM8K "#### 1,234" equals 1234,
  checked through `load_prompts` (datasets/*.yaml with a local path) and the eval's scorer.
- Re-scoring the real model outputs in ../shared/data/traces/skythought (SkyThought's
  Qwen2.5-Math evaluation outputs) reproduces each file's recorded accuracy. The original
  `_metrics.json` files are not in the folder, so the recorded accuracy is computed here as the
  mean of the file's own per-row `score` column, which is what that harness averages into `acc`.
  With `answer_fallback=last_number` (their reading of an unboxed answer) every file is
  reproduced to within one problem once the disagreements listed and explained below are set
  aside; with our stricter default the Sky-T1 27B file scores 46 fewer, all unboxed outputs.
"""

from __future__ import annotations

import pytest

import ast
import gzip
import json
import re
from pathlib import Path

from distill.eval.results import score_completions, scored_text
from distill.prompts import load_prompts
from distill.teachers.base import Completion
from distill.trace import split_reasoning
from distill.verify.math import last_boxed


def check(prompt, answer_text: str) -> bool | None:
    return score_completions([(prompt, Completion("", answer_text, "stop"))], workers=0)[0].correct


def test_aime_zero_padded_answers_equal_integers(shared_data):
    prompts = list(load_prompts("aime24", [f"path={shared_data / 'benchmarks' / 'aime24.jsonl'}"]))
    raw = [json.loads(x)["answer"] for x in (shared_data / "benchmarks" / "aime24.jsonl").read_text().splitlines()]
    assert len(prompts) == 30 and "023" in raw and "025" in raw
    for p, r in zip(prompts, raw):
        assert p.reference == str(int(r)), (p.id, r)  # '023' -> '23'
        assert check(p, f"The answer is $\\boxed{{{int(r)}}}$.") is True, p.id
        assert check(p, f"So \\boxed{{{int(r) + 1}}}") is False, p.id
    padded = prompts[raw.index("023")]
    assert check(padded, "\\boxed{23}") is True and check(padded, "\\boxed{023}") is True


def test_amc_float_answers_equal_integers(shared_data):
    path = shared_data / "benchmarks" / "amc23.jsonl"
    prompts = list(load_prompts("amc23", [f"path={path}"]))
    raw = [json.loads(x)["answer"] for x in path.read_text().splitlines()]
    assert raw[0] == 27.0 and prompts[0].reference == "27"
    for p, r in zip(prompts, raw):
        assert check(p, f"\\boxed{{{int(r)}}}") is True, (p.id, r)
        assert check(p, f"\\boxed{{{int(r) + 2}}}") is False, (p.id, r)


def test_gsm8k_hash_answers_with_thousands_separators(shared_data, tmp_path):
    synthetic = tmp_path / "gsm8k.jsonl"
    synthetic.write_text(json.dumps({"question": "How many?", "answer": "Step 1...\n#### 1,234"}) + "\n")
    [p] = load_prompts("gsm8k-test", [f"path={synthetic}"])
    assert p.reference == "1234"
    assert check(p, "\\boxed{1234}") is True and check(p, "\\boxed{1,234}") is True
    assert check(p, "\\boxed{1235}") is False and check(p, "\\boxed{234}") is False

    # Every real GSM8K test answer written with a thousands separator.
    path = shared_data / "benchmarks" / "gsm8k_test.jsonl"
    rows = [json.loads(x)["answer"].split("####")[-1].strip() for x in path.read_text().splitlines()]
    prompts = list(load_prompts("gsm8k-test", [f"path={path}"]))
    with_commas = [(p, r) for p, r in zip(prompts, rows) if "," in r]
    assert len(with_commas) == 14
    for p, r in with_commas:
        assert p.reference == r.replace(",", "")
        assert check(p, f"\\boxed{{{r.replace(',', '')}}}") is True, (p.id, r)


# ---------------------------------------------------------------------------------------------
# Re-scoring real outputs

SKY_T1 = ("<|begin_of_thought|>", "<|end_of_thought|>")

# Rows where our verdict differs from the recorded one although both graders read the same
# final answer (the last \\boxed{}): a difference of judgement. Each was read by hand.
SAME_ANSWER_JUDGED_APART = {
    ("gemma-2-27b-it_math500", 74): "cos x / sin x is cot x: math-verify proves it, their string match does not (we are right)",
    ("gemma-2-27b-it_math500", 179): "20x-28y+44z+16=0 is the right plane, but the problem asks for gcd 1: "
                                     "math-verify accepts equations equal up to a factor (they are right)",
    ("gemma-2-27b-it_math500", 198): "10,\\!080 is 10080 (we are right)",
    ("gemma-2-27b-it_math500", 284): "'3+2√2, 3-2√2' is '3 ± 2√2' (we are right)",
    ("gemma-2-27b-it_math500", 290): "r = 4, 7/2: 7/2 is extraneous (2r-7=0); they accept the extra root (we are right)",
    ("gemma-2-27b-it_math500", 293): "(3/5, 8/3) vs (3/5, 8/3]: the open bracket is wrong; they ignore brackets (we are right)",
    ("gemma-2-27b-it_math500", 313): "12π is 12\\pi (we are right)",
    ("gemma-2-27b-it_math500", 351): "an unsimplified cosine expression whose value is 1/16: math-verify evaluates it "
                                     "numerically (right in value, though the problem wants it simplified)",
    ("gemma-2-27b-it_math500", 424): "x ≈ 600 for 600 (we are right)",
    ("gemma-2-27b-it_math500", 480): "'1, 1/2 ± √3/2 i' for 1: the expression is 1 for every cube root of unity (we are right)",
    ("sky-t1-5k-27b_math500", 284): "'3+2√2, 3-2√2' is '3 ± 2√2' (we are right)",
}
# (recorded correct, our correct) per file. Within one problem on the five AIME/AMC files; the
# two MATH-500 files differ by the disagreements classified in the test: gemma +4 (the judgements
# above), Sky-T1 27B -46 (67 outputs that never box an answer: their harness takes the last
# number of the text, ours an "answer is" line or the last math span, which in these rambling
# outputs is often an intermediate step; 10 go our way, 57 theirs).
EXPECTED = {
    "gemma-2-27b-it_math500": (286, 290),
    "qwen2.5-14b-instruct_aime24": (6, 6),
    "qwen2.5-14b-instruct_amc23": (26, 26),
    "sky-t1-5k-14b_aime24": (6, 6),
    "sky-t1-5k-14b_amc23": (22, 21),
    "sky-t1-5k-27b_math500": (300, 254),
    "sky-t1-5k-32b-ckpt140_aime24": (9, 9),
}
WITHIN_ONE = [stem for stem in EXPECTED if "math500" not in stem]


def _literal(value):
    return ast.literal_eval(value) if isinstance(value, str) else value


def _norm(s: str) -> str:
    """Spacing, \\! \\left \\right and a leading 'r =' do not change which answer was read."""
    s = "".join(str(s).split()).replace("\\!", "").replace("\\left", "").replace("\\right", "")
    return re.sub(r"^[a-zA-Z]=", "", s)


def rescore(path: Path, fallback: str = "distill"):
    """(recorded verdicts, our verdicts, rows, texts we scored) for one SkyThought output file."""
    bench = path.stem.rsplit("_", 1)[1]
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    # The same benchmark YAML as `make eval`, pointed at the file: `question` holds the problem,
    # `answer` the benchmark's original answer (not their pre-processed `gt`).
    prompts = list(load_prompts(bench, [f"path={path}", "columns.problem=question", "columns.id=idx", "columns.keep=[]"]))
    assert len(prompts) == len(rows)
    items = []
    for p, row in zip(prompts, rows):
        # Sky-T1 writes its own thought delimiters; the short-CoT models write none. finish_reason
        # is not recorded, so an unclosed thought is scored as a whole, as their harness did.
        reasoning, answer, _ = split_reasoning(row["code"][0], SKY_T1)
        items.append((p, Completion(reasoning, answer, None)))
    # 10 s per answer, twice the eval default: on a loaded 2-core machine a 5 s limit can cut a slow
    # sympy check (gemma row 164 takes ~3 s unloaded). Gemma row 232 (omega^{-1994}) never finishes
    # and comes back unjudged, counted wrong as in the eval; the file records it wrong too.
    verdicts = score_completions(items, workers=2, timeout=10, fallback=fallback)
    recorded = [bool(_literal(r["score"])[0]) for r in rows]
    ours = [bool(v.correct) for v in verdicts]
    texts = [scored_text(c.reasoning, c.answer, c.finish_reason) for _, c in items]
    return recorded, ours, rows, texts, verdicts


# With answer_fallback=last_number (their harness's reading of an unboxed answer) every
# disagreement, per file, read by hand: (our verdict - theirs, why). Judgement differences on the
# same boxed answer are SAME_ANSWER_JUDGED_APART; these are the rest.
LAST_NUMBER_APART = {
    ("sky-t1-5k-27b_math500", 25): (-1, "solution cut mid-way: we read only the answer part, they read the thought too"),
    ("sky-t1-5k-27b_math500", 428): (-1, "solution cut mid-way: we read only the answer part, they read the thought too"),
    ("sky-t1-5k-27b_math500", 28): (+1, "'-2 + 7i' stated as the answer; they took the last number, 7"),
    ("sky-t1-5k-27b_math500", 113): (+1, "'the answer is definitely 8000': their string match keeps 'definitely'"),
    ("sky-t1-5k-27b_math500", 278): (+1, "'the answer is 255 I think that's pretty much it': their string keeps the words"),
    ("sky-t1-5k-27b_math500", 355): (-1, "their recorded score says right for their own prediction '1' against 100"),
    ("sky-t1-5k-27b_math500", 404): (-1, "'the answer is three boxes ...': their normaliser turns 'three' into 3"),
}
SAME_BOX_SIGN = {("gemma-2-27b-it_math500", i): -1 for i in (290, 293, 480)}  # they accept, we reject; the rest the other way


@pytest.mark.slow
def test_rescoring_with_their_fallback_reproduces_recorded_accuracy(shared_data):
    """answer_fallback=last_number: SkyThought's harness and ours read unboxed answers alike, and
    each file's accuracy is reproduced to within one problem once the listed judgement calls
    (each read by hand, most of them math-verify being right where a string match is not) are
    set aside. Raw counts are printed."""
    files = sorted((shared_data / "traces" / "skythought").glob("*.jsonl"))
    listed = {**{k: (SAME_BOX_SIGN.get(k, +1), why) for k, why in SAME_ANSWER_JUDGED_APART.items()}, **LAST_NUMBER_APART}
    summary, seen = [], set()
    for path in files:
        recorded, ours, rows, texts, verdicts = rescore(path, fallback="last_number")
        apart = {(path.stem, i) for i, (r, o) in enumerate(zip(recorded, ours)) if r != o}
        seen |= apart
        unlisted = sorted(apart - set(listed))
        assert not unlisted, "disagreements nobody has looked at: " + ", ".join(
            f"{s} row {i}: reference {rows[i]['answer']!r}, ours {verdicts[i].extracted!r} ({verdicts[i].status}), "
            f"theirs {_literal(rows[i]['pred'])[0]!r} recorded {recorded[i]}" for s, i in unlisted)
        for key in apart:
            assert listed[key][0] == ours[key[1]] - recorded[key[1]], (key, listed[key])
        rec, got = sum(recorded), sum(ours)
        explained = sum(listed[key][0] for key in apart)
        summary.append(f"{path.stem}: {len(rows)} problems, recorded {rec}, ours {got}, "
                       f"{len(apart)} listed disagreement(s) net {explained:+d}")
        assert abs(got - explained - rec) <= 1, summary[-1]
    print("\n".join(summary))
    assert seen == set(listed), f"listed disagreements that no longer happen: {sorted(set(listed) - seen)}"


@pytest.mark.slow
def test_rescoring_skythought_outputs_with_our_fallback(shared_data):
    """Our default reading of unboxed answers is stricter than theirs; everything else is the same."""
    files = sorted((shared_data / "traces" / "skythought").glob("*.jsonl"))
    assert sorted(p.stem for p in files) == sorted(EXPECTED)
    unexplained, judged_apart, summary = [], set(), []
    for path in files:
        recorded, ours, rows, texts, verdicts = rescore(path)
        kinds = {"no box": 0, "judged apart": 0}
        for i, (r, o) in enumerate(zip(recorded, ours)):
            if r == o:
                continue
            box = last_boxed(texts[i])
            pred = _literal(rows[i]["pred"])[0]
            if box is None:
                # No \\boxed{} in the output, so both graders fall back, differently: their harness
                # to the last number of the text (a lucky '3' mid-sentence of a truncated thought;
                # '7' of '-2 + 7i'), distill.verify to an "answer is" line or the last math span.
                kinds["no box"] += 1
            elif _norm(pred) == _norm(box) and (path.stem, i) in SAME_ANSWER_JUDGED_APART:
                kinds["judged apart"] += 1
                judged_apart.add((path.stem, i))
            else:
                unexplained.append(f"{path.stem} row {i}: reference {rows[i]['answer']!r}, answer {box!r}, "
                                   f"recorded {r}, ours {o} ({verdicts[i].status})")
        n, rec, got = len(rows), sum(recorded), sum(ours)
        summary.append(f"{path.stem}: {n} problems, recorded acc {rec / n:.3f} ({rec}), ours {got / n:.3f} ({got}), "
                       f"disagreements {kinds}")
        assert (rec, got) == EXPECTED[path.stem], summary[-1]
        if path.stem in WITHIN_ONE:
            assert abs(got - rec) <= 1, summary[-1]
    print("\n".join(summary))
    assert not unexplained, "disagreements nobody has looked at:\n" + "\n".join(unexplained)
    # Every hand-read disagreement still happens: a checker change that flips one shows up here.
    assert judged_apart == set(SAME_ANSWER_JUDGED_APART)


# ---------------------------------------------------------------------------------------------
# Multiple choice and code benchmarks through the same path


def test_gpqa_style_choice_scored_by_letter_after_the_shuffle(tmp_path):
    rows = [{"Record ID": f"r{i}", "Question": f"Which value is number {i}?", "Correct Answer": f"right {i}",
             "Incorrect Answer 1": f"wrong a{i}", "Incorrect Answer 2": f"wrong b{i}", "Incorrect Answer 3": f"wrong c{i}",
             "High-level domain": "Physics", "Subdomain": "Optics"} for i in range(6)]
    path = tmp_path / "gpqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = list(load_prompts("gpqa-diamond", [f"path={path}"]))
    letters = {p.reference for p in prompts}
    assert letters <= set("ABCD") and len(letters) > 1  # shuffled: the gold is not always A
    for p, row in zip(prompts, rows):
        shown = p.messages[-1]["content"]
        assert f"\n{p.reference}) {row['Correct Answer']}\n" in shown, shown  # the gold letter labels the right option
        wrong = next(x for x in "ABCD" if x != p.reference)
        assert check(p, f"The answer is \\boxed{{{p.reference}}}.") is True
        assert check(p, f"The answer is \\boxed{{{wrong}}}.") is False


def test_humaneval_code_scored_in_the_sandbox(shared_data):
    path = shared_data / "code" / "humaneval.jsonl.gz"
    prompts = list(load_prompts("humaneval", [f"path={path}"], limit=3))
    rows = [json.loads(x) for x in gzip.decompress(path.read_bytes()).decode().splitlines()[:3]]
    good = [(p, Completion("", f"```python\n{r['prompt']}{r['canonical_solution']}\n```", "stop")) for p, r in zip(prompts, rows)]
    bad = [(p, Completion("", f"```python\n{r['prompt']}    return None\n```", "stop")) for p, r in zip(prompts, rows)]
    verdicts = score_completions(good + bad, workers=1)
    assert [v.correct for v in verdicts] == [True] * 3 + [False] * 3, [v.detail for v in verdicts]

"""distill.verify.code: extraction, the tests dict, comparison, running, real data, the code_correct filter.

Runs under the default sandbox ('auto': bubblewrap when installed, as in CI); the sandbox itself
(both modes, hostile programs) is tested in test_sandbox.py.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from distill.filters.code import ANNOTATION, CodeCorrect
from distill.verify import code as vc
from distill.verify.code import (
    CodeResult,
    extract_code,
    outputs_match,
    parse_tests,
    values_match,
    verify_code,
    verify_many,
)
from distill.verify.sandbox import Limits

FAST = Limits(timeout=2.0)


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is my solution.\n\n```{tag}\n{code}\n```\n"


# ---------------------------------------------------------------------------------------------
# Extraction


def test_extract_last_python_block_among_several():
    text = (
        "First try:\n```python\nprint(1)\n```\nIn C++:\n```cpp\nint main(){}\n```\n"
        "Final:\n```py\nprint(2)\n```\nUsage:\n```\n$ python sol.py\n```\n"
    )
    assert extract_code(text) == "print(2)\n"


@pytest.mark.parametrize("tag", ["python", "Python", "py", "python3", "py3", "python title='sol.py'"])
def test_extract_python_tags(tag):
    assert extract_code(fenced("x = 1", tag)) == "x = 1\n"


def test_extract_untagged_block_when_no_python_tag():
    assert extract_code("```\nprint(3)\n```\n") == "print(3)\n"


def test_extract_other_languages_and_prose_are_no_code():
    assert extract_code("```cpp\nint main() { return 0; }\n```") is None
    assert extract_code("The answer is to loop over the array and sum it.") is None
    assert extract_code("") is None


def test_extract_ignores_unclosed_block_of_a_truncated_answer():
    assert extract_code("```python\nprint(1)\n```\nBetter:\n```python\ndef f(:\n   x = ") == "print(1)\n"
    assert extract_code("```python\ndef f(:\n   x = ") is None


def test_extract_looks_after_the_reasoning():
    text = "<think>\n```python\nprint('draft')\n```\n</think>\n\n```python\nprint('final')\n```"
    assert extract_code(text) == "print('final')\n"
    assert extract_code("<think>```python\nprint('draft')\n```</think>\nNo code here.") is None


def test_extract_longer_fence_and_tildes():
    assert extract_code("````python\ns = '```'\nprint(s)\n````") == "s = '```'\nprint(s)\n"
    assert extract_code("~~~python\nprint(4)\n~~~") == "print(4)\n"


# ---------------------------------------------------------------------------------------------
# The tests dict


def test_parse_shapes():
    stdio = parse_tests({"cases": [{"input": "1\n", "output": "2\n"}]})
    assert (stdio.kind, stdio.cases, stdio.compare) == ("stdio", (("1\n", "2\n"),), "whitespace")
    apps = parse_tests(
        {"inputs": ["1\n", "2\n"], "outputs": ["2\n", "3\n"], "compare": "exact", "timeout": 3}
    )
    assert (apps.kind, apps.num_cases, apps.timeout, apps.compare) == ("stdio", 2, 3.0, "exact")
    lcb = parse_tests({"fn_name": "twoSum", "cases": [{"input": "[2,7,11,15]\n9", "output": "[0,1]"}]})
    assert (lcb.kind, lcb.cases[0]) == ("calls", ([[2, 7, 11, 15], 9], [0, 1]))
    apps_calls = parse_tests({"fn_name": "add", "inputs": [[1, 2]], "outputs": [[3]]})
    assert apps_calls.apps_unwrap and apps_calls.cases[0] == ([1, 2], [3])
    check = parse_tests(
        {"check": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "inc"}
    )
    assert (check.kind, check.entry_point, check.check_called, check.num_cases) == ("check", "inc", False, 1)
    rllm = parse_tests(
        {"functional": "def check(candidate):\n    assert candidate(1)\n\ncheck(Solution().f)"}
    )
    assert rllm.check_called and rllm.entry_point is None
    assert parse_tests(json.dumps({"cases": [{"input": "", "output": "x"}]})).kind == "stdio"


@pytest.mark.parametrize(
    "tests, message",
    [
        ({"case": [{"input": "", "output": ""}]}, r"unknown key 'case'; did you mean 'cases'\?"),
        ({"compare": "exact"}, r"no tests: expected 'cases'"),
        ({"cases": [{"input": "", "output": ""}], "check": "def check(c): pass\ncheck(f)"}, "not both"),
        ({"cases": [{"input": "", "output": ""}], "compare": "fuzzy"}, r"compare: must be one of"),
        ({"cases": [{"input": ""}]}, r"cases\[0\]: must be a dict with 'input' and 'output'"),
        ({"cases": []}, r"cases: must be a non-empty list"),
        ({"inputs": ["1"], "outputs": []}, r"1 inputs but 0 outputs"),
        ({"cases": [{"input": 1, "output": "1"}]}, r"case 0: stdin/stdout cases need string input"),
        (
            {"fn_name": "f", "cases": [{"input": "[1", "output": "1"}]},
            r"case 0: input must hold one JSON value per line",
        ),
        (
            {"fn_name": "not an identifier", "cases": [{"input": "1", "output": "1"}]},
            r"fn_name: must be a Python identifier",
        ),
        (
            {"check": "def check(candidate):\n    assert candidate(1)\n"},
            r"never calls check\(\.\.\.\) and no 'entry_point'",
        ),
        ({"check": "def check(candidate:\n"}, r"check: not valid Python \(line 1"),
        ({"cases": [{"input": "", "output": ""}], "timeout": -1}, r"timeout: must be a positive number"),
        ("not json", r"a string of tests must be JSON"),
        ([1, 2], r"code tests must be a dict"),
    ],
)
def test_parse_errors_name_the_field(tests, message):
    with pytest.raises(ValueError, match=message):
        parse_tests(tests)


def test_verify_many_names_the_bad_index_before_running_anything():
    good = {"cases": [{"input": "", "output": ""}]}
    with pytest.raises(ValueError, match=r"tests\[1\]: unknown key 'ouputs'"):
        verify_many(["x", "y"], [good, {"inputs": [""], "ouputs": [""]}])


# ---------------------------------------------------------------------------------------------
# Comparison


@pytest.mark.parametrize(
    "got, expected, compare, same",
    [
        ("3\n", "3", "whitespace", True),
        ("1  2 \n\n", "1 2", "whitespace", True),
        ("  1 2\n3\n", "1 2\n3\n\n", "whitespace", True),
        ("1 2\n3", "1 2 3", "whitespace", False),  # line structure counts
        ("3", "4", "whitespace", False),
        ("3\n", "3", "exact", False),
        ("3", "3", "exact", True),
        ("0.3333333", "0.333333333", "float", True),
        ("1000000.1", "1000000.0", "float", True),  # relative 1e-7
        ("0.334", "0.333333", "float", False),
        ("YES 0.5", "YES 0.5000001", "float", True),
        ("NO 0.5", "YES 0.5", "float", False),
        ("1 2", "1 2 3", "float", False),
        ("nan", "nan", "float", True),
    ],
)
def test_outputs_match(got, expected, compare, same):
    assert outputs_match(got, expected, compare, 1e-6) is same


def test_values_match_float_tolerance_is_recursive():
    assert values_match([1.0, {"a": 2.0000001}], [1, {"a": 2}], "float")
    assert not values_match([1.0, {"a": 2.1}], [1, {"a": 2}], "float")
    assert not values_match([1.0000001], [1], "whitespace")  # exact equality without 'float'
    assert not values_match(True, 1.0, "float")


# ---------------------------------------------------------------------------------------------
# Running stdin/stdout


SUM = {
    "cases": [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "5 5\n", "output": "10\n"},
        {"input": "-1 1\n", "output": "0\n"},
    ]
}


def test_stdio_passes():
    r = verify_code(fenced("a, b = map(int, input().split())\nprint(a + b)"), SUM, limits=FAST)
    assert (r.status, r.passed, r.pass_rate, [c.status for c in r.cases]) == (
        "passed",
        True,
        1.0,
        ["passed"] * 3,
    )
    assert r.code.startswith("a, b =")


def test_stdio_reads_stdin_every_common_way():
    for read in (
        "import sys\nprint(sum(map(int, sys.stdin.read().split())))",
        "print(sum(map(int, open(0).read().split())))",
        "import sys\nprint(sum(map(int, sys.stdin.buffer.readline().split())))",
        "print(sum(map(int, open('/dev/stdin').read().split())))",
    ):
        assert verify_code(read, SUM, extract=False, limits=FAST).passed, read


def test_stdio_stops_at_first_failure_unless_run_all():
    wrong_on_second = "a, b = map(int, input().split())\nprint(a + b if a != 5 else 11)"
    r = verify_code(wrong_on_second, SUM, extract=False, limits=FAST)
    assert r.status == "wrong_answer" and [c.status for c in r.cases] == ["passed", "wrong_answer"]
    assert r.pass_rate == pytest.approx(1 / 3)
    assert "expected '10', got '11'" in r.excerpt and "case 2/3" in r.excerpt
    r = verify_code(wrong_on_second, SUM, extract=False, limits=FAST, run_all=True)
    assert [c.status for c in r.cases] == ["passed", "wrong_answer", "passed"]
    assert r.pass_rate == pytest.approx(2 / 3) and r.status == "wrong_answer"


def test_stdio_runtime_error_and_exit_status():
    r = verify_code("a, b = map(int, input().split())\nprint(a // (b - b))", SUM, extract=False, limits=FAST)
    assert r.status == "runtime_error" and "ZeroDivisionError" in r.excerpt
    r = verify_code("import sys\nprint(3)\nsys.exit(2)", SUM, extract=False, limits=FAST)
    assert r.status == "runtime_error" and "exit status 2" in r.excerpt
    r = verify_code(
        "import sys\nprint(3)\nsys.exit(0)", {"cases": [{"input": "", "output": "3"}]}, extract=False
    )
    assert r.passed  # exit(0) after printing is a normal end
    r = verify_code("def f(:\n  pass", SUM, extract=False, limits=FAST)
    assert r.status == "runtime_error" and "SyntaxError" in r.excerpt


def test_program_names_do_not_clash_with_the_harness():
    code = "def main():\n    print('hi')\ndef _send(*a, **k):\n    pass\nsys = None\nmain()"
    assert verify_code(code, {"cases": [{"input": "", "output": "hi"}]}, extract=False).passed


def test_stdio_compare_modes_from_the_tests():
    third = "print(1 / 3)"
    case = [{"input": "", "output": "0.333333"}]
    assert not verify_code(third, {"cases": case}, extract=False).passed
    assert verify_code(third, {"cases": case, "compare": "float"}, extract=False).passed
    assert not verify_code(
        third, {"cases": case, "compare": "float", "float_tol": 1e-9}, extract=False
    ).passed
    assert not verify_code(
        "print(3)", {"cases": [{"input": "", "output": "3"}], "compare": "exact"}, extract=False
    ).passed  # print adds the newline


def test_stdio_threads_and_main_guard():
    code = (
        "import threading, sys\nsys.setrecursionlimit(10**5)\nthreading.stack_size(1 << 26)\n"
        "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
        "def main():\n    print(depth(int(input())))\n"
        "if __name__ == '__main__':\n    threading.Thread(target=main).start()\n"
    )
    assert verify_code(code, {"cases": [{"input": "20000\n", "output": "20000"}]}, extract=False).passed


def test_stdio_timeout_and_memory_limit():
    r = verify_code(
        "while True:\n    pass", {"cases": [{"input": "", "output": ""}], "timeout": 0.5}, extract=False
    )
    assert r.status == "timeout" and r.cases[0].time_s < 3
    r = verify_code(
        "x = bytearray(600 << 20)\nprint(1)",
        {"cases": [{"input": "", "output": "1"}], "memory_mb": 256},
        extract=False,
    )
    assert r.status == "memory_limit", r
    assert verify_code(
        "x = bytearray(100 << 20)\nprint(1)", {"cases": [{"input": "", "output": "1"}]}, extract=False
    ).passed  # the default 1 GiB fits it


def test_no_code_is_its_own_status():
    r = verify_code("I think the answer is to sort the array.", SUM)
    assert (r.status, r.passed, r.pass_rate, r.code) == ("no_code", False, 0.0, None)
    assert "no Python code block" in r.excerpt


# ---------------------------------------------------------------------------------------------
# Functional calls (LiveCodeBench / APPS)


TWO_SUM = {
    "fn_name": "twoSum",
    "cases": [
        {"input": "[2,7,11,15]\n9", "output": "[0, 1]"},
        {"input": "[3,2,4]\n6", "output": "[1, 2]"},
        {"input": "[3,3]\n6", "output": "[0, 1]"},
    ],
}
SOLUTION = """
class Solution:
    def twoSum(self, nums: List[int], target: int) -> List[int]:
        seen = {}
        for i, x in enumerate(nums):
            if target - x in seen:
                return (seen[target - x], i)   # a tuple: compared after a JSON round trip
            seen[x] = i
"""


def test_calls_with_solution_class_and_prelude():
    r = verify_code(fenced(SOLUTION), TWO_SUM)
    assert r.passed and r.num_cases == 3 and r.pass_rate == 1.0
    r = verify_code(fenced(SOLUTION), {**TWO_SUM, "prelude": False})
    assert r.status == "runtime_error" and "NameError" in r.excerpt and "List" in r.excerpt


def test_calls_wrong_answer_and_run_all():
    wrong_on_6 = SOLUTION.replace(
        "return (seen[target - x], i)", "return (seen[target - x], i) if target != 6 else [0, 0]"
    )
    r = verify_code(wrong_on_6, TWO_SUM, extract=False)
    assert [c.status for c in r.cases] == ["passed", "wrong_answer"]
    assert "expected [1, 2], got [0, 0]" in r.cases[1].excerpt
    r = verify_code(wrong_on_6, TWO_SUM, extract=False, run_all=True)
    assert [c.status for c in r.cases] == ["passed", "wrong_answer", "wrong_answer"]


def test_calls_exception_then_run_all_continues_in_a_fresh_process():
    code = "def half(x):\n    if x == 0:\n        raise ValueError('zero')\n    return x / 2\n"
    tests = {"fn_name": "half", "inputs": [[4], [0], [8]], "outputs": [2.0, 0.0, [4.0]]}  # APPS wraps outputs
    r = verify_code(code, tests, extract=False, run_all=True)
    assert [c.status for c in r.cases] == ["passed", "runtime_error", "passed"]
    assert "ValueError: zero" in r.cases[1].excerpt
    r = verify_code(code, tests, extract=False)
    assert [c.status for c in r.cases] == ["passed", "runtime_error"]


def test_calls_timeout_per_call_and_missing_function():
    code = "import time\ndef f(x):\n    time.sleep(x)\n    return x\n"
    r = verify_code(
        code,
        {"fn_name": "f", "inputs": [[0], [30], [0]], "outputs": [0, 30, 0], "timeout": 0.5},
        extract=False,
        run_all=True,
    )
    assert [c.status for c in r.cases] == ["passed", "timeout", "passed"]
    r = verify_code("def g(): pass", {"fn_name": "f", "inputs": [[1]], "outputs": [1]}, extract=False)
    assert r.status == "runtime_error" and "neither `Solution.f` nor a function `f`" in r.excerpt


# ---------------------------------------------------------------------------------------------
# check(candidate)


HE_TESTS = {
    "check": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == 9\n",
    "entry_point": "square",
}


def test_check_passes_and_names_the_failing_assert():
    assert verify_code(fenced("def square(x):\n    return x * x"), HE_TESTS).passed
    r = verify_code(fenced("def square(x):\n    return x * abs(x)"), HE_TESTS)
    assert r.status == "wrong_answer" and r.num_cases == 1 and r.pass_rate == 0.0
    assert "assert candidate(-3) == 9" in r.excerpt


def test_check_errors_are_not_wrong_answers():
    own_assert = "def square(x):\n    assert x > 0, 'positive only'\n    return x * x"
    r = verify_code(own_assert, HE_TESTS, extract=False)
    assert r.status == "runtime_error" and "positive only" in r.excerpt
    r = verify_code("def cube(x):\n    return x ** 3", HE_TESTS, extract=False)
    assert r.status == "runtime_error" and "defines no `square`" in r.excerpt
    r = verify_code("def square(x):\n    return x * x\nraise SystemExit(0)", HE_TESTS, extract=False)
    assert r.status == "runtime_error" and "exit()" in r.excerpt


def test_check_cannot_be_passed_by_exiting_early():
    """A program that ends the process with status 0 before the tests run is not a pass."""
    for cheat in (
        "import os\nos._exit(0)",
        "import os\ndef square(x):\n    os._exit(0)\n",
        "import sys\ndef square(x):\n    sys.exit(0)\n",
    ):
        r = verify_code(cheat, HE_TESTS, extract=False)
        assert not r.passed and r.status == "runtime_error", (cheat, r)


def test_score_gives_verdicts():
    from distill.verify import score

    v = score("code", fenced("def square(x):\n    return x * x"), HE_TESTS)
    assert (v.correct, v.status, v.method) == (True, "correct", "code_block")
    v = score("code", fenced("def square(x):\n    return x + x"), HE_TESTS)
    assert (v.correct, v.status) == (False, "wrong") and "candidate(-3)" in v.detail
    assert score("code", "no code", HE_TESTS).status == "no_answer"
    assert score("code", fenced("x"), None).correct is None
    v = score("code", fenced("x"), {"bogus": 1})
    assert v.correct is None and v.status == "error" and "unknown key 'bogus'" in v.detail


# ---------------------------------------------------------------------------------------------
# Real data: every reference solution passes, broken variants fail


PERTURB = """

def _distill_perturb(r):
    if isinstance(r, bool):
        return not r
    if isinstance(r, (int, float)):
        return r + 1
    if isinstance(r, str):
        return r + "#"
    if isinstance(r, list):
        return r + [None]
    if isinstance(r, tuple):
        return r + (None,)
    if isinstance(r, dict):
        return {**r, "#": None}
    if isinstance(r, set):
        return r | {None}
    return 0 if r is None else None
"""


def _leetcode(shared_data):
    rows = json.loads((shared_data / "code" / "leetcode_test.json").read_text())
    assert len(rows) == 200
    return rows


def _humaneval(shared_data):
    with gzip.open(shared_data / "code" / "humaneval.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 164
    return rows


def _he_tests(row):
    # The official harness runs prompt + completion + test without extra imports: so do we.
    return {"check": row["test"], "entry_point": row["entry_point"], "prelude": False}


@pytest.mark.slow
def test_every_leetcode_reference_solution_passes(shared_data):
    rows = _leetcode(shared_data)
    results = verify_many(
        [r["solutions"] for r in rows], [r["tests"] for r in rows], workers=2, extract=False
    )
    failed = {i: r.excerpt for i, r in enumerate(results) if not r.passed}
    assert not failed, f"{len(failed)}/200 reference solutions failed: {failed}"


@pytest.mark.slow
def test_every_humaneval_canonical_solution_passes(shared_data):
    rows = _humaneval(shared_data)
    results = verify_many(
        [r["prompt"] + r["canonical_solution"] for r in rows],
        [_he_tests(r) for r in rows],
        workers=2,
        extract=False,
    )
    failed = {rows[i]["task_id"]: r.excerpt for i, r in enumerate(results) if not r.passed}
    assert not failed, f"{len(failed)}/164 canonical solutions failed: {failed}"


@pytest.mark.slow
def test_broken_variants_fail(shared_data):
    """Every 3rd problem of each set with its return value perturbed (+1, not, + '#', ...): all must fail."""
    answers, tests, names = [], [], []
    for row in _leetcode(shared_data)[::3]:
        method = re.search(r"check\(Solution\(\)\.(\w+)\)", row["tests"]["functional"]).group(1)
        answers.append(
            row["solutions"] + PERTURB + f"\n_orig = Solution.{method}\n"
            f"Solution.{method} = lambda self, *a, **k: _distill_perturb(_orig(self, *a, **k))\n"
        )
        tests.append(row["tests"])
        names.append(f"leetcode/{method}")
    for row in _humaneval(shared_data)[::3]:
        entry = row["entry_point"]
        answers.append(
            row["prompt"] + row["canonical_solution"] + PERTURB + f"\n_orig = {entry}\n"
            f"def {entry}(*a, **k):\n    return _distill_perturb(_orig(*a, **k))\n"
        )
        tests.append(_he_tests(row))
        names.append(row["task_id"])
    # Plus one syntax error and one exception per set, which must be errors, not wrong answers.
    lc = _leetcode(shared_data)[0]
    he = _humaneval(shared_data)[0]
    answers += [
        lc["solutions"].replace("def ", "def def ", 1),
        he["prompt"] + "    raise RuntimeError('boom')\n",
    ]
    tests += [lc["tests"], _he_tests(he)]
    names += ["leetcode/syntax", "humaneval/raises"]
    results = verify_many(answers, tests, workers=2, extract=False)
    passed = [n for n, r in zip(names, results, strict=True) if r.passed]
    assert not passed, f"broken variants passed: {passed}"
    assert sum(r.status == "wrong_answer" for r in results[:-2]) >= 0.9 * (len(results) - 2)
    assert [r.status for r in results[-2:]] == ["runtime_error", "runtime_error"]
    assert "SyntaxError" in results[-2].excerpt and "boom" in results[-1].excerpt


# ---------------------------------------------------------------------------------------------
# The code_correct filter


def _code_trace(make_trace, answer, reference=HE_TESTS, **kw):
    return make_trace(task="code", answer=answer, reference=reference, **kw)


def test_filter_keeps_correct_drops_wrong_and_annotates(make_trace):
    f = CodeCorrect()
    good = _code_trace(make_trace, fenced("def square(x):\n    return x * x"))
    bad = _code_trace(make_trace, fenced("def square(x):\n    return 2 * x"))
    assert f.check(good) is None and good.meta["correct"] is True and good.meta["pass_rate"] == 1.0
    reason = f.check(bad)
    assert reason.startswith("code_correct: wrong_answer") and "candidate(-3) == 9" in reason
    assert bad.meta["correct"] is False and bad.meta["pass_rate"] == 0.0
    assert f(good) and not f(bad)
    assert f.name == "code_correct"


def test_filter_min_pass_rate_runs_every_case(make_trace):
    code = fenced("a, b = map(int, input().split())\nprint(a + b if a != 5 else 11)")
    t = _code_trace(make_trace, code, reference=SUM)
    assert CodeCorrect(min_pass_rate=0.6).check(t) is None
    assert t.meta["pass_rate"] == pytest.approx(2 / 3) and t.meta["correct"] is False
    t2 = _code_trace(make_trace, code, reference=SUM)
    assert CodeCorrect(min_pass_rate=0.9).check(t2) == "code_correct: passed 2/3 cases (67% < 90%)"
    with pytest.raises(ValueError, match="min_pass_rate must be in"):
        CodeCorrect(min_pass_rate=0)


def test_filter_leaves_other_tasks_and_handles_missing_tests(make_trace):
    math_trace = make_trace()
    assert CodeCorrect().check(math_trace) is None and "correct" not in math_trace.meta
    no_tests = _code_trace(make_trace, fenced("print(1)"), reference=None)
    assert CodeCorrect().check(no_tests) == "code_correct: no tests in the trace's reference"
    assert CodeCorrect(keep_unverified=True).check(no_tests) is None
    with pytest.raises(ValueError, match=r"trace .*: reference: unknown key 'inputz'"):
        CodeCorrect().check(_code_trace(make_trace, fenced("print(1)"), reference={"inputz": []}))


def test_filter_annotate_batch_then_check_only_reads(make_trace, monkeypatch):
    traces = [
        _code_trace(make_trace, fenced(f"def square(x):\n    return x * {m}"), prompt_id=f"p{i}")
        for i, m in enumerate(["x", "2", "abs(x)"])
    ]
    f = CodeCorrect()
    f.annotate_all(traces + [make_trace()], workers=2)
    assert [t.meta["correct"] for t in traces] == [True, False, False]
    assert traces[1].meta[ANNOTATION]["status"] == "wrong_answer"

    def boom(*a, **k):
        raise AssertionError("check() ran the code again")

    monkeypatch.setattr("distill.filters.code.verify_code", boom)
    assert [f.check(t) is None for t in traces] == [True, False, False]
    # A pass-rate filter cannot reuse a stop-at-first-failure annotation: it must run again.
    with pytest.raises(AssertionError, match="ran the code again"):
        CodeCorrect(min_pass_rate=0.5).check(traces[1])


def test_code_result_dict_round_trips_through_json():
    r = verify_code(fenced("def square(x):\n    return x * x"), HE_TESTS)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["passed"] is True and d["pass_rate"] == 1.0 and d["cases"][0]["status"] == "passed"
    assert isinstance(r, CodeResult) and vc.STATUSES[0] == "passed"


def test_lcb_test_columns_decode_and_refuse_pickled_objects():
    """LiveCodeBench's public (JSON) and private (base64/zlib/pickle) columns become one tests dict; a
    pickle naming any class or function is refused, so a dataset row cannot run code while it is read."""
    import base64
    import os
    import pickle
    import zlib

    from distill.config import ConfigError
    from distill.verify.code_data import lcb_reference

    def private(obj):
        return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()

    public = json.dumps([{"input": "1\n", "output": "2\n", "testtype": "stdin"}])
    hidden = private(json.dumps([{"input": "5\n", "output": "6\n", "testtype": "stdin"}]))
    ref, n_public = lcb_reference({"public": public, "private": hidden}, None, "row 1")
    assert ref == {"cases": [{"input": "1\n", "output": "2\n"}, {"input": "5\n", "output": "6\n"}]} and n_public == 1
    functional = json.dumps([{"input": "[1]", "output": "1", "testtype": "functional"}])
    assert lcb_reference({"public": functional}, '{"func_name": "f"}', "row 2")[0]["fn_name"] == "f"
    with pytest.raises(ConfigError, match="row 3: functional tests need the function name"):
        lcb_reference({"public": functional}, None, "row 3")
    with pytest.raises(ConfigError, match="row 4: column 'private'.*refusing to unpickle"):
        lcb_reference({"public": public, "private": private(os.system)}, None, "row 4")

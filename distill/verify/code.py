"""Check a code answer by running its final Python block against tests, in a sandbox.

    from distill.verify.code import verify_code, verify_many
    r = verify_code(answer_text, {"cases": [{"input": "1 2\\n", "output": "3\\n"}]})
    r.passed, r.status, r.pass_rate, r.cases[0].status, r.excerpt

    results = verify_many(answers, tests_list, workers=2, run_all=True)   # pass fractions for eval

The program runs in `distill.verify.sandbox` (bubblewrap when present; see there for the limits).

## The `tests` dict (Trace.reference / Prompt.reference for task 'code')

One of three shapes, plus options. Unknown keys are an error (a typo must not silently skip tests).

stdin/stdout (Codeforces, CodeContests, APPS, LiveCodeBench 'stdin' tests): one run per case,
the case's input on stdin, stdout compared with its output::

    {"cases": [{"input": "3\\n1 2 3\\n", "output": "6\\n"}, ...]}
    {"inputs": ["3\\n1 2 3\\n", ...], "outputs": ["6\\n", ...]}          # APPS / TACO spelling

functional calls (LiveCodeBench 'functional' tests, APPS call-based): `fn_name` is called as
`Solution().fn_name(*args)` when the code defines `class Solution`, else as `fn_name(*args)`;
the return value is compared with the expected value after a JSON round trip::

    # LiveCodeBench: one JSON value per line per argument / a JSON value
    {"fn_name": "twoSum", "cases": [{"input": "[2,7,11,15]\\n9", "output": "[0,1]"}]}
    # APPS: a list of arguments / the value
    {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}

check function (HumanEval, MBPP-style, the rllm LeetCode set): the tests run in a judge process
and see the solution's names as handles into the program's process; values cross as plain data,
so an `assert` the tests make is decided by the judge on values the program returned, never by the
program (see verify/_harness.py). An `assert` failing in the tests is a wrong answer. When the
source does not call `check(...)` itself, `entry_point` names what to pass to it::

    {"check": "def check(candidate):\\n    assert candidate(2) == 4\\n", "entry_point": "square"}
    {"functional": "def check(candidate): ...\\ncheck(Solution().minOps)"}          # rllm spelling

Options (all optional):
- "compare": "whitespace" (default: lines compared with runs of spaces and trailing blanks
  ignored), "exact" (byte for byte), or "float" (whitespace-separated tokens, numbers equal within
  `float_tol`, absolute or relative). For functional calls "float" compares numbers with tolerance.
- "float_tol": 1e-6.  "timeout": seconds per case (default 6, LiveCodeBench's).
  "memory_mb": address space per process (default 1024).
- "prelude": true (default) runs LiveCodeBench's import line first (`from typing import *`,
  `from collections import *`, ...), as LeetCode's judge has `List` and `Counter` predefined, and
  LeetCode's TreeNode / ListNode helpers (`tree_node`, `list_node`, `is_same_tree`, `is_same_list`).

## Results

A `CaseResult` per case run: 'passed', 'wrong_answer', 'timeout', 'runtime_error' or
'memory_limit', with a short excerpt (the failing assert, expected vs got, the last traceback
line). A problem stops at its first failing case unless `run_all=True`; cases not run count as
not passed, so take `pass_rate` from a `run_all=True` run when the fraction matters. A check-shape
problem is a single case (its `check` either passes or not). `CodeResult.status` is 'passed', the
first failure's status, or 'no_code' when the answer has no Python block.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import math
import re
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from distill.verify.sandbox import Limits, RunOutcome, SandboxError, get_sandbox
from distill.verify.types import Verdict

log = logging.getLogger(__name__)

STATUSES = ("passed", "wrong_answer", "timeout", "runtime_error", "memory_limit")
COMPARES = ("whitespace", "exact", "float")
_PRELUDE_MODULES = (
    "string",
    "re",
    "datetime",
    "collections",
    "heapq",
    "bisect",
    "copy",
    "math",
    "random",
    "statistics",
    "itertools",
    "functools",
    "operator",
    "io",
    "sys",
    "json",
)
PRELUDE = (
    "".join(f"from {m} import *\n" for m in _PRELUDE_MODULES)
    + "from builtins import *\nfrom typing import *\n"  # builtins again: math's pow must not shadow pow
    + f"import {', '.join(_PRELUDE_MODULES)}\nsys.setrecursionlimit(50000)\n"
)
"""LiveCodeBench's import line: what LeetCode-style starter code assumes is in scope."""
LEETCODE_HELPERS = '''
class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


def list_node(values):
    head = tail = None
    for value in values:
        node = ListNode(value)
        if head is None:
            head = tail = node
        else:
            tail.next = tail = node
    return head


def tree_node(values):
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    queue, i = deque([root]), 1
    while queue and i < len(values):
        node = queue.popleft()
        for side in ("left", "right"):
            if i < len(values) and values[i] is not None:
                child = TreeNode(values[i])
                setattr(node, side, child)
                queue.append(child)
            i += 1
    return root


def is_same_list(p, q):
    while p is not None and q is not None:
        if p.val != q.val:
            return False
        p, q = p.next, q.next
    return p is None and q is None


def is_same_tree(p, q):
    stack = [(p, q)]
    while stack:
        a, b = stack.pop()
        if a is None or b is None:
            if a is not b:
                return False
            continue
        if a.val != b.val:
            return False
        stack += [(a.left, b.left), (a.right, b.right)]
    return True
'''
"""LeetCode's judge helpers (TreeNode, ListNode, `tree_node([1, None, 2])` from level order,
`list_node`, `is_same_tree`, `is_same_list`), which the rllm LeetCode tests call. Written here, a
few lines each, because no package ships LeetCode's judge; run after PRELUDE (they use its deque).
Iterative, so a 10^5-node list compares without recursion."""
EXCERPT = 240

# ---------------------------------------------------------------------------------------------
# Extraction

_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n", re.MULTILINE)
PYTHON_TAGS = {"python", "py", "python3", "py3", "pycon", "python2"}


def extract_code(text: str) -> str | None:
    """The last Python code block of an answer; None when it has none.

    Looks after a closing `</think>` when the text still holds the reasoning. Tagged Python blocks
    (```python, ```py, ```python3) win; without any, the last untagged block is taken. A block in
    another language (```cpp) is not Python; an unclosed block (a truncated answer) is not code.
    """
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    tagged, untagged = [], []
    pos = 0
    while True:
        m = _FENCE.search(text, pos)
        if m is None:
            break
        fence = m.group("fence")
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE)
        end = close.search(text, m.end())
        if end is None:
            break  # unclosed: the answer was cut off inside its code
        body = text[m.end() : end.start()]
        tag = m.group("info").strip().split()[0].lower() if m.group("info").strip() else ""
        if tag in PYTHON_TAGS:
            tagged.append(body)
        elif not tag:
            untagged.append(body)
        pos = end.end()
    blocks = tagged or untagged
    return blocks[-1] if blocks else None


# ---------------------------------------------------------------------------------------------
# Tests


@dataclass(frozen=True)
class TestSpec:
    """A validated `tests` dict (see the module docstring for the accepted shapes)."""

    kind: str
    """'stdio', 'calls' or 'check'."""
    cases: tuple[tuple[Any, Any], ...] = ()
    """stdio: (input text, expected output text); calls: (args list, expected value)."""
    fn_name: str | None = None
    check: str | None = None
    entry_point: str | None = None
    check_called: bool = False
    """The check source calls `check(...)` itself at top level (rllm's LeetCode set does)."""
    apps_unwrap: bool = False
    """APPS call-based outputs wrap the value in a list: accept `[value]` as well."""
    compare: str = "whitespace"
    float_tol: float = 1e-6
    timeout: float | None = None
    memory_mb: int | None = None
    prelude: bool = True

    @property
    def num_cases(self) -> int:
        return 1 if self.kind == "check" else len(self.cases)


_KEYS = {
    "cases",
    "inputs",
    "outputs",
    "fn_name",
    "check",
    "functional",
    "entry_point",
    "compare",
    "float_tol",
    "timeout",
    "memory_mb",
    "prelude",
}


def parse_tests(tests: Any, where: str = "tests") -> TestSpec:
    """Validate a `tests` dict; ValueError names `where` and the field."""
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except ValueError as e:
            raise ValueError(f"{where}: a string of tests must be JSON ({e})") from e
    if not isinstance(tests, dict):
        raise ValueError(
            f"{where}: code tests must be a dict (see distill.verify.code), got {type(tests).__name__}"
        )
    for key in tests:
        if key not in _KEYS:
            near = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {sorted(_KEYS)}"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")
    opts: dict[str, Any] = {}
    compare = tests.get("compare", "whitespace")
    if compare not in COMPARES:
        raise ValueError(f"{where}.compare: must be one of {COMPARES}, got {compare!r}")
    opts["compare"] = compare
    for key, typ in (("float_tol", float), ("timeout", float), ("memory_mb", int)):
        if tests.get(key) is not None:
            value = tests[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{where}.{key}: must be a positive number, got {value!r}")
            opts[key] = typ(value)
    if "prelude" in tests:
        if not isinstance(tests["prelude"], bool):
            raise ValueError(f"{where}.prelude: must be true or false, got {tests['prelude']!r}")
        opts["prelude"] = tests["prelude"]

    check = tests.get("check", tests.get("functional"))
    has_cases = "cases" in tests or "inputs" in tests or "outputs" in tests
    if "check" in tests and "functional" in tests:
        raise ValueError(f"{where}: give the check source as 'check' or 'functional', not both")
    if check is not None and has_cases:
        raise ValueError(
            f"{where}: give either a check source ('check') or cases ('cases'/'inputs'), not both"
        )
    if check is not None:
        return _parse_check(check, tests.get("entry_point"), where, opts)
    if not has_cases:
        raise ValueError(
            f"{where}: no tests: expected 'cases', 'inputs'/'outputs' or 'check' "
            "(shapes in distill.verify.code)"
        )
    fn_name = tests.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise ValueError(f"{where}.fn_name: must be a Python identifier, got {fn_name!r}")
    apps = "cases" not in tests
    pairs = _case_pairs(tests, where)
    if fn_name is None:
        for i, (inp, out) in enumerate(pairs):
            if not isinstance(inp, str) or not isinstance(out, str):
                raise ValueError(
                    f"{where}: case {i}: stdin/stdout cases need string input and output, got "
                    f"{type(inp).__name__} and {type(out).__name__} (set 'fn_name' for functional calls)"
                )
        return TestSpec(kind="stdio", cases=tuple(pairs), **opts)
    calls = tuple(_call_case(inp, out, apps, f"{where}: case {i}") for i, (inp, out) in enumerate(pairs))
    return TestSpec(kind="calls", cases=calls, fn_name=fn_name, apps_unwrap=apps, **opts)


def _case_pairs(tests: dict, where: str) -> list[tuple[Any, Any]]:
    if "cases" in tests:
        if "inputs" in tests or "outputs" in tests:
            raise ValueError(f"{where}: give 'cases' or 'inputs'/'outputs', not both")
        cases = tests["cases"]
        if not isinstance(cases, list) or not cases:
            raise ValueError(
                f"{where}.cases: must be a non-empty list of {{'input', 'output'}}, got {cases!r:.80}"
            )
        pairs = []
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or "input" not in case or "output" not in case:
                raise ValueError(
                    f"{where}.cases[{i}]: must be a dict with 'input' and 'output', got {case!r:.80}"
                )
            pairs.append((case["input"], case["output"]))
        return pairs
    inputs, outputs = tests.get("inputs"), tests.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs:
        raise ValueError(f"{where}: 'inputs' and 'outputs' must be non-empty lists")
    if len(inputs) != len(outputs):
        raise ValueError(f"{where}: {len(inputs)} inputs but {len(outputs)} outputs")
    return list(zip(inputs, outputs, strict=True))


def _call_case(inp: Any, out: Any, apps: bool, where: str) -> tuple[list, Any]:
    if isinstance(inp, str):  # LiveCodeBench: one JSON value per line, one line per argument
        try:
            args = [json.loads(line) for line in inp.split("\n") if line.strip()]
        except ValueError as e:
            raise ValueError(f"{where}: input must hold one JSON value per line ({e})") from e
    elif isinstance(inp, list):
        args = inp
    else:
        raise ValueError(
            f"{where}: input must be a list of arguments or JSON lines, got {type(inp).__name__}"
        )
    if isinstance(out, str) and not apps:
        try:
            out = json.loads(out)
        except ValueError as e:
            raise ValueError(f"{where}: output must be JSON ({e})") from e
    return args, out


def _parse_check(source: Any, entry_point: Any, where: str, opts: dict) -> TestSpec:
    if not isinstance(source, str) or not source.strip():
        raise ValueError(
            f"{where}.check: must be Python source defining check(candidate), got {source!r:.80}"
        )
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"{where}.check: not valid Python (line {e.lineno}: {e.msg})") from e
    called = any(
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "check"
        for node in tree.body
    )
    if entry_point is not None and (not isinstance(entry_point, str) or not entry_point.isidentifier()):
        raise ValueError(f"{where}.entry_point: must be a Python identifier, got {entry_point!r}")
    if not called and entry_point is None:
        raise ValueError(
            f"{where}: the check source never calls check(...) and no 'entry_point' says what "
            'to pass it; add "entry_point": "<function name>"'
        )
    return TestSpec(kind="check", check=source, entry_point=entry_point, check_called=called, **opts)


# ---------------------------------------------------------------------------------------------
# Comparison


def outputs_match(got: str, expected: str, compare: str = "whitespace", float_tol: float = 1e-6) -> bool:
    """Compare a program's stdout with the expected output under one of COMPARES."""
    if compare == "exact":
        return got == expected
    if compare == "float":
        a, b = got.split(), expected.split()
        return len(a) == len(b) and all(_token_match(x, y, float_tol) for x, y in zip(a, b, strict=True))
    return _lines(got) == _lines(expected)


def _lines(text: str) -> list[str]:
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return lines


def _token_match(a: str, b: str, tol: float) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return _close(x, y, tol)


def _close(x: float, y: float, tol: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= tol or abs(x - y) <= tol * abs(y)


def values_match(got: Any, expected: Any, compare: str = "whitespace", float_tol: float = 1e-6) -> bool:
    """Compare a functional call's JSON-normalised return value with the expected one."""
    if compare != "float":
        return got == expected
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        return _close(float(got), float(expected), float_tol)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(
            values_match(a, b, compare, float_tol) for a, b in zip(got, expected, strict=True)
        )
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(
            values_match(got[k], expected[k], compare, float_tol) for k in got
        )
    return got == expected


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class CaseResult:
    """One test case: its status (one of STATUSES), a short excerpt, and the wall time of its run."""

    index: int
    status: str
    excerpt: str = ""
    time_s: float = 0.0


@dataclass
class CodeResult:
    """One problem: the overall status, pass fraction and the per-case results."""

    status: str
    """'passed', the first failing case's status, or 'no_code'."""
    num_cases: int
    cases: list[CaseResult] = field(default_factory=list)
    code: str | None = None
    excerpt: str = ""
    """Why it failed, for rejects.jsonl and reports ('' when passed)."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def num_passed(self) -> int:
        return sum(c.status == "passed" for c in self.cases)

    @property
    def pass_rate(self) -> float:
        """Passed cases over all cases; cases not run (after an early stop) count as not passed."""
        return self.num_passed / self.num_cases if self.num_cases else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(passed=self.passed, pass_rate=self.pass_rate)
        return d


def _excerpt(text: str | bytes, limit: int = EXCERPT) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(stderr: bytes) -> str:
    """The last line of a traceback ('ZeroDivisionError: division by zero')."""
    lines = [ln for ln in stderr.decode("utf-8", errors="replace").strip().splitlines() if ln.strip()]
    return _excerpt(lines[-1]) if lines else ""


def _failure_from_outcome(out: RunOutcome, memory_mb: int) -> tuple[str, str] | None:
    """(status, excerpt) when the process itself failed (limits, crash), else None."""
    if out.timed_out:
        return "timeout", f"ran past the wall-clock limit ({out.wall_s:.1f}s)"
    if out.output_exceeded:
        return "runtime_error", f"output limit exceeded: too much written to {out.output_exceeded}"
    sig = out.signal
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGXCPU or (
            sig == signal.SIGKILL and out.cpu_s >= 1.0 and out.cpu_s >= 0.9 * max(out.wall_s, 0.01)
        ):
            return "timeout", f"CPU time limit ({out.cpu_s:.1f}s CPU)"
        if sig == signal.SIGXFSZ:
            return "runtime_error", "file size limit exceeded (SIGXFSZ)"
        if sig == signal.SIGKILL and out.maxrss_mb >= 0.8 * memory_mb:
            return "memory_limit", f"killed at {out.maxrss_mb:.0f} MiB"
        return "runtime_error", f"killed by {name}" + (f": {_tail(out.stderr)}" if out.stderr.strip() else "")
    if out.exit_code != 0 and b"MemoryError" in out.stderr[-4096:]:
        return "memory_limit", _tail(out.stderr) or "MemoryError"
    return None


# ---------------------------------------------------------------------------------------------
# Running


def verify_code(
    answer: str,
    tests: Any,
    *,
    run_all: bool = False,
    mode: str = "auto",
    limits: Limits | None = None,
    python: str | None = None,
    extract: bool = True,
) -> CodeResult:
    """Run the answer's final Python block against `tests` (shape in the module docstring).

    `extract=False` takes `answer` as the code itself. `mode` picks the sandbox ('auto', 'bwrap',
    'fallback'); `limits` its defaults (per-problem 'timeout'/'memory_mb' in `tests` win).
    Raises ValueError for malformed tests and SandboxError when the sandbox cannot run at all.
    """
    spec = tests if isinstance(tests, TestSpec) else parse_tests(tests)
    code = extract_code(answer) if extract else answer
    if code is None or not code.strip():
        return CodeResult("no_code", spec.num_cases, code=None, excerpt="the answer has no Python code block")
    base = limits or Limits()
    overrides = {k: v for k, v in (("timeout", spec.timeout), ("memory_mb", spec.memory_mb)) if v is not None}
    eff = Limits(**{**asdict(base), **overrides})
    box = get_sandbox(mode, python, eff)
    prelude = PRELUDE + LEETCODE_HELPERS if spec.prelude else ""
    if spec.kind == "stdio":
        cases = _run_stdio(box, code, prelude, spec, eff, run_all)
    elif spec.kind == "calls":
        cases = _run_calls(box, code, prelude, spec, eff, run_all)
    else:
        cases = [_run_check(box, code, prelude, spec, eff)]
    failed = next((c for c in cases if c.status != "passed"), None)
    if failed is None:
        return CodeResult("passed", spec.num_cases, cases, code)
    where = f" on case {failed.index + 1}/{spec.num_cases}" if spec.kind != "check" else ""
    excerpt = _excerpt(f"{failed.status}{where}: {failed.excerpt}", 400)
    return CodeResult(failed.status, spec.num_cases, cases, code, excerpt=excerpt)


def _run_stdio(
    box: Any, code: str, prelude: str, spec: TestSpec, limits: Limits, run_all: bool
) -> list[CaseResult]:
    results = []
    payload = {"kind": "stdio", "code": code, "prelude": prelude}
    for i, (inp, expected) in enumerate(spec.cases):
        out = box.run(payload, stdin=inp.encode(), output_limit=2 * len(expected.encode()) + 4096)
        _require_ready(out)
        failure = _failure_from_outcome(out, limits.memory_mb)
        if failure is None:
            end = next((e for e in out.events if e.get("event") == "exit"), None)
            if end is None:
                failure = (
                    "runtime_error",
                    f"exited ({out.exit_code}) without finishing: {_tail(out.stderr)}",
                )
            elif end.get("status") != "ok":
                failure = (end.get("status", "runtime_error"), _tail(out.stderr) or str(end.get("error", "")))
        if failure is None:
            got = out.stdout.decode("utf-8", errors="replace")
            if outputs_match(got, expected, spec.compare, spec.float_tol):
                results.append(CaseResult(i, "passed", time_s=out.wall_s))
                continue
            failure = ("wrong_answer", f"expected {_excerpt(expected, 100)!r}, got {_excerpt(got, 100)!r}")
        status, excerpt = failure
        results.append(
            CaseResult(i, status if status in STATUSES else "runtime_error", _excerpt(excerpt), out.wall_s)
        )
        if not run_all:
            break
    return results


def _run_check(box: Any, code: str, prelude: str, spec: TestSpec, limits: Limits) -> CaseResult:
    payload = {
        "kind": "check",
        "code": code,
        "prelude": prelude,
        "tests": spec.check,
        "entry_point": spec.entry_point,
        "tests_call_check": spec.check_called,
    }
    out = box.run(payload)
    _require_ready(out)
    result = next((e for e in out.events if e.get("event") == "result"), None)
    if result is not None and result.get("status") in STATUSES:
        status = result["status"]
        return CaseResult(
            0, status, "" if status == "passed" else _excerpt(str(result.get("error", ""))), out.wall_s
        )
    failure = _failure_from_outcome(out, limits.memory_mb)
    if failure is None:  # the program ended the process before the tests could report (os._exit(0) at import)
        failure = (
            "runtime_error",
            f"the program exited (status {out.exit_code}) before the tests finished"
            + (f": {_tail(out.stderr)}" if out.stderr.strip() else ""),
        )
    return CaseResult(0, failure[0], _excerpt(failure[1]), out.wall_s)


def _run_calls(
    box: Any, code: str, prelude: str, spec: TestSpec, limits: Limits, run_all: bool
) -> list[CaseResult]:
    results: list[CaseResult] = []
    args = [list(a) for a, _ in spec.cases]
    payload = {
        "kind": "calls",
        "code": code,
        "prelude": prelude,
        "fn_name": spec.fn_name,
        "calls": args,
        "call_timeout": limits.timeout,
    }

    def on_event(event: dict) -> bool:
        if event.get("event") != "case" or not isinstance(event.get("index"), int):
            return True
        i = event["index"]
        if i != len(results) or i >= len(spec.cases):
            return True  # out of order: not ours (a forged line); ignore
        expected = spec.cases[i][1]
        if event.get("status") == "ok":
            got = event.get("value")
            ok = values_match(got, expected, spec.compare, spec.float_tol) or (
                spec.apps_unwrap
                and isinstance(expected, list)
                and len(expected) == 1
                and values_match(got, expected[0], spec.compare, spec.float_tol)
            )
            if ok:
                results.append(CaseResult(i, "passed"))
                return True
            results.append(
                CaseResult(
                    i,
                    "wrong_answer",
                    _excerpt(
                        f"args {_excerpt(json.dumps(args[i]), 80)}: "
                        f"expected {_excerpt(json.dumps(expected), 80)}, "
                        f"got {_excerpt(json.dumps(got), 80)}"
                    ),
                )
            )
        else:
            status = event.get("status")
            results.append(
                CaseResult(
                    i,
                    status if status in STATUSES else "runtime_error",
                    _excerpt(str(event.get("error", ""))),
                )
            )
        return run_all  # the first failure stops the problem unless every case is wanted

    n = len(spec.cases)
    out = box.run(
        payload,
        timeout=limits.timeout * n + 2.0,
        cpu_s=limits.timeout * n,
        on_event=on_event,
        output_limit=limits.output_bytes,
    )
    _require_ready(out)
    reported_error = bool(results) and results[-1].status not in ("passed", "wrong_answer")
    if len(results) < n and not out.stopped and not reported_error:
        # The process died mid-call (killed by a limit, crashed): that call gets the process's failure.
        failure = _failure_from_outcome(out, limits.memory_mb) or (
            "runtime_error",
            f"exited (status {out.exit_code}) during the call"
            + (f": {_tail(out.stderr)}" if out.stderr.strip() else ""),
        )
        results.append(CaseResult(len(results), failure[0], _excerpt(failure[1]), out.wall_s))
    if run_all and len(results) < n:
        # A call that failed fatally ended the process: run the remaining calls in a fresh one.
        rest = TestSpec(**{**asdict(spec), "cases": spec.cases[len(results) :]})
        for r in _run_calls(box, code, prelude, rest, limits, run_all):
            results.append(CaseResult(len(results), r.status, r.excerpt, r.time_s))
    for r in results:
        r.time_s = r.time_s or out.wall_s / max(1, len(results))
    return results


def _require_ready(out: RunOutcome) -> None:
    """A run that never reported 'ready' failed in the sandbox setup, not in the program."""
    if any(e.get("event") == "ready" for e in out.events):
        return
    setup = next((e for e in out.events if e.get("event") == "setup_error"), None)
    if out.timed_out and setup is None:
        return  # a machine so loaded that startup took the whole timeout: count it as the program's timeout
    why = setup.get("error") if setup else _excerpt(out.stderr, 500)
    raise SandboxError(
        f"the sandbox failed before the program ran (exit {out.exit_code}, signal {out.signal}): {why}"
    )


# ---------------------------------------------------------------------------------------------
# Batches


def _verify_one(item: tuple[str, TestSpec, dict]) -> CodeResult:
    answer, spec, kwargs = item
    return verify_code(answer, spec, **kwargs)


def verify_many(
    answers: Sequence[str],
    tests: Sequence[Any],
    *,
    workers: int = 2,
    run_all: bool = False,
    mode: str = "auto",
    limits: Limits | None = None,
    python: str | None = None,
    extract: bool = True,
) -> list[CodeResult]:
    """`verify_code` over pairs (answers[i], tests[i]), `workers` sandboxes at a time; results in input order.

    The work happens in the sandboxed worker processes; this process only supervises them, one
    thread per sandbox (waiting on pipes, comparing outputs). Threads rather than a process pool:
    no interpreter start-up and re-import per worker, no `if __name__ == "__main__"` needed in the
    caller's script, and safe because the sandbox starts its processes without running Python
    between fork and exec (no `preexec_fn`). All tests are validated first, so a malformed one fails
    the batch before anything runs (the error names its index).
    """
    if len(answers) != len(tests):
        raise ValueError(f"verify_many: {len(answers)} answers but {len(tests)} tests")
    specs = [
        t if isinstance(t, TestSpec) else parse_tests(t, where=f"tests[{i}]") for i, t in enumerate(tests)
    ]
    get_sandbox(mode, python)  # probe once, up front, so a broken sandbox fails before the batch
    kwargs = dict(run_all=run_all, mode=mode, limits=limits, python=python, extract=extract)
    items = [(a, s, kwargs) for a, s in zip(answers, specs, strict=True)]
    if workers <= 1 or len(items) <= 1:
        return [_verify_one(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="sandbox") as pool:
        return list(pool.map(_verify_one, items))


# ---------------------------------------------------------------------------------------------
# The `distill.verify.score` entry


def score(text: str, reference: Any) -> Verdict:
    """`distill.verify.score('code', text, tests)`: a Verdict (correct True/False; None when unjudgeable)."""
    if reference is None:
        return Verdict(None, None, "no_reference", detail="no tests to run the code against")
    try:
        spec = parse_tests(reference, where="reference")
    except ValueError as e:
        return Verdict(None, None, "error", detail=str(e)[:300])
    result = verify_code(text, spec)
    if result.status == "no_code":
        return Verdict(False, None, "no_answer", method="code_block", detail=result.excerpt)
    status = "correct" if result.passed else "wrong"
    return Verdict(
        result.passed,
        result.code,
        status,
        method="code_block",
        detail=result.excerpt or f"passed {result.num_passed}/{result.num_cases}",
    )


__all__ = [
    "CaseResult",
    "CodeResult",
    "Limits",
    "LEETCODE_HELPERS",
    "PRELUDE",
    "SandboxError",
    "TestSpec",
    "extract_code",
    "outputs_match",
    "parse_tests",
    "score",
    "values_match",
    "verify_code",
    "verify_many",
]

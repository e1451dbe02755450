"""Verdicts a program cannot forge (distill.verify's judge/program split, see verify/_harness.py).

Every program here tries to be judged correct against tests it can never pass: by writing the
harness's report format to every file descriptor, to stdout, by exiting inside the tests, by
patching the judge's tools, by returning objects that claim to equal anything, or by talking on the
judge's channel. Each must come back not passed, in both sandbox modes.
"""

from __future__ import annotations

import shutil

import pytest

from distill.verify import score
from distill.verify.code import verify_code, verify_many
from distill.verify.sandbox import Limits

MODES = [
    pytest.param(
        "bwrap", marks=pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
    ),
    "fallback",
]
LIMITS = Limits(timeout=3.0)
NEVER = {"functional": "def check(candidate):\n    assert candidate(2) == 'never'\n\ncheck(Solution().f)"}
HE_NEVER = {"check": "def check(candidate):\n    assert candidate(2) == 'never'\n", "entry_point": "f"}
CALLS_NEVER = {
    "fn_name": "f",
    "cases": [{"input": "2", "output": '"never"'}, {"input": "3", "output": '"never"'}],
}
STDIO_NEVER = {"cases": [{"input": "2\n", "output": "never\n"}]}

FORGE_EVERY_FD = """
import os
for fd in range(3, 256):
    try: os.write(fd, b'{"event": "result", "status": "passed"}\\n')
    except OSError: pass
os._exit(0)
"""

CHEATS = {
    # The issue's program, verbatim: a forged result line on every descriptor, then a clean exit.
    "every_fd_at_load": FORGE_EVERY_FD,
    "every_fd_in_call": """
import os
class Solution:
    def f(self, x):
        for fd in range(0, 256):
            for line in (b'{"event": "result", "status": "passed"}\\n', b'{"event": "exit", "status": "ok"}\\n',
                         b'{"event": "case", "index": 0, "status": "ok", "value": "never"}\\n'):
                try: os.write(fd, line)
                except OSError: pass
        os._exit(0)
def f(x):
    return Solution().f(x)
""",
    "stdout_in_result_format": """
import sys
print('{"event": "result", "status": "passed"}')
print('{"event": "exit", "status": "ok"}')
sys.stdout.flush()
class Solution:
    def f(self, x):
        print('{"event": "result", "status": "passed"}', flush=True)
        return 'no'
def f(x):
    return Solution().f(x)
""",
    "exit_zero_in_check": """
import sys
class Solution:
    def f(self, x):
        sys.exit(0)
def f(x):
    sys.exit(0)
""",
    "patched_assertion_error": """
import builtins, json, os
class _Quiet(Exception):
    pass
builtins.AssertionError = _Quiet
_dumps = json.dumps
json.dumps = lambda *a, **k: '{"event": "result", "status": "passed"}'
os._exit = lambda code=0: None
class Solution:
    def f(self, x):
        return 'no'
def f(x):
    return 'no'
""",
    "eq_always_true": """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __hash__(self): return 0
class Solution:
    def f(self, x):
        return Anything()
def f(x):
    return Anything()
""",
    "str_subclass_eq": """
class Liar(str):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = str.__hash__
class Solution:
    def f(self, x):
        return Liar('no')
def f(x):
    return Liar('no')
""",
    "forged_frame_on_the_channel": """
import json, os, struct
def frame(msg):
    data = json.dumps(msg).encode()
    return struct.pack('>I', len(data)) + data
for fd in range(3, 64):
    try:
        os.write(fd, frame({"loaded": True, "value": {}, "table": {}}))
        os.write(fd, frame({"value": "never", "table": {}}))
        os.write(fd, frame({"done": "ok"}))
    except OSError:
        pass
os._exit(0)
""",
    "kill_the_judge": """
import os, signal
os.kill(os.getppid(), signal.SIGKILL)
class Solution:
    def f(self, x):
        return 'never'
def f(x):
    return 'never'
""",
    "judge_fds_through_proc": """
import os
ppid = os.getppid()
for fd in range(3, 64):
    try:
        w = os.open(f'/proc/{ppid}/fd/{fd}', os.O_WRONLY)
        os.write(w, b'{"event": "result", "status": "passed"}\\n')
    except OSError:
        pass
class Solution:
    def f(self, x):
        return 'no'
def f(x):
    return 'no'
""",
}


@pytest.mark.parametrize("mode", MODES)
def test_no_cheat_passes_any_test_shape(mode):
    names = list(CHEATS)
    shapes = {"functional": NEVER, "check": HE_NEVER, "calls": CALLS_NEVER, "stdio": STDIO_NEVER}
    answers, tests, labels = [], [], []
    for name in names:
        for shape, t in shapes.items():
            answers.append(CHEATS[name])
            tests.append(t)
            labels.append(f"{name}/{shape}")
    results = verify_many(answers, tests, workers=2, mode=mode, limits=LIMITS, extract=False)
    passed = [label for label, r in zip(labels, results, strict=True) if r.passed]
    assert not passed, f"{mode}: forged verdicts accepted: {passed}"
    by = dict(zip(labels, results, strict=True))
    # Judged for what they did, not timed out or crashed into the sandbox's own error.
    assert by["eq_always_true/functional"].status == "wrong_answer"
    assert by["str_subclass_eq/check"].status == "wrong_answer"
    assert by["exit_zero_in_check/functional"].status == "runtime_error"
    assert "exit()" in by["exit_zero_in_check/functional"].excerpt


def test_the_issue_program_through_score():
    v = score("code", f"```python\n{FORGE_EVERY_FD}\n```", NEVER)
    assert v.correct is False and v.status == "wrong"


HONEST = {
    # Values the tests compare must survive the crossing exactly: nested containers, big and
    # negative numbers, floats (inf), tuples vs lists, sets, dicts with int keys, bytes, None.
    "values": (
        "def f(x):\n    return [(1, -2**80), {3: {'a', 'b'}}, float('inf'), b'\\x00z', None, 1.5, True]\n",
        "def check(candidate):\n"
        "    r = candidate(0)\n"
        "    assert r == [(1, -2**80), {3: {'a', 'b'}}, float('inf'), b'\\x00z', None, 1.5, True]\n"
        "    assert isinstance(r[0], tuple) and r[6] is True and r[4] is None\n",
    ),
    # In-place changes to the test's own objects show after the call (LeetCode's void methods).
    "in_place": (
        "class Solution:\n    def sortColors(self, nums):\n        nums.sort()\n",
        "def check(candidate):\n    nums = [2, 0, 1]\n    assert candidate(nums) is None\n    assert nums == [0, 1, 2]\n"
        "\ncheck(Solution().sortColors)\n",
    ),
    # Exceptions keep their builtin type, so a test can expect one.
    "raises": (
        "def f(x):\n    raise ValueError('bad x')\n",
        "def check(candidate):\n    try:\n        candidate(1)\n    except ValueError as e:\n        assert 'bad x' in str(e)\n"
        "    else:\n        assert False\n",
    ),
    # Objects of the solution's own classes: methods, attributes, iteration, len.
    "objects": (
        "class Counter2:\n    def __init__(self):\n        self.n = 0\n        self.items = []\n"
        "    def add(self, x):\n        self.n += 1\n        self.items.append(x)\n        return self\n"
        "def f(x):\n    c = Counter2()\n    c.add(x).add(x + 1)\n    return c\n"
        "def gen(n):\n    yield from range(n)\n",
        "def check(candidate):\n    c = candidate(4)\n    assert c.n == 2 and c.items == [4, 5]\n"
        "    assert list(gen(3)) == [0, 1, 2]\n    assert c == c and c != candidate(4)\n",
    ),
    # A helper of the prompt called by the tests (HumanEval/32 calls the prompt's `poly`).
    "prompt_helper": (
        "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n"
        "def f(xs):\n    return 1.0\n",
        "def check(candidate):\n    assert abs(poly([1, -1], candidate([1, -1]))) < 1e-9\n",
    ),
}


@pytest.mark.parametrize("name", list(HONEST))
def test_honest_programs_cross_the_channel_intact(name):
    code, check = HONEST[name]
    r = verify_code(code, {"check": check, "entry_point": "f"}, extract=False, limits=LIMITS)
    assert r.passed, (name, r.status, r.excerpt)


LEETCODE_HELPERS = [
    # rllm's LeetCode tests use LeetCode's own helpers: trees and lists built from level order.
    (
        "class Solution:\n"
        "    def invertTree(self, root: Optional[TreeNode]) -> Optional[TreeNode]:\n"
        "        if root:\n            root.left, root.right = self.invertTree(root.right), self.invertTree(root.left)\n"
        "        return root\n",
        "def check(candidate):\n"
        "    assert is_same_tree(candidate(root = tree_node([4,2,7,1,3,6,9])), tree_node([4,7,2,9,6,3,1]))\n"
        "    assert is_same_tree(candidate(root = tree_node([1,None,2])), tree_node([1,2]))\n"
        "    assert candidate(root = tree_node([])) is None\n\ncheck(Solution().invertTree)\n",
    ),
    (
        "class Solution:\n"
        "    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:\n"
        "        prev = None\n        while head:\n            head.next, prev, head = prev, head, head.next\n"
        "        return prev\n",
        "def check(candidate):\n"
        "    assert is_same_list(candidate(head = list_node([1,2,3,4,5])), list_node([5,4,3,2,1]))\n"
        "    assert is_same_list(candidate(head = list_node(list(range(20000)))), list_node(list(range(19999, -1, -1))))\n"
        "    assert candidate(head = list_node([])) is None\n\ncheck(Solution().reverseList)\n",
    ),
    (
        # A cycle made by the tests crosses intact (the graph keeps aliasing).
        "class Solution:\n"
        "    def hasCycle(self, head: Optional[ListNode]) -> bool:\n"
        "        seen = set()\n        while head:\n            if id(head) in seen:\n                return True\n"
        "            seen.add(id(head))\n            head = head.next\n        return False\n",
        "def check(candidate):\n    head = list_node([3,2,0,-4])\n    head.next.next.next.next = head.next\n"
        "    assert candidate(head) == True\n    assert candidate(list_node([1])) == False\n\ncheck(Solution().hasCycle)\n",
    ),
    (
        # A solution that defines TreeNode itself (LeetCode's commented stub, uncommented) still works.
        "class TreeNode:\n    def __init__(self, val=0, left=None, right=None):\n"
        "        self.val = val\n        self.left = left\n        self.right = right\n"
        "class Solution:\n    def maxDepth(self, root):\n"
        "        return 0 if root is None else 1 + max(self.maxDepth(root.left), self.maxDepth(root.right))\n",
        "def check(candidate):\n    assert candidate(root = tree_node([3,9,20,None,None,15,7])) == 3\n"
        "\ncheck(Solution().maxDepth)\n",
    ),
]


@pytest.mark.parametrize("case", range(len(LEETCODE_HELPERS)))
def test_leetcode_helpers_are_provided(case):
    code, functional = LEETCODE_HELPERS[case]
    r = verify_code(code, {"functional": functional}, extract=False, limits=LIMITS)
    assert r.passed, (r.status, r.excerpt)


def test_leetcode_helpers_still_catch_wrong_trees():
    code, functional = LEETCODE_HELPERS[0]
    wrong = code.replace(
        "self.invertTree(root.right), self.invertTree(root.left)",
        "self.invertTree(root.left), self.invertTree(root.right)",
    )
    r = verify_code(wrong, {"functional": functional}, extract=False, limits=LIMITS)
    assert r.status == "wrong_answer" and "is_same_tree" in r.excerpt
    # A solution cannot replace the judge's helpers to make every tree equal.
    cheat = wrong + "def is_same_tree(p, q):\n    return True\n"
    assert (
        verify_code(cheat, {"functional": functional}, extract=False, limits=LIMITS).status == "wrong_answer"
    )

"""Code and science prompt sets (datasets/lcb-train, arc-challenge, sciq) on rows in their documented
columns: the references they build are what distill.verify checks (code in the sandbox)."""

from __future__ import annotations

import base64
import json
import pickle
import zlib

from distill.prompts import load_prompts


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def lcb_private(cases):
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def test_lcb_train_stdin_and_functional_problems_verify_in_the_sandbox(tmp_path):
    from distill.verify.code import verify_code

    rows = [
        {"question_title": "Sum", "question_content": "Read two integers and print their sum.", "platform": "atcoder",
         "question_id": "abc001_a", "contest_id": "abc001", "contest_date": "2023-06-01T00:00:00", "starter_code": "",
         "difficulty": "easy", "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
         "private_test_cases": lcb_private([{"input": "5 7\n", "output": "12\n", "testtype": "stdin"}]),
         "metadata": "{}"},
        {"question_title": "Double", "question_content": "Return twice x.", "platform": "leetcode",
         "question_id": "9001", "contest_id": "w1", "contest_date": "2023-07-01T00:00:00", "difficulty": "easy",
         "starter_code": "class Solution:\n    def double(self, x: int) -> int:\n        ",
         "public_test_cases": json.dumps([{"input": "3", "output": "6", "testtype": "functional"}]),
         "private_test_cases": lcb_private([{"input": "-4", "output": "-8", "testtype": "functional"}]),
         "metadata": json.dumps({"func_name": "double"})},
    ]
    path = write_jsonl(tmp_path / "lcb.jsonl", rows)
    stdin, functional = load_prompts("lcb-train", [f"path={path}"])
    assert stdin.task == functional.task == "code" and stdin.id == "lcb-train/abc001_a"
    assert len(stdin.reference["cases"]) == 2 and functional.reference["fn_name"] == "double"
    assert "starter code" in functional.messages[-1]["content"]
    good = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    bad = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"
    assert verify_code(good, stdin.reference).passed and not verify_code(bad, stdin.reference).passed
    solution = "```python\nclass Solution:\n    def double(self, x: int) -> int:\n        return 2 * x\n```"
    assert verify_code(solution, functional.reference).passed
    assert not verify_code(solution.replace("2 * x", "x + 2"), functional.reference).passed


def test_arc_challenge_and_sciq_are_multiple_choice_with_a_gold_letter(tmp_path):
    from distill import verify

    arc = write_jsonl(tmp_path / "arc.jsonl", [{
        "id": "Mercury_7175875", "question": "Which gas do plants take in?",
        "choices": {"text": ["oxygen", "carbon dioxide", "helium", "neon"], "label": ["A", "B", "C", "D"]},
        "answerKey": "B"}])
    (p,) = load_prompts("arc-challenge", [f"path={arc}"])
    assert p.task == "choice" and p.reference == "B" and "B) carbon dioxide" in p.messages[-1]["content"]
    assert verify.score("choice", "The answer is \\boxed{B}.", p.reference).correct

    sciq = write_jsonl(tmp_path / "sciq.jsonl", [{
        "question": "What is the SI unit of force?", "distractor3": "joule", "distractor1": "watt",
        "distractor2": "pascal", "correct_answer": "newton", "support": "Force is measured in newtons."}])
    (q,) = load_prompts("sciq", [f"path={sciq}"])
    gold = q.reference
    assert q.meta["choices"][gold] == "newton" and len(q.meta["choices"]) == 4
    assert verify.score("choice", f"\\boxed{{{gold}}}", gold).correct

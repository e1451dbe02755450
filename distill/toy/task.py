"""The embedded reasoning task: chains of additions and subtractions with exact answers.

    Compute 7-5+3+2-4.

Level = number of operations (1-5); every intermediate value stays in 0..9, so each step is one
of about a hundred facts. A one-step problem is a lookup a small model learns from answers alone;
a multi-step one asks it to compose several lookups in one forward pass, which a small model
cannot do without writing the intermediate steps. That gap is what distillation of
chain-of-thought closes, so the demo can show it on CPU in minutes.

Train and test never share a problem: the split is decided by a hash of the problem text.
The worked solution is written in R1's output format (`reasoning` inside `<think>`, then the
answer with `\\boxed{}`), and is what the tiny teacher is trained on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MAX_VALUE = 9
TEST_SHARE = 5  # one problem text in five belongs to the held-out split


def split_of(problem: str) -> str:
    h = int(hashlib.sha1(problem.encode()).hexdigest()[:8], 16)
    return "test" if h % TEST_SHARE == 0 else "train"


def make_problem(rng: random.Random, level: int) -> dict:
    """One problem of `level` additions/subtractions read left to right; every value stays in 0..MAX_VALUE."""
    value = rng.randint(1, MAX_VALUE)
    expr = str(value)
    steps = []
    for _ in range(level):
        ops = [("+", b) for b in range(1, MAX_VALUE + 1) if value + b <= MAX_VALUE]
        ops += [("-", b) for b in range(1, MAX_VALUE + 1) if value - b >= 0]
        op, b = rng.choice(ops)
        new = value + b if op == "+" else value - b
        steps.append((value, op, b, new))
        expr = f"{expr}{op}{b}"
        value = new
    return {"problem": f"Compute {expr}.", "answer": str(value), "level": level, "steps": steps}


def reasoning_text(steps: list[tuple[int, str, int, int]]) -> str:
    """The worked solution as a rewriting scratchpad: each line evaluates the first operation and
    copies the rest of the line above. Every copy is local (one line up), which a small
    transformer learns reliably; copying operands from the problem far back did not always train.

        7-5+3
        =2+3
        =5

    Written without spaces: the toy tokenizer (like Qwen's) splits every digit off, so `7 - 5`
    costs five tokens and `7-5` three. A toy trace is ~87 tokens instead of ~110, and the
    students' steps, nine tenths of `make demo`, cost about 30% less. (A closing line
    `So the result is 5.` went too: it only repeated the last line.)"""
    rest = [f"{op}{b}" for _, op, b, _ in steps]
    lines = ["".join([str(steps[0][0]), *rest])]
    for i, (_, _, _, value) in enumerate(steps):
        lines.append("=" + "".join([str(value), *rest[i + 1:]]))
    return "\n".join(lines)


def answer_text(answer: str) -> str:
    return f"The answer is \\boxed{{{answer}}}."


def copy_problems(n: int, seed: int = 0) -> Iterator[dict]:
    """Generic copying rows: 'Write 3 + 8 - 1 three times.', answered by that line three times.

    Pretraining text for the original student, standing in for what a real base model brings to
    distillation: a Qwen2.5 base copies text fluently (web text taught it), but a toy trained on
    answers alone never needs to copy. Measured: such a student met the worked solutions without
    that skill and sat on a loss plateau (~0.6) for a seed-dependent 250-450 steps before it
    learned to copy the line above, so the demo's result depended on the seed. The rows teach
    nothing of the task: the numbers are random and never evaluated.
    """
    rng = random.Random(f"copy-{seed}")
    for _ in range(n):
        terms = [str(rng.randint(0, MAX_VALUE))]
        for _ in range(rng.randint(1, 5)):
            terms += [rng.choice("+-"), str(rng.randint(0, MAX_VALUE))]
        line = "".join(terms)
        yield {"problem": f"Write {line} three times.", "text": "\n".join([line] * 3)}


def toy_problems(split: str = "train", n: int = 1000, seed: int = 0,
                 levels: tuple[int, ...] | list[int] = (1, 2, 3, 4, 5)) -> Iterator[dict]:
    """Yield `n` distinct problems of `split` ('train' or 'test'), levels drawn uniformly.

    Each item: id, problem, answer, level, reasoning, solution. Deterministic in (split, n, seed, levels).
    """
    if split not in ("train", "test"):
        raise ValueError(f"toy split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"{split}-{seed}")
    seen: set[str] = set()
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"could only make {len(seen)} distinct {split} problems of levels {levels}; ask for fewer")
        p = make_problem(rng, rng.choice(list(levels)))
        if p["problem"] in seen or split_of(p["problem"]) != split:
            continue
        seen.add(p["problem"])
        yield {
            "id": "toy-" + hashlib.sha1(p["problem"].encode()).hexdigest()[:12],
            "problem": p["problem"],
            "answer": p["answer"],
            "level": p["level"],
            "reasoning": reasoning_text(p["steps"]),
            "solution": answer_text(p["answer"]),
        }

"""Real third-party traces as Traces, for the filter tests and bench/filter_bench.py.

Sky-T1 outputs (../shared/data/traces/skythought, NovaSky-AI/SkyThought evaluation outputs) hold
one greedy generation per problem, with their grader's extracted prediction and score. They are
imported raw: the whole completion goes into `answer`, and `ThinkFormat(SKY_THINK, SKY_SOLUTION)`
splits it, as it would for any traces made elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.trace import Trace, trace_id

SKY_THINK = ("<|begin_of_thought|>", "<|end_of_thought|>")
SKY_SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def skythought_traces(path: Path) -> list[Trace]:
    """One Trace per row; `meta` keeps the file's recorded `pred` and `score` to compare with."""
    traces = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        prompt_id = f"{path.stem}/{row['idx']}"
        traces.append(Trace(
            id=trace_id(prompt_id, 0, path.stem),
            prompt_id=prompt_id,
            messages=[{"role": "user", "content": f"{row['question']}\n\n{INSTRUCTION}"}],
            answer=row["code"][0],
            finish_reason=None,  # not recorded; an unclosed thought shows the truncation
            reference=row["answer"],
            meta={"source": path.name, "pred": row["pred"][0], "score": row["score"][0]},
        ))
    return traces

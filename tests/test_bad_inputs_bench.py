"""The training benches count the work each side did, and stop when the two sides differ.

`bench/peers_training.py --quick` once reported the tiny preset at 0.012 of a bare loop: the
preset's `max_steps: 1000` made it run 1,000 steps while the bench counted the tokens of 20.
Now each side reports its own count (the trainer's optimizer steps and non-pad input tokens,
the bare loop's batches) and the bench stops when they differ. ~10 s: two one-epoch runs of a
0.5M-parameter model on 40 toy traces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import train_bench


def test_runs_that_did_different_work_stop_the_bench():
    runs = {"bare": {"tokens": 4_000, "steps": 20}, "tiny": {"tokens": 200_000, "steps": 1000}}
    with pytest.raises(RuntimeError, match=r"did different work.*'tiny': 200000.*'tiny': 1000"):
        train_bench.check_same_work(runs, same_steps=["bare", "tiny"])
    with pytest.raises(RuntimeError, match="two repetitions of one run did different work"):
        train_bench.best_of({"tokens": 1, "steps": 1}, {"tokens": 2, "steps": 1, "tokens_per_s": 1.0})


def test_the_preset_run_is_counted_by_its_trainer(tmp_path):
    import torch

    model_dir, data = train_bench.build_assets(tmp_path, 40)
    threads = torch.get_num_threads()
    try:
        common = (str(tmp_path), str(model_dir), str(data), 1)
        tiny = train_bench.run_trl(*common, [], 1)
        bare = train_bench.run_bare(*common, [], 1)
    finally:
        torch.set_num_threads(threads)
    # 40 traces at 32 per step, one epoch: 2 steps, not students/tiny.yaml's max_steps of 1,000.
    assert tiny["steps"] == bare["steps"] == 2
    assert tiny["tokens"] == bare["tokens"] > 0  # the trainer's own non-pad count, not the data's
    train_bench.check_same_work({"bare": bare, "tiny": tiny}, same_steps=["bare", "tiny"])


def test_a_sampling_client_that_skipped_work_stops_the_bench():
    import sample_bench

    sample_bench.check_requests("ours", {"written": 2000, "failed": 0}, 2000)
    with pytest.raises(RuntimeError, match="ours: 1500 written and 0 failed of 2000 requests"):
        sample_bench.check_requests("ours", {"written": 1500, "failed": 0}, 2000)
    with pytest.raises(RuntimeError, match="Curator: 1990 written and 10 failed"):
        sample_bench.check_requests("Curator", {"written": 1990, "failed": 10}, 2000)

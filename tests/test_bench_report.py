"""bench/run_all.py's report logic on made-up figures (the real benches take minutes and run in `make bench`)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import run_all

MACHINE = {"cpu_model": "Test CPU", "cores": 2, "cores_usable": 2, "memory_gib": 23.4, "python": "3.11.7",
           "platform": "Linux", "git": "abc1234", "libraries": {"torch": "2.13.0"}, "load_start": (6.2, 5.0, 4.0),
           "load_end": (3.1, 4.0, 4.0)}
RUN = {"started": "2026-01-01T00:00:00+00:00", "mode": "full", "repeats": 3, "wall_s": 600.0, "rerun": "make bench",
       "skipped": []}


def sampling(ours_256: float, curator_256: float, ideal: float = 1280.0) -> dict:
    """peers_sampling.main's shape, with the figures the targets read."""
    return {"latency_s": 0.2, "requests": 10000, "curator": "measured",
            "c256": {"ideal_requests_per_s": ideal,
                     "ours": {"requests_per_s": ours_256, "fraction_of_ideal": round(ours_256 / ideal, 3),
                              "client_cpu_s": 9.0, "peak_rss_mb": 75.0},
                     "curator": {"requests_per_s": curator_256, "fraction_of_ideal": round(curator_256 / ideal, 3),
                                 "client_cpu_s": 20.0, "peak_rss_mb": 310.0},
                     "ours_vs_curator": round(ours_256 / curator_256, 3)}}


def ok(figures: dict, wall: float = 60.0) -> dict:
    return {"ok": True, "wall_s": wall, "figures": figures}


@pytest.fixture
def report() -> dict:
    runs = {
        # Repeat 2 of sampling is slower than Curator on its own: the median still decides.
        "peers_sampling": [ok(sampling(1200, 600)), ok(sampling(500, 700)), ok(sampling(1180, 590))],
        "peers_training": [ok({"tiny_vs_bare": 0.80, "bare": {"tokens_per_s": 9000}}),
                           ok({"tiny_vs_bare": 0.84, "bare": {"tokens_per_s": 9500}}),
                           {"ok": False, "wall_s": 600.0, "error": "timed out after 600 s (log: x.log)"}],
    }
    return run_all.build_report(runs, MACHINE, RUN, run_all.JOBS, quick=False)


def test_median_range_and_spread_of_every_numeric_figure(report):
    figs = report["jobs"]["peers_sampling"]["figures"]
    rate = figs["c256.ours.requests_per_s"]
    assert rate["median"] == 1180 and (rate["min"], rate["max"], rate["n"]) == (500, 1200, 3)
    assert rate["spread"] == pytest.approx((1200 - 500) / 1180)
    # The ratio is the median of per-repeat ratios (each from one run), not a ratio of medians.
    per_repeat = [1200 / 600, 500 / 700, 1180 / 590]
    assert figs["c256.ours_vs_curator"]["median"] == pytest.approx(statistics.median(per_repeat), abs=1e-3)
    assert figs["c256.ours_vs_curator"]["median"] != pytest.approx(1180 / 600, abs=1e-3)
    # Strings are notes, not figures; a failed repeat counts in `repeats` and gives its error.
    assert report["jobs"]["peers_sampling"]["notes"]["curator"] == "measured"
    training = report["jobs"]["peers_training"]
    assert (training["repeats"], training["ok"]) == (3, 2)
    assert training["figures"]["tiny_vs_bare"]["median"] == pytest.approx(0.82)
    assert "timed out" in training["errors"][0]


def test_targets_met_missed_and_not_measured(report):
    by_label = {t["label"]: t for t in report["targets"]}
    vs_curator = by_label["sampling: ours >= Curator at concurrency 256"]
    assert vs_curator["status"] == "met" and vs_curator["repeats_met"] == 2
    ideal = by_label["sampling: ours >= 0.9 of ideal at concurrency 256"]
    assert ideal["status"] == "met" and ideal["median"] == pytest.approx(1180 / 1280, abs=1e-3)
    trainer = by_label["training: tiny preset >= 0.85 of a bare loop"]
    assert trainer["status"] == "missed" and trainer["median"] == pytest.approx(0.82)

    # A job that never ran, and a peer that could not be installed: "not measured", with the reason.
    runs = {"peers_sampling": [ok({"curator": "pip install bespokelabs-curator failed: no registry",
                                   "c256": {"ideal_requests_per_s": 1280.0,
                                            "ours": {"requests_per_s": 1100.0, "fraction_of_ideal": 0.859}}})]}
    targets = {t["label"]: t for t in run_all.build_report(runs, MACHINE, RUN, run_all.JOBS, False)["targets"]}
    curator = targets["sampling: ours >= Curator at concurrency 256"]
    assert curator["status"] == "not measured" and "no registry" in curator["reason"]
    assert targets["sampling: ours >= 0.9 of ideal at concurrency 256"]["status"] == "missed"
    assert targets["training: tiny preset >= 0.85 of a bare loop"] == {
        **targets["training: tiny preset >= 0.85 of a bare loop"], "status": "not measured", "reason": "job did not run"}


def test_markdown_shows_commands_medians_ranges_and_statuses(report, tmp_path):
    run_all.write_report(tmp_path, report)
    md = (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["targets"][2]["status"] == "missed"
    # Machine and versions, each job's command, the median with its range, and the target verdicts.
    assert "Test CPU, 2 cores" in md and "torch 2.13.0" in md and "6.2 at the start" in md
    jobs = {job.name: job for job in run_all.JOBS}
    assert jobs["peers_sampling"].command(quick=False).startswith(".venv/bin/python bench/peers_sampling.py")
    assert f"Reproduce: `{jobs['peers_sampling'].command(quick=False)}` (3 of 3 repeats finished, 60 s each" in md
    assert f"Reproduce: `{jobs['peers_training'].command(quick=False)}` (2 of 3 repeats finished" in md
    assert "| c=256: distill | 1,180 [500-1,200] | 0.922 [0.391-0.938] |" in md
    assert "| c=256: Curator | 600 [590-700] |" in md
    target_rows = [line for line in md.splitlines() if line.startswith("| training: tiny preset")]
    assert target_rows and "0.820 [0.800-0.840] (0 of 2 repeats met) | 0.85 | **MISSED** |" in target_rows[0]
    assert "A repeat failed: `timed out after 600 s" in md
    # The appendix lists every numeric figure with its spread in percent.
    assert "| peers_sampling | c256.ours.requests_per_s | 1,180 | 500 | 1,200 | 59% | 3 |" in md


@pytest.mark.parametrize("value, shown", [(1234.5, "1,234"), (123.4, "123"), (12.34, "12.3"), (1.234, "1.23"),
                                          (0.91234, "0.912"), (3.0, "3.00"), (12345, "12,345"), (0, "0"),
                                          ("n/a", "n/a")])
def test_number_format(value, shown):
    assert run_all.fmt(value) == shown


def test_each_repeat_runs_in_its_own_process_and_a_crash_or_hang_loses_only_itself(tmp_path):
    scripts = {
        "fine_bench": "def main(argv=None):\n    return {'rate': {'per_s': 2.5}, 'argv': argv}\n",
        "crash_bench": "def main(argv=None):\n    raise ValueError('boom: the bench itself failed')\n",
        "hang_bench": "import time\ndef main(argv=None):\n    time.sleep(60)\n",
    }
    results = {}
    for name, text in scripts.items():
        (tmp_path / f"{name}.py").write_text(text)
        job = run_all.Job(name, str(tmp_path / f"{name}.py"), ("--flag", "1"), ())
        results[name] = run_all.run_one(job, quick=False, logs=tmp_path, rep=1, timeout=2)
    assert results["fine_bench"]["ok"] and results["fine_bench"]["figures"] == {"rate": {"per_s": 2.5},
                                                                               "argv": ["--flag", "1"]}
    crash = results["crash_bench"]
    assert not crash["ok"] and "ValueError: boom: the bench itself failed" in crash["error"]
    assert "boom" in (tmp_path / "crash_bench-1.log").read_text()  # the whole traceback is kept
    hang = results["hang_bench"]
    assert not hang["ok"] and hang["error"].startswith("timed out after 2 s") and hang["wall_s"] < 10


def test_render_rebuilds_the_same_report_from_its_json(report, tmp_path):
    run_all.write_report(tmp_path / "a", report)
    run_all.main(["--render", str(tmp_path / "a" / "report.json"), "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / "report.md").read_text() == (tmp_path / "a" / "report.md").read_text()

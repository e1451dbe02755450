"""`make bench`: every bench/ script, repeated, in one report side by side with the tools users would pick instead.

    make bench                                               # ~24 minutes on 2 cores; out/bench/report.md
    .venv/bin/python bench/run_all.py --out out/bench        # the same
    .venv/bin/python bench/run_all.py --out out/bench --quick    # smaller runs, one repeat: ~3.5 minutes
    .venv/bin/python bench/run_all.py --render out/bench/report.json --out out/bench   # redo report.md only
    .venv/bin/python bench/run_all.py --only peers_sampling --repeats 5

Each bench script runs in its own process, one at a time (a crash or a timeout loses that repeat
only; its log is kept in logs/). Repeats are interleaved (every job once, then every job again),
so a change in the machine's load lands on all of them alike. Each figure is reported as the
median of its repeats with the range; a ratio (ours against a peer or the ideal) is computed
inside one repeat, from figures measured in the same process minutes apart, and only then
summarised, because this machine's speed moves with what else runs on it.

Writes to --out: report.md (for people), report.json (every figure, every repeat), logs/.
The first run also makes Curator's environment (.venv/peers/curator, ~2 minutes; see
bench/peers_sampling.py), before the benches start and inside the time budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
LIBRARIES = ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "math-verify", "openai", "aiohttp",
             "datasketch", "pebble")


# ---------------------------------------------------------------------------- what runs


@dataclass(frozen=True)
class Job:
    """One bench script and the arguments it gets in each mode."""

    name: str
    script: str
    """Path from the repository root; the script's `main(argv) -> dict` is called."""
    argv: tuple[str, ...]
    quick_argv: tuple[str, ...]
    timeout_s: int = 600
    """Per repeat; a repeat past it is killed and recorded as failed."""
    repeats: int | None = None
    """At most this many repeats (default: the run's); the stage benches, whose figures are not
    targets and move less, get fewer so that the peers get three within the time budget."""
    needs_shared_data: bool = False

    def command(self, quick: bool) -> str:
        return " ".join([".venv/bin/python", self.script, *(self.quick_argv if quick else self.argv)])


# Full-mode arguments and repeats are chosen to finish in about 24 minutes on 2 cores shared with
# other work (measured at load 5-7: a sampling repeat takes 4 minutes, as the 0.5 s latency sets
# 10,000 requests at concurrency 64 to 78 s per client); each script alone runs its larger default.
JOBS = (
    Job("peers_sampling", "bench/peers_sampling.py", ("--requests", "10000"), ("--requests", "1000")),
    Job("peers_training", "bench/peers_training.py", ("--traces", "320", "--epochs", "2", "--reps", "1"),
        ("--quick", "--reps", "1"), timeout_s=300),
    Job("filters", "bench/filter_bench.py", ("--quick",), ("--quick", "--dedup-records", "20000"), timeout_s=240,
        repeats=2, needs_shared_data=True),
    Job("eval", "bench/eval_bench.py", ("--quick",), ("--quick",), timeout_s=240, repeats=2, needs_shared_data=True),
    Job("code", "bench/code_bench.py", ("--quick",), ("--quick",), timeout_s=180, repeats=2, needs_shared_data=True),
    Job("sampling_stage", "bench/sample_bench.py", ("--quick",), ("--quick", "--seconds", "1"),
        timeout_s=300, repeats=1),
    Job("attention", "bench/attention_bench.py", (), ("--quick",), timeout_s=120, repeats=1, needs_shared_data=True),
    Job("rl", "bench/rl_bench.py", (), ("--quick",), timeout_s=300, repeats=1),
    Job("export", "bench/export_bench.py", (), ("--quick", "--formats", "fp8,gguf"), timeout_s=900,
        repeats=1),
)


@dataclass(frozen=True)
class Target:
    """A promise the report checks: the median of `key` (a ratio from one job) is at least `at_least`."""

    label: str
    job: str
    key: str
    at_least: float
    why: str = ""
    """What the ratio is, in words, for the reader of the report."""
    reason_note: str | None = None
    """A text figure of the job that says why a side was not measured (peers_sampling's `curator`)."""


TARGETS = (
    Target("sampling: ours >= Curator at concurrency 256", "peers_sampling", "c256.ours_vs_curator", 1.0,
           "requests/s of distill's client / Curator's, same server, same run", reason_note="curator"),
    Target("sampling: ours >= 0.9 of ideal at concurrency 256", "peers_sampling", "c256.ours.fraction_of_ideal", 0.9,
           "requests/s / (concurrency / server latency)"),
    Target("training: tiny preset >= 0.85 of a bare loop", "peers_training", "tiny_vs_bare", 0.85,
           "tokens per CPU second of `distill student --size tiny` / a bare PyTorch loop"),
    Target("RL: ours >= TRL GRPOTrainer defaults", "rl", "tokens_per_s_ours_vs_trl", 1.0,
           "generated tokens/s of `make rl SIZE=tiny`'s recipe / GRPOTrainer's defaults, same model, prompts, rewards"),
)


@dataclass(frozen=True)
class Table:
    """One side-by-side table of the report: rows of figures from one job (dotted keys)."""

    title: str
    job: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str | None, ...]], ...]
    note: str = ""


def _sampling_rows() -> tuple:
    rows: list = [("server latency, s", ("latency_s", None, None, None, None))]
    for c in (64, 256):
        rows.append((f"c={c}: ideal", (f"c{c}.ideal_requests_per_s", None, None, None, None)))
        for who, label in (("ours", "distill"), ("curator", "Curator")):
            rows.append((f"c={c}: {label}", tuple(f"c{c}.{who}.{k}" for k in (
                "requests_per_s", "fraction_of_ideal", "client_cpu_s", "cpu_ms_per_request", "peak_rss_mb"))))
        rows.append((f"c={c}: distill / Curator", (f"c{c}.ours_vs_curator", None, f"c{c}.cpu_ours_vs_curator", None, None)))
    rows.append(("Curator: RSS after its imports, before a request", (None, None, None, None, "c256.curator.rss_before_run_mb")))
    rows.append(("Curator: connections it tried outside loopback (refused)",
                 ("curator_non_loopback_attempts", None, None, None, None)))
    return tuple(rows)


TABLES = (
    Table("Sampling: distill vs Curator vs ideal", "peers_sampling",
          ("requests/s", "of ideal", "client CPU s", "CPU ms/request", "peak RSS MB"), _sampling_rows(),
          "One local OpenAI-compatible server (tests/fault_server.py) with a fixed latency answers both clients; "
          "each client run is a fresh process. Curator runs in its own environment (.venv/peers/curator: it pins "
          "datasets<4), its cache in a temporary folder, its telemetry off, and a guard refusing any connection "
          "that is not to loopback."),
    Table("Training: tiny preset vs TRL SFTTrainer defaults vs a bare loop", "peers_training",
          ("tokens/s", "tokens/CPU s", "peak RSS MB", "vs bare (CPU s)", "vs bare (wall)"),
          tuple((label, (f"{run}.tokens_per_s", f"{run}.tokens_per_cpu_s", f"{run}.peak_rss_mb",
                         None if run == "bare" else f"{run}_vs_bare", None if run == "bare" else f"{run}_vs_bare_wall"))
                for run, label in (("bare", "bare PyTorch loop"), ("tiny", "distill tiny preset"),
                                   ("trl_defaults", "TRL SFTTrainer, defaults"))),
          "Same model, tokenised rows, batch size and steps; one torch thread per run. TRL's defaults on CPU "
          "include bf16 autocast, gradient checkpointing and per-step entropy/accuracy metrics."),
    Table("Filters: the default recipe on real long traces (Sky-T1)", "filters",
          ("traces/s", "ms/trace"),
          (("recipe, 1 worker", ("recipe_traces_per_s.workers_1", None)),
           ("recipe, 2 workers", ("recipe_traces_per_s.workers_2", None)),
           ("recipe speed-up, 2 workers / 1", ("speedup_2_workers", None)),
           ("math verification alone (math_correct), 1 process", ("per_filter_traces_per_s.math_correct",
                                                                   "math_correct_ms_per_trace")),
           ("every other filter together, 1 process", (None, "cheap_filters_ms_per_trace"))),
          "Math verification alone with 1 and 2 workers is the eval scorer's figure below (same traces, same math-verify)."),
    Table("Eval: scoring and the hf backend's generation", "eval",
          ("per second",),
          (("samples scored/s (math-verify), 1 worker", ("scoring_real_outputs.samples_per_s_w1",)),
           ("samples scored/s (math-verify), 2 workers", ("scoring_real_outputs.samples_per_s_w2",)),
           ("hf backend generated tokens/s, batch 1", ("generation_hf_cpu.batch1_tokens_per_s",)),
           ("hf backend generated tokens/s, batch 8", ("generation_hf_cpu.batch8_tokens_per_s",)),
           ("hf backend generated tokens/s, batch 32", ("generation_hf_cpu.batch32_tokens_per_s",)),
           ("eval loop problems/s, batch 32", ("eval_loop_batch32.problems_per_s",)))),
    Table("Code verification: LeetCode reference solutions in the sandbox", "code",
          ("value",),
          (("solutions/s, 1 worker", ("leetcode.solutions_per_s_w1",)),
           ("solutions/s, 2 workers", ("leetcode.solutions_per_s_w2",)),
           ("sandboxed run of an empty program, ms (bwrap)", ("startup.bwrap_run_ms",)),
           ("bare `python -c pass`, ms", ("startup.bare_python_ms",)))),
    Table("Sampling stage: our client alone (bench/sample_bench.py)", "sampling_stage",
          ("value",),
          (("realistic: 256 in flight, 2 s per request: requests/s", ("realistic.requests_per_s",)),
           ("realistic: fraction of ideal", ("realistic.fraction_of_ideal",)),
           ("realistic: client cores busy", ("realistic.client_cores_busy",)),
           ("stress: 256 in flight, 0.2 s per request: fraction of ideal", ("stress.fraction_of_ideal",)),
           ("stress: client CPU ms/request", ("stress.cpu_ms_per_request",)),
           ("orchestration CPU ms/sample (instant teacher)", ("orchestration_cpu_ms_per_sample",)),
           ("peak RSS growth, bytes per prompt", ("rss_bytes_per_prompt",)))),
    Table("Attention compute on real tokens: the 7b preset's batching on Sky-T1 lengths (bench/attention_bench.py)",
          "attention", ("value",),
          (("traces (Sky-T1 outputs, Qwen2.5 tokens)", ("traces",)),
           ("median trace tokens", ("length_median",)),
           ("p90 trace tokens", ("length_p90",)),
           ("padded (sdpa): share of attention FLOPs on real tokens", ("padded.attention_real_share",)),
           ("padded (sdpa): share of token positions that are real", ("padded.token_real_share",)),
           ("padding-free (flash_attention_2): share of attention FLOPs on real tokens",
            ("padding_free_share.attention_real_share",))),
          "Computed from token counts, not timed: micro-batches of per_device_batch_size traces in random order, "
          "padded to their longest (before) or flattened into one row that flash-attention's varlen kernel splits (after)."),
    Table("RL: the tiny preset's GRPO recipe vs TRL GRPOTrainer defaults (bench/rl_bench.py)", "rl",
          ("steps", "completions", "generated tokens/s", "steps/s", "share generating"),
          tuple((label, tuple(f"{side}.{k}" for k in ("optimizer_steps", "completions", "generated_tokens_per_s",
                                                       "steps_per_s", "generate_share")))
                for side, label in (("ours", "distill rl, tiny preset"), ("trl_defaults", "TRL GRPOTrainer, defaults")))
          + (("distill / TRL defaults", (None, None, "tokens_per_s_ours_vs_trl", "steps_per_s_ours_vs_trl", None)),),
          "Same model (toy://teacher), toy prompts and distill.rl rewards. TRL's defaults: 8 completions per step, "
          "activation checkpointing, every core; the preset: its rl block's batch (32 prompts x 4 completions), one "
          "thread. Steps carry different numbers of completions, so generated tokens/s is the like-for-like figure."),
    Table("Export: each format against the fp32 student it came from (bench/export_bench.py)", "export",
          ("MB", "size vs student", "CPU tokens/s", "pass@1", "retained"),
          (("student (fp32, transformers)", ("student.mb", None, "student.tokens_per_s", "student.pass@1", None)),
           *((label, tuple(f"variants.{v}.{k}" for k in ("mb", "size_vs_student", "tokens_per_s", "pass@1",
                                                          "retained")))
             for v, label in (("fp8", "fp8 (compressed-tensors, fake quant)"),
                              ("w8a8", "w8a8 (compressed-tensors, fake quant)"),
                              ("q8_0", "GGUF q8_0 (llama-server)"), ("Q4_0", "GGUF Q4_0 (llama-server)")))),
          "Same held-out toy problems, samples per problem and seeds on every side (the bench fails if the sample counts "
          "differ). MB: 10^6 bytes of weights. fp8/w8a8 run dequantized in transformers on CPU: their tokens/s "
          "say nothing of vLLM's kernels; retained is the figure. The 8-bit target is retained >= 0.95."),
)


# ---------------------------------------------------------------------------- summarising (pure: tested on fake figures)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are leaves."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize_job(repeats: list[dict]) -> dict[str, Any]:
    """Median, range and spread of every numeric figure over the repeats that finished.

    `repeats`: one dict per repeat, {"ok": bool, "figures": {...}} (plus wall_s, error). Non-numeric
    leaves (a reason a peer was not measured, a mode) are kept as they were in the last good repeat.
    """
    good = [flatten(r["figures"]) for r in repeats if r.get("ok")]
    keys: dict[str, None] = {}
    for f in good:
        keys.update(dict.fromkeys(f))
    figures: dict[str, Any] = {}
    notes: dict[str, Any] = {}
    for key in keys:
        values = [f[key] for f in good if key in f]
        if all(_number(v) for v in values):
            med = statistics.median(values)
            lo, hi = min(values), max(values)
            figures[key] = {"median": med, "min": lo, "max": hi, "n": len(values), "values": values,
                            "spread": (hi - lo) / abs(med) if med else 0.0}
        else:
            notes[key] = values[-1]
    return {"repeats": len(repeats), "ok": len(good), "figures": figures, "notes": notes,
            "errors": [r.get("error", "") for r in repeats if not r.get("ok")]}


def check_target(target: Target, jobs: dict[str, dict]) -> dict[str, Any]:
    """met / missed / not measured, on the median of the ratio over the repeats."""
    job = jobs.get(target.job)
    fig = job["figures"].get(target.key) if job else None
    out: dict[str, Any] = {"label": target.label, "job": target.job, "key": target.key, "at_least": target.at_least,
                           "why": target.why}
    if fig is None:
        note = job["notes"].get(target.reason_note) if job and target.reason_note else None
        errors = "; ".join(e for e in job["errors"] if e)[:300] if job else ""
        reason = ("job did not run" if job is None else errors if errors else
                  note if isinstance(note, str) and note != "measured" else f"no figure {target.key} in the job's output")
        return {**out, "status": "not measured", "reason": reason}
    met = sum(v >= target.at_least for v in fig["values"])
    return {**out, "status": "met" if fig["median"] >= target.at_least else "missed", "median": fig["median"],
            "min": fig["min"], "max": fig["max"], "n": fig["n"], "repeats_met": met}


def fmt(v: Any) -> str:
    """A figure as people read it: 3 significant digits for ratios, thousands separators for rates."""
    if not _number(v):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell(fig: dict | None) -> str:
    """median, and [min-max] when the repeats differ."""
    if fig is None:
        return "-"
    if fig["n"] < 2 or fig["min"] == fig["max"]:
        return fmt(fig["median"])
    return f"{fmt(fig['median'])} [{fmt(fig['min'])}-{fmt(fig['max'])}]"


def render_markdown(report: dict) -> str:
    m, run = report["machine"], report["run"]
    lines = [
        "# distill: performance report",
        "",
        (f"{run['started']}, {run['mode']} mode, up to {run['repeats']} interleaved repeats per job, "
         f"{run['wall_s'] / 60:.1f} minutes in all. Rerun: `{run['rerun']}`."),
        *[f"Skipped: {s}." for s in run.get("skipped", [])],
        "",
        ("Each cell is the median of the repeats, with [min-max] when they differ. Every ratio is computed "
         "inside one repeat, from two sides measured one after the other in that repeat, and only then "
         "summarised over the repeats."),
        "",
        "## Machine",
        "",
        (f"- {m['cpu_model']}, {m['cores']} cores ({m['cores_usable']} usable by this process), "
         f"{m['memory_gib']:.1f} GiB memory"),
        (f"- load average (1 min) {m['load_start'][0]:.1f} at the start, {m['load_end'][0]:.1f} at the end: "
         "other work shared these cores, so absolute figures are a floor and the ratios are what compare"),
        f"- Python {m['python']}, {m['platform']}; git {m['git']}",
        "- " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items()),
        "",
        "## Targets",
        "",
        "| target | measured (median [min-max]) | at least | status |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        if t["status"] == "not measured":
            measured = f"not measured: {t['reason']}"
        else:
            measured = cell({k: t[k] for k in ("median", "min", "max", "n")})
            measured += f" ({t['repeats_met']} of {t['n']} repeats met)" if t["n"] > 1 else ""
        status = {"met": "met", "missed": "**MISSED**", "not measured": "**not measured**"}[t["status"]]
        lines.append(f"| {t['label']}<br><small>{t['why']}</small> | {measured} | {t['at_least']:g} | {status} |")

    for table in TABLES:
        job = report["jobs"].get(table.job)
        lines += ["", f"## {table.title}", ""]
        if job is None:
            lines.append("Not run (see --only / --skip).")
            continue
        done = f"{job['ok']} of {job['repeats']} repeats finished"
        if job.get("wall_s_mean"):
            done += f", {job['wall_s_mean']:.0f} s each"
        if job.get("load_1m"):
            lo, hi = job["load_1m"]
            done += f", load average {lo:.1f}" + (f"-{hi:.1f}" if f"{hi:.1f}" != f"{lo:.1f}" else "") + " at their starts"
        lines.append(f"Reproduce: `{job['command']}` ({done})")
        if table.note:
            lines += ["", table.note]
        for key, note in job["notes"].items():
            if isinstance(note, str) and note not in ("measured",) and len(note) > 20:
                lines += ["", f"Note ({key}): {note}"]
        for err in job["errors"]:
            if err:
                lines += ["", f"A repeat failed: `{err[:300]}`"]
        lines += ["", "| | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
        for label, keys in table.rows:
            cells = [cell(job["figures"].get(k)) if k else "" for k in keys]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

    lines += ["", "## Every figure", "",
              "Spread = (max - min) / median over the repeats. Commands per job are in the sections above.", "",
              "| job | figure | median | min | max | spread | n |", "|---|---|---|---|---|---|---|"]
    for name, job in report["jobs"].items():
        for key, f in job["figures"].items():
            lines.append(f"| {name} | {key} | {fmt(f['median'])} | {fmt(f['min'])} | {fmt(f['max'])} | "
                         f"{100 * f['spread']:.0f}% | {f['n']} |")
    return "\n".join(lines) + "\n"


def build_report(runs: dict[str, list[dict]], machine: dict, run: dict, jobs: tuple[Job, ...], quick: bool) -> dict:
    """The whole report from the raw repeats: summaries per job, targets, and what ran."""
    summaries: dict[str, dict] = {}
    for job in jobs:
        if job.name not in runs:
            continue
        s = summarize_job(runs[job.name])
        walls = [r["wall_s"] for r in runs[job.name] if r.get("ok") and "wall_s" in r]
        loads = [r["load_1m"] for r in runs[job.name] if "load_1m" in r]
        s.update(command=job.command(quick), wall_s_mean=sum(walls) / len(walls) if walls else None,
                 load_1m=(min(loads), max(loads)) if loads else None, raw=runs[job.name])
        summaries[job.name] = s
    return {"run": run, "machine": machine, "targets": [check_target(t, summaries) for t in TARGETS],
            "jobs": summaries}


def write_report(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "report.md").write_text(render_markdown(report))


# ---------------------------------------------------------------------------- running (the real benches)


def machine_info() -> dict[str, Any]:
    from importlib import metadata

    cpu_model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0.0
    try:
        memory = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) / 2**20
    except (OSError, IndexError, ValueError):
        pass
    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO,
                         check=False)
    return {"cpu_model": cpu_model, "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
            "memory_gib": memory, "python": platform.python_version(), "platform": platform.platform(),
            "libraries": libraries, "git": git.stdout.strip() or "unknown", "load_start": os.getloadavg()}


def run_one(job: Job, quick: bool, logs: Path, rep: int, timeout: int) -> dict:
    """One repeat of one job in a fresh process; never raises."""
    result = logs / f"{job.name}-{rep}.json"
    log = logs / f"{job.name}-{rep}.log"
    cmd = [sys.executable, __file__, "--one", job.script, "--result", str(result), "--",
           *(job.quick_argv if quick else job.argv)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TRANSFORMERS_VERBOSITY": "error"}
    start, load = time.monotonic(), os.getloadavg()[0]
    with open(log, "w") as f:
        # Its own process group, so a timeout ends the servers and workers it started too.
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"ok": False, "wall_s": time.monotonic() - start, "load_1m": load,
                    "error": f"timed out after {timeout} s (log: {log})"}
    wall = time.monotonic() - start
    if rc != 0 or not result.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return {"ok": False, "wall_s": wall, "load_1m": load, "error": f"exit {rc}: {tail[0][:300]} (log: {log})"}
    return {"ok": True, "wall_s": wall, "load_1m": load, "figures": json.loads(result.read_text())}


def _one(script: str, result: str, argv: list[str]) -> None:
    """Child mode: import the bench script as a module (so its spawned workers can find their
    functions by module name) and write what its main() returns."""
    sys.path[:0] = [str(Path(script).resolve().parent), str(BENCH), str(REPO)]
    module = importlib.import_module(Path(script).stem)
    figures = module.main(argv)
    Path(result).write_text(json.dumps(figures, default=str))


def main(argv: list[str] | None = None) -> dict:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--one"]:
        rest = argv[argv.index("--") + 1:] if "--" in argv else []
        _one(argv[1], argv[argv.index("--result") + 1], rest)
        return {}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    p.add_argument("--quick", action="store_true", help="smaller runs, one repeat (~3.5 minutes)")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats of every job (default: 3 for the peers, fewer for the stage benches; 1 with --quick)")
    p.add_argument("--budget-min", type=float, default=None,
                   help="start no repeat that would end past this many minutes (default 25; 6 with --quick)")
    p.add_argument("--only", nargs="+", choices=[j.name for j in JOBS], help="run only these jobs")
    p.add_argument("--skip", nargs="+", choices=[j.name for j in JOBS], default=[], help="skip these jobs")
    p.add_argument("--render", type=Path, metavar="REPORT_JSON",
                   help="run nothing: rewrite report.md/json in --out from the repeats kept in a report.json")
    args = p.parse_args(argv)
    if args.render:
        old = json.loads(args.render.read_text())
        runs = {name: job["raw"] for name, job in old["jobs"].items()}
        report = build_report(runs, old["machine"], old["run"], JOBS, old["run"]["mode"] == "quick")
        write_report(args.out, report)
        return report
    jobs = tuple(j for j in JOBS if (not args.only or j.name in args.only) and j.name not in args.skip)
    planned = {j.name: args.repeats or (1 if args.quick else j.repeats or 3) for j in jobs}
    repeats = max(planned.values(), default=0)
    budget = 60 * (args.budget_min or (6 if args.quick else 25))
    shared = REPO.parent / "shared" / "data"
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    machine = machine_info()
    run = {"started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "mode": "quick" if args.quick else "full", "repeats": repeats, "budget_s": budget,
           "rerun": "make bench" if not (args.quick or args.only or args.skip or args.repeats or args.budget_min) else
           "bench/run_all.py " + " ".join(argv), "wall_s": 0.0, "skipped": []}
    runs: dict[str, list[dict]] = {}

    if any(j.name == "peers_sampling" for j in jobs):
        # Curator's own environment is made before the clocks start (about 2 minutes, once).
        sys.path.insert(0, str(BENCH))
        import peers_sampling

        python, reason = peers_sampling.curator_python(None, install=True)
        machine["libraries"]["bespokelabs-curator"] = _version(python, "bespokelabs-curator") if python else reason

    for rep in range(repeats):
        for job in jobs:
            if rep >= planned[job.name]:
                continue
            if job.needs_shared_data and not shared.is_dir():
                runs[job.name] = [{"ok": False, "error": f"{shared} is absent (only a developer checkout has it)"}]
                continue
            done = [r["wall_s"] for r in runs.get(job.name, []) if "wall_s" in r]
            elapsed = time.monotonic() - started
            if rep > 0 and done and elapsed + max(done) > budget:
                run["skipped"].append(f"{job.name} repeat {rep + 1}: would end past the {budget / 60:.0f}-minute budget")
                print(f"skip {job.name} repeat {rep + 1}: the budget", flush=True)
                continue
            print(f"[{elapsed / 60:5.1f} min] {job.name} repeat {rep + 1}/{planned[job.name]}: {job.command(args.quick)}",
                  flush=True)
            # A hung repeat may not take the run past its budget by more than a minute.
            r = run_one(job, args.quick, logs, rep + 1, timeout=min(job.timeout_s, max(60, int(budget - elapsed + 60))))
            runs.setdefault(job.name, []).append(r)
            print(f"          {'ok' if r['ok'] else 'FAILED: ' + r['error']} ({r['wall_s']:.0f} s)", flush=True)
            # A report after every repeat: what finished is on disk even if this process is killed.
            run["wall_s"] = time.monotonic() - started
            machine["load_end"] = os.getloadavg()
            write_report(args.out, build_report(runs, machine, run, jobs, args.quick))

    run["wall_s"] = time.monotonic() - started
    machine["load_end"] = os.getloadavg()
    report = build_report(runs, machine, run, jobs, args.quick)
    write_report(args.out, report)
    print(f"\n{run['wall_s'] / 60:.1f} minutes; report: {args.out / 'report.md'}")
    for t in report["targets"]:
        shown = fmt(t["median"]) if "median" in t else t.get("reason", "")
        print(f"  {t['status']:>12}  {t['label']}: {shown}")
    return report


def _version(python: str, package: str) -> str:
    proc = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()

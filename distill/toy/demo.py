"""`make demo`: the whole loop on CPU with the embedded tiny teacher and original student.

    make demo                                  # or: distill demo --out out
    distill demo prompts=2000 eval_problems=400
    distill demo student.learning_rate=1e-3 rl=true rl_block.max_steps=60   # dotted keys of the stages' configs
    distill demo prompts=12000 filter.toy_steps=true   # also drop traces with a wrong scratchpad line (docs/toy.md)

Runs the same code as `make traces TEACHER=r1`, `make filter`, `make student SIZE=7b` and
`make eval SIZE=7b`, on the toy task (distill/toy/task.py):

 1. build or reuse the tiny teacher and original student (cached in ~/.cache/distill/toy)
 2. sample traces from the teacher (hf backend)       -> out/traces/tiny/toy/raw.jsonl
 3. filter them with the default R1 recipe            -> clean.jsonl, rejects.jsonl, report
    (`filter.<key>=` switches: filter.toy_steps=true adds the toy's every-line check)
 4. train the student on clean.jsonl (students/tiny)  -> out/students/tiny/final
    and, for comparison, a second one on the unfiltered raw.jsonl -> out/students/tiny-unfiltered
    (on CPU both train at once, each on half the threads; the second logs to its folder's train.log)
 5. with rl=true: GRPO on the filtered student (students/tiny's rl: block) -> out/rl/tiny/final
 6. evaluate original vs student (vs rl) vs teacher on the held-out split -> out/eval/tiny/report.*
 7. print the comparison and the targets, write out/demo_report.{json,md}

Every stage resumes: a second `make demo` reuses what is already there.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import load_config
from distill.trace import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    prompts: int = 3000
    """Training problems sampled from the teacher (one trace each): ~1,750 survive the filters.
    On the earlier spaced task, 1,500 (~930 clean traces) gave a filtered student of 53.5%."""
    eval_problems: int = 200
    """Held-out problems each model is evaluated on."""
    eval_k: int = 1
    """Samples per held-out problem (pass@1 is their mean)."""
    unfiltered: bool = True
    """Also train a student on the unfiltered traces, to show what the filters buy."""
    teacher: str = "tiny"
    """teachers/<name>.yaml or a YAML path."""
    size: str = "tiny"
    """students/<name>.yaml or a YAML path."""
    train_set: str = "toy"
    """Prompt set the teacher answers (datasets/<name>.yaml or a path)."""
    eval_set: str = "toy-test"
    """Held-out benchmark (datasets/<name>.yaml or a path)."""
    student_steps: int = 1000
    """Optimizer steps (of 32 traces) for each student. Equal for both, so filtered vs unfiltered
    compares data, not compute (at fixed epochs the unfiltered one got 60% more steps). Fewer is
    faster but costs accuracy (600 steps on the earlier spaced task: 35-45%); see students/tiny.yaml."""
    student: dict[str, Any] = field(default_factory=dict)
    """Student preset keys for both students, dotted: `student.learning_rate=1e-3`, `student.num_epochs=2`."""
    filter: dict[str, Any] = field(default_factory=dict)
    """Filter-stage keys, dotted: `filter.toy_steps=true` adds the toy's step check (distill/toy/steps.py),
    `filter.dedup=false` drops a filter. The step check keeps ~1 trace in 10, so it wants `prompts=12000`:
    its student then reached 68-72% held-out against ~40% (docs/toy.md), for ~1 more minute of sampling."""
    rl: bool = False
    """Also run stage 5 (`make rl SIZE=tiny`: GRPO with the distill.verify rewards) on the filtered student and
    evaluate it (the rl column, target: +5 points over the SFT student). Off by default: the tiny preset's recipe
    gains +1.5 points over 3 seeds (+4.2 / -0.5 / +0.8), within noise and short of +5, and adds ~3 minutes; from
    the step-checked student (filter.toy_steps=true) +3.2 after 100 steps, then no more (docs/toy.md)."""
    rl_block: dict[str, Any] = field(default_factory=dict)
    """Keys of the student preset's rl: block, dotted: `rl_block.max_steps=100 rl_block.beta=0.2`."""
    parallel_students: bool = True
    """On CPU, train the filtered and unfiltered students at the same time, each on half the
    threads (the unfiltered one in a spawned process). A 0.5M-parameter model's small matmuls use
    a second thread poorly: on 2 cores, 200 steps of both took 58 s at once vs 75 s one after the
    other. With CUDA they run one after the other (one GPU)."""


def run(out: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the demo into `out`; return the summary (also written to out/demo_report.json)."""
    from distill.paths import eval_dir, rl_dir, student_dir, traces_dir
    from distill.eval.run import run as run_eval
    from distill.filters.run import run as run_filter
    from distill.students.config import load_student_config
    from distill.students.train import run as run_student
    from distill.models import resolve_model
    from distill.teachers.config import load_teacher_config
    from distill.teachers.sample import run as run_traces

    cfg = load_config(DemoConfig, {}, overrides)
    out = Path(out)
    start = time.time()
    times: dict[str, float] = {}

    def stage(name: str) -> None:
        times[name] = time.time()
        print(f"\n=== {name} ===", flush=True)

    def done(name: str) -> None:
        times[name] = time.time() - times[name]

    # ---- 1. The teacher and original student the configs name (toy:// models are built once, then cached)
    stage("models")
    teacher_dir = resolve_model(load_teacher_config(cfg.teacher).model)
    original_dir = resolve_model(load_student_config(cfg.size)[0].base)
    print(f"teacher: {teacher_dir}\noriginal student: {original_dir}")
    done("models")

    # ---- 2. Sample traces from the teacher (same code as TEACHER=r1)
    stage("traces")
    folder = traces_dir(out, cfg.teacher, cfg.train_set)
    run_traces(teacher=cfg.teacher, prompts=cfg.train_set, out_dir=folder, overrides=[f"prompts.toy.n={cfg.prompts}"])
    done("traces")

    # ---- 3. Filter with the default R1 recipe
    stage("filter")
    filter_report = run_filter(input_path=folder / "raw.jsonl", out_dir=folder, teacher=cfg.teacher,
                               overrides=dotted(cfg.filter))
    done("filter")

    # ---- 4. Train the student on the filtered traces (and one on the unfiltered, to compare)
    student_ov = [f"max_steps={cfg.student_steps}", *dotted(cfg.student)]
    filtered = {"size": cfg.size, "data": folder / "clean.jsonl", "out_dir": student_dir(out, cfg.size),
                "overrides": student_ov}
    unfiltered = {"size": cfg.size, "data": folder / "raw.jsonl",
                  "out_dir": student_dir(out, f"{cfg.size}-unfiltered"), "overrides": student_ov}
    if cfg.unfiltered and cfg.parallel_students and not _cuda():
        stage("students (filtered and unfiltered, at once)")
        _train_both(filtered, unfiltered)
        done("students (filtered and unfiltered, at once)")
    else:
        stage("student")
        run_student(**filtered)
        done("student")
        if cfg.unfiltered:
            stage("student (unfiltered)")
            run_student(**unfiltered)
            done("student (unfiltered)")

    # ---- 5. RL on the filtered student (GRPO, rewards from distill.verify)
    rl_final = None
    if cfg.rl:
        from distill.rl.train import run as run_rl

        stage("rl")
        rl_final = run_rl(size=cfg.size, student=student_dir(out, cfg.size) / "final", out_dir=rl_dir(out, cfg.size),
                          overrides=dotted(cfg.rl_block))
        done("rl")

    # ---- 6. Evaluate original vs student (vs rl) vs teacher on the held-out split
    stage("eval")
    eval_ov = [f"benchmarks=[{cfg.eval_set}]", f"limit={cfg.eval_problems}", f"default_k={cfg.eval_k}"]
    report = run_eval(size=cfg.size, student=student_dir(out, cfg.size) / "final", teacher=cfg.teacher,
                      out_dir=eval_dir(out, cfg.size), overrides=eval_ov, rl=rl_final)
    unfiltered_report = None
    if cfg.unfiltered:
        unfiltered_report = run_eval(
            size=cfg.size, student=student_dir(out, f"{cfg.size}-unfiltered") / "final", teacher=None,
            out_dir=eval_dir(out, f"{cfg.size}-unfiltered"), overrides=[*eval_ov, "roles=[student]"])
    done("eval")

    # ---- 7. The comparison and the targets
    summary = summarize(report, unfiltered_report, filter_report, times, time.time() - start)
    atomic_write_text(out / "demo_report.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "demo_report.md", render(summary))
    print("\n" + render(summary))
    return summary


def dotted(settings: dict[str, Any], prefix: str = "") -> list[str]:
    """{'a': {'b': '1'}} -> ['a.b=1']: a nested block of the demo's config as the stage's `key=value` overrides."""
    out = []
    for key, value in settings.items():
        if isinstance(value, dict):
            out += dotted(value, f"{prefix}{key}.")
        else:
            text = f"[{','.join(map(str, value))}]" if isinstance(value, list) else value
            out.append(f"{prefix}{key}={text}")
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _train_both(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Train `first` here and `second` in a spawned process, each on half the CPU threads."""
    import torch

    from distill.students.train import run as run_student

    threads = torch.get_num_threads()
    half = max(1, threads // 2)
    log_path = Path(second["out_dir"]) / "train.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"training the unfiltered student alongside, on {half} thread(s); its log: {log_path}", flush=True)
    # torch_threads is a run-control key: a rerun may resume these runs with another thread count.
    second = {**second, "overrides": [*second["overrides"], f"torch_threads={half}"]}
    first = {**first, "overrides": [*first["overrides"], f"torch_threads={max(1, threads - half)}"]}
    # daemon: if this process fails or is interrupted, multiprocessing stops the child on exit.
    child = multiprocessing.get_context("spawn").Process(target=_train_logged, args=(second, str(log_path)),
                                                         daemon=True, name="distill-demo-unfiltered")
    child.start()
    try:
        run_student(**first)
    finally:
        torch.set_num_threads(threads)  # the eval that follows gets every thread back
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"training the unfiltered student failed (exit code {child.exitcode}); see {log_path}")


def _train_logged(kwargs: dict[str, Any], log_path: str) -> None:
    """The child: its progress bar and logs go to `log_path`, since two bars on one terminal garble
    each other."""
    with open(log_path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    logging.basicConfig(level=logging.INFO, force=True)
    from distill.students.train import run as run_student

    run_student(**kwargs)


def _pass1(report: dict[str, Any] | None, role: str) -> float | None:
    if report is None or not report["benchmarks"]:
        return None
    row = next(iter(report["benchmarks"].values()))  # the demo evaluates one benchmark
    return row[role]["pass@1"]["mean"] if role in row else None


def summarize(report: dict[str, Any], unfiltered: dict[str, Any] | None, filter_report: Any,
              times: dict[str, float], total: float) -> dict[str, Any]:
    original, student, rl, teacher = (_pass1(report, r) for r in ("original", "student", "rl", "teacher"))
    unf = _pass1(unfiltered, "student")
    fr = filter_report.to_dict() if hasattr(filter_report, "to_dict") else filter_report
    targets = {
        "student >= original + 30 points": None if None in (student, original) else student - original >= 0.30,
        "student >= 85% of teacher": None if None in (student, teacher) or not teacher else student / teacher >= 0.85,
        "filtered student > unfiltered student": None if None in (student, unf) else student > unf,
        "RL student >= SFT student + 5 points": None if None in (student, rl) else rl - student >= 0.05 - 1e-9,
    }
    return {
        "held_out_pass@1": {"original": original, "student": student, "student_unfiltered": unf, "student_rl": rl,
                            "teacher": teacher},
        "targets": targets,
        "filter": {k: fr.get(k) for k in ("in", "kept", "dropped")} if isinstance(fr, dict) else None,
        "seconds": {**{k: round(v, 1) for k, v in times.items()}, "total": round(total, 1)},
    }


def render(summary: dict[str, Any]) -> str:
    acc = summary["held_out_pass@1"]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = ["# distill demo: held-out toy problems, pass@1", "",
             "| original | student (filtered) | student (unfiltered) | student (filtered + RL) | teacher |",
             "|---|---|---|---|---|",
             f"| {pct(acc['original'])} | {pct(acc['student'])} | {pct(acc['student_unfiltered'])} "
             f"| {pct(acc.get('student_rl'))} | {pct(acc['teacher'])} |",
             "", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'-' if ok is None else ('yes' if ok else 'NO')} |" for name, ok in summary["targets"].items()]
    secs = summary["seconds"]
    lines += ["", "Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items() if k != "total")
              + f"; total {secs['total']:.0f} s"]
    return "\n".join(lines) + "\n"

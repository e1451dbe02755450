"""`distill traces|import|filter|student|eval|rl|demo`: one subcommand per stage; the Makefile calls these.

    distill traces --teacher r1 --prompts numinamath --out out limit=1000
    distill import --source openr1-math                    # a published trace set, instead of sampling
    distill filter --teacher r1 --prompts numinamath
    distill student --size 7b --teacher r1 --prompts numinamath learning_rate=5e-5
    distill eval --size 7b
    distill rl --size 1.5b --prompts openr1-math
    distill export --size 7b --format fp8
    distill serve --size 7b --format fp8
    distill demo

Trailing `key=value` arguments are dotted paths into the stage's config dataclass (TracesConfig,
FilterConfig, StudentConfig, EvalConfig, ...), laid over its YAML. Each stage's code is imported
only when that stage runs, so `distill --help` is instant and pulls in no torch.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from distill.config import ConfigError
from distill.paths import eval_dir, rl_dir, student_dir, traces_dir  # noqa: F401  (also importable from here)
from distill.trace import TraceError

# OSErrors that a path the user gave explains (a file where a folder should be, a read-only
# mount, a full disk): one line naming the path, exit 2. Any other OSError keeps its traceback.
USER_IO_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC,
                  errno.EDQUOT, errno.ENAMETOOLONG, errno.EEXIST}


def writable_dir(folder: str | Path, what: str) -> Path:
    """Refuse, before any work, an output folder that cannot be created or written.

    Walks up to the first part of the path that exists: it must be a folder we may write in
    (a file there, `--out f/sub`, or a read-only mount would otherwise end in a traceback
    half-way through a stage). `what` names the flag for the message, e.g. '--out f'.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{what}: cannot create {folder}, {existing} is a file. Pass a folder "
                          "(it is created when missing), e.g. --out out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what}: cannot write in {existing} (read-only or no permission). "
                          "Pass a folder you can write to, e.g. --out /tmp/out")
    return folder


def input_file(path: str | Path, flag: str, hint: str) -> Path:
    """An input file the user named: it must exist and be a file, not a folder."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; it takes a JSONL file ({hint})")
    if not path.exists():
        raise ConfigError(f"{flag} {path}: no such file ({hint})")
    return path


def _traces(a: argparse.Namespace) -> None:
    from distill.teachers.sample import run

    folder = writable_dir(traces_dir(a.out or "out", a.teacher, a.prompts), f"--out {a.out or 'out'}")
    run(teacher=a.teacher, prompts=a.prompts, out_dir=folder, shard=a.shard, overrides=a.overrides)


def filter_folder(a: argparse.Namespace) -> Path:
    """Where `distill filter` writes: next to --input unless --out is given, else traces/<teacher>/<prompts>/."""
    if a.input and a.out is None:
        return Path(a.input).parent
    return traces_dir(a.out or "out", a.teacher, a.prompts)


def _filter(a: argparse.Namespace) -> None:
    from distill.filters.run import run

    if a.input:
        input_file(a.input, "--input", "traces, one Trace per line")
    what = f"--input {a.input}" if a.input and a.out is None else f"--out {a.out or 'out'}"
    folder = writable_dir(filter_folder(a), what)
    run(input_path=Path(a.input) if a.input else folder / "raw.jsonl", out_dir=folder,
        teacher=a.teacher, recipe=a.recipe, overrides=a.overrides)


def _student(a: argparse.Namespace) -> None:
    from distill.students.config import training_data
    from distill.students.train import run

    out = a.out or "out"
    if a.data:
        input_file(a.data, "--data", "a clean.jsonl written by `distill filter`")
    if any(o.replace(" ", "").lower() in ("rehearse=true", "rehearse=1", "rehearse=yes") for o in a.overrides):
        from distill.students.rehearse import run as rehearse  # the preset on a shrunk model, on CPU

        given = a.data or (a.teacher and a.prompts)  # else synthetic traces
        data = training_data(a.size, out=out, teacher=a.teacher, prompts=a.prompts, data=a.data) if given else None
        writable_dir(student_dir(out, a.size), f"--out {out}")
        report = rehearse(a.size, out, data=data, overrides=a.overrides, nodes=a.nodes, gpus=a.gpus)
        if not report.clean:
            raise SystemExit(1)
        return
    from distill.students.mixture import mixture_data, mixture_override

    overrides = [*a.overrides, mixture_override(a.mixture)] if a.mixture else a.overrides
    data = mixture_data(a.size, out, overrides, a.data or a.teacher or a.prompts) or training_data(
        a.size, out=out, teacher=a.teacher, prompts=a.prompts, data=a.data)
    out_dir = writable_dir(student_dir(out, a.size), f"--out {out}")
    run(size=a.size, data=data, out_dir=out_dir, nodes=a.nodes, gpus=a.gpus, overrides=overrides)


def _eval(a: argparse.Namespace) -> None:
    from distill.eval.run import run

    out = a.out or "out"
    if a.student and Path(a.student).exists() and not Path(a.student).is_dir():
        raise ConfigError(f"--student {a.student} is a file; it takes a model folder (e.g. out/students/7b/final)")
    writable_dir(eval_dir(out, a.size), f"--out {out}")
    run(size=a.size, student=Path(a.student) if a.student else student_dir(out, a.size) / "final",
        teacher=a.teacher, out_dir=eval_dir(out, a.size), overrides=a.overrides, rl=rl_dir(out, a.size) / "final")


def _rl(a: argparse.Namespace) -> None:
    from distill.rl.train import run

    out = a.out or "out"
    student = Path(a.student) if a.student else student_dir(out, a.size) / "final"
    run(size=a.size, student=student, out_dir=writable_dir(rl_dir(out, a.size), f"--out {out}"), prompts=a.prompts,
        overrides=a.overrides, teacher=a.teacher)


def _import(a: argparse.Namespace) -> None:
    from distill.imports import run

    writable_dir(Path(a.out or "out") / "traces", f"--out {a.out or 'out'}")
    run(source=a.source, out=a.out or "out", subset=a.subset, overrides=a.overrides)


def _export(a: argparse.Namespace) -> None:
    from distill.export.run import check_format, run
    from distill.paths import export_dir

    out = a.out or "out"
    check_format(a.format)
    data = None
    if a.format == "w8a8":  # calibration traces, resolved as `make student` resolves its data
        from distill.students.config import training_data

        data = training_data(a.size, out=out, teacher=a.teacher, prompts=a.prompts, data=a.data, stage="export")
    writable_dir(export_dir(out, a.size, a.format).parent, f"--out {out}")
    run(size=a.size, fmt=a.format, student=Path(a.student) if a.student else student_dir(out, a.size) / "final",
        out=Path(out), overrides=a.overrides, data=data)


def _serve(a: argparse.Namespace) -> None:
    from distill.export.serve import run

    run(size=a.size, fmt=a.format, out=a.out or "out", host=a.host, port=a.port, student=a.student,
        dry_run=a.dry_run)


def _demo_keys() -> str:
    """The demo's keys with their defaults, read from DemoConfig so the help cannot drift from it."""
    import dataclasses

    from distill.toy.demo import DemoConfig

    plain = [f"{f.name}={str(f.default).lower() if isinstance(f.default, bool) else f.default}"
             for f in dataclasses.fields(DemoConfig) if f.default is not dataclasses.MISSING]
    nested = [f"{f.name}.<key>=" for f in dataclasses.fields(DemoConfig) if f.default is dataclasses.MISSING]
    return (f"keys: {' '.join(plain)}; dotted stage keys: {' '.join(nested)} "
            f"(e.g. prompts=12000 filter.toy_steps=true rl=true)")


def _demo(a: argparse.Namespace) -> None:
    from distill.toy.demo import run

    run(out=writable_dir(a.out or "out", f"--out {a.out or 'out'}"), overrides=a.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Reasoning distillation in the style of DeepSeek-R1: sample traces from a teacher, "
        "filter them, train a student, and compare student vs original vs teacher.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="{traces,import,filter,student,eval,rl,export,serve,demo}")

    def stage(name: str, help: str, fn) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--out", default=None, help="output root (default: out/)")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted paths into the stage's config, e.g. limit=10 teacher.sampling.temperature=0.7")
        p.set_defaults(fn=fn)
        return p

    p = stage("traces", "Stage 1: sample reasoning traces from a teacher into traces/<teacher>/<prompts>/raw.jsonl.", _traces)
    p.add_argument("--teacher", default="tiny", help="teachers/<name>.yaml or a YAML path (ls teachers/)")
    p.add_argument("--prompts", default="toy", help="datasets/<name>.yaml or a YAML path (ls datasets/)")
    p.add_argument("--shard", default=None, metavar="i/N", help="take shard i of N of the prompt set (by prompt-id hash)")

    p = stage("import", "Stage 1, from a published trace set: sources/<name>.yaml into traces/<name>/<subset>/raw.jsonl "
              "(then `distill filter --teacher <name> --prompts <subset>`).", _import)
    p.add_argument("--source", required=True, help="sources/<name>.yaml or a YAML path (ls sources/)")
    p.add_argument("--subset", default=None, help="import this subset only (default: every subset the YAML lists)")

    p = stage("filter", "Stage 2: filter raw.jsonl into clean.jsonl + rejects.jsonl + filter_report.json.", _filter)
    p.add_argument("--teacher", default="tiny", help="teacher whose traces to filter (names the folder)")
    p.add_argument("--prompts", default="toy", help="prompt set whose traces to filter (names the folder)")
    p.add_argument("--recipe", default=None, help="YAML with a `filters:` list (default: the teacher's, else the R1 recipe)")
    p.add_argument("--input", default=None, help="filter this JSONL instead (traces made elsewhere); outputs go to "
                   "its folder, or to <out>/traces/<teacher>/<prompts>/ when --out is given")

    p = stage("student", "Stage 3: fine-tune a student on clean.jsonl into students/<size>/.", _student)
    p.add_argument("--size", default="tiny", help="students/<size>.yaml or a YAML path (ls students/)")
    p.add_argument("--teacher", default=None, help="teacher whose clean traces to train on (default: the preset's `traces`; only tiny has one)")
    p.add_argument("--prompts", default=None, help="prompt set whose clean traces to train on")
    p.add_argument("--data", default=None, help="train on this clean JSONL instead")
    p.add_argument("--mixture", default=None, help="a YAML with a `mixture:` list of clean trace sets "
                   "({traces: <teacher>/<prompts>, weight: 0-1 | count: N}), drawn with the preset's seed")
    p.add_argument("--nodes", type=int, default=None, help="number of machines (multi-node launch)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs per machine")

    p = stage("eval", "Stage 4: evaluate student vs original base (vs teacher) into eval/<size>/report.*.", _eval)
    p.add_argument("--size", default="tiny", help="the student size preset (names the original base)")
    p.add_argument("--student", default=None, help="student model dir (default: out/students/<size>/final)")
    p.add_argument("--teacher", default=None, help="also evaluate this teacher (or reuse its cached results)")

    p = stage("export", "Stage 6: quantize or convert a student for serving into export/<size>-<format>/, "
              "re-evaluated against the student (eval.json: pass@1 of both, retained).", _export)
    p.add_argument("--size", default="tiny", help="the student size preset (students/<size>.yaml)")
    p.add_argument("--format", required=True, help="fp8 (FP8 dynamic), w8a8 (INT8 weights and activations, "
                   "calibrated on clean traces) or gguf (q8_0 + a 4-bit type + Ollama Modelfile)")
    p.add_argument("--student", default=None, help="student model dir (default: out/students/<size>/final)")
    p.add_argument("--teacher", default=None, help="w8a8: teacher whose clean traces calibrate (default: the preset's `traces`)")
    p.add_argument("--prompts", default=None, help="w8a8: prompt set whose clean traces calibrate")
    p.add_argument("--data", default=None, help="w8a8: calibrate on this clean JSONL instead")

    p = stage("serve", "Serve a student or an export over the OpenAI API: vLLM (--reasoning-parser deepseek_r1) on "
              "a GPU, transformers serve or llama-server (gguf) on CPU.", _serve)
    p.add_argument("--size", default="tiny", help="the student size preset")
    p.add_argument("--format", default=None, help="serve out/export/<size>-<format>/ instead of the student")
    p.add_argument("--student", default=None, help="student model dir (default: out/students/<size>/final)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for other machines)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dry-run", action="store_true", help="print the server command and URL, start nothing")

    p = stage("rl", "Stage 5: GRPO on the SFT student with rewards from distill.verify into rl/<size>/.", _rl)
    p.add_argument("--size", default="tiny", help="students/<size>.yaml (its `rl:` block is the recipe)")
    p.add_argument("--prompts", default=None, help="prompt set with reference answers (datasets/<name>.yaml); "
                   "default: the rl block's `prompts` (tiny: toy)")
    p.add_argument("--student", default=None, help="SFT student model dir (default: out/students/<size>/final)")
    p.add_argument("--teacher", default=None, help="the teacher whose traces distilled the student (recorded in the card)")

    p = stage("demo", "The whole loop on CPU with the embedded tiny teacher and student: sample, filter, train a student "
              "on the clean and one on the raw traces, (rl=true: GRPO), evaluate against the original and the teacher.",
              _demo)
    p.epilog = _demo_keys()
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.fn(args)
    except (ConfigError, TraceError) as e:  # TraceError: a bad line of an input file, named file:line
        print(f"distill {args.stage}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in USER_IO_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"distill {args.stage}: {where}{e.strerror or e}. Check that path, or pick another folder with --out",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

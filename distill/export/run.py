"""Stage 6: export a student for serving (FP8, INT8 W8A8, GGUF) and re-evaluate what the export kept.

    make export SIZE=tiny FORMAT=fp8                  # out/export/tiny-fp8/ (CPU for the toy)
    make export SIZE=7b FORMAT=w8a8 TEACHER=r1 PROMPTS=openr1-math   # calibrated on that run's clean traces
    make export SIZE=tiny FORMAT=gguf                 # q8_0 + one 4-bit GGUF + an Ollama Modelfile
    distill export --size 7b --format fp8 eval.limit=50 evaluate=false

Writes out/export/<size>-<format>/: the exported model, `export.json` (what was done) and `eval.json`:
pass@1 of the export and of the unexported student on the same held-out problems with the same
samples per problem and seeds, and `retained` = export / student. Everything is written into a
temporary folder beside it and renamed at the end, so a failed export leaves no folder that looks
finished (and an earlier finished export stays until the new one is complete).

The student's samples are the `make eval` student column's (out/eval/<size>/student/): the two
share their results, so exporting three formats samples the student once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distill.config import ConfigError, load_config, menu_path, to_dict
from distill.paths import export_dir, menu_name

log = logging.getLogger(__name__)

FORMATS = {
    "fp8": "FP8 (e4m3) weights per channel, activations per token at run time; compressed-tensors, for vLLM",
    "w8a8": "INT8 weights per channel and INT8 activations, calibrated on clean traces; compressed-tensors, for vLLM",
    "gguf": "llama.cpp GGUF: q8_0 and one 4-bit type, plus an Ollama Modelfile",
}
GGUF_4BIT = ("Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "IQ4_NL", "IQ4_XS")


@dataclass(frozen=True)
class ExportConfig:
    """Keys of the preset's `export:` section and of `key=value` overrides (eval keys take `eval.`)."""

    calibration_samples: int = 256
    """w8a8: clean traces whose layer inputs set the static activation scales (llm-compressor's examples use 512)."""
    calibration_max_length: int = 2048
    """w8a8: tokens per calibration trace (longer ones are cut; only activations are observed)."""
    w8a8_activations: Literal["static", "dynamic"] = "static"
    """static: one calibrated INT8 scale per layer input; dynamic: per-token scales at run time (no calibration)."""
    gguf_4bit: str = "Q4_K_M"
    """The 4-bit GGUF type (llama-quantize): Q4_K_M is what Ollama ships by default. 'none': q8_0 only."""
    evaluate: bool = True
    """Run the held-out eval of export and student and write eval.json (the student's results are shared with make eval)."""
    server_threads: int | None = None
    """llama-server threads for the GGUF eval (None: llama.cpp's default)."""
    eval: dict[str, Any] = field(default_factory=dict)
    """EvalConfig keys for the re-evaluation (default: the preset's `eval:` section), e.g. eval.limit=50."""

    def __post_init__(self) -> None:
        if self.gguf_4bit != "none" and self.gguf_4bit not in GGUF_4BIT:
            raise ConfigError(f"export config: gguf_4bit={self.gguf_4bit!r}; use one of {', '.join(GGUF_4BIT)} or none")
        if self.calibration_samples < 1 or self.calibration_max_length < 16:
            raise ConfigError("export config: calibration_samples must be >= 1 and calibration_max_length >= 16")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        import difflib

        hint = difflib.get_close_matches(fmt.lower(), list(FORMATS), n=1)
        raise ConfigError(f"unknown export format {fmt!r}.{f' Did you mean {hint[0]!r}?' if hint else ''} "
                          f"Formats: " + "; ".join(f"{k} ({v})" for k, v in FORMATS.items()))
    return fmt


def check_student(student: Path, size: str) -> Path:
    if not (student / "config.json").exists():
        what = "is not a model folder (no config.json)" if student.is_dir() else "does not exist"
        raise ConfigError(f"no student to export: {student} {what}. Train it first with `make student "
                          f"SIZE={menu_name(size)}`, or point --student at a model folder")
    return student


def check_tools(fmt: str, cfg: ExportConfig) -> None:
    """Everything the format needs on this machine, before any work (errors name the fix)."""
    try:
        if fmt in ("fp8", "w8a8"):
            from distill.export.quantize import require_compressed_tensors

            require_compressed_tensors()
            import torch

            if fmt == "fp8" and not hasattr(torch, "float8_e4m3fn"):
                raise ImportError(f"FORMAT=fp8 writes float8_e4m3fn weights, which torch {torch.__version__} lacks: "
                                  "install torch >= 2.1 (make install), or export FORMAT=w8a8 instead")
        if fmt == "gguf":
            from distill.export import llama_cpp

            llama_cpp.require_source()
            if cfg.gguf_4bit != "none":
                llama_cpp.require_tool("llama-quantize", f"the {cfg.gguf_4bit} GGUF (or gguf_4bit=none for q8_0 only)")
            if cfg.evaluate:
                llama_cpp.require_tool("llama-server", "the GGUF eval (or evaluate=false)")
            import gguf  # noqa: F401  (the reader that checks the written files)
    except (ImportError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None


def load_export_config(size: str, overrides: list[str] | None) -> tuple[ExportConfig, Path, list[str]]:
    """ExportConfig defaults < the preset's `export:` section < overrides; eval.* overrides returned apart."""
    preset_path = menu_path("students", size)
    from distill.students.config import StudentConfig

    section = load_config(StudentConfig, preset_path).export or {}  # the preset, read through its own dataclass
    own = [o for o in overrides or [] if not o.startswith("eval.")]
    evals = [o.removeprefix("eval.") for o in overrides or [] if o.startswith("eval.")]
    cfg = load_config(ExportConfig, section, own)
    evals = [f"{k}={v}" for k, v in cfg.eval.items() if not any(e.startswith(f"{k}=") for e in evals)] + evals
    return cfg, preset_path, evals


def run(size: str, fmt: str, student: Path, out: Path, overrides: list[str] | None = None,
        data: Path | None = None) -> dict[str, Any]:
    """Export `student` as `fmt` into out/export/<size>-<fmt>/; returns eval.json's content (or export.json's)."""
    # ---- Inputs, all checked before any work
    check_format(fmt)
    student = check_student(Path(student), size)
    cfg, preset_path, eval_overrides = load_export_config(size, overrides)
    check_tools(fmt, cfg)
    if fmt == "w8a8" and cfg.w8a8_activations == "static":
        if data is None or not Path(data).exists():
            raise ConfigError(f"FORMAT=w8a8 calibrates on the student's clean traces, and there are none at {data}: "
                              f"run `make filter` for them, pass --data, or use w8a8_activations=dynamic")
    final = export_dir(out, size, fmt)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    start = time.monotonic()
    try:
        # ---- Export
        if fmt in ("fp8", "w8a8"):
            info = _export_compressed(student, tmp, fmt, cfg, data)
        else:
            info = _export_gguf(student, tmp, size, cfg)
        info.update(format=fmt, size=menu_name(size), student=str(student), config=to_dict(cfg),
                    export_seconds=round(time.monotonic() - start, 1), student_bytes=weights_bytes(student))
        (tmp / "export.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        log.info("exported %s as %s in %.0f s", student, fmt, time.monotonic() - start)

        # ---- Re-evaluate: the export against the student, same problems, samples and seeds
        result = info
        if cfg.evaluate:
            from distill.export.evaluate import evaluate_export

            result = evaluate_export(size, preset_path, student, tmp, final, fmt, info, eval_overrides, out, cfg)
            (tmp / "eval.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

        # ---- Publish: replace any earlier export only now that this one is complete
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _print_summary(final, result)
    return result


def _remove_stale(final: Path) -> None:
    """Delete the temporary folders of exports killed before they could clean up (SIGKILL, SIGTERM)."""
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)  # a live process: another export of the same format is running
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))


def calibration_sequences(data: Path, tokenizer: Any, n: int, max_length: int) -> list[list[int]]:
    """Token ids of the first `n` clean traces as the student was trained on them (prompt + assistant turn)."""
    from distill.students.data import trace_messages
    from distill.trace import read_traces

    out: list[list[int]] = []
    for trace in read_traces(data):
        ids = tokenizer.apply_chat_template(trace_messages(trace), tokenize=True, return_dict=True)["input_ids"]
        out.append(list(ids)[:max_length])
        if len(out) >= n:
            break
    if not out:
        raise ConfigError(f"{data} holds no traces to calibrate on")
    return out


def _export_compressed(student: Path, tmp: Path, fmt: str, cfg: ExportConfig, data: Path | None) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from distill.export.quantize import quantize_student

    calibration: list[list[int]] = []
    if fmt == "w8a8" and cfg.w8a8_activations == "static":
        tokenizer = AutoTokenizer.from_pretrained(student)
        calibration = calibration_sequences(Path(data), tokenizer, cfg.calibration_samples, cfg.calibration_max_length)
    summary = quantize_student(student, tmp, fmt, calibration, cfg.w8a8_activations)
    if fmt == "w8a8":
        summary["calibration_data"] = str(data) if calibration else None
    for extra in ("chat_template_train.jinja",):
        if (student / extra).exists():
            shutil.copy2(student / extra, tmp / extra)
    return {"library": _versions("compressed-tensors", "transformers", "torch"), "quantization": summary,
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}, "bytes": weights_bytes(tmp)}


def _export_gguf(student: Path, tmp: Path, size: str, cfg: ExportConfig) -> dict[str, Any]:
    from distill.export import gguf

    name = menu_name(size)
    variants: dict[str, Any] = {}
    q8 = gguf.convert(student, tmp / f"{name}-q8_0.gguf", "q8_0")
    variants["q8_0"] = gguf.describe(q8)
    if cfg.gguf_4bit != "none":
        # llama-quantize wants a full-precision input: f32 for an fp32 student, bf16/f16 ('auto') otherwise.
        dtype = json.loads((student / "config.json").read_text()).get("dtype") or "float32"
        full = gguf.convert(student, tmp / f"{name}-full.gguf", "f32" if dtype == "float32" else "auto")
        low = tmp / f"{name}-{cfg.gguf_4bit}.gguf"
        fallback = gguf.quantize(full, low, cfg.gguf_4bit)
        full.unlink()
        variants[cfg.gguf_4bit] = {**gguf.describe(low), **fallback}
    fmt = gguf.chat_format(student)
    alternatives = {v["file"]: k for k, v in variants.items() if k != "q8_0"}
    (tmp / "Modelfile").write_text(gguf.modelfile(variants["q8_0"]["file"], fmt, alternatives))
    from distill.export import llama_cpp

    return {"library": {"llama.cpp": str(llama_cpp.source()), **_versions("gguf")}, "chat_format": fmt,
            "variants": variants, "bytes": weights_bytes(tmp)}


def _versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "absent"
    return out


def _print_summary(final: Path, result: dict[str, Any]) -> None:
    print(f"\nexport: {final}")
    def ratio(x: float | None) -> str:
        return "undefined" if x is None else f"{x:.3f}"

    for name, v in (result.get("variants") or {}).items():
        if "retained" in v:
            print(f"  {name:8s} {v['bytes'] / 1e6:8.2f} MB  pass@1 {v['pass@1_mean']:.1%} vs student "
                  f"{result['student']['pass@1_mean']:.1%}  retained {ratio(v['retained'])}")
    if "retained" in result:
        print(f"retained (export / student pass@1): {ratio(result['retained'])}  -> {final / 'eval.json'}")
    if result.get("note"):
        print(f"note: {result['note']}")


__all__ = ["ExportConfig", "FORMATS", "check_format", "export_dir", "run"]

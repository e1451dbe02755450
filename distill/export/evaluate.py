"""eval.json: the export and the unexported student on the same held-out problems, samples and seeds.

The protocol is the preset's `eval:` section (tiny: 200 toy-test problems, 2 samples each, at
temperature 0.6), through the eval stage's own pieces (distill.eval: benchmarks, sampling, the
checker, pass@1 with its standard error). The student runs on the eval backend (hf on CPU, vllm
with backend=vllm); a compressed-tensors export runs on the same backend, which loads it through
compressed-tensors (fake quant on CPU); a GGUF runs in llama.cpp's own llama-server, spoken to
over the OpenAI API, so its tokenizer, template and kernels are the ones users will run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from distill.config import load_config

log = logging.getLogger(__name__)


def evaluate_export(size: str, preset_path: Path, student: Path, tmp: Path, final: Path, fmt: str,
                    info: dict[str, Any], eval_overrides: list[str], out: Path, cfg: Any) -> dict[str, Any]:
    from distill.paths import eval_dir, menu_name
    from distill.eval.config import load_eval_config
    from distill.eval.run import load_benchmark, model_column, name_of, sampling_params, weights_fingerprint

    from distill.students.config import StudentConfig

    section = load_config(StudentConfig, preset_path).eval or {}  # the preset, read through its own dataclass
    ecfg, lines = load_eval_config(preset_path, section, eval_overrides)
    for line in lines:
        print(line)
    params = sampling_params(ecfg)
    benchmarks = {name_of(b): load_benchmark(b, ecfg) for b in ecfg.benchmarks}

    # The student column is the `make eval` one: same folder, same run key, shared samples.
    student_col = model_column("student", str(student), eval_dir(out, size) / "student", ecfg)
    result: dict[str, Any] = {
        "size": menu_name(size), "format": fmt, "student_model": str(student), "export": str(final),
        "protocol": {"benchmarks": list(benchmarks), "problems": {b: len(p) for b, p in benchmarks.items()},
                     "k": {b: ecfg.samples_for(b) for b in benchmarks}, "temperature": params.temperature,
                     "top_p": params.top_p, "max_tokens": params.max_tokens, "seed": ecfg.seed,
                     "backend": ecfg.backend},
        "student": _scores(student_col, benchmarks, ecfg, params),
        "variants": {},
    }
    result["student"]["bytes"] = info["student_bytes"]

    if fmt in ("fp8", "w8a8"):
        col = _export_column(fmt, tmp, final, ecfg, weights_fingerprint(str(tmp)))
        scores = _scores(col, benchmarks, ecfg, params)
        result["variants"][fmt] = {**scores, "bytes": info["bytes"], "runtime": f"{ecfg.backend} (compressed-tensors)"}
    else:
        from distill.export.serve import llama_server

        for name, v in info["variants"].items():
            # Logs beside the export's folder, not in it: the folder holds what users download.
            with llama_server(tmp / v["file"], threads=cfg.server_threads, slot_tokens=params.max_tokens + 1024,
                              log_dir=tmp.parent) as url:
                col = _gguf_column(name, v, url, tmp, final, ecfg)
                scores = _scores(col, benchmarks, ecfg, params)
            result["variants"][name] = {**scores, "bytes": v["bytes"], "file": v["file"], "runtime": "llama-server"}

    base = result["student"]["pass@1_mean"]
    for v in result["variants"].values():
        v["retained"] = round(v["pass@1_mean"] / base, 4) if base > 0 else None
    primary = fmt if fmt != "gguf" else "q8_0"
    result["retained"] = result["variants"][primary]["retained"]
    if base == 0:
        result["note"] = "the student solves none of these problems: retained is undefined"
    return result


def _export_column(fmt: str, tmp: Path, final: Path, ecfg: Any, fingerprint: str | None) -> Any:
    from distill.eval.run import Column, _load_teacher
    from distill.teachers.config import TeacherConfig

    # Loaded from the temporary folder, named by where it will live (the results move with it).
    tcfg = load_config(TeacherConfig, {"name": fmt, "backend": ecfg.backend, "model": str(tmp), **ecfg.backend_options})
    identity = {"model": str(final), "weights": fingerprint, "system_prompt": tcfg.system_prompt,
                "prefill": tcfg.prefill, "extra_body": tcfg.extra_body}
    return Column("export", str(final), tmp / "eval" / fmt, identity, lambda: _load_teacher(tcfg),
                  chunk=ecfg.chunk_for(tcfg.backend, tcfg.batch_size))


def _gguf_column(name: str, variant: dict[str, Any], url: str, tmp: Path, final: Path, ecfg: Any) -> Any:
    from distill.eval.run import Column, _load_teacher
    from distill.teachers.config import TeacherConfig

    tcfg = load_config(TeacherConfig, {"name": name, "backend": "openai", "model": variant["file"], "base_url": [url],
                                       "concurrency": 4, "timeout": 600})
    identity = {"model": str(final / variant["file"]), "weights": f"{variant['file']}:{variant['bytes']}",
                "runtime": "llama-server"}
    return Column("export", variant["file"], tmp / "eval" / name, identity, lambda: _load_teacher(tcfg), chunk=256)


def _scores(col: Any, benchmarks: dict[str, list], ecfg: Any, params: Any) -> dict[str, Any]:
    """Generate what is missing for one column and return pass@1 per benchmark and their mean."""
    from distill.eval.metrics import summarize
    from distill.eval.results import ResultStore, evaluate, run_key
    from distill.eval.run import _Lazy

    backend = _Lazy(col.make_backend, col.label)
    per: dict[str, Any] = {}
    # What this call generated (samples reused from an earlier run cost nothing and are not timed).
    work = {"generated": 0, "reused": 0, "completion_tokens": 0, "seconds": 0.0}
    try:
        for bench, prompts in benchmarks.items():
            store = ResultStore(col.folder / f"{bench}.jsonl", run_key(col.identity, params))
            k = ecfg.samples_for(bench)
            progress = evaluate(store, prompts, k, params, backend, {"role": col.role, "model": col.label,
                                                                      "benchmark": bench},
                                chunk=col.chunk, score_workers=ecfg.score_workers, seed=ecfg.seed,
                                score_timeout=ecfg.score_timeout, fallback=ecfg.answer_fallback)
            for key in work:
                work[key] += getattr(progress, key)
            if progress.failed:
                raise RuntimeError(f"{col.label} {bench}: {progress.failed} sample(s) failed in the backend")
            table, _ = store.table(prompts, k)
            summary = summarize(list(table.values()))
            per[bench] = {"pass@1": summary["pass@1"], "problems": summary["problems"], "samples": summary["samples"],
                          "truncation_rate": summary["truncation_rate"]}
            log.info("%s %s: pass@1 %.3f (%d new samples)", col.role, bench, summary["pass@1"]["mean"],
                     progress.generated)
    finally:
        backend.release()
    means = [v["pass@1"]["mean"] for v in per.values()]
    work["seconds"] = round(work["seconds"], 2)
    if work["generated"] and work["seconds"] > 0:
        work["tokens_per_s"] = round(work["completion_tokens"] / work["seconds"], 1)
    return {"benchmarks": per, "pass@1_mean": round(sum(means) / len(means), 4), "generation": work}

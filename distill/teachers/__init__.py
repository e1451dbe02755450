"""Stage 1: teachers (one backend per file) and the sampling run (`sample.py`, with `resume.py` and `progress.py`).

    from distill.teachers import TeacherConfig, load_teacher, SamplingParams
    teacher = load_teacher("r1")                                            # teachers/r1.yaml
    teacher = load_teacher(TeacherConfig(name="base", backend="hf", model="/path/to/model"))
    completions = teacher.generate(list_of_chats, SamplingParams(n=4, max_tokens=4096))

Importing this package loads no backend: torch, transformers, openai and vllm are imported by
the backend that needs them.
"""

from __future__ import annotations

from pathlib import Path

from distill.teachers.base import Completion, SamplingParams, Teacher, TeacherError
from distill.teachers.config import TeacherConfig, TracesConfig, load_teacher_config, load_traces_config

__all__ = ["Completion", "SamplingParams", "Teacher", "TeacherConfig", "TeacherError", "TracesConfig", "backend_class",
           "load_teacher", "load_teacher_config", "load_traces_config"]


def load_teacher(cfg: TeacherConfig | str | Path, overrides: list[str] | None = None) -> Teacher:
    """Build the backend for a teacher config (or a teachers/*.yaml name or path).

    openai: fails at once if the key variable is unset (no request is made until `generate`).
    hf: loads the model (a `toy://` model is built on first use). vllm: starts the engine.
    """
    if not isinstance(cfg, TeacherConfig) or overrides:
        cfg = load_teacher_config(cfg, overrides)
    return backend_class(cfg.backend)(cfg)


def backend_class(backend: str) -> type:
    """The class of a backend name; importing it loads nothing heavy (each imports torch/vllm/openai when built)."""
    if backend == "openai":
        from distill.teachers.openai_backend import OpenAITeacher

        return OpenAITeacher
    if backend == "hf":
        from distill.teachers.hf_backend import HFTeacher

        return HFTeacher
    from distill.teachers.vllm_backend import VLLMTeacher

    return VLLMTeacher

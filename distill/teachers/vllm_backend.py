"""vLLM's offline engine as a teacher, for models that fit on one node (QwQ-32B, R1-Distill-Qwen-32B).

    distill traces --teacher qwq --prompts openr1-math          # teachers/qwq.yaml: backend vllm

GPU only: `pip install -e '.[vllm]'` on a CUDA machine. vLLM is imported when the engine is
built, never at module import, so the rest of distill works without it. The mapping from our
config to vLLM's arguments is two plain functions, tested without vLLM installed.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from distill.teachers.base import Completion, SamplingParams
from distill.teachers.config import TeacherConfig, resolve_model_path
from distill.teachers.hf_backend import render_chat, template_note
from distill.trace import split_reasoning

log = logging.getLogger(__name__)


def vllm_engine_kwargs(cfg: TeacherConfig) -> dict[str, Any]:
    """`vllm.LLM(**kwargs)` for a teacher config."""
    kwargs: dict[str, Any] = {
        "model": resolve_model_path(cfg.model),
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "dtype": cfg.dtype,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "trust_remote_code": cfg.trust_remote_code,
        # The engine seed only fixes the default generator; per-request seeds come from SamplingParams.
        "seed": cfg.sampling.seed if cfg.sampling.seed is not None else 0,
    }
    if cfg.max_model_len is not None:
        kwargs["max_model_len"] = cfg.max_model_len
    return kwargs


def vllm_sampling_kwargs(params: SamplingParams, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """`vllm.SamplingParams(**kwargs)`: n samples share the prompt's KV cache; `extra` (top_k...) wins."""
    kwargs: dict[str, Any] = {
        "n": params.n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        # <think> is a special token in some tokenizers; dropping it would merge reasoning into the answer.
        "skip_special_tokens": False,
    }
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    kwargs.update(extra or {})
    return kwargs


class VLLMTeacher:
    """`vllm.LLM.generate` on prompts rendered with the model's chat template."""

    def __init__(self, cfg: TeacherConfig):
        try:
            import vllm
        except ImportError as e:
            raise ImportError(
                f"teacher '{cfg.label}' uses backend 'vllm', which needs a CUDA GPU and "
                "`pip install -e '.[vllm]'`. On a CPU machine set `backend: hf` in the teacher config "
                "(or ARGS=\"backend=hf\"), or serve the model elsewhere and use `backend: openai`."
            ) from e
        self.cfg = cfg
        self.name = cfg.label
        self._vllm = vllm
        self.llm = vllm.LLM(**vllm_engine_kwargs(cfg))
        self.tokenizer = self.llm.get_tokenizer()
        self.prompt_note, self.extra_stop = template_note(self.tokenizer, cfg.label)

    def generate(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt; vLLM schedules the whole list itself."""
        texts = [render_chat(self.tokenizer, m, self.cfg.system_prompt, self.cfg.prefill) for m in prompts]
        params = dataclasses.replace(params, stop=[*params.stop, *self.extra_stop])
        outputs = self.llm.generate(texts, self._vllm.SamplingParams(**vllm_sampling_kwargs(params, self.cfg.extra_body)), use_tqdm=False)
        return [[completion_from_vllm(out, o, self.cfg.model) for o in out.outputs] for out in outputs]


def completion_from_vllm(request_output: Any, output: Any, model: str | None = None) -> Completion:
    """One vLLM CompletionOutput -> Completion (finish_reason 'stop' or 'length', token counts, the model loaded)."""
    reasoning, answer, _ = split_reasoning(output.text)
    return Completion(
        reasoning=reasoning, answer=answer, finish_reason=output.finish_reason,
        prompt_tokens=len(request_output.prompt_token_ids or []),
        completion_tokens=len(output.token_ids), raw={"model": model} if model else {},
    )

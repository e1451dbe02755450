"""vLLM's offline engine as a teacher, for models that fit on one node (QwQ-32B, R1-Distill-Qwen-32B).

    distill traces --teacher qwq --prompts openr1-math          # teachers/qwq.yaml: backend vllm

GPU only: `pip install -e '.[vllm]'` on a CUDA machine. vLLM is imported when the engine is
built, never at module import, so the rest of distill works without it. The mapping from our
config to vLLM's arguments is two plain functions, tested without vLLM installed.

The engine's context (`max_model_len`) is the model's own unless the config sets one; a prompt
whose max_tokens would run past it is sent with max_tokens clamped to what fits, and a prompt that
alone fills it is not sent (a 'length' completion with no text): both counted in a warning and
in Completion.raw, never an engine error and never a silent cut. `data_parallel_size: N` runs N
engine replicas in their own processes, each on its own `tensor_parallel_size` GPUs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from distill.models import resolve_model
from distill.teachers.base import Completion, SamplingParams
from distill.teachers.config import TeacherConfig
from distill.teachers.render import render_chat, template_note
from distill.trace import split_reasoning

log = logging.getLogger(__name__)


def model_context(model: str) -> int | None:
    """The model's context in tokens from its config (max_position_embeddings); None when it cannot be read."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model(model))
    except (OSError, ValueError) as e:
        log.warning("could not read %s's config to set max_model_len (%s); vLLM picks its own", model, e)
        return None
    return getattr(config.get_text_config(), "max_position_embeddings", None)


def clamp_max_tokens(prompt_tokens: list[int], max_tokens: int, max_model_len: int | None) -> list[int]:
    """Per prompt, the max_tokens that fits the context: max_tokens, less when prompt + max_tokens exceeds
    max_model_len, 0 when the prompt alone fills it (nothing to generate)."""
    if max_model_len is None:
        return [max_tokens] * len(prompt_tokens)
    return [max(0, min(max_tokens, max_model_len - n)) for n in prompt_tokens]


def gpu_groups(data_parallel_size: int, tensor_parallel_size: int, visible: list[str]) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each replica: consecutive groups of tensor_parallel_size of the visible GPUs."""
    need = data_parallel_size * tensor_parallel_size
    if need > len(visible):
        raise ValueError(f"data_parallel_size {data_parallel_size} x tensor_parallel_size {tensor_parallel_size} needs "
                         f"{need} GPUs; {len(visible)} are visible ({','.join(visible) or 'none'}). Lower one of them")
    return [",".join(visible[i * tensor_parallel_size:(i + 1) * tensor_parallel_size]) for i in range(data_parallel_size)]


def vllm_engine_kwargs(cfg: TeacherConfig, context: int | None = None) -> dict[str, Any]:
    """`vllm.LLM(**kwargs)` for a teacher config; `context` (the model's own) when the config sets no max_model_len."""
    kwargs: dict[str, Any] = {
        "model": resolve_model(cfg.model),
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "dtype": cfg.dtype,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "trust_remote_code": cfg.trust_remote_code,
        # The engine seed only fixes the default generator; per-request seeds come from SamplingParams.
        "seed": cfg.sampling.seed if cfg.sampling.seed is not None else 0,
    }
    if (cfg.max_model_len or context) is not None:
        kwargs["max_model_len"] = cfg.max_model_len or context
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
    """`vllm.LLM.generate` on prompts rendered with the model's chat template (one engine, or N replicas)."""

    batching = "batches"

    @staticmethod
    def sequences_per_call(cfg: TeacherConfig) -> int:
        """`cfg.batch_size` (teachers/qwq.yaml: 512): vLLM schedules the whole list itself."""
        return cfg.batch_size

    @staticmethod
    def eval_chunk(batch_size: int) -> int:
        """2048 whatever the batch size: the engine schedules the list itself and runs best kept full."""
        return 2048

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
        self.max_model_len = cfg.max_model_len or model_context(cfg.model)
        kwargs = vllm_engine_kwargs(cfg, self.max_model_len)
        if cfg.data_parallel_size > 1:
            from transformers import AutoTokenizer

            self.llm = None
            self.replicas = Replicas(kwargs, cfg.data_parallel_size, cfg.tensor_parallel_size)
            self.tokenizer = AutoTokenizer.from_pretrained(kwargs["model"], trust_remote_code=cfg.trust_remote_code)
        else:
            self.replicas = None
            self.llm = vllm.LLM(**kwargs)
            self.tokenizer = self.llm.get_tokenizer()
        self.prompt_note, self.extra_stop = template_note(self.tokenizer, cfg.label)
        self.clamped = self.overflowed = 0
        """Prompts sent with a clamped max_tokens, and prompts not sent because they alone fill the context."""

    def generate(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt; vLLM schedules the whole list itself."""
        texts = [render_chat(self.tokenizer, m, self.cfg.system_prompt, self.cfg.prefill) for m in prompts]
        params = dataclasses.replace(params, stop=[*params.stop, *self.extra_stop])
        # The chat template wrote any BOS: count the tokens the engine will see.
        lengths = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        budgets = clamp_max_tokens(lengths, params.max_tokens, self.max_model_len)
        send = [i for i, b in enumerate(budgets) if b > 0]
        clamped = sum(1 for i in send if budgets[i] < params.max_tokens)
        overflow = len(prompts) - len(send)
        if clamped or overflow:
            self.clamped += clamped
            self.overflowed += overflow
            log.warning("%s: %d of %d prompts + max_tokens %d exceed max_model_len %s: max_tokens clamped to fit; "
                        "%d prompts alone fill it and come back as 'length' with no text (run totals: %d clamped, "
                        "%d not sent)", self.name, clamped, len(prompts), params.max_tokens, self.max_model_len,
                        overflow, self.clamped, self.overflowed)
        sampling = [vllm_sampling_kwargs(dataclasses.replace(params, max_tokens=budgets[i]), self.cfg.extra_body)
                    for i in send]
        outputs = self._generate([texts[i] for i in send], sampling)
        out: list[list[Completion]] = []
        sent = dict(zip(send, outputs))
        for i, budget in enumerate(budgets):
            if i not in sent:
                note = {"context_overflow": f"prompt of {lengths[i]} tokens fills max_model_len {self.max_model_len}"}
                out.append([Completion(reasoning="", answer="", finish_reason="length", prompt_tokens=lengths[i],
                                       completion_tokens=0, raw={"model": self.cfg.model, **note})
                            for _ in range(params.n)])
                continue
            row = [completion_from_vllm(sent[i], o, self.cfg.model) for o in sent[i].outputs]
            if budget < params.max_tokens:
                for c in row:
                    c.raw["max_tokens_clamped_to"] = budget
            out.append(row)
        return out

    def _generate(self, texts: list[str], sampling: list[dict[str, Any]]) -> list[Any]:
        if not texts:
            return []
        if self.replicas is not None:
            return self.replicas.generate(texts, sampling)
        return self.llm.generate(texts, [self._vllm.SamplingParams(**k) for k in sampling], use_tqdm=False)


class Replicas:
    """`data_parallel_size` vLLM engines, each in its own process on its own GPUs; prompts split evenly.

    vLLM refuses LLM(data_parallel_size > 1) in one process, and an engine's GPUs are fixed when
    CUDA is first touched, so each replica is a spawned process that sets CUDA_VISIBLE_DEVICES
    before importing vllm and serves generate calls over a pipe. Outputs come back as plain
    objects with the fields completion_from_vllm reads.
    """

    def __init__(self, engine_kwargs: dict[str, Any], data_parallel_size: int, tensor_parallel_size: int):
        import multiprocessing as mp

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            import torch

            visible = ",".join(str(i) for i in range(torch.cuda.device_count()))
        groups = gpu_groups(data_parallel_size, tensor_parallel_size, [v for v in visible.split(",") if v])
        ctx = mp.get_context("spawn")
        self.pipes, self.procs = [], []
        for devices in groups:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_replica_main, args=(engine_kwargs, devices, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe, devices in zip(self.pipes, groups):
            status = pipe.recv()
            if status != "ready":
                raise RuntimeError(f"vLLM replica on GPUs {devices} failed to start: {status}")
        log.info("%d vLLM replicas on GPUs %s", len(groups), " | ".join(groups))

    def generate(self, texts: list[str], sampling: list[dict[str, Any]]) -> list[Any]:
        n = len(self.pipes)
        shards = [list(range(r, len(texts), n)) for r in range(n)]  # round robin: long and short prompts mix
        for pipe, idx in zip(self.pipes, shards):
            pipe.send(([texts[i] for i in idx], [sampling[i] for i in idx]))
        out: list[Any] = [None] * len(texts)
        for pipe, idx in zip(self.pipes, shards):
            status, result = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"a vLLM replica failed: {result}")
            for i, o in zip(idx, result):
                out[i] = o
        return out

    def __del__(self) -> None:
        for pipe in getattr(self, "pipes", []):
            try:
                pipe.send(None)
            except (OSError, ValueError):
                pass


def _replica_main(engine_kwargs: dict[str, Any], devices: str, pipe: Any) -> None:
    """One replica: pin its GPUs, build the engine, answer (texts, sampling kwargs) until told to stop."""
    from types import SimpleNamespace

    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        import vllm

        llm = vllm.LLM(**engine_kwargs)
        pipe.send("ready")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises with the GPUs named
        pipe.send(f"{type(e).__name__}: {e}")
        return
    while (job := pipe.recv()) is not None:
        texts, sampling = job
        try:
            outputs = llm.generate(texts, [vllm.SamplingParams(**k) for k in sampling], use_tqdm=False) if texts else []
            pipe.send(("ok", [SimpleNamespace(prompt_token_ids=list(o.prompt_token_ids or []), outputs=[
                SimpleNamespace(text=c.text, finish_reason=c.finish_reason, token_ids=list(c.token_ids))
                for c in o.outputs]) for o in outputs]))
        except Exception as e:  # noqa: BLE001
            pipe.send(("error", f"{type(e).__name__}: {e}"))


def completion_from_vllm(request_output: Any, output: Any, model: str | None = None) -> Completion:
    """One vLLM CompletionOutput -> Completion (finish_reason 'stop' or 'length', token counts, the model loaded)."""
    reasoning, answer, _ = split_reasoning(output.text)
    return Completion(
        reasoning=reasoning, answer=answer, finish_reason=output.finish_reason,
        prompt_tokens=len(request_output.prompt_token_ids or []),
        completion_tokens=len(output.token_ids), raw={"model": model} if model else {},
    )

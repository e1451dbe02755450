"""A transformers model as a teacher: `model.generate`, batched with left padding, CPU or GPU.

    teacher = HFTeacher(TeacherConfig(name="tiny", backend="hf", model="toy://teacher"))
    teacher.generate([[{"role": "user", "content": "Compute 3 + 4."}]], SamplingParams(n=2, max_tokens=64))

The embedded demo and the tests use it; on GPUs, `backend: vllm` is many times faster.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from distill.models import resolve_model
from distill.teachers.base import Completion, SamplingParams
from distill.teachers.config import TeacherConfig
from distill.teachers.render import R1_ZERO_PREAMBLE, render_chat, template_note
from distill.trace import split_reasoning

__all__ = ["R1_ZERO_PREAMBLE", "HFTeacher", "render_chat"]  # the renderer's names, re-exported where tests find them

log = logging.getLogger(__name__)


class HFTeacher:
    """`AutoModelForCausalLM.generate` over batches of `cfg.batch_size` sequences."""

    batching = "batches"

    @staticmethod
    def sequences_per_call(cfg: TeacherConfig) -> int:
        """Four batches' worth: `generate` sorts them by prompt length into batches of `cfg.batch_size`.
        A kill loses at most one call, which on CPU is seconds of work."""
        return HFTeacher.eval_chunk(cfg.batch_size)

    @staticmethod
    def eval_chunk(batch_size: int) -> int:
        """As for sampling: four batches per call, so a kill loses seconds of work."""
        return 4 * batch_size

    def __init__(self, cfg: TeacherConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.name = cfg.label
        path = resolve_model(cfg.model)
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if cfg.dtype == "auto":
            dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            dtype = getattr(torch, cfg.dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"teacher '{cfg.label}': dtype '{cfg.dtype}' is not a torch dtype; "
                                 "use auto, bfloat16, float16 or float32")
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
        model.to(self.device).eval()
        self._attach(model, tokenizer)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, cfg: TeacherConfig) -> HFTeacher:
        """The backend over a model already in memory (the eval callback's model being trained):
        same generation code, no loading, and the caller's tokenizer left as it was."""
        self = cls.__new__(cls)
        self.cfg = cfg
        self.name = cfg.label
        self.device = str(next(model.parameters()).device)
        self._attach(model, copy.copy(tokenizer))
        return self

    def _attach(self, model: Any, tokenizer: Any) -> None:
        # Left padding: generation appends to the right end of every row, so the prompts must end there.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer, self.model = tokenizer, model
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.prompt_note, self.extra_stop = template_note(tokenizer, self.cfg.label)

    def generate(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt; batches hold about `cfg.batch_size` sequences."""
        per_batch = max(1, self.cfg.batch_size // params.n)
        # Batches of similar prompt length: a batch decodes until its longest answer ends, and
        # prompt length predicts answer length (more steps to a problem, more to write). Sampling
        # 1,000 toy problems at batch 256 took 11.1 s sorted, 14.0 s in input order.
        order = sorted(range(len(prompts)), key=lambda i: sum(len(m.get("content") or "") for m in prompts[i]))
        out: list[list[Completion]] = [[] for _ in prompts]
        for start in range(0, len(order), per_batch):
            part = order[start:start + per_batch]
            for i, completions in zip(part, self._generate_batch([prompts[i] for i in part], params)):
                out[i] = completions
        return out

    def _generate_batch(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        import torch

        texts = [render_chat(self.tokenizer, m, self.cfg.system_prompt, self.cfg.prefill) for m in prompts]
        # The chat template already wrote any BOS token; adding special tokens again would double it.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens, "num_return_sequences": params.n,
                                  "pad_token_id": self.tokenizer.pad_token_id,
                                  "eos_token_id": sorted(self.eos_ids)}
        if params.temperature > 0:
            # top_k=0: no top-k cut. transformers defaults to 50, which vLLM and the APIs do not apply,
            # so the same temperature/top_p would sample a different distribution here.
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        stop = [*params.stop, *self.extra_stop]
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        kwargs.update(self.cfg.extra_body)  # top_k, repetition_penalty, min_p ...
        if params.seed is not None:
            torch.manual_seed(params.seed)
        with torch.inference_mode():
            sequences = self.model.generate(**enc, **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        results: list[list[Completion]] = [[] for _ in prompts]
        for row, seq in enumerate(sequences[:, prompt_len:].tolist()):
            results[row // params.n].append(self._completion(seq, prompt_tokens[row // params.n], params))
        return results

    def _completion(self, ids: list[int], prompt_tokens: int, params: SamplingParams) -> Completion:
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        finish = "stop" if end is not None else "length"
        ids = ids[:end] if end is not None else ids
        # Keep special tokens: <think> and </think> are special in some tokenizers, and the split needs them.
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        stop = [*params.stop, *self.extra_stop]
        if end is None and stop:
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        reasoning, answer, _ = split_reasoning(text)
        return Completion(reasoning=reasoning, answer=answer, finish_reason=finish, prompt_tokens=int(prompt_tokens),
                          completion_tokens=len(ids) + (1 if end is not None else 0), raw={"model": self.cfg.model})

"""A transformers model as a teacher: `model.generate`, batched with left padding, CPU or GPU.

    teacher = HFTeacher(TeacherConfig(name="tiny", backend="hf", model="toy://teacher"))
    teacher.generate([[{"role": "user", "content": "Compute 3 + 4."}]], SamplingParams(n=2, max_tokens=64))

The embedded demo and the tests use it; on GPUs, `backend: vllm` is many times faster.
"""

from __future__ import annotations

import copy

import logging
from typing import Any

from distill.teachers.base import Completion, SamplingParams
from distill.models import resolve_model
from distill.teachers.config import TeacherConfig
from distill.trace import split_reasoning

log = logging.getLogger(__name__)


# A base model without a chat template (Llama-3.1-8B, Qwen2.5-Math-7B as published) is prompted
# the way DeepSeek prompted its base for R1-Zero (R1 paper, table 1): plain text, zero-shot, thinking
# in <think> tags. The instruction of the benchmark (e.g. "put your final answer within \boxed{}")
# stays in the user turn, so the answer is scored as every other column's.
R1_ZERO_PREAMBLE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
R1_ZERO_STOP = ("</answer>", "\nUser:")
"""A base model writes on past its answer (a new `User:` turn); these end the sample instead of max_tokens."""
R1_ZERO_NOTE = ("has no chat template: prompted as DeepSeek prompted its base for R1-Zero (R1 paper, table 1; "
                "plain text, zero-shot, stop at </answer> or a new User: turn)")


def has_chat_template(tokenizer: Any) -> bool:
    """False for a transformers tokenizer whose chat_template is unset; an object without the attribute renders itself."""
    return bool(getattr(tokenizer, "chat_template", "apply_chat_template"))


def render_plain(tokenizer: Any, messages: list[dict[str, str]], prefill: str = "") -> str:
    """DeepSeek-R1-Zero's plain-text prompt for a template-less base, with its BOS token when it has one."""
    parts = [m["content"] for m in messages if m.get("role") == "system"] + [R1_ZERO_PREAMBLE]
    for m in messages:
        if m.get("role") != "system":
            parts.append(f"{'Assistant' if m.get('role') == 'assistant' else 'User'}: {m['content']}")
    text = (tokenizer.bos_token or "") + "\n".join(parts) + "\nAssistant:"
    return text + (f" {prefill}" if prefill else "")


def render_chat(tokenizer: Any, messages: list[dict[str, str]], system_prompt: str | None = None,
                prefill: str = "") -> str:
    """The prompt text a chat model sees, with the generation prompt and the prefill.

    The prefill (e.g. '<think>\\n') is added only when the template did not already end with
    it: R1-Distill and QwQ templates open the thinking themselves. A tokenizer without a chat
    template (a base model) gets DeepSeek-R1-Zero's plain-text prompt (`render_plain`).
    """
    msgs = list(messages)
    if system_prompt and not (msgs and msgs[0].get("role") == "system"):
        msgs.insert(0, {"role": "system", "content": system_prompt})
    if not has_chat_template(tokenizer):
        return render_plain(tokenizer, msgs, prefill)
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if prefill and not text.endswith(prefill) and not text.endswith(prefill.rstrip()):
        text += prefill
    return text


def template_note(tokenizer: Any, label: str) -> tuple[str | None, tuple[str, ...]]:
    """(a note for reports, extra stop strings): both empty for a model with a chat template."""
    if has_chat_template(tokenizer):
        return None, ()
    note = f"{label} {R1_ZERO_NOTE}"
    log.warning("%s", note)
    return note, R1_ZERO_STOP


class HFTeacher:
    """`AutoModelForCausalLM.generate` over batches of `cfg.batch_size` sequences."""

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

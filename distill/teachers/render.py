"""The one place a teacher config's prompt shaping (`system_prompt`, `prefill`) is applied.

    conversation(messages, system_prompt)              the chat as the teacher got it (what a trace records)
    chat_request(messages, system_prompt, prefill)     openai: the messages and body flags of a request
    render_chat(tokenizer, messages, system_prompt, prefill)   hf, vllm: the prompt text

A base model without a chat template (Llama-3.1-8B, Qwen2.5-Math-7B as published) is prompted
the way DeepSeek prompted its base for R1-Zero (R1 paper, table 1): plain text, zero-shot, thinking
in <think> tags. The instruction of the benchmark (e.g. "put your final answer within \\boxed{}")
stays in the user turn, so the answer is scored as every other column's.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

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


def conversation(messages: list[dict[str, str]], system_prompt: str | None = None) -> list[dict[str, str]]:
    """The messages with the config's system turn first, unless the prompt brings its own."""
    if system_prompt and not (messages and messages[0].get("role") == "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return list(messages)


def chat_request(messages: list[dict[str, str]], system_prompt: str | None = None,
                 prefill: str = "") -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages, extra body fields) of an OpenAI-compatible chat request.

    The prefill goes as a final assistant message that vLLM and SGLang continue when asked; the
    completion then holds only what follows it (e.g. thinking without its opening <think>).
    """
    msgs = conversation(messages, system_prompt)
    if not prefill:
        return msgs, {}
    return [*msgs, {"role": "assistant", "content": prefill}], {"continue_final_message": True,
                                                                 "add_generation_prompt": False}


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
    msgs = conversation(messages, system_prompt)
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

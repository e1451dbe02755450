"""Chat templates for base models: one to train on, one to serve with.

Base models (Qwen2.5-Math, Llama-3.1-8B) have no chat format of their own, so the student learns
one here. Three things decide whether a distilled student works:

- The reasoning stays in the training target. The R1-Distill template drops everything up to
  `</think>` from assistant turns: right for serving multi-turn chats, wrong for training, where
  it would silently delete the chain of thought from the loss. The training template renders the
  assistant content as is (`distill.trace.assistant_text`: `<think>\\n...\\n</think>\\n\\nanswer`).
- The student stops. The end-of-turn token closes every assistant turn inside the loss mask and
  becomes the tokenizer's and the generation config's eos; a base tokenizer's own eos
  (`<|endoftext|>`, `<|end_of_text|>`) never appears after an answer, so a student stopping on
  it would ramble.
- The loss covers the assistant tokens only. `{% generation %}` marks them: transformers'
  `apply_chat_template(..., return_assistant_tokens_mask=True)` turns the marks into a mask.

The serving template renders prompts exactly like the training one (a test checks it), has no
generation marks, and, like R1's, leaves earlier turns' reasoning out of the history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class ChatFormat:
    name: str
    end_of_turn: str
    """The student's eos: the token that closes an assistant turn."""
    special_tokens: tuple[str, ...]
    """Tokens the template writes that must be single tokens of the base vocabulary."""
    train: str
    serve: str
    pad_candidates: tuple[str, ...] = ()
    """Padding tokens to use when the tokenizer has none, first present wins (never the eos)."""


def _template(turn: str, end: str, after_end: str = "", bos: bool = False, train: bool = True) -> str:
    """A chat template. `turn` is the Jinja expression opening a turn, with ROLE where the role goes;
    `end` closes a turn, `after_end` follows it outside the loss (ChatML's newline).

    train: the assistant content and `end` inside {% generation %}, content as is.
    serve: no generation marks; earlier assistant turns lose their reasoning, as R1 and QwQ serve.
    """
    def opening(role: str) -> str:
        return turn.replace("ROLE", role)

    lines = ["{{- bos_token -}}"] if bos else []
    lines += ["{%- for message in messages -%}", "{%- if message['role'] == 'assistant' -%}"]
    if train:
        lines += ["{{- " + opening("'assistant'") + " -}}",
                  "{%- generation -%}{{- message['content'] + '" + end + "' -}}{%- endgeneration -%}"]
    else:
        lines += ["{%- set content = message['content'] -%}",
                  "{%- if not loop.last and '</think>' in content -%}",
                  "{%- set content = content.split('</think>')[-1].lstrip() -%}",
                  "{%- endif -%}",
                  "{{- " + opening("'assistant'") + " + content + '" + end + "' -}}"]
    if after_end:
        lines.append("{{- '" + after_end + "' -}}")
    lines += ["{%- else -%}",
              "{{- " + opening("message['role']") + " + message['content'] + '" + end + after_end + "' -}}",
              "{%- endif -%}",
              "{%- endfor -%}",
              "{%- if add_generation_prompt -%}{{- " + opening("'assistant'") + " -}}{%- endif -%}"]
    return "".join(lines)


# ChatML, as Qwen2.5 and QwQ write it. No default system prompt: DeepSeek advises none for R1.
CHATML = {"turn": "'<|im_start|>' + ROLE + '\\n'", "end": "<|im_end|>", "after_end": "\\n"}
# Llama 3 headers, as Llama-3.1/3.3-Instruct write them, without the Instruct template's date
# system block (a base model never saw it; the 70B Instruct base is fine without it).
LLAMA3 = {"turn": "'<|start_header_id|>' + ROLE + '<|end_header_id|>\\n\\n'", "end": "<|eot_id|>", "bos": True}

FORMATS: dict[str, ChatFormat] = {
    "chatml": ChatFormat("chatml", "<|im_end|>", ("<|im_start|>", "<|im_end|>"), _template(**CHATML),
                         _template(**CHATML, train=False), pad_candidates=("<|endoftext|>",)),
    # Llama 3.1 reserves <|finetune_right_pad_id|> for padding; older Llama 3 vocabularies have reserved tokens.
    "llama3": ChatFormat("llama3", "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
                         _template(**LLAMA3), _template(**LLAMA3, train=False),
                         pad_candidates=("<|finetune_right_pad_id|>", "<|reserved_special_token_0|>", "<|end_of_text|>")),
}


def get_format(name: str) -> ChatFormat:
    if name not in FORMATS:
        raise ValueError(f"Unknown chat template '{name}': available are {', '.join(FORMATS)}")
    return FORMATS[name]


def prepare_tokenizer(tokenizer, fmt: ChatFormat, where: str = "base tokenizer"):
    """Give a base tokenizer the training template, the end-of-turn eos and a pad token distinct from it.

    Returns the original eos token (or None) so the caller can keep it as an extra stop token.
    Raises ValueError when the vocabulary lacks the format's special tokens: adding them would need
    new embedding rows the base never trained, which a distilled student should not depend on.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in fmt.special_tokens if t not in vocab]
    if missing:
        raise ValueError(
            f"{where}: the '{fmt.name}' template needs {missing} as tokens, which this vocabulary lacks. "
            f"Pick the template of the base's family (chatml for Qwen2.5, llama3 for Llama 3.x) with template=..."
        )
    for token in fmt.special_tokens:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"{where}: '{token}' encodes to {len(ids)} tokens; it must be one special token")
    original_eos = tokenizer.eos_token
    tokenizer.chat_template = fmt.train
    tokenizer.eos_token = fmt.end_of_turn
    if tokenizer.pad_token is None or tokenizer.pad_token == fmt.end_of_turn:
        # A pad equal to the eos makes some collators mask the eos out of the labels: the student never learns to stop.
        pad = next((t for t in fmt.pad_candidates if t in vocab and t != fmt.end_of_turn), None)
        if pad is None:
            raise ValueError(f"{where}: no padding token distinct from {fmt.end_of_turn}; tried {fmt.pad_candidates}")
        tokenizer.pad_token = pad
    return original_eos if original_eos != fmt.end_of_turn else None


def set_stop_tokens(model, tokenizer, extra_eos: str | None) -> list[int]:
    """Make the model's config and generation config stop on the end-of-turn token (and the base eos)."""
    ids = [tokenizer.convert_tokens_to_ids(tokenizer.eos_token)]
    if extra_eos is not None and extra_eos in tokenizer.get_vocab():
        ids.append(tokenizer.convert_tokens_to_ids(extra_eos))
    model.config.eos_token_id = ids[0]
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = ids if len(ids) > 1 else ids[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return ids


def save_serving_tokenizer(tokenizer, fmt: ChatFormat, path) -> None:
    """Save the tokenizer with the serving template; keep the training template beside it for further fine-tuning."""
    from pathlib import Path

    path = Path(path)
    train_template = tokenizer.chat_template
    tokenizer.chat_template = fmt.serve
    try:
        tokenizer.save_pretrained(str(path))
    finally:
        tokenizer.chat_template = train_template
    (path / "chat_template_train.jinja").write_text(fmt.train)

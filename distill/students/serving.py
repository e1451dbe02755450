"""What a saved student needs so that serving stacks, not only transformers 5, read it right.

Two things a student's `final/` would otherwise get wrong:

1. RoPE under the keys older readers know. transformers 5 writes RoPE only as
   `rope_parameters: {rope_theta, rope_type, ...}`; tools and serving releases built on the older
   layout look for a top-level `rope_theta` (and Llama 3.x's `rope_scaling`), find none, and fall
   back to theta 10000: a 7B trained at theta 300000 then reads garbage. `add_legacy_rope_keys`
   writes both beside `rope_parameters`, with the same values.
2. `<think>` and `</think>` as single tokens. The Qwen2.5 and Llama-3.1 vocabularies split them
   into `<th`, `ink`, `>`; vLLM's `deepseek_r1` reasoning parser looks both up as vocabulary entries
   and refuses to start without them. DeepSeek's R1-Distill models have them as single tokens whose
   rows reuse ids the base reserves: Qwen2.5 has unused rows past its added tokens (the embedding has
   151,936 rows for 151,665 tokens), Llama 3.x has 256 reserved special tokens (R1-Distill-Llama
   renamed ids 128013 and 128014). `ensure_think_tokens` does the same before training, so the
   student learns those rows; their embeddings start as the mean of the pieces they replace
   (`init_think_rows`). They are not special: `decode(skip_special_tokens=True)` keeps them, as
   R1-Distill's tokenizers do, so the reasoning stays readable and splittable.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

THINK_TOKENS = ("<think>", "</think>")
R1_DISTILL_LLAMA_IDS = (128013, 128014)
"""The reserved ids DeepSeek-R1-Distill-Llama-8B/70B gave `<think>` and `</think>`."""
_RESERVED = re.compile(r"<\|reserved_special_token_\d+\|>")


@dataclass
class ThinkTokens:
    """How `<think>` / `</think>` became single tokens of a tokenizer."""

    how: str
    """'present' (already single tokens), 'added' (new ids within the embedding's rows) or
    'reserved' (reserved special tokens renamed)."""
    ids: dict[str, int] = field(default_factory=dict)
    pieces: dict[str, list[int]] = field(default_factory=dict)
    """The ids each token was split into before, to initialise its row from."""


def single_token_id(tokenizer: Any, token: str) -> int | None:
    ids = tokenizer.encode(token, add_special_tokens=False)
    return ids[0] if len(ids) == 1 and token in tokenizer.get_vocab() else None


def ensure_think_tokens(tokenizer: Any, embedding_rows: int) -> ThinkTokens:
    """Make `<think>` and `</think>` single tokens of `tokenizer` (in place).

    `embedding_rows` is the model's vocab_size: new ids must fall inside it, so a full vocabulary
    (Llama 3.x: 128,256 tokens, 128,256 rows) renames two reserved special tokens instead.
    Raises ValueError when neither is possible (no spare row, no reserved token).
    """
    if all(single_token_id(tokenizer, t) is not None for t in THINK_TOKENS):
        return ThinkTokens("present", {t: single_token_id(tokenizer, t) for t in THINK_TOKENS})
    pieces = {t: tokenizer.encode(t, add_special_tokens=False) for t in THINK_TOKENS}
    if len(tokenizer) + len(THINK_TOKENS) <= embedding_rows:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
        how = "added"
    else:
        _rename_reserved(tokenizer)
        how = "reserved"
    ids = {t: single_token_id(tokenizer, t) for t in THINK_TOKENS}
    if None in ids.values() or max(ids.values()) >= embedding_rows:
        raise ValueError(f"could not make {THINK_TOKENS} single tokens within {embedding_rows} rows: got {ids}")
    log.info("think tokens: %s (%s)", ids, how)
    return ThinkTokens(how, ids, pieces)


def _rename_reserved(tokenizer: Any) -> None:
    """Rename two reserved special tokens to `<think>` / `</think>` (R1-Distill-Llama's ids when reserved)."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("the tokenizer has no tokenizers backend; cannot rename reserved tokens to <think>")
    data = json.loads(backend.to_str())
    reserved = {t["id"]: t for t in data.get("added_tokens", []) if _RESERVED.fullmatch(t["content"])}
    in_use = {tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token}
    reserved = {i: t for i, t in reserved.items() if t["content"] not in in_use}
    if all(i in reserved for i in R1_DISTILL_LLAMA_IDS):
        chosen = list(R1_DISTILL_LLAMA_IDS)
    elif len(reserved) >= 2:
        chosen = sorted(reserved)[-2:]
    else:
        raise ValueError(
            f"the vocabulary is full ({len(tokenizer)} tokens) and has no reserved special tokens to "
            f"rename to {THINK_TOKENS}: resize the embeddings or pick a base with spare rows"
        )
    for token_id, text in zip(chosen, THINK_TOKENS, strict=True):
        reserved[token_id].update(content=text, special=False)
    # Hand-edited JSON because neither tokenizers nor transformers can rename an added token.
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(data))


def init_think_rows(model: Any, think: ThinkTokens) -> None:
    """Start each new think token's input (and untied output) row as the mean of its old pieces' rows."""
    if think.how == "present":
        return
    import contextlib

    import torch

    tables = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not tables[0]:
        tables.append(out.weight)
    gathered: contextlib.AbstractContextManager = contextlib.nullcontext()
    if any(hasattr(t, "ds_id") for t in tables):  # ZeRO-3 loaded the weights sharded: gather, edit on rank 0
        import deepspeed

        gathered = deepspeed.zero.GatheredParameters(tables, modifier_rank=0)
    with gathered, torch.no_grad():
        for token, token_id in think.ids.items():
            pieces = [i for i in think.pieces[token] if i < tables[0].shape[0]]
            for table in tables:
                table[token_id] = table[pieces].float().mean(0).to(table.dtype) if pieces else 0.0


def add_legacy_rope_keys(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (a config.json dict) with top-level `rope_theta` and `rope_scaling` beside `rope_parameters`."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict):
        return config
    if "rope_theta" in params:
        config["rope_theta"] = params["rope_theta"]
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        config.setdefault("rope_scaling", None)
    else:
        # As Llama-3.1's own config.json writes it: {"rope_type": "llama3", "factor": 8.0, ...}
        config["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
    return config


def write_serving_config(model_dir: Path | str) -> None:
    """Rewrite `model_dir/config.json` with the legacy RoPE keys (idempotent)."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(add_legacy_rope_keys(config), indent=2) + "\n")


__all__ = [
    "THINK_TOKENS",
    "ThinkTokens",
    "add_legacy_rope_keys",
    "ensure_think_tokens",
    "init_think_rows",
    "single_token_id",
    "write_serving_config",
]

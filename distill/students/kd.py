"""Beyond SFT: logit and on-policy distillation from a local teacher, through TRL's trainers.

- `kd: logit`: the student reads the teacher's traces and matches the teacher's full next-token
  distribution at every assistant position (generalized JSD; beta 0 = forward KL, Hinton-style).
  TRL's GKDTrainer with lmbda=0 (never samples from the student).
- `kd: on_policy`: the student writes its own completion for each prompt and the teacher scores
  every token of it (beta 1 = reverse KL, as in on-policy distillation). TRL's DistillationTrainer.

Both compare distributions over one vocabulary, so teacher and student must share a tokenizer.
Models of one family often differ only in *padded* embedding rows: Qwen2.5-1.5B has 151,936 rows,
Qwen2.5-7B and up 152,064, for the same 151,665 tokens. TRL compares `vocab_size` and refuses.
`align_vocab` makes the teacher's output head the student's shape: extra rows are dropped (no
token maps to them), missing ones are added with a -1e4 bias, so the teacher gives them no
probability. A teacher with a different tokenizer gets a clear error pointing to GOLD
(`trl.experimental.gold.GOLDTrainer`), TRL's cross-tokenizer distillation.
"""

from __future__ import annotations

import logging
from typing import Any

from distill.config import ConfigError

log = logging.getLogger(__name__)

PAD_ROW_BIAS = -1e4  # logit offset of padded teacher rows: exp(-1e4) underflows to 0 in fp32 and bf16


def check_shared_vocab(student_tok, teacher_tok, student_name: str = "student", teacher_name: str = "teacher") -> int:
    """Return the shared vocabulary size; raise ConfigError (pointing to GOLD) when the tokenizers differ."""
    s_vocab, t_vocab = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s_vocab != t_vocab:
        only_s = sorted(set(s_vocab) - set(t_vocab))
        only_t = sorted(set(t_vocab) - set(s_vocab))
        moved = sorted(t for t in set(s_vocab) & set(t_vocab) if s_vocab[t] != t_vocab[t])
        detail = "; ".join(part for part in (
            f"{len(only_s)} tokens only in the student's (e.g. {only_s[:3]})" if only_s else "",
            f"{len(only_t)} only in the teacher's (e.g. {only_t[:3]})" if only_t else "",
            f"{len(moved)} with other ids (e.g. {moved[:3]})" if moved else "") if part)
        raise ConfigError(
            f"Teacher {teacher_name} and student {student_name} do not share a vocabulary ({detail}). Logit and "
            f"on-policy distillation compare next-token distributions id by id, so they need the same tokenizer. "
            f"Use a teacher of the student's family, SFT on its traces (kd: none), or cross-tokenizer distillation "
            f"with GOLD (trl.experimental.gold.GOLDTrainer).")
    return len(s_vocab)


def output_rows(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def align_vocab(teacher, student_rows: int, vocab_size: int) -> None:
    """Give the teacher's output head `student_rows` rows, in place; rows >= vocab_size are padding.

    Dropping rows beyond the tokenizer loses nothing (no token id reaches them). Added rows get a
    bias of PAD_ROW_BIAS so the teacher puts no probability there. Input embeddings follow
    (resize_token_embeddings keeps tied weights tied); config.vocab_size becomes student_rows.
    """
    import torch

    teacher_rows = output_rows(teacher)
    if teacher_rows == student_rows:
        return
    if vocab_size > min(teacher_rows, student_rows):
        raise ConfigError(f"the tokenizer has {vocab_size} tokens but a model has only "
                         f"{min(teacher_rows, student_rows)} embedding rows; the checkpoint does not match its tokenizer")
    log.info("teacher head has %d rows, student %d (padding beyond %d tokens): aligning the teacher",
             teacher_rows, student_rows, vocab_size)
    teacher.resize_token_embeddings(student_rows, mean_resizing=False)
    if student_rows > teacher_rows:
        head = teacher.get_output_embeddings()
        with torch.no_grad():
            head.weight[teacher_rows:].zero_()
            bias = torch.zeros(student_rows, dtype=head.weight.dtype, device=head.weight.device)
            bias[teacher_rows:] = PAD_ROW_BIAS
            if head.bias is not None:
                bias[:teacher_rows] = head.bias[:teacher_rows]
        head.bias = torch.nn.Parameter(bias, requires_grad=False)


def load_teacher(name: str, student, student_tok, dtype, attn_implementation: str | None = None):
    """Load the KD teacher, check its tokenizer against the student's and align its head rows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.models import resolve_model

    path = resolve_model(name, "kd_teacher")
    teacher_tok = AutoTokenizer.from_pretrained(path)
    vocab = check_shared_vocab(student_tok, teacher_tok, student_name=str(student.name_or_path), teacher_name=name)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    teacher = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    align_vocab(teacher, output_rows(student), vocab)
    teacher.eval().requires_grad_(False)
    return teacher


def kd_datasets(dataset, kd: str):
    """Columns each trainer reads: GKD collates input_ids + completion_mask (+ messages); on-policy needs prompts only."""
    if kd == "logit":
        return dataset.rename_column("assistant_masks", "completion_mask").remove_columns(["prompt"])
    return dataset.select_columns(["prompt"])


def kd_config(kd: str, common: dict[str, Any], *, beta: float, temperature: float, max_length: int,
              max_completion_length: int):
    """The TRL config for `kd`; built before the models load, so under ZeRO-3 they load sharded."""
    if kd == "logit":
        from trl.experimental.gkd import GKDConfig

        # lmbda=0: always the dataset's (teacher-written) sequence, never a student sample; seq_kd off.
        return GKDConfig(**common, lmbda=0.0, beta=beta, temperature=temperature, seq_kd=False,
                         max_length=max_length, remove_unused_columns=False)
    if kd == "on_policy":
        from trl import DistillationConfig

        return DistillationConfig(**common, beta=beta, temperature=temperature,
                                  max_completion_length=max_completion_length)
    raise ValueError(f"kd must be 'logit' or 'on_policy', got {kd!r}")


def build_kd_trainer(kd: str, *, args, model, teacher, tokenizer, dataset, peft_config=None, callbacks=None):
    """TRL's GKDTrainer (logit) or DistillationTrainer (on_policy) on the tokenised traces."""
    if kd == "logit":
        from trl.experimental.gkd import GKDTrainer

        return GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=kd_datasets(dataset, kd),
                          processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    from trl import DistillationTrainer

    tokenizer.padding_side = "left"  # DistillationTrainer generates from left-padded prompts
    return DistillationTrainer(model=model, teacher_model=teacher, args=args, train_dataset=kd_datasets(dataset, kd),
                               processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)

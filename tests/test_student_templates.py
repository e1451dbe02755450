"""Chat templates and loss masks on the real Qwen2.5 and Llama-3.1 tokenizers (../shared/data/tokenizers).

The loss must cover exactly the assistant turn: `<think>` reasoning `</think>`, the answer, and the
end-of-turn token that becomes the student's eos; never a prompt token. We decode what the masks
and SFTTrainer's labels cover and compare it to the text we expect, character for character.
"""

from __future__ import annotations

import pytest

from distill.students.data import tokenize_messages, trace_messages
from distill.students.templates import FORMATS, get_format, prepare_tokenizer
from distill.trace import assistant_text

CASES = [("qwen2.5", "chatml", "<|im_end|>"), ("llama3.1", "llama3", "<|eot_id|>")]


@pytest.fixture(scope="module")
def prepared(shared_data):
    """The real tokenizers given their family's training template (loaded once: ~2 s each)."""
    from transformers import AutoTokenizer

    out = {}
    for name, fmt, _ in CASES:
        tok = AutoTokenizer.from_pretrained(shared_data / "tokenizers" / name)
        prepare_tokenizer(tok, get_format(fmt), where=name)
        out[name] = tok
    return out


def _trace(make_trace):
    # Multi-line reasoning with LaTeX and a trailing space that assistant_text strips: the target
    # must be exactly assistant_text's rendering, whatever the BPE merges at the boundaries.
    return make_trace(
        messages=[{"role": "system", "content": "You are a careful mathematician."},
                  {"role": "user", "content": "Compute $\\frac{1}{2} + \\frac{1}{3}$. Please reason step by step."}],
        reasoning="Common denominator 6.\n$\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}$.\nWait, check: 0.5 + 0.333 = 0.833. Yes. ",
        answer="The sum is $\\boxed{\\frac{5}{6}}$.",
    )


@pytest.mark.parametrize("name,fmt,eot", CASES)
def test_mask_covers_exactly_reasoning_answer_and_eos(prepared, make_trace, name, fmt, eot):
    tok = prepared[name]
    trace = _trace(make_trace)
    row = tokenize_messages(tok, trace_messages(trace))
    ids, mask = row["input_ids"], row["assistant_masks"]

    covered = [i for i, m in zip(ids, mask) if m]
    expected = assistant_text(trace.reasoning, trace.answer) + eot
    assert expected.startswith("<think>\n") and "</think>\n\n" in expected
    assert tok.decode(covered) == expected
    assert covered[-1] == tok.eos_token_id == tok.convert_tokens_to_ids(eot)

    # No prompt token is covered: the mask is 0 on exactly the tokens of the rendered prompt.
    prompt_ids = tok.apply_chat_template(trace.messages, tokenize=True, add_generation_prompt=True,
                                         return_dict=True)["input_ids"]
    first = mask.index(1)
    assert first == len(prompt_ids) and ids[:first] == list(prompt_ids)
    assert all(mask[first:]), "the assistant turn is one contiguous span ending the row"
    assert "You are a careful" in tok.decode(ids[:first]) and "\\frac{1}{2}" in tok.decode(ids[:first])


@pytest.mark.parametrize("name,fmt,eot", CASES)
def test_sft_trainer_labels_cover_the_same_tokens(prepared, make_trace, tmp_path, name, fmt, eot):
    """What the loss really sees: SFTTrainer's labels built from our rows, on a model with the real vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    tok = prepared[name]
    trace = _trace(make_trace)
    rows = [tokenize_messages(tok, trace_messages(trace))]
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512))
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=None, bf16=False,
                     activation_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    example = trainer.train_dataset[0]
    labels, input_ids = torch.tensor(example["labels"]), torch.tensor(example["input_ids"])
    assert tok.decode(input_ids[labels != -100].tolist()) == assistant_text(trace.reasoning, trace.answer) + eot
    assert (labels == -100).sum() == rows[0]["assistant_masks"].count(0) > 0


@pytest.mark.parametrize("name,fmt,eot", CASES)
def test_serving_template_prompts_like_training_and_drops_old_reasoning(prepared, make_trace, name, fmt, eot):
    tok = prepared[name]
    serve = FORMATS[fmt].serve
    trace = _trace(make_trace)

    # The prompt a served student sees is character for character the one it was trained after.
    train_prompt = tok.apply_chat_template(trace.messages, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(trace.messages, tokenize=False, add_generation_prompt=True,
                                   chat_template=serve) == train_prompt

    # Multi-turn: an earlier assistant turn keeps its answer but not its reasoning (as R1 serves).
    chat = trace_messages(trace) + [{"role": "user", "content": "And 1/4 + 1/4?"}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, chat_template=serve)
    assert "Common denominator" not in text and "\\boxed{\\frac{5}{6}}" in text
    assert text.endswith(train_prompt[-12:])
    # ...while training on the same conversation keeps it in the target.
    assert "Common denominator" in tok.apply_chat_template(trace_messages(trace), tokenize=False)
    assert "{% generation" not in serve and "{%- generation" in FORMATS[fmt].train


def test_template_needs_the_base_family_tokens(prepared):
    # The check runs before the tokenizer is touched, so the shared fixture stays intact.
    with pytest.raises(ValueError, match=r"needs \['<\|im_start\|>', '<\|im_end\|>'\].*template of the base's family"):
        prepare_tokenizer(prepared["llama3.1"], get_format("chatml"), where="llama3.1")
    with pytest.raises(ValueError, match="Unknown chat template 'zephyr'"):
        get_format("zephyr")


def test_pad_is_never_the_eos(prepared):
    tok = prepared["llama3.1"]
    # Llama 3.1 has no pad token; the eos must not double as one (some collators mask pad ids out of the labels).
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id
    assert prepared["qwen2.5"].pad_token == "<|endoftext|>"

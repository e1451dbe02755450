"""A byte-level BPE tokenizer trained locally: the tokenizer of the toy models and the tests.

The hub is unreachable on a fresh machine, so the embedded default and the test suite train
their own tokenizer (about a second). Byte-level so every string round-trips (a WordLevel
tokenizer lost whitespace on reload). ChatML roles like Qwen2.5, `<think>`/`</think>` as special
tokens like R1-Distill, and a chat template whose `{% generation %}` tags give TRL the
assistant mask (`assistant_only_loss=True`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# ChatML, Qwen2.5-style. The assistant turn, including its end token, sits inside
# {% generation %} so the loss mask covers reasoning, answer and <|im_end|> and nothing else.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] }}{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

DEFAULT_CORPUS = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Let a = 7. Let b = a * 3 - 5. What is b? First compute a * 3 = 21, then 21 - 5 = 16.",
    "So the answer is \\boxed{16}. Wait, let me check that again. Yes, that is right.",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 + - * / = ( ) .",
    "Hmm, the problem asks for the sum of the numbers. Therefore, the final answer is 42.",
]


def build_tokenizer(path: str | Path, corpus: Iterable[str] | None = None, vocab_size: int = 512,
                    model_max_length: int = 4096):
    """Train a byte-level BPE on `corpus`, save it as a HF tokenizer at `path`, and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits stay single tokens: arithmetic is learnable digit by digit, and a merged "36" would
    # make each number its own fact for the tiny models to memorise.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus or DEFAULT_CORPUS), trainer=trainer)
    # padding_side and model_max_length go to the constructor: setting them later is not saved.
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=model_max_length,
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(str(path))
    return fast

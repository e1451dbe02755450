"""The embedded tiny teacher and original student, built once and cached outside the repo.

    resolve_model("toy://teacher")  # -> ~/.cache/distill/toy/teacher-<spec hash>/  (built on first use)
    resolve_model("toy://student")

- `teacher`: a small Qwen2 trained on worked solutions in R1's format
  (`<think>\\n7-5+3\\n=2+3\\n=5\\n</think>\\n\\nThe answer is \\boxed{5}.`).
  It reasons, but not perfectly: at the sampling temperature it slips on some steps, so the
  filters have work.
- `student`: a smaller Qwen2 pretrained on the same problem family with final answers only
  (`<think>\\n\\n</think>\\n\\nThe answer is \\boxed{5}.`, the empty-think form R1-Distill and
  Qwen3 use when they skip thinking), plus generic copying rows (`task.copy_problems`): good at
  one-step problems, weak at multi-step ones.

Building uses the transformers `Trainer` on prompt-masked chat rows: this is asset building, not
the product's training path (that is `distill.students`, which trains the distilled student).
The cache key hashes the spec below and the task code, so changing either rebuilds.
`DISTILL_CACHE` moves the cache (tests point it at a temporary folder).
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from distill.toy import task, tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToySpec:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    reasoning: bool
    """Train on worked solutions (teacher) or on final answers only (original student)."""
    train_problems: int
    epochs: float
    learning_rate: float
    batch_size: int = 32
    levels: tuple[int, ...] = (1, 2, 3, 4, 5)
    seed: int = 0
    copy_rows: int = 0
    """Generic copying rows (task.copy_problems) mixed into the training set: the original
    student's stand-in for the general text a real base model was pretrained on."""


SPECS: dict[str, ToySpec] = {
    # Measured on 2 cores: 3000 problems x 3.5 epochs at batch 8, lr 1e-3 trains in ~1.5 min and
    # gives 52.5% at temperature 0.6 on held-out 1-5 step problems (58% of its training-set samples
    # pass math_correct): a teacher that reasons but slips, so the filters have work. Epochs decide
    # how often it slips: 3 gave 32.5% (too few right traces to learn from: student 41%), 4 gave
    # 79%, and then the unfiltered student learned as much as the filtered one (80.0% / 80.0%).
    # Higher rates (2e-3) sometimes stalled on a loss plateau (~0.14) and never learned the arithmetic.
    "teacher": ToySpec(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384, reasoning=True,
                       train_problems=3000, epochs=3.5, learning_rate=1e-3, batch_size=8),
    # Answers only, plus generic copying: learns one-step problems, stays weak on 2-5 steps
    # (15.5% and 22.0% held-out in two builds; 12.0% before the copying rows; 24.5% since the task
    # dropped its spaces).
    "student": ToySpec(hidden_size=96, num_layers=3, num_heads=4, intermediate_size=256, reasoning=False,
                       train_problems=3000, epochs=3, learning_rate=1e-3, batch_size=8, copy_rows=3000),
}


def cache_root() -> Path:
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill")) / "toy"


def spec_hash(name: str, spec: ToySpec) -> str:
    # The task and tokenizer code are part of the key: a changed problem family means a new model.
    code = "".join(inspect.getsource(x) for x in (task, tokenizer, train_toy, toy_tokenizer, toy_messages, toy_completion))
    return hashlib.sha256(json.dumps([name, asdict(spec), code], sort_keys=True).encode()).hexdigest()[:12]


def resolve_model(uri: str) -> Path:
    """`toy://teacher` or `toy://student` -> a local model dir, built on first use (minutes on CPU).

    Query parameters change the spec, e.g. `toy://teacher?epochs=1&hidden_size=64` (the test suite
    builds smaller models this way); each distinct spec is cached apart.
    """
    name, _, query = uri.removeprefix("toy://").partition("?")
    if name not in SPECS:
        raise ValueError(f"Unknown toy model '{uri}': available are {', '.join('toy://' + n for n in SPECS)}")
    spec = SPECS[name]
    if query:
        changes = {}
        for item in query.split("&"):
            key, _, value = item.partition("=")
            if key not in ToySpec.__dataclass_fields__:
                raise ValueError(f"'{uri}': unknown toy spec key '{key}'; valid: {', '.join(ToySpec.__dataclass_fields__)}")
            current = getattr(spec, key)
            if isinstance(current, tuple):
                changes[key] = tuple(int(v) for v in value.split(","))
            elif isinstance(current, bool):
                changes[key] = value.lower() in ("1", "true", "yes")
            elif ToySpec.__dataclass_fields__[key].type == "float":  # epochs=3.5; epochs=3 stays an int
                changes[key] = int(value) if value.isdigit() else float(value)
            else:
                changes[key] = type(current)(value)
        spec = replace(spec, **changes)
    path = cache_root() / f"{name}-{spec_hash(name, spec)}"
    if (path / "config.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two processes asking at once (make -j, parallel tests) build it once.
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "config.json").exists():
            tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            start = time.time()
            log.info("building toy model %s (once; cached in %s)", uri, path)
            train_toy(spec, tmp)
            os.replace(tmp, path)
            log.info("built %s in %.0f s", uri, time.time() - start)
    return path


def toy_messages(problem: str) -> list[dict[str, str]]:
    """The prompt as the sampling stage sends it: problem, then DeepSeek's math instruction."""
    return [{"role": "user", "content": f"{problem}\n\n{task.INSTRUCTION}"}]


def toy_completion(item: dict, reasoning: bool) -> str:
    from distill.trace import assistant_text

    return assistant_text(item["reasoning"] if reasoning else "", item["solution"])


def toy_tokenizer(out: Path):
    """The one tokenizer of every toy model, whatever its spec: teacher and student share a
    vocabulary, so logit and on-policy distillation work between them. Trained on a fixed corpus
    of worked and answer-only solutions; deterministic, so every build gets the same ids."""
    items = list(task.toy_problems("train", 2000, seed=12345))
    corpus = [toy_messages(it["problem"])[0]["content"] for it in items]
    corpus += [toy_completion(it, reasoning) for it in items for reasoning in (True, False)]
    return tokenizer.build_tokenizer(out, corpus=corpus, vocab_size=400, model_max_length=512)


def train_toy(spec: ToySpec, out: Path) -> None:
    """Train a toy model from scratch per `spec` and save model + tokenizer to `out`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(spec.seed)
    items = list(task.toy_problems("train", spec.train_problems, seed=spec.seed, levels=spec.levels))
    rows = [toy_messages(it["problem"]) + [{"role": "assistant", "content": toy_completion(it, spec.reasoning)}]
            for it in items]
    rows += [[{"role": "user", "content": it["problem"]}, {"role": "assistant", "content": it["text"]}]
             for it in task.copy_problems(spec.copy_rows, seed=spec.seed)]
    tok = toy_tokenizer(out)

    examples = []
    for r in rows:
        enc = tok.apply_chat_template(r, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["assistant_masks"]
        examples.append({"input_ids": ids, "labels": [i if m else -100 for i, m in zip(ids, mask)]})

    def collate(batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):  # right padding for training
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            attn[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attn}

    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=max(1, spec.num_heads // 2), max_position_embeddings=512,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    args = TrainingArguments(
        output_dir=str(out / "_trainer"), per_device_train_batch_size=spec.batch_size,
        num_train_epochs=spec.epochs, learning_rate=spec.learning_rate, lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a float below 1 is a ratio of total steps in transformers 5
        weight_decay=0.01, logging_steps=50, save_strategy="no", report_to=[],
        use_cpu=not torch.cuda.is_available(), seed=spec.seed, dataloader_num_workers=0,
        disable_tqdm=False,
    )
    Trainer(model=model, args=args, train_dataset=examples, data_collator=collate).train()
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.do_sample = True
    model.save_pretrained(out)
    tok.save_pretrained(out)

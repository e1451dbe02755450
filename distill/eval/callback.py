"""EvalCallback: score the model being trained on a small benchmark subset, next to the loss.

Switched on from the student preset (students/<size>.yaml); distill/students/train.py builds it
as `EvalCallback(tokenizer, **cfg.eval_callback)`:

    eval_callback:
      benchmarks: [math500]       # datasets/<name>.yaml
      limit: 32                   # first 32 problems of each
      k: 1                        # samples per problem
      max_tokens: 4096
      every_steps: null           # null: at every checkpoint (save_steps); or every N optimizer steps

Scores are logged through `Trainer.log` as `eval_<benchmark>_pass@1` (and its stderr, pass@k,
truncation and no-answer rates) at the step they were measured, so they sit beside the training
loss in `trainer_state.json` and reach whatever `report_to` names (W&B, TensorBoard, ...).
Generation uses the teacher stage's hf backend on the in-memory model and scoring goes through
distill.verify, exactly as `make eval`; each round's samples go to
<output_dir>/eval_samples/step-<N>.jsonl.

Runs on the main process only. Under ZeRO-3 or FSDP the weights are sharded across ranks and
one rank cannot generate alone: the callback then switches itself off with a warning; use
`make eval` on the saved checkpoints instead.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from distill.config import from_dict
from distill.eval.metrics import summarize
from distill.eval.results import score_completions, to_sample
from distill.prompts import Prompt, load_prompts
from distill.teachers.base import R1_TEMPERATURE, R1_TOP_P, SamplingParams
from distill.trace import JsonlWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackConfig:
    """Keys of `eval_callback:` in a student preset."""

    benchmarks: list[str] = field(default_factory=lambda: ["math500"])
    """Benchmarks from datasets/<name>.yaml (or YAML paths)."""
    limit: int = 32
    """Problems per benchmark: the first N. Small, because training waits while this runs."""
    k: int = 1
    """Samples per problem."""
    every_steps: int | None = None
    """Evaluate every N optimizer steps; None: whenever a checkpoint is saved."""
    at_train_end: bool = True
    """Also evaluate once after the last step (unless that step was just evaluated)."""
    temperature: float = R1_TEMPERATURE
    top_p: float = R1_TOP_P
    max_tokens: int = 4096
    greedy: bool = False
    """Temperature 0 and k=1: cheaper and steadier between checkpoints than sampling."""
    batch_size: int = 16
    """Sequences per generate call."""
    prefill: str = ""
    """Text the assistant turn starts with (e.g. '<think>\\n'), when the chat template does not add it."""
    system_prompt: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    """Per-benchmark local file, e.g. {math500: /data/math500.jsonl} (offline machines)."""
    score_workers: int = 1
    save_samples: bool = True
    """Write each round's samples to <output_dir>/eval_samples/step-<N>.jsonl."""

    def __post_init__(self) -> None:
        if self.limit < 1 or self.k < 1 or self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError("eval_callback: limit, k, max_tokens and batch_size must be at least 1")
        if self.every_steps is not None and self.every_steps < 1:
            raise ValueError(f"eval_callback: every_steps={self.every_steps}; use a positive number of steps, "
                             "or null to evaluate at each checkpoint")
        if not self.benchmarks:
            raise ValueError("eval_callback: `benchmarks` is empty; name at least one (ls datasets/)")


class EvalCallback(TrainerCallback):
    """Evaluate the model in training on a benchmark subset at checkpoints or every N steps."""

    def __init__(self, tokenizer: Any, **cfg: Any):
        self.cfg = from_dict(CallbackConfig, cfg, "eval_callback")
        self.tokenizer = tokenizer
        self.trainer: Any = None
        """The Trainer to log through; found on the first event if not set (see `_find_trainer`)."""
        self._prompts: dict[str, list[Prompt]] | None = None
        self._last_step = -1
        self._disabled = False

    def bind(self, trainer: Any) -> EvalCallback:
        """Log through this trainer (normally found automatically)."""
        self.trainer = trainer
        return self

    # ---- events

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.trainer is None:
            self.trainer = _find_trainer()
        if args.world_size > 1 and (_is_zero3(args) or args.fsdp):
            log.warning("eval_callback: off under ZeRO-3/FSDP (the weights are sharded; one rank cannot generate). "
                        "Evaluate the checkpoints with `make eval` instead.")
            self._disabled = True
        if state.is_world_process_zero and not self._disabled:
            self._load_prompts()  # fail on a bad benchmark name now, not after hours of training

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        every = self.cfg.every_steps
        # DefaultFlowCallback runs first and has already decided whether this step saves a checkpoint.
        due = (state.global_step % every == 0) if every else control.should_save
        if due:
            self._evaluate(args, state, kwargs["model"])
            control.should_log = True  # log the loss at this step too, so the two line up
        return control

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.cfg.at_train_end and self._last_step != state.global_step:
            self._evaluate(args, state, kwargs["model"])

    # ---- work

    def _load_prompts(self) -> dict[str, list[Prompt]]:
        if self._prompts is None:
            from distill.eval.run import name_of

            self._prompts = {}
            for bench in self.cfg.benchmarks:
                name = name_of(bench)
                overrides = [f"path={self.cfg.data[name]}"] if name in self.cfg.data else None
                self._prompts[name] = list(load_prompts(bench, overrides, limit=self.cfg.limit))
        return self._prompts

    def _evaluate(self, args: TrainingArguments, state: TrainerState, model: Any) -> dict[str, float]:
        self._last_step = state.global_step
        if self._disabled or not state.is_world_process_zero:
            return {}
        start = time.monotonic()
        backend = live_backend(model, self.tokenizer, self.cfg)
        params = SamplingParams(temperature=0.0 if self.cfg.greedy else self.cfg.temperature,
                                top_p=1.0 if self.cfg.greedy else self.cfg.top_p, max_tokens=self.cfg.max_tokens,
                                n=1 if self.cfg.greedy else self.cfg.k, seed=state.global_step)
        was_training = model.training
        model.eval()
        scores: dict[str, float] = {}
        records: list[dict[str, Any]] = []
        try:
            for bench, prompts in self._load_prompts().items():
                outs = backend.generate([p.messages for p in prompts], params)
                pairs = [(p, c) for p, cs in zip(prompts, outs) for c in cs]
                verdicts = score_completions(pairs, self.cfg.score_workers)
                rows: dict[str, list] = {}
                for (p, c), v in zip(pairs, verdicts):
                    rec = {"step": state.global_step, "benchmark": bench, "prompt_id": p.id, "correct": v.correct,
                           "extracted": v.extracted, "status": v.status, "finish_reason": c.finish_reason,
                           "completion_tokens": c.completion_tokens, "reasoning": c.reasoning, "answer": c.answer}
                    records.append(rec)
                    rows.setdefault(p.id, []).append(to_sample(rec))
                s = summarize(list(rows.values()), ks=(params.n,))
                scores[f"eval_{bench}_pass@1"] = s["pass@1"]["mean"]
                scores[f"eval_{bench}_pass@1_stderr"] = s["pass@1"]["stderr"]
                if params.n > 1:
                    scores[f"eval_{bench}_pass@{params.n}"] = s[f"pass@{params.n}"]["mean"]
                scores[f"eval_{bench}_truncated"] = s["truncation_rate"]
                scores[f"eval_{bench}_no_answer"] = s["no_answer_rate"]
        finally:
            if was_training:
                model.train()
        scores["eval_bench_seconds"] = round(time.monotonic() - start, 2)
        if self.cfg.save_samples and records:
            with JsonlWriter(Path(args.output_dir) / "eval_samples" / f"step-{state.global_step}.jsonl") as w:
                for rec in records:
                    w.write(rec)
        self._log(state, scores)
        return scores

    def _log(self, state: TrainerState, scores: dict[str, float]) -> None:
        log.info("step %d: %s", state.global_step, ", ".join(f"{k}={v:.3f}" for k, v in scores.items()))
        if self.trainer is not None:
            self.trainer.log(dict(scores))  # log_history + every report_to integration
        else:
            state.log_history.append({**scores, "step": state.global_step})


def live_backend(model: Any, tokenizer: Any, cfg: CallbackConfig) -> Any:
    """The teacher stage's hf backend (`HFTeacher`) over the model being trained, with its own copy
    of the tokenizer (the trainer's collator relies on the tokenizer's own padding side)."""
    from distill.teachers.config import TeacherConfig
    from distill.teachers.hf_backend import HFTeacher

    teacher_cfg = TeacherConfig(name="in-training", backend="hf", model="<in memory>", batch_size=cfg.batch_size,
                                prefill=cfg.prefill, system_prompt=cfg.system_prompt)
    return HFTeacher.from_model(model, tokenizer, teacher_cfg)


def _find_trainer() -> Any:
    """The Trainer whose callback handler is calling us, from the call stack.

    transformers hands callbacks the model, tokenizer, optimizer... but not the trainer, and only
    `Trainer.log` reaches the `report_to` integrations. TRL's callbacks take the trainer in their
    constructor; the YAML route (`EvalCallback(tokenizer, **cfg)`) cannot, so look it up once.
    """
    from transformers import Trainer

    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    log.warning("eval_callback: no Trainer on the call stack; scores go to state.log_history only "
                "(call .bind(trainer) to send them to report_to)")
    return None


def _is_zero3(args: TrainingArguments) -> bool:
    plugin = getattr(getattr(args, "hf_deepspeed_config", None), "is_zero3", None)
    return bool(plugin and plugin())

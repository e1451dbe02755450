"""Stage 3: train a student on clean traces (TRL SFT, LoRA, logit / on-policy KD), from 1.5B to 70B.

    make student SIZE=7b TEACHER=r1 PROMPTS=numinamath
    python -c "from distill.students.train import run; run('tiny', 'clean.jsonl', 'out/students/tiny')"

Modules: config (StudentConfig, students/<size>.yaml), templates (chat formats and loss masks),
data (clean.jsonl -> tokenised rows), train (the run), kd (distillation trainers), launch
(accelerate / DeepSpeed / FSDP command lines), card (card.md). Importing this package starts no work.
"""

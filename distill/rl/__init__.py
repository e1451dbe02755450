"""Stage 5: reinforcement learning after distillation: GRPO on the SFT student (TRL GRPOTrainer).

    make rl SIZE=tiny                           # or: distill rl --size 1.5b --prompts openr1-math
    from distill.rl import rewards              # the reward terms, usable on their own

Rewards come from `distill.verify`, the checker the filters and the eval use (`rewards.py`); the
recipe is the `rl:` block of students/<size>.yaml (`config.py`); `train.py` runs it and `card.py`
writes out/rl/<size>/card.md. Importing this package loads no torch.
"""

from distill.rl import rewards

__all__ = ["rewards"]

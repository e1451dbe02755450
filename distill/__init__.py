"""distill: reasoning distillation in the style of DeepSeek-R1.

Stages talk through files (see DESIGN): teachers -> traces/raw.jsonl -> filters -> clean.jsonl
-> students -> eval report. Importing this package starts no work and imports no torch.
"""

__version__ = "0.1.0"

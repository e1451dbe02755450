"""One resolver for the model names every stage takes: a hub id, a local folder, or `toy://<name>`.

    resolve_model("toy://student")        # the embedded CPU model's folder, built on first use
    resolve_model("~/models/qwen-7b")     # a local folder, ~ expanded
    resolve_model("Qwen/Qwen2.5-Math-7B") # a hub id, as given (transformers / vLLM download it)

Students (base, KD teacher), teachers (hf and vllm backends) and the demo all go through here, so
no stage module reaches into `distill.toy` to find a model.
"""

from __future__ import annotations

import os
from pathlib import Path

from distill.config import ConfigError

TOY = "toy://"


def resolve_model(name: str, what: str = "model") -> str:
    """The path or hub id transformers and vLLM take for `name`; ConfigError for an unknown toy model."""
    if name.startswith(TOY):
        from distill.toy.models import resolve_model as build_toy  # imported lazily: builds a model on first use

        try:
            return str(build_toy(name))
        except ValueError as e:  # an unknown toy name or spec key
            raise ConfigError(f"{what}: {e}") from None
    return os.path.expanduser(name) if name.startswith(("~", "/", ".")) else name


def check_model(name: str, what: str = "model") -> None:
    """Before any work: a local path must be a model folder and a toy name must exist (hub ids load later)."""
    if name.startswith(TOY):
        from distill.toy.models import SPECS

        toy = name[len(TOY):].split("?", 1)[0]
        if toy not in SPECS:
            raise ConfigError(f"{what}: unknown toy model '{name}'; available: {', '.join(TOY + n for n in SPECS)}")
    elif name.startswith(("/", "~", ".")) and not (Path(name).expanduser() / "config.json").exists():
        raise ConfigError(f"{what}: {name} is not a model folder (no config.json there); set {what}= to a model "
                          "directory or a hub id")

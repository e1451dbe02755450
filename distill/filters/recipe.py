"""Filters from YAML: the name -> class map, the default R1 recipe, `key=value` switches.

A recipe is a `filters:` list, in a teacher YAML or a file of its own; each entry is a name, or
a one-key mapping from a name to its settings (the filter's dataclass fields):

    filters:
      - finished
      - think_format: {think: ["<|begin_of_thought|>", "<|end_of_thought|>"]}
      - math_correct: {timeout: 10}
      - dedup: {on: prompt}
      - select: {keep: shortest, k: 1, pass_rate: [0.1, 0.9]}

On the command line a key naming a filter addresses its entry (`apply_overrides`; the stage's
rule is stated in distill.filters.run): `language=false` switches it off, `length=true` on (with
defaults), `math_correct.timeout=10` sets one field, `filters=[finished,math_correct]` replaces the list.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import logging
from pathlib import Path
from typing import Any

from distill.config import ConfigError, coerce, from_dict, load_yaml
from distill.filters.base import TraceFilter
from distill.filters.basic import Finished, Length, ThinkFormat
from distill.filters.correct import MathCorrect
from distill.filters.dedup import Decontaminate, Dedup
from distill.filters.select import Select
from distill.filters.text import Language, Readability, Repetition

log = logging.getLogger(__name__)

# In the order a recipe should apply them: cheap checks first, so the expensive answer checks
# see fewer traces; stateful ones (dedup, select) last. A filter switched on from the command
# line is inserted at its place in this order.
FILTERS: dict[str, type[TraceFilter] | str] = {
    "finished": Finished,
    "think_format": ThinkFormat,
    "length": Length,
    "language": Language,
    "repetition": Repetition,
    "readability": Readability,
    "decontaminate": Decontaminate,
    "math_correct": MathCorrect,
    "code_correct": "distill.filters.code:CodeCorrect",  # imported when used: it needs the sandbox
    "toy_steps": "distill.toy.steps:ToySteps",  # the toy task's every-line check, opt-in
    "dedup": Dedup,
    "select": Select,
}

BENCHMARKS = ["math500", "aime24", "aime25", "amc23", "gpqa-diamond", "livecodebench"]

# DeepSeek-R1 (arXiv 2501.12948, section 2.3.3, "Reasoning data"): sample several responses per
# prompt, keep only correct ones, filter out chains of thought with mixed languages, long
# paragraphs and code blocks. We add what any pipeline needs around that: finished, well-formed,
# not looping, not a benchmark problem, not a duplicate. Every entry can be switched off
# (`language=false`) and `length`/`select` switched on.
R1_RECIPE: list[dict[str, Any]] = [
    {"finished": {}},
    {"think_format": {}},
    {"language": {}},
    {"repetition": {}},
    {"readability": {}},
    # Offline, a benchmark that cannot be loaded is skipped with a warning (and named in the
    # report) rather than stopping `make filter`; an explicit recipe fails instead.
    {"decontaminate": {"benchmarks": BENCHMARKS, "missing": "warn"}},
    {"math_correct": {}},
    {"code_correct": {}},
    {"dedup": {"on": "completion"}},
]


def filter_class(name: str, where: str = "filters") -> type[TraceFilter]:
    """The class for a YAML name, with a did-you-mean for typos."""
    target = FILTERS.get(name)
    if target is None:
        hint = difflib.get_close_matches(name, list(FILTERS), n=1)
        did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(f"{where}: unknown filter '{name}'.{did_you_mean} Filters: {', '.join(FILTERS)}")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{where}: filter '{name}' is not available ({e}); "
                              f"remove it from the recipe or switch it off with {name}=false") from e
    return target


def normalize(spec: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """A `filters:` list -> [(name, settings)], validating the shape."""
    if not isinstance(spec, list):
        raise ConfigError(f"{where}: `filters` must be a list of filter names or {{name: settings}}, got {spec!r:.60}")
    out = []
    for i, entry in enumerate(spec):
        here = f"{where}: filters[{i}]"
        if isinstance(entry, str):
            name, settings = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, settings = next(iter(entry.items()))
            if settings is None or settings is True:
                settings = {}
            elif settings is False:
                continue
            elif not isinstance(settings, dict):
                raise ConfigError(f"{here}: settings of '{name}' must be a mapping, got {settings!r:.60}")
        else:
            raise ConfigError(f"{here}: expected a filter name or a one-key mapping {{name: settings}}, got {entry!r:.60}")
        filter_class(name, here)
        # PyYAML (YAML 1.1) reads a bare `on` key as True: `dedup: {on: prompt}` means Dedup.on.
        out.append((name, {("on" if key is True else key): value for key, value in settings.items()}))
    return out


def apply_overrides(recipe: list[tuple[str, dict]], overrides: dict[str, Any], where: str = "overrides"
                    ) -> list[tuple[str, dict]]:
    """Apply parsed `key=value` overrides naming filters (and `filters`, the whole list) to a recipe."""
    recipe = copy.deepcopy(recipe)
    if "filters" in overrides:
        recipe = normalize(overrides["filters"], f"{where}: filters=")
    for key, value in overrides.items():
        if key == "filters":
            continue
        filter_class(key, where)
        names = [n for n, _ in recipe]
        if isinstance(value, dict):
            if key in names:
                recipe[names.index(key)][1].update(value)
            else:
                _insert(recipe, key, dict(value))
        elif coerce(value, bool, f"{where}: {key}"):
            if key not in names:
                _insert(recipe, key, {})
        else:
            recipe = [(n, s) for n, s in recipe if n != key]
    return recipe


def _insert(recipe: list[tuple[str, dict]], name: str, settings: dict) -> None:
    order = list(FILTERS)
    pos = next((i for i, (n, _) in enumerate(recipe) if order.index(n) > order.index(name)), len(recipe))
    recipe.insert(pos, (name, settings))


def build(recipe: list[tuple[str, dict]], where: str = "recipe") -> list[TraceFilter]:
    """Instantiate filters; field names and types are checked like any config (did-you-mean)."""
    return [from_dict(filter_class(name, where), settings, f"{where}: {name}") for name, settings in recipe]


def load_recipe(path: str | Path) -> list[tuple[str, dict]]:
    """The `filters:` list of a YAML file (a recipe file or a teacher config)."""
    data = load_yaml(path)
    if "filters" not in data:
        raise ConfigError(f"{path}: no `filters:` list (keys: {', '.join(data) or 'none'})")
    return normalize(data["filters"], str(path))


def r1_recipe() -> list[tuple[str, dict]]:
    """The default recipe; a filter whose module is absent from this install (code_correct) is left out."""
    available = []
    for entry in copy.deepcopy(R1_RECIPE):
        name = next(iter(entry))
        try:
            filter_class(name)
        except ConfigError as e:
            log.info("R1 recipe: %s left out: %s", name, e)
            continue
        available.append(entry)
    return normalize(available, "R1 recipe")

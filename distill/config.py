"""YAML -> frozen dataclasses, with `key=value` overrides and unknown keys rejected.

Each stage owns its config dataclass (`TracesConfig` holding a `TeacherConfig` and a
`PromptSetConfig`, `FilterConfig`, `StudentConfig`, `EvalConfig`); this module only maps plain
data onto them:

    cfg = load_config(TeacherConfig, "teachers/r1.yaml", ["sampling.temperature=0.7", "concurrency=64"])

Overrides are dotted paths into the dataclass (`sampling.temperature=0.7` sets
`cfg.sampling.temperature`); `parse_overrides` nests them and `merge` lays them over the YAML.

Field docstrings in those dataclasses are the help text. Types are coerced from the hints:
PyYAML reads `5e-5` as a string and the command line gives strings for everything.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
MENUS = ("teachers", "students", "datasets", "sources")


class ConfigError(ValueError):
    """A config problem; the message names the file and key and says what would be valid."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def menu_path(menu: str, name: str | Path) -> Path:
    """Resolve a menu entry: `r1` -> teachers/r1.yaml, or a path to any YAML file.

    Looks in ./<menu>/ first (a user's own menu), then in the distill checkout.
    """
    assert menu in MENUS, menu
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    for root in (Path.cwd(), REPO_ROOT):
        p = root / menu / f"{name}.yaml"
        if p.exists():
            return p
    choices = menu_names(menu)
    hint = difflib.get_close_matches(str(name), choices, n=1)
    did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
    raise ConfigError(f"No {menu} entry '{name}'.{did_you_mean} Available: {', '.join(choices)} (ls {menu}/)")


def menu_names(menu: str) -> list[str]:
    names: set[str] = set()
    for root in (Path.cwd(), REPO_ROOT):
        names.update(p.stem for p in (root / menu).glob("*.yaml"))
    return sorted(names)


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """['a=1', 'b.c=x'] -> {'a': '1', 'b': {'c': 'x'}}; values stay strings until coerced by type."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"Override '{item}' is not key=value (e.g. learning_rate=5e-5)")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # Let YAML read lists and mappings (`stop=[a,b]`, `filters=[finished]`); scalars stay
        # strings so the field's type decides (a model name like `1e5` stays a string).
        parsed: Any = value
        if value.strip().startswith(("[", "{")):
            parsed = yaml.safe_load(value)
        node[parts[-1]] = parsed
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge, `extra` wins."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(cls: type[T], source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file (or a dict) plus `key=value` overrides."""
    where = str(source) if not isinstance(source, dict) else cls.__name__
    data = dict(source) if isinstance(source, dict) else load_yaml(source)
    data = merge(data, parse_overrides(overrides))
    return from_dict(cls, data, where)


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Coerce a mapping onto a dataclass, rejecting unknown keys with a did-you-mean."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {data!r:.60}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        # Suggest nested keys too: `temprature` at the top of a teacher YAML means `sampling.temperature`.
        nested = [f"{name}.{sub.name}" for name in fields if dataclasses.is_dataclass(hints[name])
                  for sub in dataclasses.fields(hints[name])]
        hint = difflib.get_close_matches(key, list(fields), n=1) or [
            n for n in nested if n.split(".")[-1] in difflib.get_close_matches(key, [x.split(".")[-1] for x in nested], n=1)
        ][:1]
        did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(f"{where}: unknown key '{key}' for {cls.__name__}.{did_you_mean} Valid keys: {', '.join(fields)}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: key '{missing[0]}' is required for {cls.__name__} and missing")
    kwargs = {k: coerce(v, hints[k], f"{where}: key '{k}'") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # a __post_init__ check (filters raise ValueError) names the key
        raise ConfigError(f"{where}: {e}") from e


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML/CLI value to the type hint `tp`, or raise ConfigError naming `where`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        # A member of the value's own type wins (a str stays a str in `str | list[str]`); then the
        # others in order, str last since it accepts anything.
        members = sorted((a for a in args if a is not type(None)),
                         key=lambda a: (not _is_instance(value, a), a is str))
        for member in members:
            try:
                return coerce(value, member, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[-1] if errors else f"{where}: cannot be {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        hint = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(f"{where}: '{value}' is not one of {list(args)}.{did_you_mean}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r:.60}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(coerce(v, a, where) for v, a in zip(value, args))
        item = args[0] if args else Any
        items = [coerce(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r:.60}")
        vt = args[1] if args else Any
        return {k: coerce(v, vt, where) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r:.60}")
        return "" if value is None else str(value)
    if tp is Path:
        return Path(str(value))
    return value


def _is_instance(value: Any, tp: Any) -> bool:
    base = typing.get_origin(tp) or tp
    return isinstance(base, type) and isinstance(value, base)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain data (for cards and reports); Paths become strings."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)

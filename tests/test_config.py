"""Config loading: YAML -> dataclasses, key=value overrides, coercion, unknown keys with did-you-mean."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from distill.config import ConfigError, load_config, menu_path, parse_overrides


@dataclass(frozen=True)
class Inner:
    temperature: float = 0.6
    stop: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cfg:
    model: str = "m"
    learning_rate: float = 1e-5
    epochs: int = 3
    bf16: bool = False
    path: Path | None = None
    base_url: str | list[str] = "http://127.0.0.1:1/v1"
    sampling: Inner = field(default_factory=Inner)


def test_yaml_and_overrides_coerce(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: Qwen/Qwen2.5-Math-7B\nlearning_rate: 4.0e-05\nepochs: 5\nsampling:\n  temperature: 0.7\n")
    cfg = load_config(Cfg, y, ["learning_rate=5e-5", "bf16=true", "sampling.stop=[a,b]", "epochs=2", "path=/x"])
    assert cfg.learning_rate == 5e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.epochs == 2 and cfg.bf16 is True and cfg.path == Path("/x")
    assert cfg.sampling == Inner(temperature=0.7, stop=["a", "b"])
    assert cfg.model == "Qwen/Qwen2.5-Math-7B"


def test_yaml_string_numbers_are_coerced(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rate: 5e-5\n")  # PyYAML reads this as a string
    assert load_config(Cfg, y).learning_rate == 5e-5


def test_union_of_str_and_list():
    assert load_config(Cfg, {"base_url": ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]}).base_url[1].endswith(":2/v1")
    assert load_config(Cfg, {}, ["base_url=http://127.0.0.1:3/v1"]).base_url == "http://127.0.0.1:3/v1"


def test_unknown_key_did_you_mean(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("learning_rat: 1e-4\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'learning_rat' for Cfg. Did you mean 'learning_rate'\?"):
        load_config(Cfg, y)
    with pytest.raises(ConfigError, match=r"unknown key 'temprature' for Inner. Did you mean 'temperature'"):
        load_config(Cfg, {}, ["sampling.temprature=1"])


def test_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"key 'epochs': expected an integer, got '2.5'"):
        load_config(Cfg, {}, ["epochs=2.5"])
    with pytest.raises(ConfigError, match=r"key 'bf16': expected true/false"):
        load_config(Cfg, {}, ["bf16=maybe"])
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_overrides(["epochs"])


def test_menu_lookup_did_you_mean():
    with pytest.raises(ConfigError, match=r"No teachers entry 'tinny'. Did you mean 'tiny'\?"):
        menu_path("teachers", "tinny")

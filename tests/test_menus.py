"""Every YAML in the three menus loads into its dataclass (rglob: nothing hides in a subfolder)."""

import pytest
import yaml

from distill.config import REPO_ROOT

MENUS = {menu: sorted((REPO_ROOT / menu).rglob("*.yaml")) for menu in ("teachers", "students", "datasets")}


def test_menus_are_not_empty_and_datasets_is_no_package():
    assert len(MENUS["teachers"]) >= 4 and len(MENUS["students"]) >= 7 and len(MENUS["datasets"]) >= 8
    # A datasets/__init__.py would shadow Hugging Face `datasets` when Python runs from the repo root.
    assert not (REPO_ROOT / "datasets" / "__init__.py").exists()


@pytest.mark.parametrize("path", MENUS["teachers"], ids=lambda p: p.stem)
def test_teacher_yaml_loads(path, monkeypatch):
    from distill.teachers.config import load_teacher_config

    cfg = load_teacher_config(path)
    assert cfg.backend in ("openai", "hf", "vllm") and cfg.model


@pytest.mark.parametrize("path", MENUS["datasets"], ids=lambda p: p.stem)
def test_dataset_yaml_loads(path):
    from distill.prompts import load_prompt_config

    cfg = load_prompt_config(path)
    assert cfg.source in ("hub", "path", "toy")


@pytest.mark.parametrize("path", MENUS["students"], ids=lambda p: p.relative_to(REPO_ROOT / "students").as_posix())
def test_student_yaml_loads(path):
    if path.parent.name == "launch":
        # accelerate / DeepSpeed launch files: another schema, read by `accelerate launch --config_file`.
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and ("distributed_type" in data or "compute_environment" in data), path
        return
    from distill.students.config import load_student_config

    cfg, _ = load_student_config(path)
    assert cfg.base


def test_a_typo_in_a_menu_yaml_is_named(tmp_path):
    from distill.config import ConfigError
    from distill.teachers.config import load_teacher_config

    bad = tmp_path / "t.yaml"
    bad.write_text((REPO_ROOT / "teachers" / "tiny.yaml").read_text() + "temprature: 0.7\n")
    with pytest.raises(ConfigError, match=r"t.yaml: unknown key 'temprature'.*Did you mean"):
        load_teacher_config(bad)

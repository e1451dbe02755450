"""Every size preset loads and validates; launches are built right for SIZE / NODES / GPUS.

Walks students/*.yaml (the accelerate files under students/launch/ are another schema and are
checked separately below).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from distill.config import REPO_ROOT, ConfigError, load_config
from distill.students.config import KNOWN_BASES, StudentConfig, load_student_config
from distill.students.launch import CONFIG_FILES, LAUNCH_DIR, estimate_hours, launch_command

PRESETS = sorted((REPO_ROOT / "students").glob("*.yaml"))
# DeepSeek-R1's distilled models and their bases (R1 paper, table of distilled models).
DEEPSEEK_BASES = {
    "1.5b": "Qwen/Qwen2.5-Math-1.5B", "7b": "Qwen/Qwen2.5-Math-7B", "8b": "meta-llama/Llama-3.1-8B",
    "14b": "Qwen/Qwen2.5-14B", "32b": "Qwen/Qwen2.5-32B", "70b": "meta-llama/Llama-3.3-70B-Instruct",
}
REFERENCE_TOKENS = 100_000 * 6_000  # the headers' wall time is for 100k traces of ~6k tokens per epoch


def test_size_menu_is_complete():
    names = {p.stem for p in PRESETS}
    assert names >= set(DEEPSEEK_BASES) | {f"{s}-lora" for s in DEEPSEEK_BASES} | {"tiny"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_and_validates(path):
    cfg, resolved = load_student_config(path)
    assert resolved == path and cfg.problems() == []
    size = path.stem.removesuffix("-lora")

    # Base id: DeepSeek's base for each size; the tiny preset uses the embedded toy model.
    if size == "tiny":
        assert cfg.base == "toy://student" and not cfg.bf16 and cfg.devices == 1
    else:
        assert cfg.base == DEEPSEEK_BASES[size]
        info = KNOWN_BASES[cfg.base]
        # Max length against the rope settings: 32k traces must fit the (raised) context, and a
        # context raised past the base's must come with a raised RoPE theta.
        mpe, theta = cfg.effective_context()
        assert cfg.max_length <= mpe
        if mpe > info.max_position_embeddings:
            assert theta > info.rope_theta
        if cfg.base.startswith("Qwen/Qwen2.5-Math"):
            assert (cfg.rope_theta, cfg.max_position_embeddings) == (300_000, 32_768)
        assert cfg.max_length >= 16_384, "long-CoT traces need a long context"
        assert cfg.bf16 and cfg.gradient_checkpointing
        if info.params_b >= 14 and not cfg.lora:
            assert cfg.parallelism in ("zero3", "zero3_offload", "fsdp")
        assert cfg.lora == path.stem.endswith("-lora")

    # Batch arithmetic: per-device x accumulation x devices = global batch.
    assert cfg.global_batch_size is not None
    assert cfg.per_device_batch_size * cfg.gradient_accumulation_steps * cfg.devices == cfg.global_batch_size


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_header_states_hardware_launch_and_wall_time(path):
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert re.search(r"^# Hardware: .+", text, re.MULTILINE), "header must state the hardware assumed"
    assert f"make student SIZE={path.stem}" in text
    wall = re.search(r"^# Wall time: ~([\d.]+) (h|minute)", text, re.MULTILINE)
    assert wall, "header must state the expected wall time"
    if path.stem == "tiny":
        return
    cfg, _ = load_student_config(path)
    epochs = int(cfg.num_epochs)
    assert f"({epochs} epochs" in text
    expected = estimate_hours(KNOWN_BASES[cfg.base].params_b, REFERENCE_TOKENS * epochs, cfg.devices, lora=cfg.lora,
                              checkpointing=cfg.gradient_checkpointing)
    assert float(wall.group(1)) == pytest.approx(expected, rel=0.12), f"header says {wall.group(1)} h, estimate {expected:.1f} h"


def test_preset_cites_its_recipe():
    for size in DEEPSEEK_BASES:
        text = (REPO_ROOT / "students" / f"{size}.yaml").read_text()
        assert re.search(r"# Recipe: .*(open-r1|DeepSeek-R1|Sky-T1)", text), size


def test_launch_config_files_exist_and_match_parallelism():
    expected = {"ddp": "MULTI_GPU", "zero3": "DEEPSPEED", "zero3_offload": "DEEPSPEED", "fsdp": "FSDP"}
    for parallelism, name in CONFIG_FILES.items():
        data = yaml.safe_load((LAUNCH_DIR / name).read_text())
        assert data["distributed_type"] == expected[parallelism]
        if parallelism.startswith("zero3"):
            assert data["deepspeed_config"]["zero_stage"] == 3
            assert (data["deepspeed_config"]["offload_optimizer_device"] == "cpu") == (parallelism == "zero3_offload")


def test_70b_multi_node_launch():
    cfg, path = load_student_config("70b")
    cmd = launch_command(cfg, size=path, data="out/traces/r1/x/clean.jsonl", out_dir="out/students/70b",
                         machine_rank=3, main_process_ip="10.0.0.1")
    argv = " ".join(cmd)
    assert str(LAUNCH_DIR / "zero3.yaml") in argv
    assert "--num_machines 8 --num_processes 64 --mixed_precision bf16 --machine_rank 3 --main_process_ip 10.0.0.1" in argv
    assert cmd[cmd.index("-m", 3) + 1] == "distill.students.train"
    with pytest.raises(ConfigError, match="set NODE_RANK=0..7 and MASTER_ADDR"):
        launch_command(cfg, size=path, data="d", out_dir="o")


def test_nodes_and_gpus_keep_the_global_batch():
    cfg, _ = load_student_config("7b", gpus=4)
    assert (cfg.gpus_per_node, cfg.gradient_accumulation_steps, cfg.global_batch_size) == (4, 16, 128)
    cfg, _ = load_student_config("70b", nodes=4)
    assert (cfg.devices, cfg.gradient_accumulation_steps) == (32, 2)
    cfg, _ = load_student_config("7b", ["per_device_batch_size=1"], gpus=16)
    assert cfg.gradient_accumulation_steps == 8
    with pytest.raises(ConfigError, match="global_batch_size 128 is not a multiple of .* 3 GPUs"):
        load_student_config("7b", gpus=3)


def test_cpu_launch_refuses_sharded_parallelism():
    cfg, path = load_student_config("7b")
    with pytest.raises(ConfigError, match="parallelism 'zero3' needs GPUs"):
        launch_command(cfg, size=path, data="d", out_dir="o", cpu=True)


def _cfg(**kw) -> StudentConfig:
    return load_config(StudentConfig, {"base": "Qwen/Qwen2.5-Math-7B", **kw})


def test_validation_names_each_problem():
    with pytest.raises(ConfigError, match=r"'max_length' = 32768 exceeds the model's context \(4096 positions\)"):
        _cfg(max_length=32768).validate("x.yaml")
    with pytest.raises(ConfigError, match="stays 10000; raise rope_theta"):
        _cfg(max_length=32768, max_position_embeddings=32768).validate("x.yaml")
    with pytest.raises(ConfigError, match=r"batch arithmetic: .* = 16, not global_batch_size 128"):
        _cfg(max_length=4096, per_device_batch_size=2, gradient_accumulation_steps=8, global_batch_size=128).validate("x")
    with pytest.raises(ConfigError, match="does not fit meta-llama/Llama-3.1-8B .*use template: llama3"):
        load_config(StudentConfig, {"base": "meta-llama/Llama-3.1-8B", "template": "chatml"}).validate("x")
    with pytest.raises(ConfigError, match="kd: logit needs 'kd_teacher'"):
        _cfg(max_length=4096, kd="logit").validate("x")
    with pytest.raises(ConfigError, match="neither a hub id"):
        load_config(StudentConfig, {"base": "not a model", "max_length": 512}).validate("x")
    # Every problem is reported at once, in one message.
    with pytest.raises(ConfigError, match="exceeds the model's context.*batch arithmetic"):
        _cfg(max_length=8192, global_batch_size=7).validate("x")


def test_unknown_key_and_bad_value_name_the_file(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("base: Qwen/Qwen2.5-Math-7B\nmax_length: 4096\nlearning_rat: 1e-5\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: unknown key 'learning_rat'.*Did you mean 'learning_rate'"):
        load_student_config(bad)
    with pytest.raises(ConfigError, match="'parallelism'.*'zero4' is not one of"):
        load_student_config("7b", ["parallelism=zero4"])


def test_known_bases_cover_the_menu():
    assert set(DEEPSEEK_BASES.values()) <= set(KNOWN_BASES)
    assert KNOWN_BASES["Qwen/Qwen2.5-Math-1.5B"].vocab_rows == 151_936
    assert KNOWN_BASES["Qwen/Qwen2.5-Math-7B"].vocab_rows == 152_064


def test_estimate_hours_from_first_principles():
    # 7B params, 1e9 tokens, full fine-tune with checkpointing: 8 FLOPs per param-token at 35% of 989 TFLOPS on 8 GPUs.
    assert estimate_hours(7, 1e9, 8) == pytest.approx(8 * 7e9 * 1e9 / (8 * 989e12 * 0.35) / 3600)
    assert estimate_hours(7, 1e9, 8, lora=True) == pytest.approx(estimate_hours(7, 1e9, 8) * 6 / 8)


def test_menu_is_the_cli_default(tmp_path):
    # `--size tiny` resolves through the menu like the other stages' names do.
    cfg, path = load_student_config("tiny")
    assert path == REPO_ROOT / "students" / "tiny.yaml" and cfg.template == "chatml"
    assert Path(path).parent.name == "students"


def test_group_by_length_maps_to_the_length_grouped_sampler():
    from distill.students.train import training_arguments

    cfg = load_config(StudentConfig, {"base": "org/m"}, ["group_by_length=true"])
    assert training_arguments(cfg, Path("/tmp/x"), cpu=True, world_size=1)["train_sampling_strategy"] == "group_by_length"
    cfg = load_config(StudentConfig, {"base": "org/m"}, [])
    assert training_arguments(cfg, Path("/tmp/x"), cpu=True, world_size=1)["train_sampling_strategy"] == "random"

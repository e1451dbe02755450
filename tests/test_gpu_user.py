"""What a GPU user hits first: the toy-traces default, kernels, installs, provenance.

Pure Python or tiny CPU work only; the GPU paths are checked through the choices they make.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from distill.config import REPO_ROOT, ConfigError

GPU_PRESETS = sorted(p for p in (REPO_ROOT / "students").glob("*.yaml") if p.stem != "tiny")


# ---------------------------------------------------------------------------------------------
# 1. Only SIZE=tiny defaults to the toy traces


def make_n(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("stage", ["student", "eval"])
def test_make_passes_no_toy_teacher_or_prompts_to_a_gpu_size(stage):
    planned = make_n(stage, "SIZE=7b")
    assert "--teacher" not in planned and "--prompts" not in planned, planned
    planned = make_n(stage, "SIZE=7b", "TEACHER=r1", "PROMPTS=openr1-math")
    assert "--teacher r1" in planned


def test_student_of_a_gpu_size_without_teacher_and_prompts_stops_naming_them(tmp_path, capsys):
    from distill.cli import main

    assert main(["student", "--size", "7b", "--out", str(tmp_path), "dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert "needs TEACHER and PROMPTS" in err and "Only SIZE=tiny defaults to the toy traces" in err
    assert main(["student", "--size", "8b-lora", "--teacher", "r1", "--out", str(tmp_path), "dry_run=true"]) == 2
    assert "needs PROMPTS:" in capsys.readouterr().err
    assert not (tmp_path / "students").exists()


def test_tiny_defaults_to_the_toy_traces_and_others_read_what_they_are_given(tmp_path, capsys):
    from distill.students.config import training_data

    assert training_data("tiny", out=tmp_path, teacher=None, prompts=None) == tmp_path / "traces/tiny/toy/clean.jsonl"
    assert training_data("7b", out=tmp_path, teacher="r1", prompts="numinamath") == \
        tmp_path / "traces/r1/numinamath/clean.jsonl"
    assert training_data("7b", out=tmp_path, teacher=None, prompts=None, data="my.jsonl").name == "my.jsonl"
    # A preset may name its own traces (a user's copy of 7b.yaml); the toy ones stay tiny's alone.
    own = tmp_path / "mine.yaml"
    own.write_text((REPO_ROOT / "students" / "7b.yaml").read_text() + "traces: r1/numinamath\n")
    assert training_data(own, out=tmp_path, teacher=None, prompts=None) == tmp_path / "traces/r1/numinamath/clean.jsonl"
    with pytest.raises(ConfigError, match="make rl SIZE=70b needs TEACHER and PROMPTS"):
        training_data("70b", out=tmp_path, teacher=None, prompts=None, stage="rl")

    from distill.cli import main

    assert main(["student", "--size", "tiny", "--out", str(tmp_path), "dry_run=true"]) == 0
    assert f"data: {tmp_path / 'traces/tiny/toy/clean.jsonl'}" in capsys.readouterr().out


@pytest.mark.parametrize("path", GPU_PRESETS, ids=lambda p: p.stem)
def test_no_gpu_preset_names_toy_data(path):
    data = yaml.safe_load(path.read_text())
    text = repr({k: data.get(k) for k in ("traces", "eval", "eval_callback", "kd_teacher")})
    assert "toy" not in text and "tiny" not in text


# ---------------------------------------------------------------------------------------------
# 2. Attention kernels: flash-attention, Liger and padding-free in every GPU preset, sdpa as a loud fallback


@pytest.mark.parametrize("path", GPU_PRESETS, ids=lambda p: p.stem)
def test_gpu_presets_run_flash_attention_liger_and_padding_free(path):
    from distill.students.config import load_student_config

    data = yaml.safe_load(path.read_text())  # the keys are written at the top level of the YAML itself
    assert data["attn_implementation"] == "flash_attention_2" and data["use_liger_kernel"] is True
    cfg, _ = load_student_config(path)
    # Padding-free removes the padding between the traces of a micro-batch: nothing to remove at 1 per device.
    assert cfg.padding_free == (cfg.per_device_batch_size >= 2 and not cfg.packing and cfg.kd == "none")


def test_padding_free_needs_a_flash_kernel():
    from distill.config import load_config
    from distill.students.config import StudentConfig

    cfg = load_config(StudentConfig, {"base": "org/m", "padding_free": True, "attn_implementation": "sdpa"})
    assert any("padding_free: true needs attn_implementation: flash_attention_2" in p for p in cfg.problems())


def test_kernels_fall_back_to_sdpa_loudly_when_not_importable(caplog):
    from distill.students.config import load_student_config
    from distill.students.train import resolve_kernels

    cfg, _ = load_student_config("7b")
    # This machine has CUDA in neither torch nor flash-attn/liger-kernel: both reasons are named.
    for cuda, why in ((False, "no CUDA GPU"), (True, "ModuleNotFoundError")):
        caplog.clear()
        with caplog.at_level("WARNING", logger="distill.students.train"):
            ran, fallbacks = resolve_kernels(cfg, cuda=cuda)
        assert (ran.attn_implementation, ran.padding_free, ran.use_liger_kernel) == ("sdpa", False, False)
        assert len(fallbacks) == 2 and all(why in f for f in fallbacks)
        [record] = caplog.records
        assert record.levelname == "WARNING" and "KERNEL FALLBACK" in record.getMessage()
        assert "flash_attention_2 -> sdpa and padding_free -> false" in record.getMessage()


def test_kernels_are_kept_where_they_import(monkeypatch, caplog):
    from distill.students import train
    from distill.students.config import load_student_config

    cfg, _ = load_student_config("7b")
    monkeypatch.setattr(train, "importable", lambda module: None)
    with caplog.at_level("WARNING"):
        assert train.resolve_kernels(cfg, cuda=True) == (cfg, [])
    assert not caplog.records
    tiny, _ = load_student_config("tiny")  # the CPU preset asks for no kernel: nothing to fall back from
    assert train.resolve_kernels(tiny, cuda=False) == (tiny, [])


@pytest.mark.skipif(not (REPO_ROOT.parent / "shared" / "data" / "traces").is_dir(), reason="needs ../shared/data")
def test_attention_bench_costs_padding_from_lengths():
    import importlib.util

    spec = importlib.util.spec_from_file_location("attention_bench", REPO_ROOT / "bench" / "attention_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # Two traces of 1 and 3 tokens padded to 3: attention 1 + 9 of 2 x 9, tokens 4 of 6.
    assert bench.padded_shares([1, 3], 2, shuffles=3) == {
        "attention_real_share": round(10 / 18, 4), "attention_real_share_worst": round(10 / 18, 4),
        "token_real_share": round(4 / 6, 4)}


# ---------------------------------------------------------------------------------------------
# 3. Installs: the gpu extra where nvidia-smi runs, flash-attn optional


def run_install(tmp_path, monkeypatch, *, gpu: bool, flash_fails: bool = False):
    from distill import install

    calls = []

    def check_call(cmd, **kwargs):
        calls.append(" ".join(map(str, cmd)))
        if flash_fails and "--no-build-isolation" in cmd:
            raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(install.subprocess, "check_call", check_call)
    monkeypatch.setattr(install, "works", lambda python, code: True)  # a venv with torch already in it
    monkeypatch.setattr(install.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if gpu and name == "nvidia-smi" else None)
    monkeypatch.delenv("FLASH_ATTN_SPEC", raising=False)
    (tmp_path / "bin").mkdir(parents=True)
    (tmp_path / "bin" / "python").touch()
    install.main(str(tmp_path))
    assert (tmp_path / ".installed").exists()
    return calls


def test_install_adds_the_gpu_extra_only_where_nvidia_smi_runs(tmp_path, monkeypatch):
    cpu = run_install(tmp_path / "cpu", monkeypatch, gpu=False)
    assert cpu[-1].endswith("[dev,serve,export]") and not any("flash" in c or "deepspeed" in c for c in cpu)
    gpu = run_install(tmp_path / "gpu", monkeypatch, gpu=True)
    assert any(c.endswith("--no-build-isolation flash-attn>=2.7") for c in gpu)
    assert gpu[-1].endswith("[dev,serve,export,gpu]")


def test_install_goes_on_without_flash_attn_and_says_what_runs_instead(tmp_path, monkeypatch, capsys):
    calls = run_install(tmp_path, monkeypatch, gpu=True, flash_fails=True)
    out = capsys.readouterr().out
    assert "flash-attn did not install" in out and "fall back to sdpa" in out and "FLASH_ATTN_SPEC" in out
    assert any(c.endswith("deepspeed>=0.16 liger-kernel>=0.5") for c in calls) and calls[-1].endswith("[dev,serve,export]")


def test_gpu_extra_matches_the_installer_and_headers_name_make_install():
    import tomllib

    from distill import install

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(extras["gpu"]) == sorted([install.FLASH_ATTN, *install.GPU_PACKAGES])
    for path in [*GPU_PRESETS, *(REPO_ROOT / "students" / "launch").glob("*.yaml")]:
        assert "pip install -e" not in path.read_text(), path
    for path in GPU_PRESETS:
        assert "# Install:  make install" in path.read_text(), path


# ---------------------------------------------------------------------------------------------
# 4. Originals without a chat template (Llama-3.1-8B base): DeepSeek-R1-Zero's plain-text prompt


def test_llama_base_without_a_template_gets_the_r1_zero_prompt(shared_data):
    from transformers import AutoTokenizer

    from distill.teachers.hf_backend import R1_ZERO_PREAMBLE, render_chat

    tok = AutoTokenizer.from_pretrained(str(shared_data / "tokenizers" / "llama3.1"))
    messages = [{"role": "user", "content": "What is 1+1? Put your final answer within \\boxed{}."}]
    templated = render_chat(tok, messages)
    assert templated.startswith("<|begin_of_text|><|start_header_id|>user")  # with a template: as before
    tok.chat_template = None  # the Llama-3.1-8B base ships none
    text = render_chat(tok, messages, prefill="<think>\n")
    assert text == ("<|begin_of_text|>" + R1_ZERO_PREAMBLE + "\nUser: What is 1+1? Put your final answer within "
                    "\\boxed{}.\nAssistant: <think>\n")
    # One BOS, as the hf backend encodes without adding special tokens.
    assert tok(text, add_special_tokens=False)["input_ids"].count(tok.bos_token_id) == 1


def test_eval_of_a_template_less_original_runs_and_says_how_it_was_prompted(tmp_path, tiny_llama):
    import json

    from transformers import AutoTokenizer

    from distill.eval import run as eval_run

    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = None
    tok.save_pretrained(base)
    for name in ("chat_template.jinja", "chat_template.json"):
        (base / name).unlink(missing_ok=True)
    assert not AutoTokenizer.from_pretrained(base).chat_template
    data = tmp_path / "b.jsonl"
    data.write_text(json.dumps({"id": "a", "problem": "Compute 2 + 3.", "answer": "5"}) + "\n")
    bench = tmp_path / "b.yaml"
    bench.write_text(yaml.safe_dump({"path": str(data), "task": "math",
                                     "columns": {"problem": "problem", "answer": "answer", "id": "id"}}))
    size = tmp_path / "llama-base.yaml"
    size.write_text(yaml.safe_dump({"base": str(base), "template": "llama3"}))
    report = eval_run.run(size=str(size), student=None, teacher=None, out_dir=tmp_path / "eval",
                          overrides=[f"benchmarks=[{bench}]", "roles=[original]", "k.b=1", "max_tokens=4",
                                     "backend_options.device=cpu", "score_workers=0"])
    assert report["benchmarks"]["b"]["original"]["samples"] == 1
    assert any("original:" in n and "R1-Zero" in n for n in report["notes"])


# ---------------------------------------------------------------------------------------------
# 5. LoRA trains the rows of the template's special tokens, and no other row


def test_lora_trains_the_special_token_rows_and_no_other(tiny_qwen2, tmp_path):
    import sys

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from student_fixtures import arithmetic_traces, tiny_overrides, write_clean

    from distill.students.templates import get_format
    from distill.students.train import run

    torch.set_num_threads(1)
    # Untied input and output embeddings, as Llama-3.1-8B and Qwen2.5-7B have: both rows must train.
    base = tmp_path / "untied"
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    model.config.tie_word_embeddings = False
    torch.manual_seed(1)
    untied = type(model)(model.config)
    untied.generation_config = model.generation_config
    untied.save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(base)

    data = write_clean(tmp_path / "clean.jsonl", arithmetic_traces(16))
    out = tmp_path / "lora"
    # A high learning rate so 4 steps move every trainable row well past float noise (the assertion is not vacuous).
    run("tiny", data, out, overrides=tiny_overrides(base, "lora=true", "lora_r=4", "lora_alpha=8",
                                                    "lora_target_modules=[q_proj,v_proj]", "max_steps=4",
                                                    "save_steps=10", "learning_rate=5e-2"))
    tok = AutoTokenizer.from_pretrained(base)
    # The template's special tokens and <think> / </think> (students/serving.py), and no other row.
    special = {tok.convert_tokens_to_ids(t) for t in (*get_format("chatml").special_tokens, "<think>", "</think>")}
    before = AutoModelForCausalLM.from_pretrained(base)
    after = AutoModelForCausalLM.from_pretrained(out / "final")
    for name in ("get_input_embeddings", "get_output_embeddings"):
        old, new = getattr(before, name)().weight, getattr(after, name)().weight
        changed = {int(i) for i in (old != new).any(dim=1).nonzero().flatten()}
        assert changed == special, (name, changed, special)



# ---------------------------------------------------------------------------------------------
# 6. Teacher provenance: what answered, in every trace; an honest r1 menu and R1-0528 anywhere


def test_every_trace_records_the_served_model_and_fingerprint(tmp_path):
    import sys

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from fault_server import FaultServer
    from teacher_fixtures import read_lines, write_prompt_set, write_teacher

    from distill.teachers.sample import run

    class AliasServer(FaultServer):
        """Answers a request for an alias with the model it maps to today, as DeepSeek's API does."""

        def _completion(self, req, text, key, style):
            return {**super()._completion(req, text, key, style), "model": "deepseek-v3.2", "system_fingerprint": "fp_1"}

    prompt_set = write_prompt_set(tmp_path, [f"Question {i}." for i in range(3)])
    with AliasServer() as server:
        run(write_teacher(tmp_path, server.urls, model="deepseek-reasoner"), prompt_set, tmp_path / "out")
    traces = read_lines(tmp_path / "out" / "raw.jsonl")
    assert len(traces) == 3
    for t in traces:
        assert t["teacher"]["model"] == "deepseek-reasoner"  # what was asked for (and the trace id's key)
        assert (t["teacher"]["served_model"], t["teacher"]["system_fingerprint"]) == ("deepseek-v3.2", "fp_1")
        assert set(t["meta"]["response"]) == {"id"}


def test_local_backends_record_the_model_they_loaded():
    from distill.trace import with_provenance

    teacher, rest = with_provenance({"name": "q", "model": "Qwen/QwQ-32B"}, {"model": "Qwen/QwQ-32B"})
    assert teacher["served_model"] == "Qwen/QwQ-32B" and teacher["system_fingerprint"] is None and rest == {}
    from types import SimpleNamespace

    from distill.teachers.vllm_backend import completion_from_vllm

    out = SimpleNamespace(text="<think>a</think>b", finish_reason="stop", token_ids=[1, 2])
    assert completion_from_vllm(SimpleNamespace(prompt_token_ids=[1]), out, "Qwen/QwQ-32B").raw == {"model": "Qwen/QwQ-32B"}


def test_r1_menu_says_what_it_samples_and_offers_r1_0528_on_any_endpoint():
    from distill.teachers.config import load_teacher_config

    header = (REPO_ROOT / "teachers" / "r1.yaml").read_text().split("backend:")[0]
    assert "NOT DeepSeek-R1" in header and "TEACHER=r1-0528" in header and "served_model" in header
    r1 = load_teacher_config("r1-0528")
    assert r1.model == "deepseek-ai/DeepSeek-R1-0528" and r1.backend == "openai"
    # Any endpoint: base URL(s) and the key's variable are ordinary overrides.
    hosted = load_teacher_config("r1-0528", ["base_url=https://example.org/v1", "api_key_env=PROVIDER_API_KEY"])
    assert hosted.base_url == ["https://example.org/v1"] and hosted.api_key_env == "PROVIDER_API_KEY"


# ---------------------------------------------------------------------------------------------
# 7. Eval on vLLM: the model's context, clamped and counted; data-parallel replicas


def test_max_tokens_is_clamped_to_the_context_and_overflow_is_not_sent():
    from distill.teachers.vllm_backend import clamp_max_tokens

    # 32k context: a 1k prompt keeps 31k of a 32k budget, a 40k prompt gets nothing; no context known: unchanged.
    assert clamp_max_tokens([100, 1_000, 32_768, 40_000], 32_768, 32_768) == [32_668, 31_768, 0, 0]
    assert clamp_max_tokens([100, 20_000], 8_192, 32_768) == [8_192, 8_192]
    assert clamp_max_tokens([50_000], 8_192, None) == [8_192]


def test_vllm_engine_takes_its_context_from_the_model(tiny_qwen2):
    from distill.teachers.config import TeacherConfig
    from distill.teachers.vllm_backend import model_context, vllm_engine_kwargs

    cfg = TeacherConfig(name="t", backend="vllm", model=str(tiny_qwen2))
    assert model_context(str(tiny_qwen2)) == 1024
    assert vllm_engine_kwargs(cfg, model_context(cfg.model))["max_model_len"] == 1024
    assert vllm_engine_kwargs(TeacherConfig(name="t", backend="vllm", model="m", max_model_len=4096), 1024)[
        "max_model_len"] == 4096  # a config's own value wins


def test_vllm_generate_clamps_counts_and_never_crashes(tiny_qwen2, caplog):
    """The backend's generate with the engine replaced by a recorder (vLLM needs CUDA)."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from distill.teachers.base import SamplingParams
    from distill.teachers.config import TeacherConfig
    from distill.teachers.vllm_backend import VLLMTeacher

    sent = []

    def engine(texts, sampling):
        sent.append([k["max_tokens"] for k in sampling])
        return [SimpleNamespace(prompt_token_ids=[0] * 3, outputs=[
            SimpleNamespace(text="<think>x</think>y", finish_reason="length", token_ids=[1] * k["max_tokens"])
            for _ in range(k["n"])]) for k in sampling]

    teacher = VLLMTeacher.__new__(VLLMTeacher)
    teacher.cfg = TeacherConfig(name="t", backend="vllm", model=str(tiny_qwen2))
    teacher.name, teacher.tokenizer = "t", AutoTokenizer.from_pretrained(tiny_qwen2)
    teacher.prompt_note, teacher.extra_stop, teacher.clamped, teacher.overflowed = None, (), 0, 0
    teacher._generate = engine
    prompts = [[{"role": "user", "content": "1+1?"}], [{"role": "user", "content": "long " * 20}],
               [{"role": "user", "content": "long " * 80}]]
    lengths = [len(teacher.tokenizer.apply_chat_template(p, add_generation_prompt=True, return_dict=True)["input_ids"])
               for p in prompts]
    # The first fits with its 32 tokens, the second only with fewer, the third alone fills the context.
    teacher.max_model_len = lengths[1] + 10
    assert lengths[0] + 32 <= teacher.max_model_len <= lengths[2]
    with caplog.at_level("WARNING"):
        out = teacher.generate(prompts, SamplingParams(max_tokens=32, n=2))
    assert len(sent) == 1 and sent[0][0] == 32 and 0 < sent[0][1] < 32  # the third prompt is never sent
    assert [len(row) for row in out] == [2, 2, 2]
    assert out[1][0].raw["max_tokens_clamped_to"] == sent[0][1]
    assert out[2][0].finish_reason == "length" and "context_overflow" in out[2][0].raw
    assert (teacher.clamped, teacher.overflowed) == (1, 1)
    assert f"1 of 3 prompts + max_tokens 32 exceed max_model_len {lengths[1] + 10}" in caplog.text


def test_data_parallel_replicas_get_disjoint_gpu_groups():
    from distill.config import ConfigError
    from distill.teachers.config import TeacherConfig
    from distill.teachers.vllm_backend import gpu_groups

    assert gpu_groups(8, 1, [str(i) for i in range(8)]) == [str(i) for i in range(8)]
    assert gpu_groups(2, 4, [str(i) for i in range(8)]) == ["0,1,2,3", "4,5,6,7"]
    with pytest.raises(ValueError, match="needs 16 GPUs; 8 are visible"):
        gpu_groups(4, 4, [str(i) for i in range(8)])
    assert TeacherConfig(name="t", backend="vllm", model="m", data_parallel_size=8).data_parallel_size == 8
    with pytest.raises(ConfigError, match="data_parallel_size"):
        TeacherConfig(name="t", backend="vllm", model="m", data_parallel_size=0)

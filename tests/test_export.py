"""Stage 6 on tiny models: FP8 / INT8 W8A8 in compressed-tensors format, GGUF through llama.cpp's
converter, the Ollama Modelfile, eval.json, and the bad inputs.

Fast paths only: nothing here downloads or builds llama.cpp. The GGUF tests skip, saying why, when
the cached converter (python -m distill.export.llama_cpp) is absent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ct = pytest.importorskip("compressed_tensors", reason="FORMAT=fp8/w8a8 need the export extra: pip install -e '.[export]'")


def _logits(model_dir, ids):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("fmt,dtype", [("fp8", "float8_e4m3fn"), ("w8a8", "int8")])
def test_quantized_export_is_compressed_tensors_and_reloads_in_fake_quant(tmp_path, tiny_qwen2, fmt, dtype):
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer

    from distill.export.quantize import quantize_student

    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    calibration = [tok("Compute 3 + 4. <think>\n3+4\n=7\n</think>\n\n\\boxed{7}")["input_ids"]] * 4
    out = tmp_path / fmt
    summary = quantize_student(tiny_qwen2, out, fmt, calibration)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["quantization_status"] == "compressed"
    assert qc["ignore"] == ["lm_head"]
    group = qc["config_groups"]["group_0"]
    assert group["weights"]["num_bits"] == 8 and group["weights"]["strategy"] == "channel"
    if fmt == "fp8":  # FP8_DYNAMIC: per-token scales at run time, nothing calibrated
        assert group["input_activations"]["dynamic"] is True and "calibration" not in summary
    else:  # static INT8 input scales from the calibration sequences
        assert group["input_activations"] == {**group["input_activations"], "dynamic": False, "strategy": "tensor",
                                              "type": "int"}
        assert summary["calibration"]["sequences"] == 4
    with safe_open(out / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        weight = f.get_tensor("model.layers.0.mlp.down_proj.weight")
        assert weight.dtype == getattr(torch, dtype)
        assert "model.layers.0.mlp.down_proj.weight_scale" in keys
        assert (fmt == "w8a8") == ("model.layers.0.mlp.down_proj.input_scale" in keys)

    # transformers reloads it through compressed-tensors; its logits stay close to fp32's but are
    # not identical (a reload that silently dropped the quantization would match exactly).
    ids = calibration[0]
    ref, got = _logits(tiny_qwen2, ids), _logits(out, ids)
    err = (got - ref).abs().max().item()
    assert 0 < err < 0.05 * ref.abs().max().item(), err


def test_static_scales_come_from_the_calibration_data(tmp_path, tiny_qwen2):
    from transformers import AutoModelForCausalLM

    from distill.export.quantize import quantize_model

    def input_scale(calibration):
        model = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
        quantize_model(model, "w8a8", calibration)
        return model.model.layers[0].mlp.down_proj.input_scale.item()

    small, large = input_scale([[5, 6, 7]]), input_scale([[5, 6, 7], list(range(1, 60))])
    assert small > 0 and large >= small  # max |input| over more data can only grow
    with pytest.raises(ValueError, match="needs calibration traces"):
        input_scale([])


def test_unknown_format_and_missing_student_are_refused(tmp_path, capsys):
    from distill.cli import main

    assert main(["export", "--format", "fp9", "--out", str(tmp_path)]) == 2
    assert "unknown export format 'fp9'. Did you mean 'fp8'?" in capsys.readouterr().err
    assert main(["export", "--format", "fp8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no student to export" in err and "make student SIZE=tiny" in err
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())


def test_w8a8_without_traces_names_the_fix(tmp_path, tiny_qwen2, capsys):
    from distill.cli import main

    code = main(["export", "--format", "w8a8", "--student", str(tiny_qwen2), "--out", str(tmp_path),
                 "--data", str(tmp_path / "none.jsonl"), "evaluate=false"])
    assert code == 2 and "calibrates on the student's clean traces" in capsys.readouterr().err


def test_fp8_on_a_torch_without_float8_names_the_fix_before_any_work(tmp_path, tiny_qwen2, monkeypatch, capsys):
    import torch

    from distill.cli import main

    monkeypatch.delattr(torch, "float8_e4m3fn")
    assert main(["export", "--format", "fp8", "--student", str(tiny_qwen2), "--out", str(tmp_path)]) == 2
    assert "torch >= 2.1" in capsys.readouterr().err and not (tmp_path / "export").exists()


def test_gguf_without_llama_cpp_names_the_setup_command(tmp_path, tiny_qwen2, monkeypatch, capsys):
    from distill.cli import main

    monkeypatch.setenv("DISTILL_LLAMA_CPP", str(tmp_path / "no-llama.cpp"))
    assert main(["export", "--format", "gguf", "--student", str(tiny_qwen2), "--out", str(tmp_path)]) == 2
    assert "python -m distill.export.llama_cpp" in capsys.readouterr().err
    # The converter alone is enough for q8_0 without eval; llama-quantize is named for the 4-bit type.
    src = tmp_path / "no-llama.cpp" / "src" / "llama_cpp_python-0" / "vendor" / "llama.cpp"
    src.mkdir(parents=True)
    (src / "convert_hf_to_gguf.py").write_text("")
    assert main(["export", "--format", "gguf", "--student", str(tiny_qwen2), "--out", str(tmp_path),
                 "evaluate=false"]) == 2
    err = capsys.readouterr().err
    assert "llama-quantize" in err and "gguf_4bit=none" in err


def test_a_failed_export_leaves_no_folder_and_keeps_the_previous_one(tmp_path, tiny_qwen2, monkeypatch):
    from distill.export import quantize, run
    from distill.paths import export_dir

    final = export_dir(tmp_path, "tiny", "fp8")
    final.mkdir(parents=True)
    (final / "eval.json").write_text('{"retained": 1.0}')

    def broken(*a, **k):
        (Path(a[1]) / "model.safetensors").write_text("half")
        raise RuntimeError("disk full half-way")

    monkeypatch.setattr(quantize, "quantize_student", broken)
    with pytest.raises(RuntimeError, match="half-way"):
        run.run("tiny", "fp8", tiny_qwen2, tmp_path, ["evaluate=false"])
    assert sorted(p.name for p in final.parent.iterdir()) == ["tiny-fp8"]  # no temp folder left
    assert json.loads((final / "eval.json").read_text()) == {"retained": 1.0}


def test_a_killed_exports_temporary_folder_goes_and_a_running_ones_stays(tmp_path, tiny_qwen2, monkeypatch):
    """SIGKILL skips the cleanup: the next export removes the folder of a dead process, not of a live one."""
    import subprocess
    import sys

    from distill.export import quantize, run
    from distill.paths import export_dir

    final = export_dir(tmp_path, "tiny", "fp8")
    final.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = final.with_name(f".{final.name}.tmp-{int(dead.stdout)}")
    alive = final.with_name(f".{final.name}.tmp-{os.getppid()}")
    for folder in (killed, alive):
        folder.mkdir()
        (folder / "model.safetensors").write_text("half")
    monkeypatch.setattr(quantize, "quantize_student", lambda *a, **k: {"layers": 0})
    run.run("tiny", "fp8", tiny_qwen2, tmp_path, ["evaluate=false"])
    assert not killed.exists() and alive.exists() and (final / "export.json").exists()


def test_eval_json_compares_export_and_student_on_the_same_samples(tmp_path, tiny_qwen2):
    """The whole fp8 path through the CLI on a 4-problem benchmark; a random model solves nothing,
    so retained is undefined and said to be."""
    from distill.cli import main

    assert main(["export", "--format", "fp8", "--student", str(tiny_qwen2), "--out", str(tmp_path),
                 "eval.limit=4", "eval.max_tokens=8", "eval.default_k=2", "eval.score_workers=0"]) == 0
    folder = tmp_path / "export" / "tiny-fp8"
    result = json.loads((folder / "eval.json").read_text())
    assert result["protocol"]["problems"] == {"toy-test": 4} and result["protocol"]["k"] == {"toy-test": 2}
    for column in (result["student"], result["variants"]["fp8"]):
        assert column["benchmarks"]["toy-test"]["samples"] == 8
    assert result["variants"]["fp8"]["bytes"] < result["student"]["bytes"]
    assert result["retained"] is None and "undefined" in result["note"]
    # The student's samples are the `make eval` student column's, shared.
    assert (tmp_path / "eval" / "tiny" / "student" / "toy-test.jsonl").exists()
    assert json.loads((folder / "export.json").read_text())["quantization"]["layers"] == 14
    assert not list((tmp_path / "export").glob(".*"))


def test_retained_is_export_over_student(monkeypatch, tmp_path, tiny_qwen2):
    from distill.export import evaluate

    scores = iter([{"benchmarks": {}, "pass@1_mean": 0.5}, {"benchmarks": {}, "pass@1_mean": 0.45}])
    monkeypatch.setattr(evaluate, "_scores", lambda *a, **k: next(scores))
    preset = Path(__file__).parents[1] / "students" / "tiny.yaml"
    result = evaluate.evaluate_export("tiny", preset, tiny_qwen2, tmp_path, tmp_path / "final", "fp8",
                                      {"student_bytes": 10, "bytes": 4}, ["limit=2"], tmp_path, None)
    assert result["retained"] == 0.9 and result["variants"]["fp8"]["retained"] == 0.9


# ---------------------------------------------------------------------------------------------
# GGUF: llama.cpp's converter, when cached


def _converter():
    from distill.export import llama_cpp

    if llama_cpp.source() is None:
        pytest.skip("llama.cpp's converter is not cached: python -m distill.export.llama_cpp (downloads the "
                    "llama-cpp-python sdist once)")
    pytest.importorskip("gguf", reason="the gguf reader: pip install -e '.[export]'")
    pytest.importorskip("sentencepiece", reason="the converter imports sentencepiece: pip install -e '.[export]'")


def test_gguf_q8_0_through_the_converter_declares_the_pre_tokenizer(tmp_path, tiny_qwen2):
    _converter()
    from distill.export import gguf

    out = gguf.convert(tiny_qwen2, tmp_path / "tiny-q8_0.gguf", "q8_0")
    info = gguf.describe(out)
    assert info["architecture"] == "qwen2" and info["has_chat_template"]
    # The toy vocabulary is in no table of llama.cpp's; the tokenizer transformers loads for a qwen2
    # model splits with Qwen2's regex, so that is the pre-tokenizer declared.
    assert info["pre_tokenizer"] == "qwen2"
    assert info["tensor_types"].get("Q8_0", 0) >= 14  # every 2-D weight; norms stay F32


def test_declared_pre_tokenizers_match_only_known_splitting(tiny_tokenizer_path, tiny_qwen2):
    import json as _json

    from transformers import AutoTokenizer

    from distill.export.gguf import declared_pre_tokenizer

    # Alone, the toy tokenizer is digits + GPT-2 byte-level (StarCoder's); beside a qwen2 config,
    # transformers loads it as Qwen2Tokenizer with Qwen2's split.
    assert declared_pre_tokenizer(AutoTokenizer.from_pretrained(tiny_tokenizer_path)) == "starcoder"
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    assert declared_pre_tokenizer(tok) == "qwen2"
    data = _json.loads(tok.backend_tokenizer.to_str())
    data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"
    from tokenizers import Tokenizer

    tok._tokenizer = Tokenizer.from_str(_json.dumps(data))
    assert declared_pre_tokenizer(tok) is None  # an unknown split is refused, never guessed


def test_modelfile_carries_template_stops_and_deepseek_sampling(tiny_qwen2, tmp_path):
    from distill.export.gguf import chat_format, modelfile
    from distill.students.templates import FORMATS

    student = tmp_path / "student"
    shutil.copytree(tiny_qwen2, student)
    config = json.loads((student / "tokenizer_config.json").read_text())
    config["chat_template"] = FORMATS["chatml"].serve
    (student / "tokenizer_config.json").write_text(json.dumps(config))
    (student / "chat_template.jinja").unlink(missing_ok=True)
    assert chat_format(student) == "chatml"
    text = modelfile("tiny-q8_0.gguf", "chatml", {"tiny-Q4_K_M.gguf": "Q4_K_M"})
    assert "FROM ./tiny-q8_0.gguf" in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER temperature 0.6" in text and "PARAMETER top_p 0.95" in text
    assert "<|im_start|>assistant\n" in text and "# Other file here: FROM ./tiny-Q4_K_M.gguf" in text
    assert 'PARAMETER stop "<|eot_id|>"' in modelfile("x.gguf", "llama3")


def test_llama_quantize_fallbacks_are_read_from_its_log():
    from distill.export.gguf import parse_fallbacks

    log = ("[   1/  38] output_norm.weight - [    96,      1,      1,      1], type =    f32, size =    0.000 MiB\n"
           "warning: token_embd.weight                    - ncols     96 not divisible by 256 (required for type    "
           "q6_K) -> falling back to    q8_0\n"
           "llama_model_quantize_impl: WARNING: 1 of 38 tensor(s) required fallback quantization\n")
    assert parse_fallbacks(log) == {"token_embd.weight": "q8_0"}
    assert parse_fallbacks("llama_model_quantize_impl: model size = 1.28 MiB\n") == {}


@pytest.mark.slow
def test_gguf_export_makes_q8_0_and_4bit_and_scores_both_in_llama_server(tmp_path, tiny_qwen2):
    """FORMAT=gguf end to end: converter, llama-quantize, the Modelfile, and eval.json from llama-server."""
    _converter()
    from distill.cli import main
    from distill.export import llama_cpp

    for tool in ("llama-quantize", "llama-server"):
        if llama_cpp.tool(tool) is None:
            pytest.skip(f"llama.cpp's {tool} is not built: python -m distill.export.llama_cpp")
    assert main(["export", "--format", "gguf", "--student", str(tiny_qwen2), "--out", str(tmp_path),
                 "eval.limit=3", "eval.max_tokens=8", "eval.default_k=2", "eval.score_workers=0"]) == 0
    folder = tmp_path / "export" / "tiny-gguf"
    result = json.loads((folder / "eval.json").read_text())
    assert set(result["variants"]) == {"q8_0", "Q4_0"}  # students/tiny.yaml: export: {gguf_4bit: Q4_0}
    for name, v in result["variants"].items():
        assert v["runtime"] == "llama-server" and v["benchmarks"]["toy-test"]["samples"] == 6
        assert v["generation"]["generated"] == 6 and (folder / v["file"]).exists()
    assert result["variants"]["Q4_0"]["bytes"] < result["variants"]["q8_0"]["bytes"] < result["student"]["bytes"]
    info = json.loads((folder / "export.json").read_text())["variants"]
    assert info["Q4_0"]["tensor_types"].get("Q4_0", 0) >= 12
    # 32-value rows suit Q4_0's blocks; the embedding's intended q6_K needs 256, so it falls back and says so.
    assert info["Q4_0"]["fallbacks"] == {"token_embd.weight": "q8_0"}
    modelfile = (folder / "Modelfile").read_text()
    assert "FROM ./tiny-q8_0.gguf" in modelfile and "tiny-Q4_0.gguf" in modelfile
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".gguf") == ["tiny-Q4_0.gguf", "tiny-q8_0.gguf"]
    assert not list((tmp_path / "export").glob(".*"))


def test_quantization_runs_on_a_gpu_only_when_the_model_fits_it(monkeypatch, tiny_qwen2):
    import torch
    from transformers import AutoModelForCausalLM

    from distill.export.quantize import work_device

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    need = sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert work_device(model) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for total, expected in ((need * 2, "cuda:0"), (need, "cpu")):  # 80% headroom: a model of 100% stays on CPU
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda _i, t=total: type("P", (), {"total_memory": t}))
        assert work_device(model) == expected

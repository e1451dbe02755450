"""GGUF exports with llama.cpp's own tools, and the Ollama Modelfile that serves them.

    convert(student, out / "tiny-q8_0.gguf", "q8_0")        # convert_hf_to_gguf.py, driven as a library
    quantize(f32_gguf, out / "tiny-Q4_K_M.gguf", "Q4_K_M")   # llama-quantize (built once, see llama_cpp.py)
    write_modelfile(out, "tiny-q8_0.gguf", student)          # template, stop tokens, DeepSeek's sampling

q8_0 comes straight from the converter; the 4-bit types need llama-quantize, which quantizes a
full-precision GGUF (f32 for fp32 students, bf16/f16 for bf16 ones: the converter's `auto`).

The converter runs in a child process (`python -m distill.export.gguf ...`): it imports the gguf-py
vendored beside it, which may be newer than the `gguf` wheel this process reads files with.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from distill.export import llama_cpp

log = logging.getLogger(__name__)

# llama.cpp pre-tokenizer names for tokenizers the converter's hash check does not know, keyed by the
# `pre_tokenizer` (tokenizers' JSON) of the tokenizer transformers actually loads for the model.
QWEN2_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
DECLARED_PRE_TOKENIZERS: list[tuple[dict[str, Any] | None, dict[str, Any], str]] = [
    # A Qwen2-family student with a vocabulary trained here (the toy's): transformers 5 loads any
    # qwen2 model's tokenizer as Qwen2Tokenizer, whose pre-tokenizer is Qwen2's split regex and then
    # byte-level mapping, after NFC as Qwen2.5's own tokenizer. llama.cpp's "qwen2" type (the one it
    # gives Qwen2.5) splits with that same regex (src/llama-vocab.cpp).
    ({"type": "NFC"}, {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}, "qwen2"),
    # The toy tokenizer as distill/toy/tokenizer.py builds it: single digits, then GPT-2's byte-level
    # regex. That is StarCoder's pre-tokenizer, and llama.cpp's "starcoder" type splits with the same
    # two expressions (\p{N}, then the GPT-2 pattern).
    (None, {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}, "starcoder"),
]


def declared_pre_tokenizer(tokenizer: Any) -> str | None:
    """The llama.cpp pre-tokenizer that splits text as `tokenizer` (a transformers fast tokenizer) does, if known."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    data = json.loads(backend.to_str())
    if (data.get("model") or {}).get("type") != "BPE":
        return None
    return next((name for norm, pre, name in DECLARED_PRE_TOKENIZERS
                 if data.get("normalizer") == norm and data.get("pre_tokenizer") == pre), None)


def convert(model_dir: Path, outfile: Path, outtype: str) -> Path:
    """Run llama.cpp's HF converter on `model_dir` (outtype: q8_0, f32, bf16, f16 or auto)."""
    src = llama_cpp.require_source()
    cmd = [sys.executable, "-m", "distill.export.gguf", str(src), str(model_dir), str(outfile), outtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf failed on {model_dir}:\n{done.stderr[-3000:]}")
    log.debug("%s", done.stderr[-2000:])
    return outfile


def quantize(full: Path, outfile: Path, qtype: str) -> dict[str, Any]:
    """llama-quantize `full` (an f32/bf16/f16 GGUF) to `qtype`; returns the types it fell back to."""
    exe = llama_cpp.require_tool("llama-quantize", f"the {qtype} GGUF")
    done = subprocess.run([str(exe), str(full), str(outfile), qtype], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"llama-quantize {qtype} failed:\n{(done.stderr or done.stdout)[-3000:]}")
    fallbacks = parse_fallbacks(done.stdout + done.stderr)
    return {"fallbacks": fallbacks} if fallbacks else {}


def parse_fallbacks(log_text: str) -> dict[str, str]:
    """Tensors llama-quantize gave another type than it meant to, from its log: {tensor: type it got}.

    A tensor whose rows are not a multiple of the type's block (256 values for k-quants) falls back:
    `warning: token_embd.weight - ncols 96 not divisible by 256 (required for type q6_K) -> falling back to q8_0`.
    """
    out: dict[str, str] = {}
    for line in log_text.splitlines():
        if "falling back to" in line:
            name = line.split(":", 1)[-1].split()[0] if ":" in line else line.split()[0]
            out[name] = line.rsplit("falling back to", 1)[-1].strip()
    return out


def describe(path: Path) -> dict[str, Any]:
    """What a GGUF file holds, read back with the gguf package's reader."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        if f is None:
            return None
        value = f.contents()
        return value

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {"file": path.name, "bytes": path.stat().st_size, "architecture": field("general.architecture"),
            "pre_tokenizer": field("tokenizer.ggml.pre"), "tensor_types": types,
            "has_chat_template": field("tokenizer.chat_template") is not None}


# ---------------------------------------------------------------------------------------------
# Ollama

# Ollama Go templates for the student's chat formats (distill/students/templates.py): the turns
# exactly as the student learned them. No system default: DeepSeek advises putting every instruction in the
# user turn for R1-style models.
OLLAMA_TEMPLATES = {
    "chatml": (
        "{{- range $i, $_ := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        "{{- if eq .Role \"assistant\" }}<|im_start|>assistant\n"
        "{{ .Content }}<|im_end|>\n"
        "{{ else }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}\n"
        "{{- if and $last (ne .Role \"assistant\") }}<|im_start|>assistant\n{{ end }}\n"
        "{{- end }}"),
    "llama3": (
        "{{- range $i, $_ := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n"
        "{{- if and $last (ne .Role \"assistant\") }}<|start_header_id|>assistant<|end_header_id|>\n\n{{ end }}\n"
        "{{- end }}"),
}
STOPS = {"chatml": ["<|im_end|>", "<|endoftext|>"], "llama3": ["<|eot_id|>", "<|end_of_text|>"]}


def chat_format(model_dir: Path) -> str:
    """chatml or llama3, from the student's saved template."""
    config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text())
    template = config.get("chat_template") or ""
    jinja = Path(model_dir) / "chat_template.jinja"
    if not template and jinja.exists():
        template = jinja.read_text()
    if "<|start_header_id|>" in template:
        return "llama3"
    if "<|im_start|>" in template:
        return "chatml"
    raise ValueError(f"{model_dir}: the chat template is neither ChatML nor Llama 3; cannot write an Ollama template")


def modelfile(gguf_name: str, fmt: str, alternatives: dict[str, str] | None = None) -> str:
    lines = ["# Ollama: ollama create <name> -f Modelfile && ollama run <name>",
             "# DeepSeek's advice for R1-style models: temperature 0.6, top_p 0.95, no system prompt,",
             "# every instruction in the user turn; the model thinks inside <think>...</think> first."]
    for name, note in (alternatives or {}).items():
        lines.append(f"# Other file here: FROM ./{name}  ({note})")
    lines += [f"FROM ./{gguf_name}", f'TEMPLATE """{OLLAMA_TEMPLATES[fmt]}"""']
    lines += [f'PARAMETER stop "{s}"' for s in STOPS[fmt]]
    lines += ["PARAMETER temperature 0.6", "PARAMETER top_p 0.95"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The converter, in its own process: python -m distill.export.gguf <llama.cpp dir> <model> <out> <type>


def _convert_main(src: str, model_dir: str, outfile: str, outtype: str) -> None:
    sys.path[:0] = [src, str(Path(src) / "gguf-py")]  # the vendored gguf-py, before the wheel
    import gguf
    import torch
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class, logger

    ftypes = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
              "auto": gguf.LlamaFileType.GUESSED}
    hparams = ModelBase.load_hparams(Path(model_dir), False)
    base = get_model_class(get_model_architecture(hparams, ModelType.TEXT), mmproj=False)

    class Converter(base):  # type: ignore[misc, valid-type]
        model_arch = base.model_arch

        def get_vocab_base_pre(self, tokenizer) -> str:
            # The converter names the pre-tokenizer by hashing how the tokenizer splits a probe text
            # and looking the hash up in a table of published models. A tokenizer trained here (the
            # toy's) is in no table, so the lookup raises. We do not edit the table or pick a name
            # that merely passes: we declare the llama.cpp pre-tokenizer that implements the same
            # splitting rules as the tokenizer.json (DECLARED_PRE_TOKENIZERS), and only then.
            try:
                return super().get_vocab_base_pre(tokenizer)
            except NotImplementedError:
                declared = declared_pre_tokenizer(tokenizer)
                if declared is None:
                    raise NotImplementedError(
                        f"llama.cpp does not know the pre-tokenizer of {model_dir} and distill declares none for "
                        f"it (distill/export/gguf.py DECLARED_PRE_TOKENIZERS)") from None
                logger.warning("pre-tokenizer not in llama.cpp's table; declared %r (same splitting rules)", declared)
                return declared

    with torch.inference_mode():
        model = Converter(Path(model_dir), ftypes[outtype], Path(outfile), eager=False)
        model.write()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    _convert_main(*sys.argv[1:5])

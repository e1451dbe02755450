"""FP8 and INT8 exports in the compressed-tensors format vLLM loads, made with compressed-tensors itself.

    quantize_student("out/students/7b/final", "out/export/7b-fp8.tmp", "fp8")
    quantize_student(final, tmp, "w8a8", calibration=[token ids of clean traces, ...])

The scheme, the scale arithmetic (`calculate_qparams`), the fake-quant forward and the saved format
(`ModelCompressor`) are compressed-tensors' own, the library llm-compressor writes with and vLLM
reads; llm-compressor itself pins transformers <= 5.17 (we run 5.2x), so we call the layer below it.
What we add is the one thing llm-compressor's observers do for these schemes: min/max of each
weight row, and of each layer's input over the calibration traces.

- fp8: compressed-tensors' FP8_DYNAMIC preset, as llm-compressor's data-free FP8_DYNAMIC recipe
  makes it: FP8 (e4m3) weights with one scale per output channel, activations quantized per
  token at run time. No data needed.
- w8a8: INT8 weights (one scale per output channel, symmetric) and INT8 activations with one
  static scale per layer, calibrated as the largest input that layer saw on the student's own
  clean traces (vLLM's static per-tensor W8A8 int8 path). `activations="dynamic"` keeps the
  scheme's per-token runtime scales instead (the W8A8 preset; calibration is then not needed).
  llm-compressor's GPTQ and SmoothQuant, which help 7B+ models with activation outliers, are not
  in compressed-tensors and are not done here.

lm_head stays unquantized (every llm-compressor example ignores it). transformers loads the
export with compressed-tensors installed and runs it in fake quant on CPU: weights dequantized,
inputs quantized as the scheme says, so the CPU eval measures the scheme's error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IGNORE = ["lm_head"]
ACTIVATIONS = ("static", "dynamic")


def require_compressed_tensors() -> None:
    try:
        import compressed_tensors  # noqa: F401
    except ImportError as e:
        raise ImportError("FORMAT=fp8 and FORMAT=w8a8 are written with compressed-tensors: "
                          "pip install -e '.[export]' (into .venv), then rerun") from e


def scheme_for(fmt: str, activations: str = "static") -> Any:
    """The compressed-tensors QuantizationScheme of an export format, for every Linear layer."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme, preset_name_to_scheme

    if fmt == "fp8":
        return preset_name_to_scheme("FP8_DYNAMIC", ["Linear"])
    if fmt != "w8a8":
        raise ValueError(f"no compressed-tensors scheme for format {fmt!r}")
    if activations not in ACTIVATIONS:
        raise ValueError(f"w8a8 activations={activations!r}: use one of {ACTIVATIONS}")
    scheme = preset_name_to_scheme("W8A8", ["Linear"])  # int8 weights per channel, int8 inputs per token
    if activations == "static":
        # One calibrated scale per layer instead of one per token at run time.
        scheme = QuantizationScheme(targets=["Linear"], weights=scheme.weights, input_activations=QuantizationArgs(
            num_bits=8, type="int", strategy="tensor", symmetric=True, dynamic=False))
    return scheme


def quantize_model(model: Any, fmt: str, calibration: Iterable[list[int]] = (), activations: str = "static") -> dict:
    """Quantize `model` in place (fake-quant forward); return a summary of what was done."""
    import torch
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus, apply_quantization_config
    from compressed_tensors.quantization.utils.helpers import calculate_qparams

    scheme = scheme_for(fmt, activations)
    config = QuantizationConfig(config_groups={"group_0": scheme}, ignore=IGNORE,
                                quantization_status=QuantizationStatus.INITIALIZED)
    apply_quantization_config(model, config, show_progress=False)
    layers = {name: m for name, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None}
    if not layers:
        raise ValueError(f"no Linear layer of {type(model).__name__} matched the {fmt} scheme")

    # Weights: one scale per output row, from the row's min and max (llm-compressor's minmax observer).
    with torch.no_grad():
        for m in layers.values():
            w = m.weight.data.float()
            scale, zero = calculate_qparams(w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True),
                                            m.quantization_scheme.weights)
            m.weight_scale.data.copy_(scale)
            if hasattr(m, "weight_zero_point"):
                m.weight_zero_point.data.copy_(zero)

    summary: dict[str, Any] = {"layers": len(layers), "scheme": scheme.model_dump(mode="json"), "ignore": IGNORE}
    args = scheme.input_activations
    if args is not None and not args.dynamic:
        summary.update(calibrate_inputs(model, layers, calibration))
    for m in layers.values():
        m.quantization_status = QuantizationStatus.FROZEN
    return summary


def calibrate_inputs(model: Any, layers: dict[str, Any], calibration: Iterable[list[int]]) -> dict:
    """Static input scales: the largest |input| each layer sees on the calibration sequences."""
    import torch
    from compressed_tensors.quantization.utils.helpers import calculate_qparams

    amax = {name: torch.zeros(1) for name in layers}

    def observe(name):
        def hook(_module, inputs):
            amax[name] = torch.maximum(amax[name], inputs[0].detach().abs().amax().float().reshape(1).cpu())
        return hook

    for m in layers.values():
        m.quantization_enabled = False  # observe the unquantized model's inputs
    hooks = [m.register_forward_pre_hook(observe(name)) for name, m in layers.items()]
    sequences = tokens = 0
    try:
        device = next(model.parameters()).device
        with torch.inference_mode():
            for ids in calibration:
                model(torch.tensor([ids], device=device))
                sequences += 1
                tokens += len(ids)
    finally:
        for h in hooks:
            h.remove()
        for m in layers.values():
            m.quantization_enabled = True
    if not sequences:
        raise ValueError("w8a8 with static activation scales needs calibration traces, and none were given")
    for name, m in layers.items():
        scale, zero = calculate_qparams(-amax[name], amax[name], m.quantization_scheme.input_activations)
        m.input_scale.data.copy_(scale.reshape(m.input_scale.shape))
        if hasattr(m, "input_zero_point"):
            m.input_zero_point.data.copy_(zero.reshape(m.input_zero_point.shape))
    log.info("calibrated %d input scales on %d sequences (%d tokens)", len(layers), sequences, tokens)
    return {"calibration": {"sequences": sequences, "tokens": tokens}}


def save_compressed(model: Any, tokenizer: Any, out: Path) -> None:
    """Save as llm-compressor does: compress the weights, save, write the quantization_config."""
    from compressed_tensors.compressors import ModelCompressor

    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(out)
    compressor.update_config(out)
    tokenizer.save_pretrained(out)


def work_device(model: Any, headroom: float = 0.8) -> str:
    """The first GPU when there is one and the model takes at most `headroom` of its memory; else the CPU.

    Larger models (32B and 70B in bf16 on an 80 GB GPU) stay on the CPU: fp8 and dynamic w8a8 need
    no forward pass, and static w8a8 calibration there is slow (presets say so in their headers).
    """
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    need = sum(p.numel() * p.element_size() for p in model.parameters())
    return "cuda:0" if need <= headroom * torch.cuda.get_device_properties(0).total_memory else "cpu"


def quantize_student(student: Path, out: Path, fmt: str, calibration: Iterable[list[int]] = (),
                     activations: str = "static") -> dict:
    """Load the fp32 student, quantize it as `fmt`, save it in compressed-tensors format at `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_compressed_tensors()
    tokenizer = AutoTokenizer.from_pretrained(student)
    # Scales are computed in fp32 whatever the checkpoint's dtype; the export keeps the student's
    # dtype for what stays unquantized (norms, embeddings, lm_head).
    model = AutoModelForCausalLM.from_pretrained(student, dtype="auto").eval()
    model.to(work_device(model))  # w8a8's calibration forwards are hours on CPU for a 7B, minutes on a GPU
    summary = quantize_model(model, fmt, calibration, activations)
    save_compressed(model, tokenizer, out)
    return summary


__all__ = ["quantize_model", "quantize_student", "require_compressed_tensors", "save_compressed", "scheme_for",
           "work_device"]

"""Stage 6: exports a serving stack runs (FP8 / INT8 W8A8 in compressed-tensors format, GGUF for
llama.cpp and Ollama), each re-evaluated against its student, and `make serve`.

    make export SIZE=tiny FORMAT=fp8     # distill.export.run
    make serve SIZE=tiny FORMAT=gguf     # distill.export.serve
"""

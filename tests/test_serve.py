"""`make serve`: which server a machine gets, on loopback (the openai backend against `transformers serve` itself is
tested in test_teachers.py)."""

from __future__ import annotations

from pathlib import Path

from distill.export.serve import serve_command


def test_cpu_serves_with_transformers_serve_on_loopback(tiny_qwen2):
    cmd = serve_command(Path(tiny_qwen2), "127.0.0.1", 8123, gpu=False)
    assert cmd.engine == "transformers serve" and cmd.url == "http://127.0.0.1:8123/v1"
    assert cmd.argv[1:] == [
        "serve",
        str(tiny_qwen2),
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--device",
        "cpu",
    ]
    gpu = serve_command(Path(tiny_qwen2), "127.0.0.1", 8123, gpu=True)
    assert gpu.argv[:3] == ["vllm", "serve", str(tiny_qwen2)] and "deepseek_r1" in gpu.argv

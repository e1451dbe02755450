"""`make serve`: which server a machine gets, on loopback (the openai backend against `transformers serve` itself is
tested in test_teachers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


# A trained toy model small enough to build in the test (the scaled-down demo's teacher: ~20 s) that
# solves about half of the two-step problems, so a server that renders or samples differently shows.
SERVED = ("toy://teacher?levels=2&hidden_size=64&num_layers=2&intermediate_size=256&train_problems=560"
          "&epochs=30&learning_rate=0.003&batch_size=32")


@pytest.mark.slow
def test_eval_through_transformers_serve_agrees_with_the_hf_backend(tmp_path, monkeypatch):
    """What `make serve` prints: `make eval ... backend=openai backend_options.base_url=<url>` scores the served
    model as the hf backend scores the folder (same problems, k, temperature), within sampling noise."""
    import json
    import math

    import yaml

    from distill.cli import main
    from distill.config import ConfigError
    from distill.eval.run import run
    from distill.export.serve import free_port, running
    from distill.models import resolve_model
    from distill.paths import menu_name

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    model = Path(resolve_model(SERVED))
    port = free_port()
    try:
        cmd = serve_command(model, "127.0.0.1", port, gpu=False)
    except ConfigError as e:  # no `transformers` beside this Python: the serving extra is missing
        pytest.skip(str(e))
    test_set = tmp_path / "toy2-test.yaml"
    test_set.write_text(yaml.safe_dump({"name": "toy2-test", "task": "math",
                                        "toy": {"split": "test", "n": 24, "seed": 0, "levels": [2]}}))
    preset = tmp_path / "served.yaml"
    preset.write_text(yaml.safe_dump({"base": str(model), "template": "chatml", "eval": {
        "benchmarks": [str(test_set)], "default_k": 2, "max_tokens": 96}}))

    def pass1(out: str, extra: list[str]) -> dict:
        report = run(size=str(preset), student=model, teacher=None, out_dir=tmp_path / out,
                     overrides=["roles=[student]", *extra])
        return report["benchmarks"]["toy2-test"]["student"]["pass@1"]

    local = pass1("hf", [])
    with running(cmd.argv, port, tmp_path / "serve.log",
                 env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")}) as url:
        # The line `make serve` prints, through the CLI as make runs it.
        assert main(["eval", "--size", str(preset), "--out", str(tmp_path / "served_out"), "--student", str(model),
                     "roles=[student]", "backend=openai", f"backend_options.base_url={url}",
                     "backend_options.concurrency=1"]) == 0
    report = json.loads((tmp_path / "served_out" / "eval" / menu_name(str(preset)) / "report.json").read_text())
    served = report["benchmarks"]["toy2-test"]["student"]["pass@1"]
    # The model solves a fair share either way (a wrong template or stop token through the server drops it to ~0) ...
    assert local["mean"] >= 0.25 and served["mean"] >= 0.25, (local, served)
    # ... and the two agree within three standard errors of their difference.
    assert abs(local["mean"] - served["mean"]) <= 3 * math.hypot(local["stderr"], served["stderr"]), (local, served)


def test_serve_prints_an_eval_line_that_fits_what_it_serves(tmp_path, tiny_qwen2, capsys, monkeypatch):
    from distill.export import serve

    student = tmp_path / "students" / "tiny" / "final"
    student.parent.mkdir(parents=True)
    student.symlink_to(tiny_qwen2)
    serve.run("tiny", None, tmp_path, port=8124, dry_run=True)
    out = capsys.readouterr().out
    assert (f"--student {student} roles=[student] backend=openai backend_options.base_url=http://127.0.0.1:8124/v1 "
            "backend_options.concurrency=1") in out
    gguf = tmp_path / "export" / "tiny-gguf"
    gguf.mkdir(parents=True)
    (gguf / "tiny-q8_0.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(serve, "serve_command", lambda path, host, port, **k: serve.ServeCommand(
        ["llama-server", "-m", str(path)], f"http://{host}:{port}/v1", str(path), "llama-server"))
    serve.run("tiny", "gguf", tmp_path, port=8124, dry_run=True)
    out = capsys.readouterr().out
    # The eval stage scores model folders, so a GGUF points at its own llama-server eval instead.
    assert "--student" not in out and f"{gguf / 'eval.json'}" in out

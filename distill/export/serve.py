"""`make serve`: an OpenAI-compatible server for a student or one of its exports.

    make serve SIZE=7b                        # GPU: vllm serve out/students/7b/final --reasoning-parser deepseek_r1
    make serve SIZE=7b FORMAT=fp8 PORT=8001   # the FP8 export (vLLM reads compressed-tensors)
    make serve SIZE=tiny                      # CPU: transformers serve
    make serve SIZE=tiny FORMAT=gguf          # CPU: llama.cpp's llama-server on the q8_0 GGUF

The server is chosen by the machine: vLLM where a CUDA GPU and vllm are present, else
`transformers serve` (or llama-server for a GGUF). The URL and the `make eval` line that
evaluates through it are printed first; then the server replaces this process (Ctrl-C stops it).
The served model name is the path given here, so an eval column naming that path matches it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.config import ConfigError
from distill.paths import menu_name


@dataclass
class ServeCommand:
    argv: list[str]
    url: str
    model: str
    """The `model` a request names (what an eval column or a client must send)."""
    engine: str


def has_gpu_vllm() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def served_path(size: str, fmt: str | None, out: str | Path, student: str | Path | None = None) -> Path:
    """The model folder (or GGUF file) `make serve` serves."""
    from distill.export.run import check_format
    from distill.paths import export_dir, student_dir

    if fmt is None:
        path = Path(student) if student else student_dir(out, size) / "final"
        if not (path / "config.json").exists():
            raise ConfigError(f"no student at {path}: train it with `make student SIZE={menu_name(size)}` "
                              "(or give --student)")
        return path
    folder = export_dir(out, size, check_format(fmt))
    if not folder.is_dir():
        raise ConfigError(f"no {fmt} export at {folder}: make it with `make export SIZE={menu_name(size)} FORMAT={fmt}`")
    if fmt == "gguf":
        files = sorted(folder.glob("*-q8_0.gguf")) or sorted(folder.glob("*.gguf"))
        if not files:
            raise ConfigError(f"{folder} holds no .gguf file; rerun `make export SIZE={menu_name(size)} FORMAT=gguf`")
        return files[0]
    return folder


def serve_command(path: Path, host: str, port: int, gpu: bool | None = None, threads: int | None = None) -> ServeCommand:
    gpu = has_gpu_vllm() if gpu is None else gpu
    url = f"http://{host}:{port}/v1"
    if path.suffix == ".gguf":
        from distill.export import llama_cpp

        try:
            exe = llama_cpp.require_tool("llama-server", "serving a GGUF")
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
        # DeepSeek's sampling as the default; no top-k or min-p cut (llama.cpp's defaults are 40 and
        # 0.05), so a request's temperature/top_p mean what they mean on vLLM and transformers.
        argv = [str(exe), "-m", str(path), "--host", host, "--port", str(port), "--jinja",
                "--temp", "0.6", "--top-p", "0.95", "--top-k", "0", "--min-p", "0", "--reasoning-format", "none"]
        if threads:
            argv += ["--threads", str(threads)]
        return ServeCommand(argv, url, str(path), "llama-server")
    if gpu:
        return ServeCommand(["vllm", "serve", str(path), "--served-model-name", str(path), "--host", host,
                             "--port", str(port), "--reasoning-parser", "deepseek_r1",
                             "--generation-config", "auto"], url, str(path), "vllm")
    exe = Path(sys.executable).parent / "transformers"
    if not exe.exists():
        raise ConfigError("`transformers serve` needs the serving extra: pip install -e '.[serve]'")
    return ServeCommand([str(exe), "serve", str(path), "--host", host, "--port", str(port), "--device", "cpu"],
                        url, str(path), "transformers serve")


def run(size: str, fmt: str | None, out: str | Path, host: str = "127.0.0.1", port: int = 8000,
        student: str | Path | None = None, dry_run: bool = False) -> ServeCommand:
    path = served_path(size, fmt, out, student)
    cmd = serve_command(path, host, port)
    print(f"serving {path} with {cmd.engine} at {cmd.url} (model name: {cmd.model})")
    # --student names the served folder: the request's `model` must be that path, and another OUT
    # keeps these results apart from the hf backend's.
    if cmd.engine == "llama-server":  # the eval stage scores model folders; the GGUF's own eval ran in llama-server
        print(f"its held-out eval through llama-server: {path.parent / 'eval.json'} "
              f"(make export SIZE={menu_name(size)} FORMAT=gguf)")
    else:
        # transformers serve runs one generate per request thread: on CPU, requests in parallel only
        # fight over the cores (80 toy samples: 217 s at 64 in flight, 69 s at 1).
        one = " backend_options.concurrency=1" if cmd.engine == "transformers serve" else ""
        print(f"evaluate through it: make eval SIZE={menu_name(size)} OUT=<another out> ARGS=\"--student {path} "
              f"roles=[student] backend=openai backend_options.base_url={cmd.url}{one}\"")
    print("$ " + " ".join(cmd.argv), flush=True)
    if not dry_run:
        os.execv(cmd.argv[0] if os.path.isabs(cmd.argv[0]) else shutil.which(cmd.argv[0]) or cmd.argv[0], cmd.argv)
    return cmd


# ---------------------------------------------------------------------------------------------
# A server for the length of a block (the GGUF eval, the tests): loopback only, killed by PID after.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(argv: list[str], port: int, log_path: Path, ready_timeout: float = 180.0,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `argv`, wait for /health on 127.0.0.1:`port`, yield the /v1 URL, then stop it."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{Path(argv[0]).name} did not start: {log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()  # by PID: only the server this block started
        proc.wait()


@contextlib.contextmanager
def llama_server(gguf: Path, threads: int | None = None, parallel: int = 4, slot_tokens: int = 4096,
                 log_dir: Path | None = None) -> Iterator[str]:
    """llama-server on `gguf` with `parallel` slots of `slot_tokens` context each (prompt + completion)."""
    port = free_port()
    cmd = serve_command(Path(gguf), "127.0.0.1", port, gpu=False, threads=threads)
    log_path = Path(log_dir or Path(gguf).parent) / f"{Path(gguf).stem}.server.log"
    with running(cmd.argv + ["--parallel", str(parallel), "--ctx-size", str(parallel * slot_tokens)], port,
                 log_path) as url:
        yield url

"""llama.cpp's own tools for GGUF exports, taken from the llama-cpp-python sdist and cached outside the repo.

    python -m distill.export.llama_cpp          # download the sdist, build llama-quantize + llama-server (once)

The sdist vendors llama.cpp: `convert_hf_to_gguf.py` with its `conversion/` package and `gguf-py`
(the converter is not in the `gguf` wheel), and the C++ sources of `llama-quantize` (needed for the
4-bit types) and `llama-server` (runs a GGUF on CPU for the export's eval and `make serve`).
Everything lands in ~/.cache/distill/llama.cpp (DISTILL_LLAMA_CPP moves it); nothing enters the repo.

Measured on the 2-core dev machine shared with other work (load 5-11): the sdist download took
4 min; the build of both tools (cmake -j2, Ninja, 210 steps) took about half an hour, in two parts.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SDIST = "llama-cpp-python==0.3.36"
TOOLS = ("llama-quantize", "llama-server")
SETUP = f"{Path(sys.executable).parent / 'python'} -m distill.export.llama_cpp"


def root() -> Path:
    return Path(os.environ.get("DISTILL_LLAMA_CPP", Path.home() / ".cache" / "distill" / "llama.cpp"))


def source() -> Path | None:
    """The vendored llama.cpp folder (convert_hf_to_gguf.py, conversion/, gguf-py/), or None."""
    found = sorted(root().glob("src/llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    return found[-1].parent if found else None


def tool(name: str) -> Path | None:
    path = root() / "build" / "bin" / name
    return path if path.exists() and os.access(path, os.X_OK) else None


def require_source() -> Path:
    src = source()
    if src is None:
        raise FileNotFoundError(
            f"FORMAT=gguf needs llama.cpp's converter (convert_hf_to_gguf.py), which the gguf package does not ship. "
            f"Fetch it once (llama-cpp-python's sdist vendors llama.cpp; cached in {root()}): {SETUP}")
    return src


def require_tool(name: str, why: str) -> Path:
    path = tool(name)
    if path is None:
        compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
        fix = (f"build it once with {SETUP} (needs cmake and a C++ compiler)" if compiler and shutil.which("cmake")
               else "install cmake and a C++ compiler (apt-get install cmake g++), then run " + SETUP)
        raise FileNotFoundError(f"{why} needs llama.cpp's {name}, not built in {root() / 'build' / 'bin'}: {fix}")
    return path


def download() -> Path:
    """Fetch and unpack the sdist (pip download: the registry's ordinary client)."""
    if source() is not None:
        return source()
    dest = root() / "src"
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                    "-d", str(dest)], check=True)
    archive = sorted(dest.glob("llama_cpp_python-*.tar.gz"))[-1]
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return require_source()


def build(jobs: int = 2) -> dict[str, float]:
    """Configure and build llama-quantize and llama-server (CPU only, static); returns seconds per step."""
    for exe in ("cmake", "ninja"):
        if shutil.which(exe) is None and exe == "cmake":
            raise FileNotFoundError("building llama.cpp needs cmake and a C++ compiler: apt-get install cmake g++")
    src, out = download(), root() / "build"
    times: dict[str, float] = {}
    start = time.monotonic()
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    # Portable x86 build (no -march=native: the cache may move between machines), no curl (no hub).
    subprocess.run(["cmake", "-S", str(src), "-B", str(out), *generator, "-DCMAKE_BUILD_TYPE=Release",
                    "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
                    "-DBUILD_SHARED_LIBS=OFF"], check=True)
    times["configure_s"] = time.monotonic() - start
    subprocess.run(["cmake", "--build", str(out), f"-j{jobs}", "--target", *TOOLS], check=True)
    times["build_s"] = time.monotonic() - start - times["configure_s"]
    return times


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    download()
    print(f"llama.cpp source: {source()} ({time.monotonic() - start:.0f} s)")
    if all(tool(t) for t in TOOLS):
        print(f"already built: {', '.join(str(tool(t)) for t in TOOLS)}")
        return 0
    times = build(int(os.environ.get("JOBS", "2")))
    print(f"built {', '.join(str(tool(t)) for t in TOOLS)} in {times['build_s']:.0f} s "
          f"(configure {times['configure_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

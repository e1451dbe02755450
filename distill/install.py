"""Create the virtualenv and install distill into it: `python3 distill/install.py .venv` (`make install`).

Standard library only: it runs before anything is installed. Torch goes in first and alone,
because letting pip resolve it through trl/transformers pulls the newest CUDA build (several GB)
even on a CPU machine. A CUDA torch that the system Python already has is kept: the venv then
sees the system site-packages. Set TORCH_SPEC to choose another torch (e.g. 'torch==2.6.0').

On a machine with `nvidia-smi` the `gpu` extra goes in too (deepspeed, flash-attn, liger-kernel:
what students/*.yaml assume). flash-attn must match torch and CUDA: pip builds it without
isolation against the torch already here, using a prebuilt wheel when one matches and compiling
otherwise (long; MAX_JOBS bounds its memory). When that fails the install goes on without it and
says so: training then falls back to sdpa without padding-free, with a warning, at lower speed.
FLASH_ATTN_SPEC=<wheel URL or spec> installs a wheel you picked instead; FLASH_ATTN_SPEC=none skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CPU_TORCH = "torch==2.13.0"  # the release whose CPU wheel our CI machines carry
EXTRAS = "[dev,serve,export]"  # export: compressed-tensors and gguf (small, pure Python), so make export works as shown
# The gpu extra of pyproject.toml, by package: flash-attn goes alone (it builds against the installed
# torch, so without build isolation, and may fail); a test keeps these equal to the extra.
FLASH_ATTN = "flash-attn>=2.7"
GPU_PACKAGES = ("deepspeed>=0.16", "liger-kernel>=0.5")
FLASH_ATTN_FALLBACK = (
    "install: flash-attn did not install (it needs a wheel or a build matching this torch and CUDA). distill works "
    "without it: GPU presets fall back to sdpa without padding-free, with a warning, and train slower. To add it: "
    "FLASH_ATTN_SPEC=<the wheel from github.com/Dao-AILab/flash-attention/releases matching torch, CUDA and Python> "
    "make install (after rm .venv/.installed)."
)


def works(python: str | Path, code: str) -> bool:
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def main(venv_dir: str = ".venv") -> None:
    venv = Path(venv_dir)
    root = Path(__file__).resolve().parents[1]
    python = venv / "bin" / "python"
    if not python.exists():
        keep_cuda = works(sys.executable, "import torch; assert torch.cuda.is_available()")
        if keep_cuda:
            print("install: keeping the system's CUDA torch (venv with --system-site-packages)")
        subprocess.check_call([sys.executable, "-m", "venv", *(["--system-site-packages"] if keep_cuda else []), str(venv)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
    if not works(python, "import torch"):
        spec = os.environ.get("TORCH_SPEC") or ("torch" if shutil.which("nvidia-smi") else CPU_TORCH)
        print(f"install: {spec}")
        subprocess.check_call([*pip, spec])
    extras = EXTRAS
    if shutil.which("nvidia-smi"):
        if install_flash_attn(pip):
            extras = EXTRAS.replace("]", ",gpu]")  # flash-attn is in: the extra resolves as a whole
        else:
            print(FLASH_ATTN_FALLBACK)
            print(f"install: {' '.join(GPU_PACKAGES)} (the gpu extra without flash-attn)")
            subprocess.check_call([*pip, *GPU_PACKAGES])
    print(f"install: distill{extras} (editable)")
    subprocess.check_call([*pip, "-e", f"{root}{extras}"], cwd=root)
    (venv / ".installed").touch()


def install_flash_attn(pip: list[str]) -> bool:
    """flash-attn built against the torch in the venv (no build isolation); False when it fails or is skipped."""
    spec = os.environ.get("FLASH_ATTN_SPEC") or FLASH_ATTN
    if spec.lower() == "none":
        return False
    print(f"install: {spec} (no build isolation: it compiles against this torch unless a prebuilt wheel matches)")
    try:
        subprocess.check_call([*pip, "packaging", "ninja", "wheel", "psutil"])
        subprocess.check_call([*pip, "--no-build-isolation", spec])
    except subprocess.CalledProcessError:
        return False
    return True


if __name__ == "__main__":
    main(*sys.argv[1:])

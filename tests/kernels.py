"""Which CPU kernels computed a test's floats, and how to make this machine run another
CPU's kernels.

Users run sparsebench on x86-64 with AVX-512 or with AVX2 only, and on aarch64: PyTorch,
oneDNN and MKL pick their kernels by the instruction set, and floats summed in another
order differ in their last bits. The variables below make this machine run the kernels
of another CPU, so that a test recorded on one CPU is checked on others before a user
finds the difference (`.ci/run` runs the float-sensitive tests again under `SECOND`).
"""

from __future__ import annotations

import os
import platform
import re
import sys

import torch

# Each selects one instruction set for ATen's own kernels, oneDNN (convolutions) and MKL
# (matrix products); a set above what the CPU has falls back to the best it has.
VARIANTS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "sse": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    },
}
SECOND = "sse"  # differs from the native kernels on every x86-64 CPU


def environment() -> dict[str, str]:
    """What decides a float's last bits here: versions, instruction sets, dtype."""
    onednn = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    return {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": onednn.group(1) if onednn else "absent",
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
        "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "unset"),
        "default_dtype": str(torch.get_default_dtype()).removeprefix("torch."),
    }


def describe(env: dict[str, str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in env.items())


def main(argv: list[str]) -> None:
    """`python tests/kernels.py VARIANT [PYTEST ARGS]`: pytest under VARIANT's kernels."""
    if not argv or argv[0] not in VARIANTS:
        sys.exit(f"usage: python tests/kernels.py {{{','.join(VARIANTS)}}} [pytest arguments]")
    env = {**os.environ, **VARIANTS[argv[0]]}
    os.execvpe(sys.executable, [sys.executable, "-m", "pytest", *argv[1:]], env)


if __name__ == "__main__":
    main(sys.argv[1:])

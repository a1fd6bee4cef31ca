"""What produced a result: the release and the numerics of sparsebench, the torch build,
the CPU kernels it dispatched to, the machine and the memory layout. Stored with every
finished run, so results from different numerics are never pooled silently: floats
computed by other kernels differ in their last bits, and training amplifies that."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch


def provenance(numerics: int, memory_layout: str, device: torch.device) -> dict[str, Any]:
    """The producer of a run trained in this process."""
    return {
        "release": _release(),
        "numerics": numerics,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "kernel_limits": {
            name: os.environ[name]
            for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
            if name in os.environ
        },
        "machine": platform.machine(),
        "processor": _processor(),
        "threads": torch.get_num_threads(),
        "memory_layout": memory_layout,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


@cache
def _release() -> str:
    """The installed version, with the commit when it runs from a git checkout."""
    try:
        version = metadata.version("sparsebench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return version
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{commit}" if commit else version


@cache
def _processor() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

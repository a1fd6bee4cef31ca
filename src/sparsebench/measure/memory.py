"""Peak memory of a window of work: the CUDA allocator's peak on a GPU, the process's
peak resident set size (VmHWM) on a CPU, both reset at the start of each window."""

from __future__ import annotations

from pathlib import Path

import psutil
import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


class PeakMemory:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda-allocated" if device.type == "cuda" else "cpu-rss"
        self._fallback_peak = 0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            # Writing 5 resets the kernel's high-water mark of resident memory (VmHWM).
            _CLEAR_REFS.write_text("5")
        except OSError:
            self._fallback_peak = 0

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        # Without /proc, the current RSS is the best reading (sampled at the window's end).
        self._fallback_peak = max(self._fallback_peak, psutil.Process().memory_info().rss)
        return self._fallback_peak

"""Energy in joules through Zeus: NVML on NVIDIA GPUs, RAPL on Linux CPUs.

Energy is measured or recorded as missing with the reason, never guessed: a reading is
an `EnergyReading` with `joules=None` and `missing_reason` set when no sensor answers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EnergyReading:
    joules: float | None
    source: str | None  # "gpu", "cpu-rapl" or None when missing
    missing_reason: str | None = None

    def as_dict(self) -> dict:
        return {
            "energy_j": self.joules,
            "energy_source": self.source,
            "energy_missing_reason": self.missing_reason,
        }


class EnergyMeter:
    """Measures windows of work on `device`: the GPU's energy on CUDA, the CPU package's
    energy (RAPL) otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.monitor = None
        self.source: str | None = None
        self.missing_reason: str | None = None
        self._counter = 0
        self._open: str | None = None
        try:
            self._start_monitor()
        except Exception as error:  # Zeus raises a variety of init errors per platform
            self.monitor, self.source = None, None
            self.missing_reason = f"no energy sensor: {type(error).__name__}: {error}"

    def _start_monitor(self) -> None:
        # Zeus logs its device probing at INFO; the reason is kept in `missing_reason`.
        logging.getLogger("zeus").setLevel(logging.WARNING)
        from zeus.monitor import ZeusMonitor

        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else 0
            self.monitor = ZeusMonitor(
                gpu_indices=[index], cpu_indices=[], sync_execution_with="torch"
            )
            self.source = "gpu"
            return
        from zeus.device.cpu.rapl import rapl_is_available

        if not rapl_is_available():
            self.missing_reason = (
                "RAPL is not readable on this machine (/sys/class/powercap/intel-rapl "
                "is absent or not permitted)"
            )
            return
        self.monitor = ZeusMonitor(gpu_indices=[], cpu_indices=[0])
        self.source = "cpu-rapl"

    @property
    def available(self) -> bool:
        return self.monitor is not None

    def begin(self) -> None:
        if self.monitor is None:
            return
        self._counter += 1
        self._open = f"sparsebench-{self._counter}-{time.monotonic_ns()}"
        self.monitor.begin_window(self._open, sync_execution=True)

    def end(self) -> EnergyReading:
        if self.monitor is None or self._open is None:
            return EnergyReading(None, None, self.missing_reason)
        measurement = self.monitor.end_window(self._open, sync_execution=True)
        self._open = None
        if self.source == "gpu":
            joules = float(sum(measurement.gpu_energy.values()))
        else:
            joules = float(sum(measurement.cpu_energy.values()))
            joules += float(sum((measurement.dram_energy or {}).values()))
        return EnergyReading(joules, self.source)

"""Timing calls side by side, for benchmarks and for choices made by measuring (how to
store a linear layer, which memory layout a compact network runs in)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
) -> dict[str, list[float]]:
    """Seconds per call of each variant, taking turns call by call, so that a change in
    the machine's load or clock hits every variant alike."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def fastest(calls: dict[str, Callable[[], object]], repeats: int = 5) -> str:
    """The name of the call with the lowest median time, timed side by side."""
    seconds = time_interleaved(calls, repeats, warmup=2)
    return min(seconds, key=lambda name: statistics.median(seconds[name]))

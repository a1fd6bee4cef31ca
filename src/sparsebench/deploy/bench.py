"""Inference benchmark on the CPU: the masked network (pruned weights kept in place, as
the study deployed it), the compact PyTorch network, and the compact network under ONNX
Runtime in float32 and int8. Latency (median, p95) and throughput after warm-up, energy
per inference where RAPL is readable, and the speedup over masked next to the MAC ratio.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparsebench.deploy.compact import compact_model
from sparsebench.deploy.export import export_onnx, onnx_session, quantize_int8
from sparsebench.deploy.linear_storage import LinearStorage
from sparsebench.measure.counting import count_model
from sparsebench.measure.energy import EnergyMeter
from sparsebench.measure.timing import time_interleaved

VARIANTS = ("masked", "compact", "onnx-float", "onnx-int8")


@dataclass
class BenchRow:
    variant: str
    batch_size: int
    threads: int
    latency_median_ms: float
    latency_p95_ms: float
    throughput_per_s: float
    macs_per_sample: int
    energy_per_inference_j: float | None
    energy_source: str | None
    energy_missing_reason: str | None
    speedup: float = 1.0
    mac_ratio: float = 1.0

    @property
    def efficiency(self) -> float:
        return self.speedup / self.mac_ratio

    def as_dict(self) -> dict:
        return {**asdict(self), "efficiency": self.efficiency}


def energy_per_call(meter: EnergyMeter, call: Callable[[], object], repeats: int):
    """Joules per call over `repeats` calls (its own window), or the missing reading."""
    meter.begin()
    for _ in range(repeats):
        call()
    return meter.end()


def benchmark_models(
    masked: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch_sizes: list[int],
    threads: list[int],
    repeats: int = 20,
    calibration: list[torch.Tensor] | None = None,
    linear: LinearStorage = "auto",
    variants: tuple[str, ...] = VARIANTS,
) -> tuple[list[BenchRow], float]:
    """Rows for every variant, batch size and thread count, and the largest relative
    output difference between the compact and the masked network."""
    masked = masked.eval().cpu()
    compact = compact_model(masked, linear=linear, input_shape=input_shape)
    # ONNX has no CSR matmul
    onnx_compact = compact_model(masked, linear="dense", input_shape=input_shape)
    probe = torch.randn(8, *input_shape)
    with torch.inference_mode():
        reference = masked(probe)
        difference = float((compact(probe) - reference).abs().max() / reference.abs().max())
    macs = {
        "masked": count_model(masked, input_shape).macs_dense,
        "compact": count_model(compact, input_shape).macs_dense,
    }
    macs["onnx-float"] = macs["onnx-int8"] = count_model(onnx_compact, input_shape).macs_dense
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory() as folder:
        runners = {"masked": _torch_runner(masked), "compact": _torch_runner(compact)}
        if "onnx-float" in variants or "onnx-int8" in variants:
            float_path = export_onnx(onnx_compact, probe[:2], Path(folder) / "model.onnx")
            runners["onnx-float"] = _onnx_runner(float_path)
            if "onnx-int8" in variants:
                batches = calibration or [torch.randn(16, *input_shape) for _ in range(4)]
                int8_path = quantize_int8(float_path, Path(folder) / "model.int8.onnx", batches)
                runners["onnx-int8"] = _onnx_runner(int8_path)
        meter = EnergyMeter(torch.device("cpu"))
        previous_threads = torch.get_num_threads()
        try:
            for n_threads in threads:
                for batch_size in batch_sizes:
                    x = torch.randn(batch_size, *input_shape)
                    calls = {variant: runners[variant](x, n_threads) for variant in variants}
                    rows += _measure(calls, macs, Shape(batch_size, n_threads), repeats, meter)
                    del calls
        finally:
            torch.set_num_threads(previous_threads)
    return rows, difference


Runner = Callable[[torch.Tensor, int], Callable[[], object]]


@dataclass(frozen=True)
class Shape:
    """One cell of the benchmark grid."""

    batch_size: int
    threads: int


def _torch_runner(model: nn.Module) -> Runner:
    def prepare(x: torch.Tensor, n_threads: int) -> Callable[[], object]:
        torch.set_num_threads(n_threads)
        return lambda: _torch_forward(model, x)

    return prepare


def _measure(
    calls: dict[str, Callable[[], object]],
    macs: dict[str, float],
    shape: Shape,
    repeats: int,
    meter: EnergyMeter,
) -> list[BenchRow]:
    """One row per variant of one batch size and thread count, timed taking turns, with
    its speedup and MAC ratio over the masked network's."""
    timings = time_interleaved(calls, repeats)
    group = []
    for variant, call in calls.items():
        seconds = timings[variant]
        reading = energy_per_call(meter, call, repeats) if meter.available else meter.end()
        median = statistics.median(seconds)
        energy = None
        if reading.joules is not None:
            energy = reading.joules / (repeats * shape.batch_size)
        group.append(
            BenchRow(
                variant,
                shape.batch_size,
                shape.threads,
                median * 1e3,
                float(np.percentile(seconds, 95)) * 1e3,
                shape.batch_size / median,
                macs[variant],
                energy,
                reading.source,
                reading.missing_reason,
            )
        )
    base = next((r for r in group if r.variant == "masked"), group[0])
    for row in group:
        row.speedup = base.latency_median_ms / row.latency_median_ms
        row.mac_ratio = base.macs_per_sample / row.macs_per_sample
    return group


def _torch_forward(model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        model(x)


def _onnx_runner(path: Path):
    def prepare(x: torch.Tensor, n_threads: int):
        session = onnx_session(path, threads=n_threads)
        feed = {"images": x.contiguous().numpy()}
        return lambda: session.run(None, feed)

    return prepare


def bench_subject(
    model_name: str,
    method: str,
    scenario: str,
    width: float,
    image_size: int,
    seed: int = 0,
    linear_granularity: str = "weight",
) -> tuple[nn.Module, tuple[int, int, int], str]:
    """A freshly initialised network masked as a run of `method` ends (its final
    sparsity, drawn from the initial weights: for speed alone), its input shape and a
    label for it; `linear_granularity="neuron"`
    prunes whole neurons of the hidden linear layers."""
    from sparsebench.models import build_model
    from sparsebench.sparsity import METHODS, SparsityTargets, make_method, scenario_targets
    from sparsebench.sparsity.methods import is_baseline

    targets = SparsityTargets(0.0, 0.0) if is_baseline(method) else scenario_targets(scenario)
    shape = (10, 3, image_size, image_size)
    built = METHODS[method].network_width(model_name, width, targets, shape)
    torch.manual_seed(seed)
    model = build_model(model_name, num_classes=10, image_size=image_size, width=built)
    pruning = make_method(method, targets, seed=seed, linear_granularity=linear_granularity)
    pruning.prune_untrained(model, (3, image_size, image_size))
    label = f"{model_name} x{width:g} {image_size}px {method} {scenario}"
    if linear_granularity != "weight":
        label += f" linear {linear_granularity}s"
    return model.eval(), (3, image_size, image_size), label

"""Sweep throughput with 1 worker and with 2 workers (one torch thread each), measured
side by side in this one process run.

The same small grid (ResNet18 at width 0.25 on the generated data set, `dense`, `pre`,
`in` and `set` in the `mixed` scenario, several seeds) is swept from scratch into a fresh
database by each configuration in turn, `--rounds` times in alternating order so load
drift on a shared machine hits both alike. Throughput is runs per minute of wall time,
process start-up and data loading included; the ratio is the median over rounds.

    python benchmarks/sweep_scaling.py [--seeds 4] [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sparsebench.config import SweepConfig
from sparsebench.store import ResultsStore
from sparsebench.sweep.executors import LocalExecutor, available_cpus
from sparsebench.sweep.plan import expand_grid, plan_sweep
from sparsebench.sweep.runner import run_sweep


def grid(seeds: int, epochs: int) -> SweepConfig:
    return SweepConfig(
        name="scaling",
        models=["resnet18"],
        datasets=[{"dataset": "synthetic"}],
        methods=["dense", "pre", "in", "set"],
        scenarios=["mixed"],
        seeds=list(range(seeds)),
        training={"width": 0.25, "epochs": epochs, "batch_size": 64, "lr": 2e-3, "device": "cpu"},
    )


def sweep_seconds(sweep: SweepConfig, workers: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as folder, ResultsStore(Path(folder) / "r.db") as store:
        planned = plan_sweep(expand_grid(sweep), store, Path(folder) / "runs")
        started = time.perf_counter()
        state = run_sweep(
            planned, store, Path(folder) / "runs", LocalExecutor(workers, threads_per_run=1)
        )
        elapsed = time.perf_counter() - started
    if state.failed:
        raise SystemExit(f"runs failed: {state.failed}")
    return elapsed, len(state.finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    sweep = grid(args.seeds, args.epochs)
    print(
        f"{platform.processor() or platform.machine()}, {available_cpus()} cores, "
        f"torch {torch.__version__}; {len(expand_grid(sweep))} runs per sweep"
    )
    ratios = []
    for round_ in range(args.rounds):
        order = (1, 2) if round_ % 2 == 0 else (2, 1)
        seconds = {}
        for workers in order:
            seconds[workers], runs = sweep_seconds(sweep, workers)
            print(
                f"round {round_ + 1}: {workers} worker(s): {runs} runs in "
                f"{seconds[workers]:.1f} s = {60 * runs / seconds[workers]:.1f} runs/min"
            )
        ratios.append(seconds[1] / seconds[2])
        print(f"round {round_ + 1}: throughput 2 workers / 1 worker = {ratios[-1]:.2f}")
    print(f"median throughput ratio, 2 workers / 1 worker: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()

"""Sweep throughput with 1 worker and with 2 workers (one torch thread each), measured
side by side in this one process run; and, for reference, 1 worker using both cores
(2 torch threads, what `--workers 1` does by default on this machine).

The same small grid (ResNet18 at width 0.25 on the generated data set, `dense`, `pre`,
`in` and `set` in the `mixed` scenario, several seeds) is swept from scratch into a fresh
database by each configuration in turn, `--rounds` times in alternating order so load
drift on a shared machine hits both alike. Throughput is runs per minute of wall time,
process start-up and data loading included; the ratio is the median over rounds.

    python benchmarks/sweep_scaling.py [--seeds 4] [--epochs 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sparsebench.store import ResultsStore
from sparsebench.sweep.executors import LocalExecutor, available_cpus
from sparsebench.sweep.plan import expand_grid, plan_sweep
from sparsebench.sweep.runner import run_sweep
from sparsebench.sweep.settings import SweepConfig


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


# (workers, torch threads per run)
SETUPS = ((1, 1), (2, 1), (1, 2))


def sweep_seconds(sweep: SweepConfig, workers: int, threads: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as folder, ResultsStore(Path(folder) / "r.db") as store:
        planned = plan_sweep(expand_grid(sweep), store, Path(folder) / "runs")
        started = time.perf_counter()
        state = run_sweep(
            planned, store, Path(folder) / "runs", LocalExecutor(workers, threads_per_run=threads)
        )
        elapsed = time.perf_counter() - started
    if state.failed:
        raise SystemExit(f"runs failed: {state.failed}")
    return elapsed, len(state.finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sweep = grid(args.seeds, args.epochs)
    print(
        f"{platform.processor() or platform.machine()}, {available_cpus()} cores, "
        f"torch {torch.__version__}; {len(expand_grid(sweep))} runs per sweep"
    )
    ratios: dict[tuple[int, int], list[float]] = {setup: [] for setup in SETUPS[1:]}
    for round_ in range(args.rounds):
        order = SETUPS if round_ % 2 == 0 else SETUPS[::-1]
        seconds = {}
        for workers, threads in order:
            seconds[workers, threads], runs = sweep_seconds(sweep, workers, threads)
            print(
                f"round {round_ + 1}: {workers} worker(s) x {threads} thread(s): {runs} runs "
                f"in {seconds[workers, threads]:.1f} s = "
                f"{60 * runs / seconds[workers, threads]:.1f} runs/min"
            )
        for setup in ratios:
            ratios[setup].append(seconds[SETUPS[0]] / seconds[setup])
    for (workers, threads), values in ratios.items():
        print(
            f"throughput of {workers} worker(s) x {threads} thread(s) over 1 worker x 1 thread: "
            f"median {statistics.median(values):.2f} (rounds: "
            f"{', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()

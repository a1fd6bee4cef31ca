"""The demo: every method on real industrial images (ELPV solar cells), offline, on a CPU.

It trains `dense`, `pre`, `in`, `post` and `set` under the study's `mixed` scenario on a
CPU-sized ResNet18 and compares them. Runs go to the results database like any other, so
a second `sparsebench demo` reuses what is finished and resumes what was interrupted.
"""

from __future__ import annotations

from typing import Any

from sparsebench.train.config import RunConfig

METHODS = ("dense", "pre", "in", "post", "set")


def demo_configs(quick: bool = False) -> list[RunConfig]:
    """The demo's runs. Full: ~5 minutes on 2 cores; quick: under a minute of training.

    The learning rate is 1e-3 rather than the study's 1e-4 so that a few epochs show
    the methods apart; everything else follows the study's protocol.
    """
    shape = (
        {"width": 0.125, "image_size": 32, "epochs": 2}
        if quick
        else {"width": 0.25, "image_size": 48, "epochs": 6}
    )
    return [
        RunConfig(
            model="resnet18",
            dataset="elpv",
            method=method,
            scenario=None if method == "dense" else "mixed",
            lr=1e-3,
            seed=0,
            device="cpu",
            **shape,
        )
        for method in METHODS
    ]


def demo_row(summary: dict[str, Any]) -> dict[str, Any]:
    """One method's line of the demo table."""
    epochs, test = summary["epochs"], summary["test"]
    energies = [row["energy_j"] for row in epochs]
    missing = next(
        (row["energy_missing_reason"] for row in epochs if row["energy_j"] is None), None
    )
    by_kind = summary["sparsity"]["by_kind"]
    return {
        "method": summary["config"]["method"],
        "run_id": summary["run_id"],
        "accuracy": test["accuracy"],
        "f1": test["f1"],
        "train_time_s": sum(row["train_time_s"] for row in epochs),
        "peak_memory_mib": max(row["peak_memory_bytes"] for row in epochs) / 2**20,
        "energy_j": None if missing else sum(energies),
        "energy_missing_reason": missing,
        "inference_ms": test["inference_time_per_sample_s"] * 1e3,
        "sparsity_conv": by_kind.get("conv", 0.0),
        "sparsity_linear": by_kind.get("linear", 0.0),
    }

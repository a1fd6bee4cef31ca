"""The study's methods, pinned: per-epoch metrics and final masks of small seeded runs.
Any change to how a study method trains shows up here as a difference.

The runs train in float64 (the `float64` fixture says why): recorded on one CPU, their
floats agree with another CPU's kernels to the spread that the fixture file records,
measured across instruction sets, and are compared with the tolerance derived from it.
Masks, counts and accuracies (a share of a whole number of samples) are compared exactly.

`python tests/fixtures/record_study_methods.py` records the file again, under every
kernel variant of `kernels.py`: only for a deliberate change of what a method computes.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from kernels import describe, environment

from sparsebench.data.synthetic import make_synthetic
from sparsebench.train import RunConfig
from sparsebench.train.loop import train_run

FIXTURE = Path(__file__).parent / "fixtures" / "study_methods.json"

CASES = {
    "dense": {"method": "dense"},
    "pre-mixed": {"method": "pre", "scenario": "mixed"},
    "in-mixed": {"method": "in", "scenario": "mixed"},
    "in-uniform": {"method": "in", "scenario": "uniform"},
    "set-mixed": {"method": "set", "scenario": "mixed"},
    "set-erk-linear-only": {"method": "set", "scenario": "linear-only", "allocation": "erk"},
    "post-mixed": {"method": "post", "scenario": "mixed"},
    "post-fine-tune": {"method": "post", "scenario": "uniform", "fine_tune_epochs": 1},
    "pre-vgg16-mixed": {"method": "pre", "scenario": "mixed", "model": "vgg16"},
    "set-vgg16-uniform": {"method": "set", "scenario": "uniform", "model": "vgg16"},
}
EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1")
EXACT_KEYS = ("train_accuracy", "val_accuracy")

pytestmark = pytest.mark.kernels


def run_case(settings: dict, folder: Path) -> dict[str, Any]:
    """One case's outcome; call it with float64 as the default dtype."""
    config = RunConfig(
        **{
            "preset": "study",  # the study's recipe: constant Adam, no augmentation
            "model": "resnet18",
            "width": 0.125,
            "dataset": "synthetic",
            "epochs": 3,
            "batch_size": 32,
            "lr": 0.002,
            "seed": 3,
            "device": "cpu",
            "execution": "masked",  # what the study computed; compact is tested against it
            **settings,
        }
    )
    data = make_synthetic(seed=3, samples=(256, 64, 64))
    result = train_run(config, data, folder / "checkpoint.pt")
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    masks = {  # units alive, and a digest of which: equal digests, equal masks
        name: [int(keep.sum()), hashlib.sha256(keep.flatten().numpy().tobytes()).hexdigest()]
        for name, keep in state["method"]["masks"].items()
    }
    return {
        "epochs": [{key: getattr(row, key) for key in EPOCH_KEYS} for row in result.epochs],
        "test": {"accuracy": result.test.accuracy, "loss": result.test.loss},
        "masks": masks,
    }


def record() -> dict[str, Any]:
    """Every case's outcome on this machine's kernels, in float64 on one thread."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as folder:
            cases = {
                name: run_case(settings, Path(folder) / name) for name, settings in CASES.items()
            }
        return {"environment": environment(), "cases": cases}
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)


def float_values(outcome: dict[str, Any]) -> dict[str, float]:
    """Every float of an outcome under a name that says where it is."""
    values = {
        f"epoch {epoch + 1} {key}": value
        for epoch, row in enumerate(outcome["epochs"])
        for key, value in row.items()
    }
    values.update({f"test {key}": value for key, value in outcome["test"].items()})
    return values


def relative_difference(value: float, expected: float) -> float:
    return abs(value - expected) / max(abs(expected), 1.0)


@pytest.fixture(scope="module")
def recorded() -> dict:
    if not FIXTURE.is_file():
        pytest.fail(f"{FIXTURE} is missing: record it with tests/fixtures/record_study_methods.py")
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_a_study_method_computes_what_it_computed(case, recorded, tmp_path, float64):
    outcome = run_case(CASES[case], tmp_path)
    expected = recorded["cases"][case]
    tolerance = recorded["tolerance"]
    where = (
        f"case {case}: here ({describe(environment())}) against the recording "
        f"({describe(recorded['environment'])})"
    )
    assert outcome["masks"] == expected["masks"], f"{where}: other masks"
    values, expected_values = float_values(outcome), float_values(expected)
    assert values.keys() == expected_values.keys(), f"{where}: other epochs"
    for name, value in values.items():
        if name.endswith(EXACT_KEYS) or name == "test accuracy":
            assert value == expected_values[name], (
                f"{where}: {name} {value} != {expected_values[name]}"
            )
        else:
            difference = relative_difference(value, expected_values[name])
            assert difference <= tolerance and math.isfinite(value), (
                f"{where}: {name} {value!r} against {expected_values[name]!r}, relative "
                f"difference {difference:.1e} > {tolerance:.0e} (the spread measured across "
                f"kernels was {recorded['spread']['largest_relative_difference']:.1e})"
            )

"""The study's methods, pinned: per-epoch metrics and final masks of small seeded CPU runs,
recorded before the methods were re-expressed as compositions. Any change to how a study
method trains shows up here as a difference, to the last bit.

`SPARSEBENCH_RECORD_FIXTURES=1 pytest tests/test_study_methods_fixture.py` records the
file again: only for a deliberate change of what a study method computes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from sparsebench.data.synthetic import make_synthetic
from sparsebench.train import RunConfig
from sparsebench.train.loop import train_run

FIXTURE = Path(__file__).parent / "fixtures" / "study_methods.json"
RECORD = os.environ.get("SPARSEBENCH_RECORD_FIXTURES") == "1"

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


def run_case(settings: dict, folder: Path) -> dict:
    config = RunConfig(
        **{
            "model": "resnet18",
            "width": 0.125,
            "dataset": "synthetic",
            "epochs": 3,
            "batch_size": 64,
            "lr": 0.002,
            "seed": 3,
            "device": "cpu",
            "execution": "masked",  # what the study computed; compact is tested against it
            **settings,
        }
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a run's floats depend on its thread count
    try:
        result = train_run(config, make_synthetic(seed=3), folder / "checkpoint.pt")
    finally:
        torch.set_num_threads(threads)
    state = torch.load(folder / "checkpoint.pt", weights_only=True)
    masks = {  # units alive, and a digest of which: equal digests, equal masks
        name: [int(keep.sum()), hashlib.sha256(keep.flatten().numpy().tobytes()).hexdigest()]
        for name, keep in state["method"]["masks"].items()
    }
    return {
        "epochs": [[row[key] for key in EPOCH_KEYS] for row in result.epochs],
        "test": [result.test["accuracy"], result.test["loss"]],
        "masks": masks,
    }


@pytest.fixture(scope="module")
def recorded() -> dict:
    if RECORD:
        return {}
    if not FIXTURE.is_file():
        pytest.fail(f"{FIXTURE} is missing: record it with SPARSEBENCH_RECORD_FIXTURES=1")
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_a_study_method_computes_what_it_computed(case, recorded, tmp_path):
    outcome = run_case(CASES[case], tmp_path)
    if RECORD:
        document = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {}
        document[case] = outcome
        FIXTURE.parent.mkdir(exist_ok=True)
        FIXTURE.write_text(json.dumps(document, sort_keys=True) + "\n")
        return
    expected = recorded[case]
    assert outcome["epochs"] == expected["epochs"]
    assert outcome["test"] == expected["test"]
    assert outcome["masks"] == expected["masks"]

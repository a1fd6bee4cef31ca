"""AUROC and average precision for two-class data: by hand, which class is positive,
and shown for every run of two-class data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import cli_json
from test_image_data import class_tree
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import InputError
from sparsebench.ranking import positive_index, ranking_metrics
from sparsebench.train.metrics import MetricAccumulator


def test_auroc_and_average_precision_by_hand():
    # ranked: defect 0.9, good 0.8, defect 0.4, good 0.3, good 0.2.
    # AUROC: of the 6 (defect, good) pairs the defect ranks higher in 3 + 2 = 5.
    # AP: precision 1/1 at the first defect, 2/3 at the second, each half the recall.
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 1, 0, 0])
    metrics = ranking_metrics(scores, labels, positive=1)
    assert metrics["auroc"] == pytest.approx(5 / 6)
    assert metrics["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_a_tie_counts_half_and_one_class_has_no_ranking():
    # the defect ties with one good image (1/2) and beats the other (1): 3/4
    metrics = ranking_metrics(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0]), positive=1)
    assert metrics["auroc"] == pytest.approx(0.75)
    assert ranking_metrics(np.array([0.3, 0.7]), np.array([0, 0]), positive=1) == {
        "auroc": None,
        "average_precision": None,
    }


def test_the_accumulator_ranks_by_the_probability_of_the_positive_class():
    # logits (good, defect); class 0 positive: its probability falls as the defect
    # logit rises, so image 2 ranks first, then 0, then 3, then 1.
    logits = torch.tensor([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 0, 1])
    accumulator = MetricAccumulator(2, torch.device("cpu"), positive=0)
    accumulator.add(logits[:2], labels[:2], torch.tensor(0.0))
    accumulator.add(logits[2:], labels[2:], torch.tensor(0.0))
    assert accumulator.ranking() == {"auroc": 1.0, "average_precision": 1.0}
    # the same images with the defect positive: also a perfect ranking
    defect = MetricAccumulator(2, torch.device("cpu"), positive=1)
    defect.add(logits, labels, torch.tensor(0.0))
    assert defect.ranking() == {"auroc": 1.0, "average_precision": 1.0}
    assert MetricAccumulator(2, torch.device("cpu")).ranking()["auroc"] is None


@pytest.mark.parametrize(
    ("names", "counts", "chosen", "expected"),
    [
        (["normal", "anomaly"], [900, 100], None, 1),  # named a defect
        (["bad", "good"], [10, 90], None, 0),
        (["Defective", "functional"], [700, 300], None, 0),  # the name, not the count
        (["ok", "scratch"], [300, 30], None, 1),  # the rarer in training
        (["ok", "scratch"], [30, 300], None, 0),
        (["left", "right"], [50, 50], None, 1),  # a tie: the second
        (["ok", "scratch"], [30, 300], "scratch", 1),  # the user's word
        (["a", "b", "c"], [1, 2, 3], None, None),  # more classes: none
    ],
)
def test_which_class_is_positive(names, counts, chosen, expected):
    assert positive_index(names, counts, chosen) == expected


def test_a_positive_class_that_is_not_a_class_is_named():
    with pytest.raises(InputError, match="'crack' is not a class of the data.*ok, scratch"):
        positive_index(["ok", "scratch"], [1, 1], "crack")
    with pytest.raises(InputError, match="the data has 3 classes"):
        positive_index(["a", "b", "c"], [1, 1, 1], "a")


TRAIN = ["train", "--dataset", "folder", "--model", "resnet18", "--width", "0.125"]
SHORT = ["--epochs", "1", "--batch-size", "8", "--image-size", "28"]


def test_a_two_class_run_stores_auroc_and_average_precision(tmp_path):
    data = class_tree(tmp_path / "tiles", {"crack": 12, "ok": 48})
    summary = cli_json([*TRAIN, "--data-path", str(data), *SHORT, "--method", "dense"], tmp_path)
    test = summary["test"]
    assert test["positive_class"] == "crack"  # the rarer, no class being named a defect
    assert 0.0 <= test["auroc"] <= 1.0 and 0.0 < test["average_precision"] <= 1.0
    listed = (
        CliRunner().invoke(app, ["runs", "--db", str(tmp_path / "r.db"), "--format", "json"]).stdout
    )
    row = next(r for r in json.loads(listed) if r["run_id"] == summary["run_id"])
    # `runs --format json` writes ten places
    assert row["test_auroc"] == pytest.approx(test["auroc"], abs=1e-9)
    assert row["test_average_precision"] == pytest.approx(test["average_precision"], abs=1e-9)
    assert row["positive_class"] == "crack"


def test_a_positive_class_the_data_lacks_is_refused_before_training(tmp_path):
    data = class_tree(tmp_path / "tiles", {"crack": 12, "ok": 48})
    result = CliRunner().invoke(
        app,
        [*TRAIN, "--data-path", str(data), *SHORT, "--positive-class", "dent"]
        + ["--db", str(tmp_path / "r.db"), "--runs-dir", str(tmp_path / "runs")],
    )
    assert result.exit_code != 0
    assert "'dent' is not a class of the data (its classes: crack, ok)" in result.stderr
    assert not (tmp_path / "r.db").exists()

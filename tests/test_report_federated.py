"""The federated summary: megabytes uploaded to reach dense FedAvg's final accuracy,
checked on rounds written by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sparsebench.report.federated import federated_summary

MB = 1e6


def rounds_of(run_id, method, accuracies, uploads_mb, seed=0, federation="10 clients, iid"):
    """Rounds validating at `accuracies`; their test accuracies five points lower, so a
    figure read off the test split shows."""
    frame = pd.DataFrame(
        {
            "run_id": run_id,
            "round": range(len(accuracies)),
            "val_accuracy": accuracies,
            "test_accuracy": [accuracy - 0.05 for accuracy in accuracies],
            "bytes_up": [mb * MB for mb in uploads_mb],
            "round_time_s": [0.0] + [2.0] * (len(accuracies) - 1),
            "method": method,
            "scenario": "dense" if method == "dense" else "uniform",
            "model": "resnet18",
            "data_label": "BloodMNIST-style",
            "federation": federation,
            "seed": seed,
        }
    )
    frame["mb_uploaded"] = frame.bytes_up.cumsum() / MB
    return frame


def test_the_megabytes_to_reach_dense_final_accuracy_and_their_share():
    """Every target, crossing and best round is read on validation."""
    # Dense validates best at 0.8 and ends at 0.7, first reached in round 2: 10 + 100 +
    # 100 MB.
    dense = rounds_of("d", "dense", [0.1, 0.5, 0.8, 0.7], [10, 100, 100, 100])
    # pre reaches 0.7 in round 2 too: 20 + 10 + 10 MB, 40/210 of dense's.
    pre = rounds_of("p", "pre", [0.1, 0.3, 0.75, 0.85], [20, 10, 10, 10])
    # set never reaches 0.7.
    sparse = rounds_of("s", "set", [0.1, 0.2, 0.3, 0.6], [20, 12, 12, 12])
    # rigl has no dense run in its federation (another seed).
    alone = rounds_of("r", "rigl", [0.1, 0.9, 0.9, 0.9], [20, 10, 10, 10], seed=1)
    table = federated_summary(pd.concat([dense, pre, sparse, alone])).set_index("run_id")
    assert table.loc["d", "mb_to_dense_final"] == pytest.approx(210)
    assert math.isnan(table.loc["d", "of_dense_mb"])
    assert table.loc["p", "mb_to_dense_final"] == pytest.approx(40)
    assert table.loc["p", "of_dense_mb"] == pytest.approx(40 / 210)
    assert math.isnan(table.loc["s", "mb_to_dense_final"])
    assert math.isnan(table.loc["r", "mb_to_dense_final"])
    assert table.loc["p", "final_accuracy"] == pytest.approx(0.80)  # test, last round
    assert table.loc["d", "best_val_round"] == 2
    assert table.loc["d", "accuracy_at_best_val"] == pytest.approx(0.75)  # its test
    assert table.loc["p", "mb_uploaded"] == pytest.approx(50)
    # A round's upload leaves the set-up out; the set-up stands apart.
    assert table.loc["s", "mb_per_round"] == pytest.approx(12)
    assert table.loc["s", "setup_mb_up"] == pytest.approx(20)
    assert table.loc["s", "round_s"] == pytest.approx(2.0)
    assert table.loc["s", "rounds"] == 3


def test_rounds_stored_before_the_server_validated_choose_nothing():
    old = rounds_of("d", "dense", [0.1, 0.5, 0.8], [10, 100, 100]).drop(columns="val_accuracy")
    [row] = federated_summary(old).to_dict("records")
    assert math.isnan(row["best_val_round"]) and math.isnan(row["accuracy_at_best_val"])
    assert math.isnan(row["mb_to_dense_final"])
    assert row["final_accuracy"] == pytest.approx(0.75)

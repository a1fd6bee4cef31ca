"""Balanced accuracy and per-class recall from a confusion matrix, checked by hand, and
shown for every stored run, those of earlier releases included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.confusion import balanced_accuracy, majority_share, recall_per_class

RELEASE = Path(__file__).parent / "fixtures" / "release-schema4"


def test_a_network_that_never_finds_a_defect_scores_one_half():
    # 90 good parts all called good, 10 defects all called good: accuracy 0.9
    confusion = [[90, 0], [10, 0]]
    assert recall_per_class(confusion) == [1.0, 0.0]
    assert balanced_accuracy(confusion) == 0.5
    assert majority_share(confusion) == 0.9  # what its accuracy says


def test_balanced_accuracy_by_hand_with_a_class_the_labels_do_not_hold():
    # recalls 8/10, 3/4 and 1/2; the fourth class has no image: undefined, not zero
    confusion = [[8, 1, 1, 0], [1, 3, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert recall_per_class(confusion) == [0.8, 0.75, 0.5, None]
    assert balanced_accuracy(confusion) == pytest.approx((0.8 + 0.75 + 0.5) / 3)
    assert balanced_accuracy([[0, 0], [0, 0]]) is None


def test_runs_shows_balanced_accuracy_for_a_database_of_an_earlier_release(tmp_path):
    from sparsebench.store import ResultsStore

    shutil.copytree(RELEASE, tmp_path / "release")
    db = tmp_path / "release" / "results.db"
    result = CliRunner().invoke(app, ["runs", "--db", str(db), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = [row for row in json.loads(result.stdout) if row["status"] == "finished"]
    assert rows
    with ResultsStore(db) as store:
        for row in rows:
            test = store.run_summary(row["run_id"]).test
            confusion = test.confusion_matrix
            recalls = [r[i] / sum(r) for i, r in enumerate(confusion) if sum(r)]
            assert row["test_balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
            assert test.balanced_accuracy == pytest.approx(sum(recalls) / len(recalls))
            assert len(test.recall_per_class) == len(confusion)

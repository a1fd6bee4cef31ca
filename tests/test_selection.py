"""Which weights are tested: the last epoch's, and beside them the best validation
epoch's among those validated at the trained sparsity (`--select best-val`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from test_train import small_config
from torch import nn
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.synthetic import make_synthetic
from sparsebench.sparsity.layers import PrunableLayer
from sparsebench.sparsity.masks import LayerMask, MaskSet
from sparsebench.store import ResultsStore
from sparsebench.train import train_run
from sparsebench.train.run import run_and_record
from sparsebench.train.selection import BestValidation, pruned_share

pytestmark = pytest.mark.usefixtures("float64")


def ten_filters() -> MaskSet:
    layer = PrunableLayer("conv", nn.Conv2d(1, 10, 3), "conv")
    return MaskSet([LayerMask(layer, torch.ones(10, dtype=torch.bool))])


def prune(masks: MaskSet, filters: int) -> None:
    keep = torch.ones(10, dtype=torch.bool)
    keep[:filters] = False
    next(iter(masks)).update(keep)


def test_the_best_epoch_is_taken_among_the_sparsest_and_a_tie_keeps_the_earlier(tmp_path):
    masks, best = ten_filters(), BestValidation(tmp_path / "c.best-val.pt", "run")
    # (filters pruned, validation accuracy) per epoch: a half-pruned network's 0.95
    # does not count once the network is pruned further
    for epoch, (filters, accuracy) in enumerate([(5, 0.95), (8, 0.70), (8, 0.80), (8, 0.80)]):
        prune(masks, filters)
        model = SimpleNamespace(state_dict=lambda e=epoch: {"w": torch.tensor(float(e))})
        method = SimpleNamespace(masks=masks, state_dict=dict)
        best.consider(epoch, accuracy, model, method)
    assert (best.epoch, best.val_accuracy, best.sparsity) == (2, 0.80, pytest.approx(0.8))
    kept = best.weights_to_test(masks, last_epoch=3)
    assert kept["epoch"] == 2 and kept["model"]["w"] == 2.0
    # a resumed run finds what was kept
    again = BestValidation.resumed(best.path, "run")
    assert (again.epoch, again.val_accuracy) == (2, 0.80)
    assert BestValidation.resumed(best.path, "another run").epoch is None
    # pruned further after the last validation (Post-Training): the last epoch stands
    prune(masks, 9)
    assert pruned_share(masks) == pytest.approx(0.9)
    assert best.weights_to_test(masks, last_epoch=3) is None


def test_best_val_metrics_are_those_of_the_network_trained_to_that_epoch(tmp_path):
    """Pre-Training keeps its masks: its run stopped after the best validation epoch
    computes the same weights, so its last-epoch test metrics must be the best-val ones."""
    data = make_synthetic()
    long = train_run(small_config(method="pre", epochs=4), data, tmp_path / "long.pt")
    accuracies = [row.val_accuracy for row in long.epochs]
    best = accuracies.index(max(accuracies))  # the first of equals
    assert long.test_best_val.epoch == best < 3
    short = train_run(small_config(method="pre", epochs=best + 1), data, tmp_path / "short.pt")
    for key in ("loss", "accuracy", "f1"):
        assert getattr(long.test_best_val, key) == pytest.approx(
            getattr(short.test, key), rel=1e-12
        ), key
    assert long.test_best_val.confusion_matrix == short.test.confusion_matrix
    assert long.test_best_val.loss != pytest.approx(long.test.loss, rel=1e-6)


def test_post_training_is_tested_as_pruned_in_both(tmp_path):
    result = train_run(small_config(method="post", epochs=3), make_synthetic(), tmp_path / "p.pt")
    assert result.test_best_val.epoch == 2
    assert result.test_best_val.accuracy == result.test.accuracy


def test_runs_and_report_select_the_best_validation_epoch(tmp_path):
    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        summary = run_and_record(
            small_config(method="pre", epochs=4), make_synthetic(), store, tmp_path / "runs"
        ).as_json()
    best = summary["test_best_val"]
    runner = CliRunner()

    def listed(*select):
        result = runner.invoke(app, ["runs", "--db", str(db), "--format", "json", *select])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)[0]

    last = listed("--select", "last")
    assert last["test_loss"] == pytest.approx(summary["test"]["loss"])
    assert (last["selected_epoch"], last["selected"]) == (3, "last")
    chosen = listed()  # the best validation epoch's, by default
    assert chosen["test_loss"] == pytest.approx(best["loss"])
    assert (chosen["selected_epoch"], chosen["selected"]) == (best["epoch"], "best-val")
    refused = runner.invoke(app, ["runs", "--db", str(db), "--select", "best"])
    assert refused.exit_code != 0 and "--select: expected last or best-val, got 'best'" in (
        refused.stderr
    )
    report = runner.invoke(
        app, ["report", "--db", str(db), "--out", str(tmp_path / "rep"), "--select", "best-val"]
    )
    assert report.exit_code == 0, report.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "weights at each run&#x27;s best validation epoch" in page
    [row] = pd.read_csv(tmp_path / "rep" / "runs.csv").to_dict("records")
    assert row["test_loss"] == pytest.approx(best["loss"])


def test_best_val_of_a_database_from_before_it_existed_says_what_to_do(tmp_path):
    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        run_and_record(small_config(method="pre", epochs=1), make_synthetic(), store, tmp_path)
        store.connection.execute("DELETE FROM best_val_metrics")  # as an older release left it
    result = CliRunner().invoke(
        app, ["report", "--db", str(db), "--out", str(tmp_path / "rep"), "--select", "best-val"]
    )
    assert result.exit_code != 0
    assert "none of its 1 finished run(s) has best-validation metrics" in result.stderr
    assert "report --select last" in result.stderr
    # by default such a database is reported by its last epochs, and says so
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "r" / "index.html").read_text()
    assert "stored before sparsebench kept the weights of the best validation epoch" in page
    listed = CliRunner().invoke(app, ["runs", "--db", str(db), "--format", "json"])
    assert json.loads(listed.stdout)[0]["selected"] == "last"

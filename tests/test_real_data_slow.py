"""The issue's acceptance run on the real BloodMNIST-style file (minutes: `pytest -m slow`)."""

import json

import pytest
from typer.testing import CliRunner

from sparsebench.cli import app

pytestmark = pytest.mark.slow


def test_resnet18_set_mixed_four_epochs_reaches_eighty_percent(tmp_path, bloodmnist_like):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "resnet18",
            "--width",
            "0.25",
            "--dataset",
            "bloodmnist",
            "--data-path",
            str(bloodmnist_like),
            "--method",
            "set",
            "--scenario",
            "mixed",
            "--epochs",
            "4",
            "--db",
            str(tmp_path / "r.db"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["test"]["accuracy"] >= 0.80
    assert len(summary["epochs"]) == 4
    assert summary["sparsity"]["by_kind"]["conv"] == pytest.approx(0.5, abs=0.05)
    assert summary["sparsity"]["by_kind"]["linear"] == pytest.approx(0.8, abs=0.02)
    counts = summary["data"]["class_counts"]
    assert sum(counts["train"].values()) == 11965 and counts["test"]["platelet"] == 470

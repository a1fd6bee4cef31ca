"""The issue's acceptance run on the real BloodMNIST-style file (minutes: `pytest -m slow`)."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA, cli_json, shared_path
from typer.testing import CliRunner

from sparsebench.cli import app

pytestmark = pytest.mark.slow


def test_resnet18_set_mixed_four_epochs_reaches_eighty_percent(tmp_path, bloodmnist_like):
    summary = cli_json(
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
        ],
        tmp_path,
    )
    assert summary["test"]["accuracy"] >= 0.80
    assert len(summary["epochs"]) == 4
    assert summary["sparsity"]["by_kind"]["conv"] == pytest.approx(0.5, abs=0.05)
    assert summary["sparsity"]["by_kind"]["linear"] == pytest.approx(0.8, abs=0.02)
    counts = summary["data"]["class_counts"]
    assert sum(counts["train"].values()) == 11965 and counts["test"]["platelet"] == 470


def test_cpu_preset_data_sets_sweep_and_report(tmp_path):
    """configs/cpu.yaml's three real data sets through a sweep (shrunk to minutes) and
    the report: every data set gets its panel row and its Table 1 row."""
    shared_path()
    preset = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "cpu.yaml").read_text()
    )
    for entry in preset["datasets"]:
        entry["data_path"] = str(
            SHARED_DATA / Path(entry["data_path"]).relative_to("../shared/data")
        )
        entry["subset_size"] = 400
        entry["image_size"] = 32
        entry.pop("training", None)  # minutes, not the preset's 30 epochs
    preset.update(
        models=["resnet18"], methods=["dense", "post", "set"], scenarios=["mixed"], seeds=[0]
    )
    preset["training"].update(width=0.125, epochs=1)
    config = tmp_path / "cpu-small.yaml"
    config.write_text(yaml.safe_dump(preset))
    db = tmp_path / "r.db"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "sweep",
            str(config),
            "--db",
            str(db),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--workers",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["finished"] == 9
    report = runner.invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    table = pd.read_csv(tmp_path / "report" / "table1.csv")
    # the data's own names (configs/cpu.yaml), never the loaders' that read their layouts
    assert sorted(table["data set"]) == [
        "BloodMNIST-style (own split)",
        "NEU steel defects",
        "magnetic tiles",
    ]
    assert table["Dense best"].between(0, 1).all()
    assert "MedMNIST v2" in (tmp_path / "report" / "index.html").read_text()

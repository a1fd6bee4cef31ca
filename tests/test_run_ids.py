"""Run ids stay put across upgrades: a setting added later leaves stored ids unchanged,
and a database and runs folder written by the first release keep working."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.train import RunConfig

runner = CliRunner()
RELEASE = Path(__file__).parent / "fixtures" / "release-0.1"
# Written by the first release (`git show 7033e6c`): two runs of
# `train --model resnet18 --width 0.0625 --dataset synthetic --method M --scenario mixed
#  --epochs 1 --batch-size 64 --lr 0.002`, M = dense and pre; the pre run's checkpoint.
SETTINGS = {
    "model": "resnet18",
    "width": 0.0625,
    "dataset": "synthetic",
    "scenario": "mixed",
    "epochs": 1,
    "batch_size": 64,
    "lr": 0.002,
}
FIRST_RELEASE_IDS = {"dense": "aa551106e428f9c8", "pre": "058fa072e7b658f1"}


def test_a_run_id_hashes_the_settings_version_and_what_differs_from_the_defaults():
    config = RunConfig(dataset="synthetic", seed=7, lr=0.01)
    # dense resolves its sparsities to 0.0 (their default is None: "from the scenario")
    identity = {
        "conv_sparsity": 0.0,
        "dataset": "synthetic",
        "linear_sparsity": 0.0,
        "lr": 0.01,
        "seed": 7,
        "settings_version": 2,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    assert config.run_id() == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_a_setting_added_later_leaves_stored_run_ids_unchanged():
    class Upgraded(RunConfig):
        label_smoothing: float = Field(0.0, ge=0, le=1)

    for settings in ({"dataset": "synthetic"}, {**SETTINGS, "method": "set", "seed": 4}):
        assert Upgraded(**settings).run_id() == RunConfig(**settings).run_id()
    changed = Upgraded(dataset="synthetic", label_smoothing=0.1)
    assert changed.run_id() != RunConfig(dataset="synthetic").run_id()


@pytest.mark.parametrize("method", ["dense", "pre"])
def test_the_first_release_id_is_still_known(method):
    config = RunConfig(**SETTINGS, method=method)
    assert config.first_release_run_id() == FIRST_RELEASE_IDS[method]
    assert config.run_id() != FIRST_RELEASE_IDS[method]


@pytest.fixture
def release(tmp_path) -> Path:
    folder = tmp_path / "release"
    shutil.copytree(RELEASE, folder)
    return folder


def test_a_first_release_database_is_migrated_and_its_runs_found_again(release):
    db, runs = str(release / "results.db"), str(release / "runs")
    listed = runner.invoke(app, ["runs", "--db", db, "--format", "json"])
    assert listed.exit_code == 0, listed.stderr
    assert "migrated from results database schema 2 to 7" in listed.stderr
    rows = {row["method"]: row for row in json.loads(listed.stdout)}
    for method in ("dense", "pre"):
        assert rows[method]["run_id"] == RunConfig(**SETTINGS, method=method).run_id()
        assert rows[method]["status"] == "finished"
    # the same command finds the finished run: nothing is trained again
    train = ["train", *(f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items())]
    again = runner.invoke(app, [*train, "--method", "dense", "--db", db, "--runs-dir", runs])
    assert again.exit_code == 0, again.stderr
    assert "was already finished" in again.stderr
    # the first-release id a user kept still names the run; its folder is renamed
    old = FIRST_RELEASE_IDS["pre"]
    exported = runner.invoke(
        app,
        ["export", old, "--db", db, "--runs-dir", runs, "--out", str(release / "m.onnx")],
    )
    assert exported.exit_code == 0, exported.stderr
    new = rows["pre"]["run_id"]
    assert f"renamed to {new}" in exported.stderr
    assert (release / "runs" / new / "checkpoint.pt").is_file()
    assert not (release / "runs" / old).exists()
    assert (release / "m.onnx").is_file()


SCHEMA4 = Path(__file__).parent / "fixtures" / "release-schema4"
# Written by the release before compact execution (`git show 33ecf7e`): one run of
# `train --model resnet18 --width 0.0625 --dataset synthetic --method pre --scenario
#  mixed --epochs 1 --batch-size 64 --lr 0.002`, trained masked (the only way then).
SCHEMA4_RUN = "b7afe621579e41eb"


def test_a_database_of_the_release_before_compact_execution_keeps_its_runs(tmp_path):
    shutil.copytree(SCHEMA4, tmp_path / "release")
    db, runs = str(tmp_path / "release" / "results.db"), str(tmp_path / "release" / "runs")
    listed = runner.invoke(app, ["runs", "--db", db, "--format", "json"])
    assert listed.exit_code == 0, listed.stderr
    assert "migrated from results database schema 4 to 7" in listed.stderr
    [row] = json.loads(listed.stdout)
    # the execution is not part of a run's identity: the id, and the run, stay
    assert row["run_id"] == SCHEMA4_RUN == RunConfig(**SETTINGS, method="pre").run_id()
    train = ["train", *(f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items())]
    again = runner.invoke(app, [*train, "--method", "pre", "--db", db, "--runs-dir", runs])
    assert again.exit_code == 0, again.stderr
    assert "was already finished" in again.stderr
    # and the report says its training costs are those of masked execution
    report = runner.invoke(app, ["report", "--db", db, "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.stderr
    with open(tmp_path / "report" / "runs.csv") as table:
        assert "masked" in table.read().splitlines()[1].split(",")
    assert (
        "Training execution: masked for 1 run (" in (tmp_path / "report" / "index.html").read_text()
    )

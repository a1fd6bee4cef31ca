"""Run ids stay put across upgrades: a setting added later leaves stored ids unchanged,
and a database and runs folder written by the first release keep working."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from pydantic import Field
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.store.db import ResultsStore, StoreError
from sparsebench.store.results import open_results
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
    "numerics": 1,  # what every release before numerics 2 computed
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
        "numerics": 2,
        "seed": 7,
        "settings_version": 2,
    }
    assert config.run_id() == _sha(identity)


def _sha(identity: dict) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_a_run_of_numerics_1_keeps_the_id_it_was_stored_under():
    """Numerics 1 validated on the test split where the data brought no validation
    split: a run stored so hashes as before numerics existed, and today's same settings
    are another run."""
    stored = RunConfig(dataset="synthetic", seed=7, lr=0.01, numerics=1)
    assert stored.validation == "test"
    before = {
        "conv_sparsity": 0.0,
        "dataset": "synthetic",
        "linear_sparsity": 0.0,
        "lr": 0.01,
        "seed": 7,
        "settings_version": 2,
    }
    assert stored.run_id() == _sha(before)
    assert stored.earlier_run_ids() == (stored.first_release_run_id(),)
    today = RunConfig(dataset="synthetic", seed=7, lr=0.01)
    assert today.validation == "held-out"
    assert today.run_id() != stored.run_id()
    assert today.earlier_run_ids() == ()
    asked = RunConfig(dataset="synthetic", seed=7, lr=0.01, validation="test")
    assert asked.run_id() not in (stored.run_id(), today.run_id())


def test_a_setting_added_later_leaves_stored_run_ids_unchanged():
    class Upgraded(RunConfig):
        label_smoothing: float = Field(0.0, ge=0, le=1)

    for settings in (
        {"dataset": "synthetic"},
        {**SETTINGS, "method": "set", "seed": 4},
        {**SETTINGS, "numerics": 2},
    ):
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
    assert "migrated from results database schema 2 to 10" in listed.stderr
    rows = {row["method"]: row for row in json.loads(listed.stdout)}
    for method in ("dense", "pre"):
        assert rows[method]["run_id"] == RunConfig(**SETTINGS, method=method).run_id()
        assert rows[method]["status"] == "finished"
    # the same settings find the finished run; today's command is a run of today's numerics
    _found_finished(db, RunConfig(**SETTINGS, method="dense"))
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
    db = str(tmp_path / "release" / "results.db")
    listed = runner.invoke(app, ["runs", "--db", db, "--format", "json"])
    assert listed.exit_code == 0, listed.stderr
    assert "migrated from results database schema 4 to 10" in listed.stderr
    [row] = json.loads(listed.stdout)
    # the execution is not part of a run's identity: the id, and the run, stay
    assert row["run_id"] == SCHEMA4_RUN == RunConfig(**SETTINGS, method="pre").run_id()
    _found_finished(db, RunConfig(**SETTINGS, method="pre"))
    # and the report says its training costs are those of masked execution
    report = runner.invoke(app, ["report", "--db", db, "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.stderr
    with open(tmp_path / "report" / "runs.csv") as table:
        assert "masked" in table.read().splitlines()[1].split(",")
    assert (
        "Training execution: masked for 1 run (" in (tmp_path / "report" / "index.html").read_text()
    )


def test_a_method_setting_keeps_its_run_id_where_the_method_reads_it():
    """The moved settings hash where they were run settings (ids computed by the release
    before methods owned them, `git show 6fdfc5c`), and their old spelling is the same
    run as the method option's."""
    ids = {
        ("in", "swap_fraction", 0.3): "473fb564d97cc3af",
        ("post", "fine_tune_epochs", 2): "fa033ae00e66105f",
        ("set", "allocation", "erk"): "3ef07933a8f25d76",
    }
    for (method, key, value), stored in ids.items():
        # computed by a release of numerics 1
        common = {"dataset": "synthetic", "method": method, "numerics": 1}
        old_spelling = RunConfig(**common, **{key: value})
        option = RunConfig(**common, method_options={key: value})
        assert old_spelling.run_id() == option.run_id() == stored
        assert option.method_options == {key: value} and getattr(option, key) is None
    ignored = RunConfig(dataset="synthetic", method="pre", swap_fraction=0.3)
    assert ignored.run_id() == RunConfig(dataset="synthetic", method="pre").run_id()


def test_a_loaders_own_setting_keeps_its_run_id_under_data_options():
    """Ids (current and first-release) computed by the release that took the loaders'
    settings beside `dataset:` (`git show 6fdfc5c`): `data_options:` is the same run."""
    ids = [
        (
            "mvtec3d-objects",
            "label_rule",
            "majority",
            "dense",
            "0bda594984ee2493",
            "22e57df8fe0cd9f5",
        ),
        ("visa", "visa_objects", ["pcb1", "pcb2"], "pre", "1a852061bfd99b09", "5357d11491346923"),
        ("elpv", "elpv_classes", 4, "set", "199946412caa2c02", "1de0a36fa9b0b6cc"),
    ]
    for dataset, key, value, method, *stored in ids:
        seed = 2 if dataset == "elpv" else 0
        path = {"mvtec3d-objects": "/d", "visa": "/v"}.get(dataset)
        common = {
            "dataset": dataset,
            "data_path": path,
            "method": method,
            "seed": seed,
            "numerics": 1,
        }
        flat = RunConfig(**common, **{key: value})
        nested = RunConfig(**common, data_options={key: value})
        assert flat == nested and nested.data_options == {key: value}
        assert [nested.run_id(), nested.first_release_run_id()] == stored


def test_a_loaders_setting_given_twice_must_agree():
    with pytest.raises(ValueError, match="label_rule is given twice"):
        RunConfig(
            dataset="mvtec3d-objects", label_rule="first", data_options={"label_rule": "majority"}
        )
    with pytest.raises(ValueError, match="elpv_classes is not a setting of data set 'visa'"):
        RunConfig(dataset="visa", data_options={"elpv_classes": 2})


SCHEMA7 = Path(__file__).parent / "fixtures" / "release-schema7"
# Written by the release before methods owned their settings (`git show 6fdfc5c`): runs of
# `train --model resnet18 --width 0.0625 --dataset synthetic --epochs 1 --batch-size 64
#  --lr 0.002` with `--method pre --scenario mixed --swap-fraction 0.3` (a setting `pre`
# never read, which its id hashed), the same without it, and `--method dense --allocation
# erk` (the only checkpoint kept: it holds the id it had then).
SCHEMA7_IDS = {
    "pre swap": "729f85d41979e8cf",
    "pre": "b7afe621579e41eb",
    "dense": "1b52d764b6c46134",
}


def test_a_run_whose_id_hashed_a_setting_its_method_never_read_is_found_by_either_id(tmp_path):
    shutil.copytree(SCHEMA7, tmp_path / "release")
    db, runs = str(tmp_path / "release" / "results.db"), str(tmp_path / "release" / "runs")
    listed = runner.invoke(app, ["runs", "--db", db, "--format", "json"])
    assert listed.exit_code == 0, listed.stderr
    assert "migrated from results database schema 7 to 10" in listed.stderr
    # two stored runs that are one computation: the second keeps its id, saying so
    assert (
        f"run {SCHEMA7_IDS['pre swap']} is the same computation as run {SCHEMA7_IDS['pre']}"
        in " ".join(listed.stderr.split())
    )
    dense_settings = {key: value for key, value in SETTINGS.items() if key != "scenario"}
    dense = RunConfig(**dense_settings, method="dense").run_id()
    assert dense != SCHEMA7_IDS["dense"]
    rows = json.loads(listed.stdout)
    assert {row["run_id"] for row in rows} == {SCHEMA7_IDS["pre swap"], SCHEMA7_IDS["pre"], dense}
    # the id a user kept still names the run, and its checkpoint, which holds that id,
    # is its own; the folder takes the current id
    exported = runner.invoke(
        app,
        [
            "export",
            SCHEMA7_IDS["dense"],
            "--db",
            db,
            "--runs-dir",
            runs,
            "--out",
            str(tmp_path / "m.onnx"),
        ],
    )
    assert exported.exit_code == 0, exported.stderr
    assert f"renamed to {dense}" in exported.stderr
    assert (tmp_path / "release" / "runs" / dense / "checkpoint.pt").is_file()
    # the old spelling of the same settings finds the run finished
    _found_finished(db, RunConfig(**dense_settings, method="dense", allocation="erk"))


def _found_finished(db: str, config: RunConfig) -> None:
    """`config` names a finished run of the database, and the same settings given today
    (numerics left to the release) name another run."""
    with open_results(db, read_only=True) as store:
        assert store.run_status(config.run_id()) == "finished"
    today = config.model_dump(exclude={"numerics", "validation"})
    assert RunConfig(**today).run_id() != config.run_id()


def test_the_store_alone_refuses_to_guess_run_ids_and_leaves_the_database_as_it_was(release):
    """The store knows records, not settings: re-keying needs the settings' code."""
    db = release / "results.db"
    with pytest.raises(StoreError, match="open it with sparsebench.store.results.open_results"):
        ResultsStore(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        ids = {row[0] for row in connection.execute("SELECT run_id FROM runs")}
    assert ids == set(FIRST_RELEASE_IDS.values())

import json
import subprocess
import sys

import pytest
from conftest import cli_json
from typer.testing import CliRunner

from sparsebench.cli import app

runner = CliRunner()

TRAIN = [
    "train",
    "--model",
    "resnet18",
    "--width",
    "0.125",
    "--dataset",
    "synthetic",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--lr",
    "0.002",
]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "set", "--conv-sparsity", "1.0"],
            "--conv-sparsity: sparsity must be in [0, 1), got 1.0",
        ),
        (
            ["--method", "set", "--linear-sparsity", "-0.1"],
            "--linear-sparsity: sparsity must be in [0, 1)",
        ),
        (["--method", "magic"], "--method: unknown method 'magic'"),
        (["--method", "set", "--scenario", "extreme"], "--scenario: unknown scenario 'extreme'"),
        (["--method", "pre", "--epochs", "0"], "--epochs"),
    ],
)
def test_bad_values_stop_with_one_line_and_write_nothing(tmp_path, args, message):
    db = tmp_path / "results.db"
    result = runner.invoke(
        app, [*TRAIN, *args, "--db", str(db), "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_a_data_path_that_does_not_exist_is_refused(tmp_path):
    db = tmp_path / "results.db"
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "bloodmnist",
            "--data-path",
            str(tmp_path / "nope.npz"),
            "--db",
            str(db),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.npz'}: data path does not exist"
    assert not db.exists()


def test_config_file_errors_name_the_file_and_key(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: resnet18\ndataset: synthetic\nmethod: pre\nlearning_rate: 0.1\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 2
    assert f"{config}: learning_rate: unknown key" in result.stderr


def test_train_json_then_runs_lists_it(tmp_path):
    db, runs_dir = tmp_path / "results.db", tmp_path / "runs"
    config = tmp_path / "run.yaml"
    config.write_text("method: set\nscenario: uniform\nseed: 3\n")
    result = runner.invoke(
        app,
        [
            *TRAIN,
            "--config",
            str(config),
            "--scenario",
            "mixed",
            "--db",
            str(db),
            "--runs-dir",
            str(runs_dir),
            "--data-name",
            "four patterns",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "on four patterns (synthetic layout; train 512" in result.stderr
    assert summary["config"]["scenario"] == "mixed" and summary["config"]["seed"] == 3
    assert summary["data"]["class_counts"]["train"] == {f"pattern{k}": 128 for k in range(4)}
    assert len(summary["epochs"]) == 1 and "val_f1" in summary["epochs"][0]
    assert set(summary["sparsity"]["by_kind"]) == {"conv", "linear"}
    assert (runs_dir / summary["run_id"] / "checkpoint.pt").is_file()

    listed = runner.invoke(app, ["runs", "--db", str(db), "--format", "json"])
    rows = json.loads(listed.stdout)
    assert rows[0]["run_id"] == summary["run_id"]
    assert rows[0]["test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    # the data by its own name, the loader as its layout; `dataset` stays the loader's key
    assert (rows[0]["data"], rows[0]["layout"], rows[0]["dataset"]) == (
        "four patterns",
        "synthetic",
        "synthetic",
    )
    csv = runner.invoke(app, ["runs", "--db", str(db), "--format", "csv"])
    assert csv.stdout.splitlines()[0].startswith("run_id,model,dataset,method")
    table = runner.invoke(app, ["runs", "--db", str(db)], env={"COLUMNS": "240"})
    assert summary["run_id"] in table.stdout and "four patterns" in table.stdout


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "sparsebench.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "train" in result.stdout
    # commands in the order a user meets them
    listed = [
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.startswith("│ ")
        and len(line.split()) > 2
        and line.split()[1].isalpha()
        and line[2] != " "
    ]
    assert listed == [
        "demo",
        "train",
        "sweep",
        "federate",
        "runs",
        "report",
        "tables",
        "export",
        "bench",
        "predict",
        "serve",
    ]


def test_include_and_exclude_flags_limit_pruning(tmp_path):
    summary = cli_json(
        [
            *TRAIN,
            "--method",
            "pre",
            "--include",
            "layer4.*",
            "--include",
            "fc",
            "--exclude",
            "*.downsample.*",
        ],
        tmp_path,
    )
    pruned = {row["layer"] for row in summary["sparsity"]["layers"] if row["sparsity"] > 0}
    assert pruned == {"layer4.0.conv1", "layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2", "fc"}
    assert summary["config"]["include"] == ["layer4.*", "fc"]


def test_an_unseen_grey_binary_medmnist_file_trains(tmp_path):
    from test_data import write_npz

    path = write_npz(tmp_path / "unseen.npz", grey=True, counts=(64, 16, 16), classes=2)
    summary = cli_json(
        [
            "train",
            "--model",
            "resnet18",
            "--width",
            "0.125",
            "--dataset",
            "medmnist",
            "--data-path",
            str(path),
            "--method",
            "pre",
            "--epochs",
            "1",
        ],
        tmp_path,
    )
    assert summary["data"]["image_shape"] == [1, 28, 28]
    assert summary["data"]["class_counts"]["train"] == {"0": 32, "1": 32}


def test_a_bad_data_file_stops_with_exit_code_two(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not an npz")
    result = runner.invoke(
        app,
        ["train", "--dataset", "medmnist", "--data-path", str(bad), "--db", str(tmp_path / "r.db")],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: not a readable npz file")
    assert not (tmp_path / "r.db").exists()


def test_demo_runs_a_sweep_then_writes_the_report(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(
        "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense, pre, post]\n"
        "scenarios: [mixed]\ntraining: {width: 0.125, epochs: 1, batch_size: 64, device: cpu}\n"
    )
    db, report = tmp_path / "demo.db", tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "demo",
            "--config",
            str(config),
            "--db",
            str(db),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--out",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().endswith(str((report / "index.html").resolve()))
    assert (report / "figures" / "mixed_test_accuracy.png").is_file()
    listed = json.loads(runner.invoke(app, ["runs", "--db", str(db), "--format", "json"]).stdout)
    assert sorted(row["method"] for row in listed) == ["dense", "post", "pre"]
    assert all(row["status"] == "finished" for row in listed)

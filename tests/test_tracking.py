"""`--track mlflow|tensorboard`: finished runs logged the way those tools keep them, read
back with their own readers (a local MLflow file store, TensorBoard event files)."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from sparsebench.cli import app

runner = CliRunner()
TRAIN = ["train", "--model", "resnet18", "--width", "0.0625", "--dataset", "synthetic"]
TRAIN += ["--method", "pre", "--epochs", "2", "--lr", "0.002", "--json"]


def train(tmp_path, *extra: str) -> dict:
    result = runner.invoke(
        app, [*TRAIN, "--db", str(tmp_path / "r.db"), "--runs-dir", str(tmp_path / "runs"), *extra]
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_mlflow_gets_settings_epoch_curves_test_metrics_and_files(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    summary = train(tmp_path, "--track", "mlflow", "--track-experiment", "inspection")
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("inspection")
    [run] = client.search_runs(
        [experiment.experiment_id], f"tags.sparsebench_run_id = '{summary['run_id']}'"
    )
    assert run.data.params["method"] == "pre" and run.data.params["epochs"] == "2"
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in sorted(losses, key=lambda m: m.step)] == [
        (row["epoch"], pytest.approx(row["train_loss"])) for row in summary["epochs"]
    ]
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert files == {f"run-{summary['run_id']}.json", "confusion_matrix.json"}


def test_tensorboard_event_files_hold_every_epoch_and_the_test(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = train(tmp_path, "--track", "tensorboard", "--track-dir", str(tmp_path / "tb"))
    events = EventAccumulator(str(tmp_path / "tb" / summary["run_id"]))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(row["epoch"], pytest.approx(row["train_loss"])) for row in summary["epochs"]]
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx(
        [row["val_accuracy"] for row in summary["epochs"]]
    )
    [test] = events.Scalars("test/accuracy")
    assert test.value == pytest.approx(summary["test"]["accuracy"])


def test_a_sweep_logs_each_run_it_finishes(tmp_path):
    pytest.importorskip("tensorboard")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense, pre]\n"
        "training: {width: 0.0625, epochs: 1, lr: 0.002}\n"
    )
    result = runner.invoke(
        app,
        [
            "sweep",
            str(sweep),
            "--db",
            str(tmp_path / "r.db"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--workers",
            "1",
            "--track",
            "tensorboard",
            "--track-dir",
            str(tmp_path / "tb"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    listed = runner.invoke(app, ["runs", "--db", str(tmp_path / "r.db"), "--format", "json"])
    finished = [row["run_id"] for row in json.loads(listed.stdout)]
    assert len(finished) == 2
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(finished)


def test_without_the_package_one_line_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails
    result = runner.invoke(app, [*TRAIN, "--db", str(tmp_path / "r.db"), "--track", "mlflow"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --track mlflow needs mlflow: pip install 'sparsebench[mlflow]' (MLflow)"
    )
    assert not (tmp_path / "r.db").exists()


def test_a_tracker_that_fails_costs_a_warning_not_the_run(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from sparsebench import tracking

    def broken(self, summary):
        raise ConnectionError("tracking server down")

    monkeypatch.setattr(tracking.TensorBoardTracker, "log_run", broken)
    result = runner.invoke(
        app,
        [*TRAIN, "--db", str(tmp_path / "r.db"), "--track", "tensorboard"],
    )
    assert result.exit_code == 0
    assert "was not logged (ConnectionError: tracking server down)" in result.stderr
    assert json.loads(result.stdout)["status"] == "finished"


def test_an_exported_model_joins_its_runs_mlflow_run(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    summary = train(tmp_path, "--track", "mlflow")
    exported = runner.invoke(
        app,
        ["export", summary["run_id"], "--db", str(tmp_path / "r.db"), "--out"]
        + [str(tmp_path / "model.onnx"), "--track", "mlflow"],
    )
    assert exported.exit_code == 0, exported.stderr
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("sparsebench")
    [run] = client.search_runs(
        [experiment.experiment_id], f"tags.sparsebench_run_id = '{summary['run_id']}'"
    )
    files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert "model.onnx" in files and f"run-{summary['run_id']}.json" in files


def test_the_reports_figures_become_tensorboard_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tmp_path)
    report = runner.invoke(
        app,
        ["report", "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "report")]
        + ["--track", "tensorboard", "--track-dir", str(tmp_path / "tb")],
    )
    assert report.exit_code == 0, report.stderr
    events = EventAccumulator(str(tmp_path / "tb" / "report"), size_guidance={"images": 0})
    events.Reload()
    pngs = sorted(p.stem for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert sorted(tag.removeprefix("figures/") for tag in events.Tags()["images"]) == pngs

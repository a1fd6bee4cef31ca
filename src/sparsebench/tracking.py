"""Sending finished runs to the experiment tracker a team already has.

A tracker receives each run as `sparsebench train` or a sweep stores it: its settings,
every epoch's metrics (step = epoch), its test metrics and, as files, its summary (JSON)
and confusion matrix. MLflow logs to the tracking URI MLflow itself is set to
(`MLFLOW_TRACKING_URI`, else its default), one MLflow run per sparsebench run, tagged
with the run id, in the experiment named by `--track-experiment`. TensorBoard writes
event files under `--track-dir`, one folder per run. Both are optional extras: without
the package, one line says what to install.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparsebench.errors import InputError

# Epoch columns that are numbers worth a curve (not text, not the epoch itself).
_NOT_METRICS = {"epoch", "memory_kind", "energy_source", "energy_missing_reason", "execution"}
_INSTALL = {
    "mlflow": "pip install 'sparsebench[mlflow]' (MLflow)",
    "tensorboard": "pip install 'sparsebench[tensorboard]' (TensorBoard)",
}


class Tracker(Protocol):
    def log_run(self, summary: dict[str, Any]) -> None: ...

    def log_files(self, run_id: str | None, paths: list[Path]) -> None:
        """Files made from a run (an exported model) or from all of them (`run_id`
        None: a report's figures and tables)."""
        ...


def tracker_named(name: str | None, folder: Path, experiment: str) -> Tracker | None:
    """The tracker `--track NAME` asks for (None without `--track`)."""
    if name is None:
        return None
    if name not in _INSTALL:
        raise InputError(f"--track: expected mlflow or tensorboard, got {name!r}")
    try:
        if name == "mlflow":
            import mlflow  # noqa: F401
        else:
            import tensorboard  # noqa: F401
    except ImportError:
        raise InputError(f"--track {name} needs {name}: {_INSTALL[name]}") from None
    return MlflowTracker(experiment) if name == "mlflow" else TensorBoardTracker(folder)


def log_finished(tracker: Tracker | None, summary: dict[str, Any]) -> None:
    """Send a finished run to the tracker; a tracker that fails (a server down) costs a
    warning line, never the run or the sweep."""
    if tracker is not None:
        _guarded(f"run {summary.get('run_id')}", tracker.log_run, summary)


def log_made_files(tracker: Tracker | None, run_id: str | None, paths: list[Path]) -> None:
    """Send files to the tracker, beside the run they were made from (or as a report)."""
    if tracker is not None:
        _guarded(
            f"files of run {run_id}" if run_id else "the report", tracker.log_files, run_id, paths
        )


def _guarded(what: str, action: Any, *args: Any) -> None:
    try:
        action(*args)
    except Exception as error:  # any tracker's own failure
        warnings.warn(
            f"tracking: {what} was not logged ({type(error).__name__}: {error})", stacklevel=3
        )


def epoch_metrics(row: dict[str, Any]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in row.items()
        if key not in _NOT_METRICS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def final_test_metrics(summary: dict[str, Any]) -> dict[str, float]:
    test = {k: v for k, v in (summary.get("test") or {}).items() if k != "confusion_matrix"}
    return {f"test_{key}": value for key, value in epoch_metrics(test).items()}


def flat_settings(config: dict[str, Any]) -> dict[str, str]:
    """Settings as the strings trackers keep (lists and mappings as JSON)."""
    return {
        key: json.dumps(value) if isinstance(value, list | dict) else str(value)
        for key, value in sorted(config.items())
    }


class MlflowTracker:
    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def log_run(self, summary: dict[str, Any]) -> None:
        import mlflow

        mlflow.set_experiment(self.experiment)
        config = summary["config"]
        name = f"{config['model']}-{config['method']}-{summary['run_id']}"
        with mlflow.start_run(run_name=name, tags={"sparsebench_run_id": summary["run_id"]}):
            mlflow.log_params(flat_settings(config))
            for row in summary["epochs"]:
                mlflow.log_metrics(epoch_metrics(row), step=int(row["epoch"]))
            mlflow.log_metrics(final_test_metrics(summary))
            with tempfile.TemporaryDirectory() as folder:
                for path in _run_files(summary, Path(folder)):
                    mlflow.log_artifact(str(path))

    def log_files(self, run_id: str | None, paths: list[Path]) -> None:
        """Into the MLflow run of `run_id` (found by its tag; a new one if it was never
        logged), or a run named "report"."""
        import mlflow

        experiment = mlflow.set_experiment(self.experiment)
        tag = {"sparsebench_run_id": run_id} if run_id else {"sparsebench_report": "true"}
        found = mlflow.search_runs(
            [experiment.experiment_id],
            filter_string=" and ".join(f"tags.{k} = '{v}'" for k, v in tag.items()),
            output_format="list",
        )
        existing = found[0].info.run_id if found and run_id else None
        with mlflow.start_run(run_id=existing, run_name=None if run_id else "report", tags=tag):
            for path in paths:
                mlflow.log_artifact(str(path))


class TensorBoardTracker:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def log_run(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.folder / summary["run_id"]))
        try:
            settings = flat_settings(summary["config"])
            writer.add_text("settings", "\n".join(f"    {k}: {v}" for k, v in settings.items()))
            for row in summary["epochs"]:
                for key, value in epoch_metrics(row).items():
                    split, _, metric = key.partition("_")
                    tag = f"{split}/{metric}" if split in ("train", "val") else f"epoch/{key}"
                    writer.add_scalar(tag, value, int(row["epoch"]))
            last = len(summary["epochs"]) - 1
            for key, value in final_test_metrics(summary).items():
                writer.add_scalar(f"test/{key.removeprefix('test_')}", value, last)
        finally:
            writer.close()

    def log_files(self, run_id: str | None, paths: list[Path]) -> None:
        """Figures as TensorBoard images; other files (TensorBoard keeps none) as text
        saying where they are."""
        from PIL import Image
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.folder / (run_id or "report")))
        try:
            for path in paths:
                if path.suffix.lower() == ".png":
                    with Image.open(path) as image:
                        pixels = np.asarray(image.convert("RGB"))
                    writer.add_image(f"figures/{path.stem}", pixels, dataformats="HWC")
            others = [str(path.resolve()) for path in paths if path.suffix.lower() != ".png"]
            if others:
                writer.add_text("files", "\n".join(f"    {p}" for p in others))
        finally:
            writer.close()


def _run_files(summary: dict[str, Any], folder: Path) -> list[Path]:
    path = folder / f"run-{summary['run_id']}.json"
    path.write_text(json.dumps(summary, indent=1, default=str))
    files = [path]
    matrix = (summary.get("test") or {}).get("confusion_matrix")
    if matrix is not None:
        classes = (summary.get("data") or {}).get("classes") or []
        confusion = folder / "confusion_matrix.json"
        confusion.write_text(json.dumps({"classes": classes, "matrix": matrix}))
        files.append(confusion)
    return files

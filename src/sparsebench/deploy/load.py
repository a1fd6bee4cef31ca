"""A finished run's trained (masked) model and its data, rebuilt from the results
database and the run's checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from sparsebench.data import ImageDataset, load_dataset
from sparsebench.data.settings import data_options_of
from sparsebench.errors import InputError
from sparsebench.models import build_model
from sparsebench.sparsity import METHODS, SparsityTargets
from sparsebench.store.checkpoint import CheckpointError, load_checkpoint
from sparsebench.store.layout import (
    DEFAULT_RUNS_DIR,
    adopt_earlier_folder,
    checkpoint_path,
)
from sparsebench.store.records import RunSummary
from sparsebench.store.results import open_results


@dataclass
class TrainedRun:
    run_id: str
    model: nn.Module
    config: dict[str, Any]
    data: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.data["image_shape"]
        return channels, height, width

    def dataset(self) -> ImageDataset:
        """The run's data set, split and sized as it was trained."""
        config = self.config
        options = data_options_of(config)
        data = load_dataset(config["dataset"], config.get("data_path"), options)
        channels, size, _ = self.input_shape
        if (data.channels, data.image_size) != (channels, size):
            data = data.adapted(size, channels)
        return data


def finished_run(run_id: str, db: str | Path) -> tuple[str, RunSummary]:
    """A finished run's current id and stored summary; an InputError otherwise."""
    with open_results(db, read_only=True) as store:
        run_id = store.current_run_id(run_id)
        summary = store.run_summary(run_id)
    if summary is None:
        raise InputError(f"run {run_id!r} is not in {db}")
    if summary.status != "finished":
        raise InputError(f"run {run_id} is {summary.status}, not finished")
    return run_id, summary


def finished_run_checkpoint(
    run_id: str, db: str | Path, runs_dir: str | Path | None = None
) -> Path:
    """Where a finished run's checkpoint is (`--init-from run:ID` starts from it)."""
    run_id, summary = finished_run(run_id, db)
    path = run_checkpoint(run_id, summary, db, runs_dir)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint of run {run_id} does not exist")
    return path


def load_run(run_id: str, db: str | Path, runs_dir: str | Path | None = None) -> TrainedRun:
    """The run's model with its final weights, in eval mode. Its checkpoint is where the
    database says; `runs_dir` overrides that for a moved folder."""
    run_id, summary = finished_run(run_id, db)
    config, data = summary.config, summary.data
    assert data is not None, f"finished run {run_id} without its data's description"
    channels, height, _ = data["image_shape"]
    classes = len(data["classes"])
    targets = SparsityTargets(config["conv_sparsity"] or 0.0, config["linear_sparsity"] or 0.0)
    width = METHODS[config["method"]].network_width(
        config["model"], config["width"], targets, (classes, channels, height, height)
    )
    model = build_model(
        config["model"], num_classes=classes, in_channels=channels, image_size=height, width=width
    )
    path = run_checkpoint(run_id, summary, db, runs_dir)
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(f"{error}; train run {run_id} again (train --force)") from None
    if state is None:
        where = "" if runs_dir is not None else f" (where {db} says it is)"
        raise InputError(
            f"{path}: checkpoint of run {run_id} does not exist{where}; "
            "if its folder moved, give --runs-dir FOLDER"
        )
    state.require_run(path, run_id, *summary.earlier_run_ids)
    try:
        model.load_state_dict(state.model)
    except RuntimeError:
        raise CheckpointError(
            f"{path}: its weights do not fit run {run_id}'s {config['model']}"
        ) from None
    return TrainedRun(run_id, model.eval(), config, data)


def run_checkpoint(
    run_id: str, summary: RunSummary, db: str | Path, runs_dir: str | Path | None
) -> Path:
    """Where a run's checkpoint is: under `runs_dir` when given, else where the database
    recorded it; a run stored by a release that did not record it, under `runs/` as the
    default was then (its folder renamed from an earlier id when it has one)."""
    if runs_dir is None and summary.checkpoint:
        return Path(summary.checkpoint)
    folder = Path(runs_dir) if runs_dir is not None else DEFAULT_RUNS_DIR
    adopt_earlier_folder(folder, run_id, *summary.earlier_run_ids)
    return checkpoint_path(folder, run_id)

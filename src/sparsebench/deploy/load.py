"""A finished run's trained (masked) model and its data, rebuilt from the results
database and the run's checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsebench.data import DataOptions, ImageDataset, load_dataset
from sparsebench.errors import InputError
from sparsebench.models import build_model
from sparsebench.store.db import ResultsStore
from sparsebench.store.layout import checkpoint_path


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
        options = DataOptions.from_run_config(config)
        data = load_dataset(config["dataset"], config.get("data_path"), options)
        channels, size, _ = self.input_shape
        if (data.channels, data.image_size) != (channels, size):
            data = data.adapted(size, channels)
        return data


def load_run(run_id: str, db: str | Path, runs_dir: str | Path) -> TrainedRun:
    """The run's model with its final weights, in eval mode."""
    if not Path(db).is_file():
        raise InputError(f"{db}: results database does not exist")
    with ResultsStore(db) as store:
        summary = store.run_summary(run_id)
    if summary is None:
        raise InputError(f"run {run_id!r} is not in {db}")
    if summary["status"] != "finished":
        raise InputError(f"run {run_id} is {summary['status']}, not finished")
    config, data = summary["config"], summary["data"]
    channels, height, _ = data["image_shape"]
    model = build_model(
        config["model"],
        num_classes=len(data["classes"]),
        in_channels=channels,
        image_size=height,
        width=config["width"],
    )
    path = checkpoint_path(runs_dir, run_id)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint of run {run_id} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return TrainedRun(run_id, model.eval(), config, data)

"""A finished run's trained (masked) model, rebuilt from the results database and its
checkpoint."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from sparsebench.errors import InputError
from sparsebench.models import build_model
from sparsebench.store.db import ResultsStore
from sparsebench.train.checkpoint import load_checkpoint
from sparsebench.train.config import RunConfig
from sparsebench.train.run import checkpoint_path


def load_run_model(
    run_id: str, db: str | Path, runs_dir: str | Path
) -> tuple[nn.Module, RunConfig, dict]:
    """The run's model with its final weights (in eval mode), its config and data summary."""
    if not Path(db).is_file():
        raise InputError(f"{db}: results database does not exist")
    with ResultsStore(db) as store:
        summary = store.run_summary(run_id)
    if summary is None:
        raise InputError(f"run {run_id!r} is not in {db}")
    if summary["status"] != "finished":
        raise InputError(f"run {run_id} is {summary['status']}, not finished")
    config = RunConfig(**summary["config"])
    data = summary["data"]
    channels, height, _ = data["image_shape"]
    model = build_model(
        config.model,
        num_classes=len(data["classes"]),
        in_channels=channels,
        image_size=height,
        width=config.width,
    )
    path = checkpoint_path(runs_dir, run_id)
    state = load_checkpoint(path)
    if state is None:
        raise InputError(f"{path}: checkpoint of run {run_id} does not exist")
    model.load_state_dict(state["model"])
    return model.eval(), config, data

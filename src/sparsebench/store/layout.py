"""Where a run's files live beside the database: one folder per run id."""

from __future__ import annotations

from pathlib import Path


def checkpoint_path(runs_dir: str | Path, run_id: str) -> Path:
    return Path(runs_dir) / run_id / "checkpoint.pt"

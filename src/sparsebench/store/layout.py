"""Where a run's files live beside the database: one folder per run id."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# Where `train` and `sweep` put run folders unless told otherwise.
DEFAULT_RUNS_DIR = Path("runs")


def checkpoint_path(runs_dir: str | Path, run_id: str) -> Path:
    return Path(runs_dir) / run_id / "checkpoint.pt"


def adopt_first_release_folder(runs_dir: str | Path, run_id: str, legacy_id: str) -> None:
    """A run trained by the first release has its folder under the id it had then:
    rename it to the run's current id, once, saying so."""
    old, new = Path(runs_dir) / legacy_id, Path(runs_dir) / run_id
    if legacy_id != run_id and old.is_dir() and not new.exists():
        os.replace(old, new)
        warnings.warn(f"{old}: renamed to {new.name}, the run's current id", stacklevel=2)

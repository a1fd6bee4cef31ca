"""Where a run's files live beside the database: one folder per run id."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# Where `train` and `sweep` put run folders unless told otherwise.
DEFAULT_RUNS_DIR = Path("runs")


def checkpoint_path(runs_dir: str | Path, run_id: str) -> Path:
    return Path(runs_dir) / run_id / "checkpoint.pt"


def adopt_earlier_folder(runs_dir: str | Path, run_id: str, *earlier_ids: str) -> None:
    """A run trained by an earlier release has its folder under the id it had then (the
    first release's, or one that hashed a setting its method does not read): rename the
    first found to the run's current id, once, saying so."""
    new = Path(runs_dir) / run_id
    for earlier in earlier_ids:
        old = Path(runs_dir) / earlier
        if earlier and earlier != run_id and old.is_dir() and not new.exists():
            os.replace(old, new)
            warnings.warn(f"{old}: renamed to {new.name}, the run's current id", stacklevel=2)
            return

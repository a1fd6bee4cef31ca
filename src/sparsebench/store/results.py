"""The results database opened by code that knows run settings: a database written by
an older release has its run ids migrated to the current ones."""

from __future__ import annotations

from pathlib import Path

from sparsebench.settings.run import stored_run_id
from sparsebench.store.db import ResultsStore


def open_results(db: str | Path, read_only: bool = False) -> ResultsStore:
    return ResultsStore(db, read_only=read_only, run_identity=stored_run_id)

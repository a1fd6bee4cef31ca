"""One run from config to database: skip it if finished, resume it if interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsebench.data.dataset import ImageDataset
from sparsebench.store.db import ResultsStore
from sparsebench.store.layout import checkpoint_path
from sparsebench.train.config import RunConfig
from sparsebench.train.loop import EpochProgress, RunInterrupted, resolve_device, train_run


def run_and_record(
    config: RunConfig,
    dataset: ImageDataset,
    store: ResultsStore,
    runs_dir: str | Path,
    *,
    progress: EpochProgress | None = None,
    force: bool = False,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train `config` unless the store already holds it finished, and return its summary.

    Epochs are stored as they finish; a resumed run's stored epochs are replaced by its
    checkpoint's, so a run killed between checkpoint and database write loses nothing
    and duplicates nothing. `force` trains a finished run again from scratch.
    """
    run_id = config.run_id()
    if not force and store.run_status(run_id) == "finished":
        summary = store.run_summary(run_id)
        assert summary is not None
        summary["reused"] = True
        return summary
    checkpoint = checkpoint_path(runs_dir, run_id)
    if force:
        checkpoint.unlink(missing_ok=True)
    device = resolve_device(config.device)
    store.begin_run(run_id, config.model_dump(), str(device), dataset.summary())
    try:
        result = train_run(
            config,
            dataset,
            checkpoint,
            on_epoch=lambda row: store.record_epoch(run_id, row),
            on_resume=lambda rows: store.replace_epochs(run_id, rows),
            progress=progress,
            stop_after_epoch=stop_after_epoch,
        )
    except (KeyboardInterrupt, RunInterrupted):
        store.mark_run(run_id, "interrupted")
        raise
    except Exception as error:
        store.mark_run(run_id, "failed", f"{type(error).__name__}: {error}")
        raise
    summary = result.summary()
    store.finish_run(run_id, summary)
    summary["resumed_from_epoch"] = result.resumed_from_epoch
    return summary

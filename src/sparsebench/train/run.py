"""One run from config to database: skip it if finished (or diverged), resume it if
interrupted, and store how it ended, whatever the ending."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sparsebench.data.dataset import ImageDataset
from sparsebench.errors import InputError
from sparsebench.settings.run import RunConfig
from sparsebench.store.db import ResultsStore, StoreError
from sparsebench.store.layout import adopt_earlier_folder, checkpoint_path
from sparsebench.store.records import RunSummary
from sparsebench.train.build import check_trainable, resolve_device
from sparsebench.train.loop import EpochProgress, train_run
from sparsebench.train.outcome import ending_of
from sparsebench.train.recorder import RunRecorder

# A run that ended so stays so: training it again gives the same result (`force` does).
SETTLED = ("finished", "diverged")


class RunDivergedBefore(InputError):
    """The store holds this run as diverged; training it again would diverge again."""


def run_and_record(
    config: RunConfig,
    dataset: ImageDataset,
    store: ResultsStore,
    runs_dir: str | Path,
    *,
    progress: EpochProgress | None = None,
    force: bool = False,
    stop_after_epoch: int | None = None,
) -> RunSummary:
    """Train `config` unless the store already holds it finished, and return its summary.

    Epochs are stored as they finish; a resumed run's stored epochs are replaced by its
    checkpoint's, so a run killed between checkpoint and database write loses nothing
    and duplicates nothing. `force` trains a finished or diverged run again from
    scratch. The run is claimed for this process while it trains (`begin_run`): a
    second process gets RunBusy. How a run that stops is stored is decided by
    `sparsebench.train.outcome`: a full disk leaves it `interrupted`, and the same call
    resumes it once there is space; a refused input leaves nothing.
    """
    run_id = config.run_id()
    status = store.run_status(run_id)
    if not force and status in SETTLED:
        summary = store.run_summary(run_id)
        assert summary is not None
        if status == "diverged":
            raise RunDivergedBefore(
                f"run {run_id} diverged before ({summary.error}); --force trains it again"
            )
        summary.reused = True
        return summary
    check_trainable(config, dataset)  # a refused input writes nothing
    checkpoint = checkpoint_path(runs_dir, run_id)
    device = resolve_device(config.device)
    recorder = RunRecorder(store, config)
    recorder.begin(str(device), dataset.summary(), checkpoint)
    earlier = store.earlier_run_ids(run_id)
    adopt_earlier_folder(runs_dir, run_id, *config.earlier_run_ids(), *earlier)
    if force:  # only once the run is ours: a busy run keeps its files
        for stale in checkpoint.parent.glob(f"{checkpoint.stem}*"):
            stale.unlink()
    try:
        result = train_run(
            config,
            dataset,
            checkpoint,
            on_epoch=recorder.epoch,
            on_resume=recorder.resumed,
            progress=progress,
            stop_after_epoch=stop_after_epoch,
            earlier_ids=tuple(earlier),
        )
    except BaseException as error:
        ending = ending_of(error)
        # When even that cannot be written (the disk is full), the run shows as
        # interrupted anyway once this process has gone.
        with contextlib.suppress(StoreError):
            recorder.end(ending.status, ending.error)
        raise
    recorder.finish(result)
    return result

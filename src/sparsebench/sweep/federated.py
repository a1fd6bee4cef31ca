"""A sweep with a `federated:` block, planned: each run of its grid trained federated
once per federation the block lists, those finished in the database skipped. The runs
train one after another (each trains its clients in parallel), each data set loaded
once for all the runs on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsebench.data import load_dataset
from sparsebench.data.dataset import ImageDataset
from sparsebench.settings.federated import FederatedRun
from sparsebench.store.federated import federated_status
from sparsebench.store.results import open_results
from sparsebench.sweep.plan import GridRun
from sparsebench.sweep.settings import SweepConfig


@dataclass(frozen=True)
class FederatedTask:
    """One federated run of the sweep; `done`: finished already, so skipped."""

    fed: FederatedRun
    done: bool

    def row(self) -> dict[str, Any]:
        """What a dry run lists of it."""
        run, federation = self.fed.run, self.fed.federated
        return {
            "run_id": self.fed.run_id(),
            "method": run.method,
            "scenario": run.scenario_label,
            "seed": run.seed,
            "partition": federation.partition,
            "alpha": federation.alpha,
            "action": "skip" if self.done else "federate",
        }


def plan_federated(config: SweepConfig, grid: list[GridRun], db: Path) -> list[FederatedTask]:
    """Every run of `grid` under every federation of the sweep's block, in grid order."""
    assert config.federated is not None
    runs = [
        FederatedRun(run=grid_run.config, federated=federation)
        for grid_run in grid
        for federation in config.federated.federations()
    ]
    status: dict[str, str | None] = {}
    if db.is_file():
        with open_results(db, read_only=True) as store:
            status = {fed.run_id(): federated_status(store, fed.run_id()) for fed in runs}
    return [FederatedTask(fed, status.get(fed.run_id()) == "finished") for fed in runs]


def tasks_to_train(
    tasks: list[FederatedTask], cache_dir: Path | None, download: bool
) -> Iterator[tuple[FederatedTask, ImageDataset]]:
    """The tasks not done, each with its data, every data set loaded once."""
    loaded: dict[tuple, ImageDataset] = {}
    for task in tasks:
        if task.done:
            continue
        run = task.fed.run
        key = (run.dataset, run.data_path, json.dumps(run.data_options, sort_keys=True))
        if key not in loaded:
            loaded[key] = load_dataset(
                run.dataset, run.data_path, run.loader_options(cache_dir, download)
            )
        yield task, loaded[key]

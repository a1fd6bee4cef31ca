"""Grid expansion without waste, and what a sweep must still do for each of its runs.

A dense run is one run per model, data set and seed whatever the scenarios. A `post` run
trains exactly as dense does and prunes only after its last epoch, so when the grid also
holds that dense run (and no fine-tune epochs follow the pruning) it is derived from the
dense run's final weights instead of trained again. When the dense run is finished but
its weights are gone (a runs folder deleted, a database carried to another machine),
the dense run is trained once more for its weights alone (`weights`: its stored results
stay as they are) and every `post` run waiting for it is derived from them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sparsebench.data import probe_dataset
from sparsebench.data.registry import data_label
from sparsebench.errors import InputError
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.methods import is_baseline
from sparsebench.store.checkpoint import CheckpointError, load_checkpoint
from sparsebench.store.db import ResultsStore
from sparsebench.store.layout import checkpoint_path
from sparsebench.sweep.settings import SweepConfig
from sparsebench.train.derive import derivable_from
from sparsebench.train.run import SETTLED

Action = Literal["train", "resume", "derive", "weights", "skip"]
ACTIONS: tuple[Action, ...] = ("train", "resume", "derive", "weights", "skip")


@dataclass(frozen=True)
class GridRun:
    """One distinct run of a grid; `derive_from` is the dense run a `post` run reuses."""

    config: RunConfig
    derive_from: RunConfig | None = None

    @property
    def run_id(self) -> str:
        return self.config.run_id()


@dataclass(frozen=True)
class PlannedRun:
    grid_run: GridRun
    action: Action
    # A derived run waits for its dense run when that is not finished yet.
    waits_for: str | None = None

    @property
    def config(self) -> RunConfig:
        return self.grid_run.config

    @property
    def run_id(self) -> str:
        return self.grid_run.run_id

    @property
    def dense(self) -> RunConfig | None:
        """The dense run this run is derived from, if it is derived."""
        return self.grid_run.derive_from if self.action == "derive" else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "action": self.action,
            "model": self.config.model,
            "data": data_label(self.config.dataset, self.config.data_path, self.config.data_name),
            "dataset": self.config.dataset,
            "data_path": self.config.data_path,
            "method": self.config.method,
            "scenario": self.config.scenario_label,
            "seed": self.config.seed,
            "derived_from": None if self.dense is None else self.dense.run_id(),
        }


def check_sweep_data(sweep: SweepConfig, source: str | Path, download: bool = False) -> None:
    """Every data set of the sweep found and its index read (no image decoded), before
    anything trains: all that are missing or unreadable are named at once."""
    problems = []
    for index in range(len(sweep.datasets)):
        config = sweep.run_config(
            sweep.models[0], index, sweep.methods[0], sweep.points()[0], sweep.seeds_of(index)[0]
        )
        try:
            probe_dataset(config.dataset, config.data_path, config.loader_options(None, download))
        except InputError as error:
            problems.append(f"datasets[{index}] ({config.dataset}): {error}")
    if problems:
        raise InputError(
            f"{source}: nothing trained, {len(problems)} of {len(sweep.datasets)} data set(s) "
            f"cannot be read: {'; '.join(problems)}"
        )


def expand_grid(sweep: SweepConfig) -> list[GridRun]:
    """The grid's distinct runs, dense first within each model, data set and seed so that
    the runs derived from it can start early."""
    runs: list[GridRun] = []
    baseline = next((method for method in sweep.methods if is_baseline(method)), None)
    for dataset_index in range(len(sweep.datasets)):
        for model in sweep.models:
            for seed in sweep.seeds_of(dataset_index):
                dense = None
                if baseline is not None:
                    dense = sweep.run_config(model, dataset_index, baseline, None, seed)
                    runs.append(GridRun(dense))
                for method in sweep.methods:
                    if is_baseline(method):
                        continue
                    for point in sweep.points():
                        config = sweep.run_config(model, dataset_index, method, point, seed)
                        derivable = dense is not None and derivable_from(config, dense)
                        runs.append(GridRun(config, dense if derivable else None))
    return _distinct(runs)


# What `--only KEY=VALUE` selects by: each key, and the values a run answers to.
def _data_names(config: RunConfig) -> set[str]:
    """The data's own name (as the report shows it), and its file's or folder's name."""
    names = {data_label(config.dataset, config.data_path, config.data_name)}
    if config.data_path:
        names |= {Path(config.data_path).name, Path(config.data_path).stem}
    return names


SELECTORS = {
    "data": _data_names,
    "model": lambda config: {config.model},
    "method": lambda config: {config.method},
    "scenario": lambda config: {config.scenario_label},
    "seed": lambda config: {str(config.seed)},
}


def select_runs(grid: list[GridRun], only: dict[str, set[str]]) -> list[GridRun]:
    """The part of `grid` whose runs match every key of `only` (any of a key's values),
    with the dense runs that selected `post` runs are derived from. A key the grid does
    not know, or a value no run has, is an InputError naming it and what there is."""
    for key, values in only.items():
        if key not in SELECTORS:
            raise InputError(f"--only {key}: no such key (keys: {', '.join(SELECTORS)})")
        known = set().union(*(SELECTORS[key](run.config) for run in grid))
        for value in sorted(values - known):
            raise InputError(
                f"--only {key}={value}: no run of the grid has it "
                f"({key}: {', '.join(sorted(known))})"
            )

    def selected(config: RunConfig) -> bool:
        return all(SELECTORS[key](config) & values for key, values in only.items())

    chosen = [run for run in grid if selected(run.config)]
    needed = {run.derive_from.run_id() for run in chosen if run.derive_from is not None}
    return [run for run in grid if run in chosen or run.run_id in needed]


def _distinct(runs: list[GridRun]) -> list[GridRun]:
    seen: set[str] = set()
    distinct = []
    for run in runs:
        if run.run_id not in seen:
            seen.add(run.run_id)
            distinct.append(run)
    return distinct


def plan_sweep(
    grid: list[GridRun], store: ResultsStore | None, runs_dir: str | Path
) -> list[PlannedRun]:
    """What each run needs now: skip (finished or diverged in the database), resume (a
    checkpoint of it exists), derive (from its dense run), or train from the start.
    Without a database nothing is finished yet. A diverged run is not trained again:
    the same settings diverge the same way."""
    in_grid = {run.run_id for run in grid}

    def finished(run_id: str) -> bool:
        return store is not None and store.run_status(run_id) == "finished"

    def settled(run_id: str) -> bool:
        return store is not None and store.run_status(run_id) in SETTLED

    # Finished dense runs that a run still to derive needs, with and without their weights.
    needed = {
        run.derive_from.run_id(): run.derive_from
        for run in grid
        if run.derive_from is not None
        and not settled(run.run_id)
        and finished(run.derive_from.run_id())
    }
    has_weights = {run_id for run_id, dense in needed.items() if final_weights(runs_dir, dense)}
    lost_weights = {run_id for run_id in needed if run_id not in has_weights} & in_grid
    planned = []
    for run in grid:
        if run.run_id in lost_weights:
            planned.append(PlannedRun(run, "weights"))
            continue
        if settled(run.run_id):
            planned.append(PlannedRun(run, "skip"))
            continue
        dense = run.derive_from
        if dense is not None:
            dense_id = dense.run_id()
            if dense_id in lost_weights or (not finished(dense_id) and dense_id in in_grid):
                planned.append(PlannedRun(run, "derive", waits_for=dense_id))
                continue
            if dense_id in has_weights:
                planned.append(PlannedRun(run, "derive"))
                continue
            # The dense run finished elsewhere, outside this grid, its weights gone.
            run = GridRun(run.config)
        action: Action = "resume" if has_checkpoint(runs_dir, run.config) else "train"
        planned.append(PlannedRun(run, action))
    return planned


def has_checkpoint(runs_dir: str | Path, config: RunConfig) -> bool:
    """Under the run's id, or the first release's (its folder is renamed when it runs)."""
    return any(
        checkpoint_path(runs_dir, run_id).exists()
        for run_id in (config.run_id(), *config.earlier_run_ids())
    )


def final_weights(runs_dir: str | Path, dense: RunConfig) -> bool:
    """A checkpoint of the dense run's last epoch exists (one of an interrupted training
    for its weights does not count: the `weights` action resumes it)."""
    for run_id in (dense.run_id(), *dense.earlier_run_ids()):
        try:
            state = load_checkpoint(checkpoint_path(runs_dir, run_id))
        except CheckpointError:
            continue
        if state is not None and len(state.history) == dense.total_epochs:
            return True
    return False


def plan_counts(planned: list[PlannedRun]) -> dict[str, int]:
    counts = Counter(run.action for run in planned)
    return {action: counts.get(action, 0) for action in ACTIONS}

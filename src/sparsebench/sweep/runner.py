"""The sweep's driver: hands runs to an executor, writes every result to the database
(it is the only writer), and starts each derived `post` run once its dense run is done.

Every run is checkpointed each epoch by its worker and written to the database in one
transaction when it ends, so a sweep killed at any moment and started again resumes each
unfinished run from its last epoch and ends with the rows of an uninterrupted sweep.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sparsebench.store.db import ResultsStore, StoreError
from sparsebench.store.layout import checkpoint_path
from sparsebench.store.locks import RunBusy
from sparsebench.sweep.plan import PlannedRun
from sparsebench.sweep.worker import RunTask
from sparsebench.train.recorder import RunRecorder


class Executor(Protocol):
    slots: int
    description: str

    def submit(self, task: RunTask) -> Future: ...

    def restart(self) -> None: ...

    def close(self, cancel: bool = False) -> None: ...


@dataclass
class SweepState:
    """Counts for a progress display, and what became of each run."""

    total: int
    done: int = 0
    running: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    diverged: list[dict[str, str]] = field(default_factory=list)
    # Runs another live process was training (two sweeps on one database): left to it.
    held: list[dict[str, str]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)

    @property
    def ended(self) -> int:
        return self.done + len(self.failed) + len(self.diverged) + len(self.held)

    @property
    def left(self) -> int:
        return self.total - self.ended - self.running


class SweepProgress:
    """What the driver tells a display; the default shows nothing."""

    def update(self, state: SweepState) -> None: ...

    def run_ended(self, run: PlannedRun, result: dict[str, Any]) -> None: ...


def run_sweep(
    planned: list[PlannedRun],
    store: ResultsStore,
    runs_dir: str | Path,
    executor: Executor,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    progress: SweepProgress | None = None,
    on_finished: Callable[[dict[str, Any]], None] | None = None,
) -> SweepState:
    """Execute every planned run that is not finished; return what happened.
    `on_finished` receives each run's summary once it is stored (a tracker)."""
    data = {"cache_dir": None if cache_dir is None else str(cache_dir), "download": download}
    driver = _Driver(planned, store, Path(runs_dir), executor, data)
    driver.progress = progress or SweepProgress()
    driver.on_finished = on_finished
    try:
        driver.drive()
    except BaseException:
        executor.close(cancel=True)
        with contextlib.suppress(StoreError):  # a full disk: they show as interrupted anyway
            for run in driver.in_flight.values():
                if run.run_id in driver.recorders:
                    driver.recorders[run.run_id].end("interrupted", None)
        raise
    executor.close()
    return driver.state


class _Driver:
    """One sweep's runs: those ready to start, those waiting for their dense run, those
    in flight; each result written to the store as it comes back."""

    def __init__(
        self,
        planned: list[PlannedRun],
        store: ResultsStore,
        runs_dir: Path,
        executor: Executor,
        data: dict[str, Any],
    ) -> None:
        self.store, self.runs_dir, self.executor, self.data = store, runs_dir, executor, data
        self.progress = SweepProgress()
        self.on_finished: Callable[[dict[str, Any]], None] | None = None
        todo = [run for run in planned if run.action != "skip"]
        self.state = SweepState(total=len(todo))
        self.waiting: dict[str, list[PlannedRun]] = defaultdict(list)
        # Derived runs are quick: they go first whenever they are ready.
        self.ready = deque(
            sorted(
                (run for run in todo if run.waits_for is None),
                key=lambda run: run.action != "derive",
            )
        )
        for run in todo:
            if run.waits_for is not None:
                self.waiting[run.waits_for].append(run)
        self.in_flight: dict[Future, PlannedRun] = {}
        self.recorders: dict[str, RunRecorder] = {}  # the runs this sweep has begun

    def drive(self) -> None:
        while self.ready or self.in_flight:
            self._start_ready()
            self.state.running = len(self.in_flight)
            self.progress.update(self.state)
            finished, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                run = self.in_flight.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    broken = True
                    result = _lost(run, "its worker process died (killed, or out of memory)")
                except Exception as error:
                    result = _lost(run, f"{type(error).__name__}: {error}")
                self._record(run, result)
            if broken:
                self.executor.restart()
            self.state.running = len(self.in_flight)
            self.progress.update(self.state)

    def _start_ready(self) -> None:
        while self.ready and len(self.in_flight) < self.executor.slots:
            run = self.ready.popleft()
            if run.action == "weights":  # its stored results stay; nothing to record
                self.in_flight[self.executor.submit(self._task_for(run))] = run
                continue
            recorder = RunRecorder(self.store, run.config)
            try:
                recorder.begin(run.config.device, {}, checkpoint_path(self.runs_dir, run.run_id))
            except RunBusy as busy:
                for held in [run, *self.waiting.pop(run.run_id, [])]:
                    self.state.held.append({"run_id": held.run_id, "error": str(busy)})
                continue
            self.recorders[run.run_id] = recorder
            self.in_flight[self.executor.submit(self._task_for(run))] = run

    def _task_for(self, run: PlannedRun) -> RunTask:
        return RunTask(
            action="train" if run.action == "weights" else run.action,
            config=run.config.model_dump(),
            runs_dir=str(self.runs_dir),
            dense_config=None if run.dense is None else run.dense.model_dump(),
            **self.data,
        )

    def _record(self, run: PlannedRun, result: dict[str, Any]) -> None:
        if run.action == "weights":
            self._weights_ended(run, result)
            return
        state = self.state
        recorder = self.recorders.pop(run.run_id)
        if result["ok"]:
            derived_from = None if run.dense is None else run.dense.run_id()
            recorder.finish(result["summary"], derived_from=derived_from)
            if self.on_finished is not None:
                self.on_finished(result["summary"])
            state.done += 1
            state.finished.append(run.run_id)
            self.ready.extendleft(self.waiting.pop(run.run_id, []))
        else:
            status = result.get("status", "failed")
            recorder.end(status, result["error"])
            ended = state.diverged if status == "diverged" else state.failed
            ended.append({"run_id": run.run_id, "error": result["error"]})
            for dependent in self.waiting.pop(run.run_id, []):
                error = f"its dense run {run.run_id} {status}: {result['error']}"
                if status != "refused":  # a refused input leaves no row, here neither
                    RunRecorder(self.store, dependent.config).fail_unstarted(error)
                state.failed.append({"run_id": dependent.run_id, "error": error})
        self.progress.run_ended(run, result)

    def _weights_ended(self, run: PlannedRun, result: dict[str, Any]) -> None:
        """A finished dense run trained again for its weights: the runs derived from it
        start; if it failed, they fail with its error (its own row is left as it was)."""
        state = self.state
        dependents = self.waiting.pop(run.run_id, [])
        if result["ok"]:
            state.done += 1
            self.ready.extendleft(dependents)
        else:
            error = f"its dense run {run.run_id}'s weights could not be made again: "
            error += result["error"]
            state.failed.append({"run_id": run.run_id, "error": result["error"]})
            for dependent in dependents:
                RunRecorder(self.store, dependent.config).fail_unstarted(error)
                state.failed.append({"run_id": dependent.run_id, "error": error})
        self.progress.run_ended(run, result)


def _lost(run: PlannedRun, error: str) -> dict[str, Any]:
    return {"run_id": run.run_id, "ok": False, "error": error}

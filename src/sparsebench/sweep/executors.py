"""Where a sweep's runs execute: worker processes on this machine, or a Ray cluster.

Both hand back a `concurrent.futures.Future` per run, so the driver waits on either the
same way, and both say how many runs may execute at once (`slots`).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sparsebench.errors import InputError, validation_message
from sparsebench.sweep.runner import Executor
from sparsebench.sweep.worker import RunTask, execute_task, prepare_local_worker


def available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers() -> int:
    """One run per core (at most 8), so each run gets one torch thread: the fastest way
    to sweep small networks here, and the same numerics as the Ray executor's default of
    one CPU per run (a run's float results depend on its thread count). One run at a
    time on a CUDA machine, where the runs would share the GPU."""
    import torch

    return 1 if torch.cuda.is_available() else min(available_cpus(), 8)


class LocalExecutor:
    """`workers` processes on this machine, the cores split evenly between them."""

    def __init__(self, workers: int | None = None, threads_per_run: int | None = None) -> None:
        workers = default_workers() if workers is None else workers
        if workers < 1:
            raise InputError(f"--workers must be at least 1, got {workers}")
        self.slots = workers
        self.threads = threads_per_run or max(1, available_cpus() // workers)
        self.description = f"local, {workers} worker(s) x {self.threads} torch thread(s)"
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: a forked child inherits the driver's torch thread pools.
        return ProcessPoolExecutor(
            max_workers=self.slots,
            mp_context=get_context("spawn"),
            initializer=prepare_local_worker,
        )

    def submit(self, task: RunTask) -> Future:
        return self._pool.submit(execute_task, replace(task, threads=self.threads))

    def restart(self) -> None:
        """A fresh pool after a worker died (every run it held has failed)."""
        self.close()
        self._pool = self._new_pool()

    def close(self, cancel: bool = False) -> None:
        if cancel:
            # The pool has no public way to stop runs in progress; kill its own workers
            # (not every child of this process: a library user may have others).
            for process in list((self._pool._processes or {}).values()):
                process.kill()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayExecutor:
    """Runs as Ray tasks: a local Ray instance, or the cluster at `address`. Data paths and
    the runs folder must be readable (and the runs folder writable) on every node."""

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        workers: int | None = None,
    ) -> None:
        _hide_broken_amdsmi()
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray: pip install 'sparsebench[ray]'") from None
        if cpus_per_run <= 0 or gpus_per_run < 0:
            raise InputError("--cpus-per-run must be > 0 and --gpus-per-run >= 0")
        self._ray = ray
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=available_cpus(),
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=256 * 2**20,
            )
        self.threads = max(1, int(cpus_per_run))
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(execute_task)
        resources = ray.cluster_resources()
        fits = int(resources.get("CPU", 1) // cpus_per_run)
        if gpus_per_run:
            fits = min(fits, int(resources.get("GPU", 0) // gpus_per_run))
        if fits < 1:
            ray.shutdown()
            raise InputError(
                f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, "
                f"{resources.get('GPU', 0):g} GPUs) cannot fit one run of "
                f"{cpus_per_run:g} CPUs and {gpus_per_run:g} GPUs"
            )
        self.slots = min(workers, fits) if workers else fits
        where = address or "local instance"
        self.description = f"ray ({where}), {self.slots} run(s) at once x {cpus_per_run:g} CPU(s)"

    def submit(self, task: RunTask) -> Future:
        return self._remote.remote(replace(task, threads=self.threads)).future()

    def restart(self) -> None:
        """Ray replaces dead workers itself."""

    def close(self, cancel: bool = False) -> None:
        self._ray.shutdown()


def _hide_broken_amdsmi() -> None:
    """Make `import amdsmi` an ImportError, here and in the Ray processes started from
    here, where the installed package cannot load its library (see shims/amdsmi)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its failure
            import amdsmi  # noqa: F401
    except ImportError:
        return
    except Exception:
        sys.modules.pop("amdsmi", None)
        sys.modules["amdsmi"] = None  # type: ignore[assignment]
        shims = str(Path(__file__).parent / "shims")
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = shims if not path else f"{shims}{os.pathsep}{path}"


class ExecutorOptions(BaseModel):
    """An executor's own settings: `--executor-option KEY=VALUE`, or a flag of the sweep
    command where one is named the same (`--workers`); refused for another executor."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalOptions(ExecutorOptions):
    workers: int | None = Field(
        None, ge=1, le=1024, description="runs at once (default: one per core, at most 8)"
    )
    threads_per_run: int | None = Field(
        None, ge=1, le=1024, description="torch threads per run (default: cores / workers)"
    )


class RayOptions(ExecutorOptions):
    ray_address: str | None = Field(None, description="join this Ray cluster, not a new one")
    cpus_per_run: float = Field(1.0, gt=0, le=1024, description="CPUs each run reserves")
    gpus_per_run: float = Field(0.0, ge=0, le=64, description="GPUs each run reserves")
    workers: int | None = Field(
        None, ge=1, le=1024, description="runs at once (default: what the cluster fits)"
    )


Options = TypeVar("Options", bound=ExecutorOptions)


@dataclass(frozen=True)
class ExecutorSpec:
    """A registered executor: how it is built from its settings, and what they are."""

    name: str
    build: Callable[[Any], Executor]
    options: type[ExecutorOptions]


EXECUTORS: dict[str, ExecutorSpec] = {}


def register_executor(
    name: str, options: type[Options]
) -> Callable[[Callable[[Options], Executor]], Callable[[Options], Executor]]:
    """Register `build(options) -> Executor` as `--executor NAME`, its settings checked by
    `options`."""

    def decorate(build: Callable[[Options], Executor]) -> Callable[[Options], Executor]:
        EXECUTORS[name] = ExecutorSpec(name, build, options)
        return build

    return decorate


def executor_settings(name: str, given: Mapping[str, Any]) -> ExecutorOptions:
    """The settings `given` for executor `name`, checked by its options model; each
    problem an InputError naming the flag."""
    if name not in EXECUTORS:
        raise InputError(f"--executor: expected {' or '.join(EXECUTORS)}, got {name!r}")
    options = EXECUTORS[name].options
    for key in given:
        if key not in options.model_fields:
            flag = "--" + key.replace("_", "-")
            raise InputError(f"{flag} is not a setting of executor {name!r}")
    try:
        return options(**given)
    except ValidationError as error:
        raise InputError(validation_message(error, flags=True)) from None


def make_executor(name: str, settings: ExecutorOptions) -> Executor:
    return EXECUTORS[name].build(settings)


@register_executor("local", LocalOptions)
def _local(options: LocalOptions) -> Executor:
    return LocalExecutor(options.workers, options.threads_per_run)


@register_executor("ray", RayOptions)
def _ray(options: RayOptions) -> Executor:
    return RayExecutor(
        options.ray_address, options.cpus_per_run, options.gpus_per_run, options.workers
    )

"""What a sweep's worker process does with one run: load its data (kept for the next run
on the same data), train, resume or derive it, and hand the result back.

Workers never touch the results database; the driver alone writes it. Everything here
crosses a process boundary (or a Ray cluster), so tasks and results are plain data.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sparsebench.data.dataset import ImageDataset
from sparsebench.data.options import DataOptions
from sparsebench.settings.run import RunConfig
from sparsebench.store.layout import adopt_earlier_folder, checkpoint_path


@dataclass(frozen=True)
class RunTask:
    """One run for a worker: `derive` needs the dense run it is derived from."""

    action: str  # train, resume or derive
    config: dict[str, Any]
    runs_dir: str
    dense_config: dict[str, Any] | None = None
    cache_dir: str | None = None
    download: bool = False
    threads: int | None = None


def prepare_local_worker() -> None:
    """Run once in each local worker process: a killed sweep must not leave orphans
    training and writing checkpoints. Its warnings (a damaged checkpoint set aside, a
    class too small for its split) reach the terminal as one line each, as the CLI's."""
    warnings.showwarning = _one_line_warning
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        # A sweep killed while this worker was starting, before the line above, sends
        # it no signal: it was adopted by another process by now, and goes.
        parent = multiprocessing.parent_process()
        if parent is not None and os.getppid() != parent.pid:
            os._exit(1)


def _one_line_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    sys.stderr.write(f"warning: {message}\n")


def execute_task(task: RunTask) -> dict[str, Any]:
    """Run `task`; every error comes back as a result, so the sweep goes on."""
    import torch

    from sparsebench.train.derive import derive_post_run
    from sparsebench.train.loop import train_run
    from sparsebench.train.outcome import ending_of

    if task.threads:
        torch.set_num_threads(task.threads)
    started = time.perf_counter()
    config = RunConfig(**task.config)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        data = _dataset(config.dataset, config.data_path, _options(config, task))
        adopt_earlier_folder(task.runs_dir, config.run_id(), *config.earlier_run_ids())
        checkpoint = checkpoint_path(task.runs_dir, config.run_id())
        if task.action == "derive":
            assert task.dense_config is not None
            dense = RunConfig(**task.dense_config)
            adopt_earlier_folder(task.runs_dir, dense.run_id(), *dense.earlier_run_ids())
            dense_checkpoint = checkpoint_path(task.runs_dir, dense.run_id())
            result = derive_post_run(config, dense, data, dense_checkpoint, checkpoint)
        else:
            result = train_run(config, data, checkpoint)
    except Exception as error:
        ending = ending_of(error)
        return {
            "run_id": config.run_id(),
            "ok": False,
            "status": ending.status,
            "error": ending.error or f"{type(error).__name__}",
            "traceback": traceback.format_exc(),
            "worker": worker,
            "seconds": time.perf_counter() - started,
        }
    return {
        "run_id": config.run_id(),
        "ok": True,
        "summary": result,
        "worker": worker,
        "seconds": time.perf_counter() - started,
    }


def _options(config: RunConfig, task: RunTask) -> DataOptions:
    cache_dir = Path(task.cache_dir) if task.cache_dir else None
    return config.loader_options(cache_dir, task.download)


@lru_cache(maxsize=2)
def _dataset(name: str, data_path: str | None, options: DataOptions) -> ImageDataset:
    from sparsebench.data import load_dataset

    return load_dataset(name, data_path, options)

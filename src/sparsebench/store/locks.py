"""Which process trains a run: a claim in the database that dies with its process.

A claim names the host, the process id and the process's start time, so a claim left by
a killed process (or one whose id the system gave to another process since) is seen to
be stale and never blocks the run for good.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import psutil

from sparsebench.errors import InputError


class RunBusy(InputError):
    """Another live process is training this run."""


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()) or 0.0)

    def alive(self) -> bool:
        """Whether this process still runs. A process on another host cannot be
        checked from here, so its claim is taken as live."""
        if self.host != socket.gethostname():
            return True
        started = _start_time(self.pid)
        return started is not None and abs(started - self.started) < 1.0

    def describe(self, since: float) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        return f"process {self.pid} on {self.host} (since {when})"


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None

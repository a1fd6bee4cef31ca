"""How a run that stopped without finishing is stored: one policy for `train`, `sweep`
and derived runs, so the same error ends a run the same way under every command.

| raised                                  | stored        | the same command then      |
|-----------------------------------------|---------------|----------------------------|
| RunDiverged (the loss became NaN/inf)   | `diverged`    | skips it (`--force` trains)|
| Ctrl-C, RunInterrupted                  | `interrupted` | resumes it                 |
| OSError, StoreError (a full disk, a     | `interrupted` | resumes it once the cause  |
|   folder that cannot be written)        |               |   is fixed                 |
| InputError (the data or a setting is    | nothing new   | refuses it again           |
|   refused before it trains)             |               |                            |
| anything else (a bug)                   | `failed`      | trains it again            |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sparsebench.errors import InputError
from sparsebench.store.db import StoreError
from sparsebench.train.loop import RunDiverged, RunInterrupted

Status = Literal["interrupted", "diverged", "failed", "refused"]


@dataclass(frozen=True)
class Ending:
    """`refused`: the run leaves no row of its own behind (`ResultsStore.end_run`)."""

    status: Status
    error: str | None


def ending_of(error: BaseException) -> Ending:
    if isinstance(error, RunDiverged):  # an InputError too: tested first
        return Ending("diverged", str(error))
    if isinstance(error, KeyboardInterrupt | RunInterrupted):
        return Ending("interrupted", None)
    if isinstance(error, OSError | StoreError):
        return Ending("interrupted", str(error))
    if isinstance(error, InputError):
        return Ending("refused", str(error))
    return Ending("failed", f"{type(error).__name__}: {error}")

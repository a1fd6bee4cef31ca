"""Epoch checkpoints on disk: written whole or not at all, read without running code.

A checkpoint is written to a temporary file, flushed to disk and renamed over the old
one, which is first kept as `checkpoint.prev.pt`: a run killed at any point, or whose
newest checkpoint is later found damaged, resumes from the last whole one. Files are
read with `torch.load(weights_only=True)`, so a hostile file cannot run code; a
damaged, foreign or newer-format file is named in one line and set aside, never
loaded unsafely.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sparsebench.errors import InputError
from sparsebench.files import written_whole
from sparsebench.store.records import EpochRecord

# 1: the first format (model, optimizer, method, data generator, RNG, history).
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("version", "run_id", "model", "optimizer", "method", "history")


class CheckpointError(InputError):
    """A checkpoint file that cannot be used: damaged, not ours, or from a newer format."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was set aside and the run goes on from an older state."""


@dataclass(frozen=True)
class Checkpoint:
    """A run's state at the end of an epoch: everything that resuming it, deriving a run
    from it, exporting or serving it reads. On disk it is a dict of tensors and numbers
    (`as_state`), checked whole before it becomes one of these (`load_checkpoint`)."""

    run_id: str
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    method: dict[str, Any]
    data_generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[EpochRecord]
    cuda_rng: torch.Tensor | None = None
    config: dict[str, Any] | None = None  # the first release kept none
    steps: int | None = None  # optimiser steps taken; releases before numerics 2 kept none

    def as_state(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, **asdict(self)}

    @property
    def trainer_state(self) -> dict[str, Any]:
        """What `SparseTrainer.load_state_dict` takes."""
        state = {"model": self.model, "optimizer": self.optimizer, "method": self.method}
        return state if self.steps is None else {**state, "steps": self.steps}

    def require_run(self, path: Path, run_id: str, *earlier_ids: str) -> None:
        """Refuse a checkpoint of another run (a run's earlier ids are its own)."""
        if self.run_id not in (run_id, *(earlier for earlier in earlier_ids if earlier)):
            raise CheckpointError(f"{path}: holds run {self.run_id}, not {run_id}")


def previous_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    state = checkpoint.as_state()
    try:
        with (
            written_whole(path, previous=previous_path(path)) as temporary,
            open(temporary, "wb") as handle,
        ):
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at `path` (None if there is none), checked to be a whole
    sparsebench checkpoint of a format this version reads."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message here suggests weights_only=False, which is never done
        raise CheckpointError(
            f"{path}: not loaded: it holds Python objects beyond tensors and numbers"
        ) from None
    except Exception:
        raise CheckpointError(
            f"{path}: damaged checkpoint (truncated or not a checkpoint file)"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a sparsebench checkpoint")
    if state["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['version']!r} is not the one this sparsebench "
            f"reads ({CHECKPOINT_VERSION}): use the sparsebench that wrote it"
        )
    problem = format_problem(state)
    if problem is not None:
        raise CheckpointError(f"{path}: not a whole sparsebench checkpoint: {problem}")
    fields = {key: value for key, value in state.items() if key in Checkpoint.__dataclass_fields__}
    fields["history"] = [EpochRecord.from_row(row) for row in state["history"]]
    return Checkpoint(**fields)


def _is_tensor_dict(value: Any, dtype: torch.dtype | None = None) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str)
        and isinstance(tensor, torch.Tensor)
        and (dtype is None or tensor.dtype == dtype)
        for key, tensor in value.items()
    )


def _is_rng_state(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


# Every field that resuming, deriving, exporting or serving a run reads, and what it
# must hold; a file is checked whole before any of it is used.
FIELDS: dict[str, tuple[str, Any]] = {
    "run_id": ("a run id", lambda v: isinstance(v, str) and bool(v)),
    "model": ("a state dict of tensors", _is_tensor_dict),
    "optimizer": (
        "an optimiser state (state, param_groups)",
        lambda v: (
            isinstance(v, dict)
            and isinstance(v.get("state"), dict)
            and isinstance(v.get("param_groups"), list)
            and all(isinstance(group, dict) and "params" in group for group in v["param_groups"])
        ),
    ),
    "method": (
        "a pruning state (masks of booleans, a generator state, a step)",
        lambda v: (
            isinstance(v, dict)
            and _is_tensor_dict(v.get("masks"), torch.bool)
            and _is_rng_state(v.get("generator"))
            and isinstance(v.get("step", 0), int)
        ),
    ),
    "data_generator": ("a generator state", _is_rng_state),
    "torch_rng": ("a generator state", _is_rng_state),
    "cuda_rng": ("a generator state or nothing", lambda v: v is None or _is_rng_state(v)),
    "steps": ("a step count or nothing", lambda v: v is None or isinstance(v, int)),
    "history": (
        "a list of epochs, each with its number",
        lambda v: (
            isinstance(v, list)
            and all(isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in v)
            and [row["epoch"] for row in v] == list(range(len(v)))
        ),
    ),
}


OPTIONAL = ("cuda_rng", "steps")


def format_problem(state: dict[str, Any]) -> str | None:
    """The first field of `state` that is missing or holds the wrong kind of value."""
    for key, (expected, holds) in FIELDS.items():
        if key not in state and key in OPTIONAL:
            continue
        if key not in state:
            return f"{key!r} is missing"
        if not holds(state[key]):
            return f"{key!r} is not {expected}"
    return None


def load_resumable(path: Path, run_id: str, *earlier_ids: str) -> Checkpoint | None:
    """The newest whole checkpoint of `run_id` (or of one of `earlier_ids`, the ids
    earlier releases gave the same run): `path`, else the previous one. A file that
    cannot be used is renamed `*.damaged` (so it is never rotated over a good one) and a
    warning says what was found and what the run does now."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # a write that was killed
        leftover.unlink(missing_ok=True)
    problems = []
    for candidate in (path, previous_path(path)):
        try:
            state = load_checkpoint(candidate)
            if state is not None:
                state.require_run(candidate, run_id, *earlier_ids)
        except CheckpointError as error:
            damaged = candidate.with_name(candidate.name + ".damaged")
            os.replace(candidate, damaged)
            problems.append(f"{error} (kept as {damaged.name})")
            continue
        if state is None:
            continue
        if problems:
            epochs = len(state.history)
            _warn(problems, f"resuming from {candidate.name} after epoch {epochs}")
        return state
    if problems:
        _warn(problems, "training the run again from the start")
    return None


def _warn(problems: list[str], action: str) -> None:
    warnings.warn("; ".join([*problems, action]), CheckpointWarning, stacklevel=3)

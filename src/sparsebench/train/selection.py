"""Which weights are tested: those of the best validation epoch (what `train` prints, and
`runs` and `report` show by default), kept in a second checkpoint,
`checkpoint.best-val.pt`, beside the run's own; and the last epoch's (the study's
protocol, `--select last`).

A pruning method that prunes while it trains (In-Training, GMP) or after it (Post-
Training) validates networks that are not yet as sparse as the one it delivers: the
best validation accuracy of a half-pruned network says nothing about the pruned one. So
the best epoch is taken among the epochs validated at the highest sparsity reached so
far: a sparser epoch replaces the kept one whatever its accuracy, and a tie in accuracy
keeps the earlier epoch. When training ends sparser than the kept epoch (Post-Training
prunes after its last validation), the last epoch is the best-validation one too.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsebench.files import written_whole
from sparsebench.sparsity.masks import MaskSet
from sparsebench.sparsity.methods import PruningMethod
from sparsebench.store.checkpoint import CheckpointWarning

# Sparsities of one mask state are exact unit counts: equal means equal to rounding.
SAME_SPARSITY = 1e-9


def pruned_share(masks: MaskSet) -> float:
    """The share of prunable units (filters, neurons or weights) masked away."""
    units = sum(mask.keep.numel() for mask in masks)
    return 0.0 if units == 0 else 1.0 - sum(mask.alive for mask in masks) / units


def best_val_path(checkpoint_path: Path) -> Path:
    """`checkpoint.best-val.pt` beside `checkpoint.pt`."""
    return checkpoint_path.with_name(f"{checkpoint_path.stem}.best-val{checkpoint_path.suffix}")


@dataclass
class BestValidation:
    """The best validation epoch so far of one run, its weights in `path`."""

    path: Path
    run_id: str
    epoch: int | None = None
    val_accuracy: float = float("-inf")
    sparsity: float = float("-inf")

    @classmethod
    def resumed(cls, path: Path, run_id: str) -> BestValidation:
        """The one a resumed run had kept (a file of another run, or none, starts afresh)."""
        state = _read(path)
        if state is None or state.get("run_id") != run_id:
            return cls(path, run_id)
        return cls(path, run_id, state["epoch"], state["val_accuracy"], state["sparsity"])

    def consider(
        self, epoch: int, val_accuracy: float, model: nn.Module, method: PruningMethod
    ) -> None:
        """Keep this epoch's weights and masks if they are the best so far (their state
        is read only then)."""
        sparsity = pruned_share(method.masks)
        sparser = sparsity > self.sparsity + SAME_SPARSITY
        as_sparse = abs(sparsity - self.sparsity) <= SAME_SPARSITY
        if not (sparser or (as_sparse and val_accuracy > self.val_accuracy)):
            return
        self.epoch, self.val_accuracy, self.sparsity = epoch, val_accuracy, sparsity
        state = {
            "run_id": self.run_id,
            "epoch": epoch,
            "val_accuracy": val_accuracy,
            "sparsity": sparsity,
            "model": model.state_dict(),
            "method": method.state_dict(),
        }
        try:
            with written_whole(self.path) as temporary, open(temporary, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from None

    def weights_to_test(self, masks: MaskSet, last_epoch: int) -> dict[str, Any] | None:
        """The kept weights and masks when they are not the last epoch's and as sparse as
        the trained network; None when the last epoch is the best-validation one."""
        if self.epoch is None or self.epoch == last_epoch:
            return None
        if pruned_share(masks) > self.sparsity + SAME_SPARSITY:
            return None
        return _read(self.path)


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged second checkpoint costs the selection, not the run
        warnings.warn(
            f"{path}: best-validation checkpoint not read ({type(error).__name__}); "
            "the last epoch stands for it",
            CheckpointWarning,
            stacklevel=2,
        )
        return None

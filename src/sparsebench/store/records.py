"""The typed records the results database is written with: what the store files a
run under, built by whoever knows the run's settings (the store knows records, not
settings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunRecord:
    """A run as the `runs` table keys it: its id, its settings as stored, and the values
    tables and reports select by."""

    run_id: str
    config: dict[str, Any]
    model: str
    dataset: str
    method: str
    scenario: str  # the label: the baseline's name, a scenario's, or the targets'
    conv_sparsity: float
    linear_sparsity: float
    seed: int
    epochs: int  # every epoch the run trains


@dataclass
class RunSummary:
    """A run in one shape, whether it just trained (`RunResult.summary`) or was read
    back from the store (`ResultsStore.run_summary`); `as_json` is what
    `sparsebench train --json` prints and trackers receive."""

    run_id: str
    status: str
    config: dict[str, Any]
    device: str | None
    data: dict[str, Any] | None
    epochs: list[dict[str, Any]]
    test: dict[str, Any] | None  # the last epoch's weights
    test_best_val: dict[str, Any] | None  # the best validation epoch's, with its epoch
    layers: list[dict[str, Any]]  # achieved sparsity per layer
    sparsity_by_kind: dict[str, float]
    error: str | None = None
    derived_from: str | None = None  # the dense run a derived run's training is
    legacy_run_id: str | None = None  # the first release's id
    earlier_run_ids: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    mask_updates_every: int | None = None  # optimiser steps; None: never or not known
    resumed_from_epoch: int = 0
    reused: bool = False  # found finished, not trained by this call

    @property
    def execution(self) -> str | None:
        """compact or masked: how the last epoch trained (None before any epoch)."""
        return self.epochs[-1].get("execution") if self.epochs else None

    def epoch_mean(self, key: str) -> float | None:
        """The mean of `key` over the epochs that have it (a resumed older run may not)."""
        values = [row[key] for row in self.epochs if row.get(key) is not None]
        return sum(values) / len(values) if values else None

    def as_json(self) -> dict[str, Any]:
        shown = asdict(self)
        shown["sparsity"] = {
            "layers": shown.pop("layers"),
            "by_kind": shown.pop("sparsity_by_kind"),
        }
        shown["execution"] = self.execution
        for key in ("train_macs_per_sample", "train_macs_dense_per_sample"):
            shown[key] = self.epoch_mean(key)
        return shown

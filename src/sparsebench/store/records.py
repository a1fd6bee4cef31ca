"""The typed records the results database is written with: what the store files a
run under, built by whoever knows the run's settings (the store knows records, not
settings)."""

from __future__ import annotations

from dataclasses import dataclass
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

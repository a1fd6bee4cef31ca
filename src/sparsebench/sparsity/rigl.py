"""RigL (Evci et al. 2020): Static's random start, then every N steps drop the weakest
units and grow those with the largest dense gradient, at zero."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sparsebench.sparsity.layers import PrunableLayer
from sparsebench.sparsity.methods import (
    AllocationOptions,
    Federation,
    MethodOptions,
    register_method,
)
from sparsebench.sparsity.schedules import EverySteps, Schedule
from sparsebench.sparsity.scorers import GradientMagnitude, Scorer
from sparsebench.sparsity.static import Static


class RigLOptions(AllocationOptions):
    drop_fraction: float = Field(0.3, ge=0, le=1, description="of alive units, at step 0")
    update_every: int = Field(100, ge=1, le=10**9, description="optimiser steps")
    update_until: float = Field(0.75, gt=0, le=1, description="of training; masks fixed after")
    decay: Literal["cosine", "constant"] = "cosine"
    regrowth: Literal["auto", "zero", "init"] = Field(
        "auto", description="auto: single weights at zero, filters and neurons from the initialiser"
    )


@register_method
class RigL(Static):
    """Grown weights start at zero, so the network's output does not change when they
    grow, with fresh optimiser state; a filter's gradient is the norm of its own. A whole
    filter or neuron grown at zero would never learn (its output is 0, and ReLU passes no
    gradient at 0), so by default whole rows grow from the initialiser."""

    name, display_name, colour, marker = "rigl", "RigL", "#8c564b", "*"
    Options = RigLOptions

    def regrowth(self, layer: PrunableLayer) -> Literal["init", "zero"]:
        choice = self.options.regrowth  # type: ignore[attr-defined]
        if choice == "auto":
            return "init" if layer.whole_rows else "zero"
        return choice

    def schedule(self) -> Schedule:
        options = self.options
        assert isinstance(options, RigLOptions)
        return EverySteps(
            options.update_every, options.drop_fraction, options.update_until, options.decay
        )

    def grow_scorer(self) -> Scorer:
        return GradientMagnitude()

    @classmethod
    def federation(cls) -> Federation | None:
        return "dynamic"

    @classmethod
    def round_schedule(cls, options: MethodOptions, every: int) -> Schedule | None:
        assert isinstance(options, RigLOptions)
        return EverySteps(every, options.drop_fraction, options.update_until, options.decay)

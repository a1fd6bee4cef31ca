"""Gradual magnitude pruning (Zhu and Gupta 2017): start dense (or at an initial
sparsity), prune by magnitude every N steps along a cubic ramp to the target, no
regrowth."""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from sparsebench.sparsity import criteria
from sparsebench.sparsity.connectivity import connected
from sparsebench.sparsity.masks import LayerMask, MaskSet
from sparsebench.sparsity.methods import (
    MethodOptions,
    PruningMethod,
    keep_best,
    register_method,
)
from sparsebench.sparsity.schedules import CubicRamp, Schedule
from sparsebench.sparsity.scorers import Magnitude


class GmpOptions(MethodOptions):
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="s_i, a share of the target")
    start: float = Field(0.0, ge=0, lt=1, description="of training, where the ramp starts")
    end: float = Field(0.75, gt=0, le=1, description="of training, where it reaches the target")
    update_every: int = Field(100, ge=1, le=10**9, description="optimiser steps")

    @model_validator(mode="after")
    def _ordered(self) -> GmpOptions:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        return self


@register_method
class Gmp(PruningMethod):
    """At ramp progress p a layer with final sparsity s_f keeps its largest units down to
    s_t = s_i + (s_f - s_i) p; units once pruned stay pruned."""

    name, display_name, colour, marker = "gmp", "GMP", "#e377c2", "X"
    Options = GmpOptions
    draw = None

    def schedule(self) -> Schedule:
        options = self.options
        assert isinstance(options, GmpOptions)
        return CubicRamp(options.update_every, options.start, options.end)

    def prepare(self, batches: object) -> None:
        self.masks = MaskSet(
            [
                LayerMask(layer, torch.ones(layer.unit_shape, dtype=torch.bool))
                for layer in self.layers
            ]
        )
        self.masks.hook_gradients()
        self.update(0.0)

    @torch.no_grad()
    def update(self, amount: float) -> None:
        assert isinstance(self.options, GmpOptions)
        initial = self.options.initial_sparsity
        for mask in self.masks:
            final = self.targets.for_kind(mask.layer.kind)
            target = initial * final + (final - initial * final) * amount
            n_keep = criteria.units_to_keep(mask.layer.units, target)
            if n_keep >= mask.alive:
                continue
            scores = Magnitude().scores(mask.layer, self).to(mask.keep.device)
            ranked = scores.masked_fill(~mask.keep, -float("inf"))
            keep = connected(mask.layer, keep_best(mask.layer, ranked, n_keep))
            dropped = mask.keep & ~keep.to(mask.keep.device)
            mask.update(keep)
            mask.apply()
            self._reset_optimizer_state(mask, dropped)

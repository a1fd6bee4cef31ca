"""The learning rate at every optimiser step: a pure function of the step, so a resumed
run (whose trainer counts its steps in its state) continues on the same curve.

- `constant`: the base rate throughout (the study's Adam at 1e-4);
- `cosine`: half a cosine from the base rate to zero over training (Loshchilov and
  Hutter 2017, SGDR without restarts);
- `step`: the base rate, a tenth of it from half-way, a hundredth from three quarters
  (the ResNet recipe, He et al. 2016).

Any of them may start with a linear warm-up (Goyal et al. 2017): Adam's first steps,
taken on second-moment estimates of a handful of batches, are the ones that throw a
network without batch normalisation (VGG16 here) into a state it does not leave.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from sparsebench.settings.run import Schedule


@dataclass(frozen=True)
class LearningRate:
    """`base` at `schedule` over `total_steps`, after `warmup_steps` of linear rise."""

    base: float
    schedule: Schedule
    total_steps: int
    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.base
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        progress = min(progress, 1.0)
        if self.schedule == "cosine":
            return self.base * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.base * 0.1 ** ((progress >= 0.5) + (progress >= 0.75))


@dataclass(frozen=True)
class PlannedRate:
    """The rate at each optimiser step of a run whose method places its steps on the
    schedule (`PruningMethod.schedule_point`): retraining after pruning, rewinding."""

    base: float
    schedule: Schedule
    warmup: float  # share of the schedule's steps
    point: Callable[[int], tuple[int, int] | float]

    def __call__(self, step: int) -> float:
        point = self.point(step)
        if isinstance(point, float):
            return self.base * point
        position, length = point
        return LearningRate(self.base, self.schedule, length, round(self.warmup * length))(position)

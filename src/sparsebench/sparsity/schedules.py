"""When a method changes its masks, and by how much.

A schedule answers two questions after every optimiser step and every epoch: is this an
update, and with what fraction (of alive units to swap) or target (sparsity to reach)?
Steps count from 1: step t is the t-th optimiser step of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class Schedule:
    def after_step(self, step: int, total_steps: int) -> float | None:
        """The update after optimiser step `step`, or None."""
        return None

    def after_epoch(self, epoch: int, num_epochs: int) -> float | None:
        """The update after epoch `epoch` (from 0), or None."""
        return None

    def updates_every(self, steps_per_epoch: int) -> int | None:
        """Optimiser steps between mask updates; None for a mask that never changes."""
        return None


class Never(Schedule):
    """The initial masks stay for the whole run."""


@dataclass(frozen=True)
class EveryEpoch(Schedule):
    """After every epoch but the last (the tested network has trained every unit it
    uses), swap `fraction` of the alive units: the study's In-Training and SET."""

    fraction: float

    def after_epoch(self, epoch, num_epochs):
        return self.fraction if epoch < num_epochs - 1 else None

    def updates_every(self, steps_per_epoch):
        return steps_per_epoch


@dataclass(frozen=True)
class EverySteps(Schedule):
    """Every `every` optimiser steps until `until` of training, swap `fraction` of the
    alive units, held constant or cosine-decayed to zero at `until` (RigL)."""

    every: int
    fraction: float
    until: float = 0.75
    decay: str = "constant"

    def after_step(self, step, total_steps):
        end = self.until * total_steps
        if step % self.every or step >= end:
            return None
        if self.decay == "cosine":
            return self.fraction / 2 * (1 + math.cos(math.pi * step / end))
        return self.fraction

    def updates_every(self, steps_per_epoch):
        return self.every


@dataclass(frozen=True)
class AfterStep(Schedule):
    """Once, after optimiser step `step`, swap `fraction` of the alive units (a federated
    client's mask round: the server decides when masks change, not the client's own
    schedule)."""

    step: int
    fraction: float

    def after_step(self, step, total_steps):
        return self.fraction if step == self.step else None

    def updates_every(self, steps_per_epoch):
        return None


@dataclass(frozen=True)
class AfterEpoch(Schedule):
    """Once, after epoch `epoch` (Post-Training prunes after its dense epochs)."""

    epoch: int

    def after_epoch(self, epoch, num_epochs):
        return 1.0 if epoch == self.epoch else None


@dataclass(frozen=True)
class CubicRamp(Schedule):
    """Gradual magnitude pruning (Zhu and Gupta 2017): from step t0 = `start` of training
    to `end` of it, every `every` steps, the target sparsity is
    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3, with n dt = the ramp's length;
    the value returned is the fraction of the way from s_i to s_f."""

    every: int
    start: float = 0.0
    end: float = 0.75

    def progress(self, step: int, total_steps: int) -> float:
        t0, t1 = self.start * total_steps, self.end * total_steps
        if step <= t0:
            return 0.0
        if step >= t1 or t1 <= t0:
            return 1.0
        return 1.0 - (1.0 - (step - t0) / (t1 - t0)) ** 3

    def after_step(self, step, total_steps):
        last = math.ceil(self.end * total_steps / self.every) * self.every
        # The last step of training always prunes to where the ramp is: a run too short
        # for its `every` still ends at its target sparsity.
        if (step % self.every or step > last) and step != total_steps:
            return None
        return self.progress(step, total_steps)

    def updates_every(self, steps_per_epoch):
        return self.every

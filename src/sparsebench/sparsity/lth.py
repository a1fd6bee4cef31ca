"""Iterative magnitude pruning with weight rewinding (the lottery ticket procedure,
Frankle and Carbin 2019; rewinding to an early epoch, Frankle et al. 2020).

Train dense for the run's epochs; prune by magnitude towards the target; put the
surviving weights back to what they were after `rewind_epoch` epochs (batch-norm
statistics too) and train again from there, on the schedule from that epoch on; repeat
for `rounds` rounds, each removing the same share of what is left, so the last reaches
the target. A run trains epochs + rounds x (epochs - rewind_epoch) epochs in all: the
strongest classic baseline, and the costliest, which its training multiply-adds show.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from sparsebench.sparsity.methods import (
    MethodOptions,
    PruningMethod,
    SchedulePoint,
    register_method,
)
from sparsebench.sparsity.scenarios import SparsityTargets
from sparsebench.sparsity.schedules import Schedule
from sparsebench.sparsity.scorers import Magnitude


class LthOptions(MethodOptions):
    rounds: int = Field(3, ge=1, le=20, description="prune-and-rewind rounds to the target")
    rewind_epoch: int = Field(
        1, ge=0, le=10_000, description="epoch whose weights each round starts from (0: init)"
    )


@dataclass(frozen=True)
class RoundEnds(Schedule):
    """After the epochs that end a round: the update's amount is the round, from 1."""

    first: int  # epochs of the dense round
    each: int  # epochs of every later round
    rounds: int

    def after_epoch(self, epoch, num_epochs):
        done = epoch + 1 - self.first
        if done < 0 or done % self.each or done // self.each >= self.rounds:
            return None
        return float(done // self.each + 1)


def _round_epochs(epochs: int, options: LthOptions) -> int:
    """Epochs of each round after the first: from the rewind epoch to the end (at least
    one, for a rewind epoch at or past the end)."""
    return max(epochs - options.rewind_epoch, 1)


@register_method
class Lth(PruningMethod):
    """Round r keeps 1 - (1 - s)^(r / rounds) of each layer's units pruned, s the target."""

    name, display_name, colour, marker = "lth", "LTH (IMP, rewound)", "#17becf", "h"
    draw = None
    Options = LthOptions

    @classmethod
    def epochs_trained(cls, epochs: int, options: MethodOptions) -> int:
        assert isinstance(options, LthOptions)
        return epochs + options.rounds * _round_epochs(epochs, options)

    @classmethod
    def schedule_point(
        cls, step: int, steps_per_epoch: int, epochs: int, options: MethodOptions
    ) -> SchedulePoint:
        """Every round after the first takes the schedule up again at the rewind epoch."""
        assert isinstance(options, LthOptions)
        length = epochs * steps_per_epoch
        if step < length:
            return step, length
        each = _round_epochs(epochs, options) * steps_per_epoch
        return length - each + (step - length) % each, length

    def schedule(self) -> Schedule:
        assert isinstance(self.options, LthOptions)
        epochs = next(  # the run's own epochs, from all the epochs it trains
            (
                e
                for e in range(1, self.num_epochs + 1)
                if self.epochs_trained(e, self.options) == self.num_epochs
            ),
            self.num_epochs,
        )
        each = _round_epochs(epochs, self.options)
        self.rewind_after = epochs - each  # epochs trained when the rewind point is kept
        return RoundEnds(epochs, each, self.options.rounds)

    def prepare(self, batches: object) -> None:
        self.rewind_to: dict[str, torch.Tensor] | None = None
        if self.rewind_after == 0:
            self._keep_rewind_point()

    def update_due_after_epoch(self, epoch: int) -> float | None:
        if epoch + 1 == self.rewind_after:
            self._keep_rewind_point()
        return super().update_due_after_epoch(epoch)

    @torch.no_grad()
    def _keep_rewind_point(self) -> None:
        assert self.model is not None
        self.rewind_to = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @torch.no_grad()
    def update(self, amount: float) -> None:
        """End of round `amount`: prune to its share of the target, rewind, restart the
        optimiser's state (the schedule restarts with the round)."""
        assert isinstance(self.options, LthOptions) and self.model is not None
        share = amount / self.options.rounds
        final = self.targets
        self.targets = SparsityTargets(
            1 - (1 - final.conv) ** share, 1 - (1 - final.linear) ** share
        )
        try:
            self.install_masks(Magnitude())
        finally:
            self.targets = final
        assert self.rewind_to is not None, "no rewind point kept before the first round ended"
        self.model.load_state_dict(self.rewind_to)
        self.masks.apply()
        if self.optimizer is not None:
            self.optimizer.state.clear()

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.rewind_to is not None:
            state["rewind_to"] = self.rewind_to
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.rewind_to = state.get("rewind_to")

"""The study's methods: Dense, Pre-Training, In-Training, SET and Post-Training, each
registered when `sparsebench.sparsity` is imported, first, in the order the CLI, sweeps
and the report list them; and the options they take."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from sparsebench.sparsity.allocation import Allocation, allocation_named
from sparsebench.sparsity.methods import (
    MAX_EPOCHS,
    AllocationOptions,
    Federation,
    MethodOptions,
    PruningMethod,
    SchedulePoint,
    register_method,
)
from sparsebench.sparsity.schedules import AfterEpoch, EveryEpoch, EverySteps, Schedule
from sparsebench.sparsity.scorers import Magnitude, Random, Scorer


class StepOptions(MethodOptions):
    """Options of the study's dynamic methods: by default they swap `swap_fraction` of
    the alive units after each epoch; `update_every` N swaps every N optimiser steps until
    `update_until` of training."""

    swap_fraction: float = Field(0.2, ge=0, le=1, description="of alive units, at an update")
    update_every: int | None = None
    update_until: float = 0.75
    decay: Literal["constant", "cosine"] = "constant"


class SETOptions(StepOptions, AllocationOptions):
    """In-Training's options, and how the Erdos-Renyi density is spread over layers."""


class PostOptions(MethodOptions):
    fine_tune_epochs: int = Field(
        0, ge=0, le=MAX_EPOCHS, description="epochs of training after pruning (retraining)"
    )
    retrain: Literal["none", "finetune", "lr-rewind"] = Field(
        "none",
        description="how the epochs after pruning train (Renda et al. 2020): finetune, at a "
        "hundredth of the base rate; lr-rewind, on the schedule's last epochs again; none, "
        "on the schedule drawn over all the epochs (the study's constant rate)",
    )

    @model_validator(mode="after")
    def _epochs_to_retrain(self) -> PostOptions:
        if self.retrain != "none" and self.fine_tune_epochs == 0:
            raise ValueError(f"retrain={self.retrain} needs fine_tune_epochs of 1 or more")
        return self


def dynamic_schedule(method: PruningMethod) -> Schedule:
    """The study's per-epoch swap, or a step schedule when the options ask for one."""
    options = method.options
    assert isinstance(options, StepOptions)
    fraction = options.swap_fraction
    if options.update_every is None:
        return EveryEpoch(fraction)
    return EverySteps(options.update_every, fraction, options.update_until, options.decay)


@register_method
class Dense(PruningMethod):
    """No pruning: the baseline."""

    name, display_name, colour, marker = "dense", "Dense", "#222222", "s"
    draw = None
    baseline = True

    def prune_untrained(
        self, model: nn.Module, input_shape: tuple[int, int, int] | None = None
    ) -> None:
        """The baseline's network is the unpruned one."""


@register_method
class PreTraining(PruningMethod):
    """Masks by magnitude of the freshly initialised weights, fixed for the whole run."""

    name, display_name, colour, marker = "pre", "Pre-Training", "#1f77b4", "o"


@register_method
class InTraining(PruningMethod):
    """Random masks of exactly the target size, then prune-and-regrow: by magnitude,
    regrowing at random, after each epoch (or every N steps)."""

    name, display_name, colour, marker = "in", "In-Training", "#ff7f0e", "^"
    Options = StepOptions

    def initial_scorer(self) -> Scorer:
        return Random()

    def schedule(self) -> Schedule:
        return dynamic_schedule(self)

    @classmethod
    def federation(cls) -> Federation | None:
        return "dynamic"

    @classmethod
    def round_schedule(cls, options: MethodOptions, every: int) -> Schedule | None:
        assert isinstance(options, StepOptions)
        return EverySteps(every, options.swap_fraction, options.update_until, options.decay)


@register_method
class SET(InTraining):
    """Sparse Evolutionary Training (Mocanu et al. 2018): In-Training from an Erdos-Renyi
    initial mask (`allocation="erk"` spreads the density over layers by ERK)."""

    name, display_name, colour, marker = "set", "SET", "#d62728", "D"
    draw = "erdos-renyi"
    Options = SETOptions

    def allocation(self) -> Allocation:
        return allocation_named(self.options.allocation)  # type: ignore[attr-defined]


@register_method
class PostTraining(PruningMethod):
    """Train dense, prune by magnitude after the dense epochs; `fine_tune_epochs` train
    the pruned network after that."""

    name, display_name, colour, marker = "post", "Post-Training", "#2ca02c", "v"
    # A run derived from the baseline shares its training: dashed, so both lines show.
    linestyle = (0, (4, 2))
    draw = None
    Options = PostOptions

    @classmethod
    def epochs_trained(cls, epochs: int, options: MethodOptions) -> int:
        assert isinstance(options, PostOptions)
        return epochs + options.fine_tune_epochs

    @classmethod
    def derivable_from_baseline(cls, options: MethodOptions) -> bool:
        """Without retraining, or retraining apart from the dense schedule: its dense
        epochs are the baseline's (`retrain: none` with epochs after pruning draws its
        schedule over all of them, unlike the baseline's)."""
        assert isinstance(options, PostOptions)
        return options.fine_tune_epochs == 0 or options.retrain != "none"

    @classmethod
    def schedule_point(
        cls, step: int, steps_per_epoch: int, epochs: int, options: MethodOptions
    ) -> SchedulePoint:
        """Dense training on the schedule over its own epochs; then fine-tuning at a
        hundredth of the base rate (where the step schedules the fine-tuning of Han et
        al. 2015 and Renda et al. 2020 ended), or the schedule's last epochs again
        (learning-rate rewinding, Renda et al. 2020)."""
        assert isinstance(options, PostOptions)
        if options.retrain == "none":
            return super().schedule_point(step, steps_per_epoch, epochs, options)
        trained = epochs * steps_per_epoch
        if step < trained:
            return step, trained
        if options.retrain == "finetune":
            return 0.01
        rewound = trained - options.fine_tune_epochs * steps_per_epoch
        return max(rewound, 0) + (step - trained), trained

    def schedule(self) -> Schedule:
        fine_tune = self.options.fine_tune_epochs  # type: ignore[attr-defined]
        return AfterEpoch(self.num_epochs - fine_tune - 1)

    def update(self, amount: float) -> None:
        self.install_masks(Magnitude())

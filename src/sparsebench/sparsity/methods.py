"""The pruning methods, each a composition of parts owned by one run: how the target
is spread over layers (allocation), how the first mask is drawn (a scorer's top units,
or Erdos-Renyi draws), when and how much it changes (schedule), what is dropped and
what grows (two scorers), and how grown units start (their initialiser, or zero).

A method decides; it does not drive. `sparsebench.train.trainer.SparseTrainer` calls its
hooks in the one order that computes what the study's loop computes: a hook that ends a
step or an epoch says whether a mask update is due, and the trainer brings the full-size
weights up to date (a compact network trains elsewhere) before it calls `apply_update`.

A new method is one small class in a module of its own (`static.py`, `rigl.py`, ...):
RigL is Static with another schedule, grow scorer and regrowth.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from sparsebench.errors import InputError, validation_message
from sparsebench.sparsity import criteria
from sparsebench.sparsity.allocation import Allocation, Uniform
from sparsebench.sparsity.connectivity import connected
from sparsebench.sparsity.layers import (
    CONV_GRANULARITIES,
    LINEAR_GRANULARITIES,
    Granularity,
    PrunableLayer,
    discover_layers,
)
from sparsebench.sparsity.masks import LayerMask, MaskSet
from sparsebench.sparsity.scenarios import SparsityTargets
from sparsebench.sparsity.schedules import Never, Schedule
from sparsebench.sparsity.scorers import Magnitude, Random, Scorer

if TYPE_CHECKING:
    from sparsebench.sparsity.snip import GradientSums

Draw = Literal["top", "erdos-renyi"]
# How a method trains federated (`PruningMethod.federation`).
Federation = Literal["dense", "fixed-mask", "client-scored", "dynamic"]
# Where a run's optimiser step lies on its learning-rate schedule: (position, length) in
# steps of the schedule, or a fixed share of the base rate.
SchedulePoint = tuple[int, int] | float


class SparsityWarning(UserWarning):
    """A method's settings that will not do what the user likely wants."""


class MethodOptions(BaseModel):
    """A method's own settings (`--method-option KEY=VALUE`, `method_options:` in YAML);
    each method declares its own, with defaults that are the method's published ones.
    A setting a method does not declare cannot change what its run computes, nor its id."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Settings that were run settings before methods owned them. They are still accepted
# where they were (a run config's top-level keys, `--swap-fraction`, `make_method(...,
# swap_fraction=...)`) and moved into the options of a method that declares them; a
# method that does not is given none (it never read them).
MOVED_SETTINGS = ("swap_fraction", "fine_tune_epochs", "allocation")
MAX_EPOCHS = 100_000


class AllocationOptions(MethodOptions):
    allocation: Literal["er", "erk"] = Field(
        "er", description="spread of the target over layers: Erdos-Renyi or ERK"
    )


class PruningMethod:
    """The machinery every method shares; a subclass names its parts."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    colour: ClassVar[str]
    marker: ClassVar[str] = "o"
    linestyle: ClassVar[str | tuple] = "-"  # in figures
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    draw: ClassVar[Draw | None] = "top"  # None: the run starts dense
    # The unpruned reference every other method is compared with (one registered method).
    baseline: ClassVar[bool] = False

    @classmethod
    def epochs_trained(cls, epochs: int, options: MethodOptions) -> int:
        """All the epochs a run of `epochs` trains (a method may add its own)."""
        return epochs

    @classmethod
    def derivable_from_baseline(cls, options: MethodOptions) -> bool:
        """Whether a run trains exactly as the baseline's does and only prunes after it,
        so that it is derived from the baseline's final checkpoint, never trained."""
        return False

    @classmethod
    def federation(cls) -> Federation | None:
        """How the method trains federated: `dense` (every client trains the unpruned
        network; a method derived from the baseline prunes the final global model),
        `fixed-mask` (drawn once on the server's initial model), `client-scored` (scored
        once on the clients' images, the scores summed on the server), `dynamic` (the
        clients readjust it in mask rounds, `round_schedule`); None where it cannot.
        By default, from what the method is: the baseline and what derives from it train
        dense, a method that starts from a drawn mask keeps it, and one that starts
        dense and prunes while it trains cannot (no server prunes on a schedule)."""
        if cls.baseline or cls.derivable_from_baseline(cls.Options()):
            return "dense"
        return None if cls.draw is None else "fixed-mask"

    @classmethod
    def round_schedule(cls, options: MethodOptions, every: int) -> Schedule | None:
        """A dynamic method's mask changes over federated rounds, one every `every`
        rounds, at its own fraction and decay (None for the others)."""
        return None

    @classmethod
    def network_width(
        cls,
        model: str,
        width: float,
        targets: SparsityTargets,
        shape: tuple[int, int, int, int],
    ) -> float:
        """The width multiplier of the network a run builds, given the run's (a method
        that trains another network than the one it prunes says which); `shape`: the
        data's (classes, channels, height, width)."""
        return width

    @classmethod
    def schedule_point(
        cls, step: int, steps_per_epoch: int, epochs: int, options: MethodOptions
    ) -> SchedulePoint:
        """Where optimiser step `step` (from 0) of a run of `epochs` lies on the run's
        learning-rate schedule: by default one schedule over every epoch it trains; a
        method that retrains after pruning, or rewinds, says otherwise."""
        return step, cls.epochs_trained(epochs, options) * steps_per_epoch

    def __init__(
        self,
        targets: SparsityTargets,
        *,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        seed: int = 0,
        options: dict[str, Any] | None = None,
        conv_granularity: Granularity = "filter",
        linear_granularity: Granularity = "weight",
    ) -> None:
        if conv_granularity not in CONV_GRANULARITIES:
            raise InputError(f"conv_granularity must be filter or weight, got {conv_granularity!r}")
        if linear_granularity not in LINEAR_GRANULARITIES:
            raise InputError(
                f"linear_granularity must be weight or neuron, got {linear_granularity!r}"
            )
        self.granularity = {"conv": conv_granularity, "linear": linear_granularity}
        self.targets = targets
        self.include, self.exclude = include, exclude
        self.options = validate_options(type(self), options or {})
        self.generator = torch.Generator().manual_seed(seed)
        self.masks = MaskSet([])
        self.layers: list[PrunableLayer] = []
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.num_epochs, self.steps_per_epoch, self.step = 1, 0, 0

    # The parts: a subclass overrides the ones it changes.

    def allocation(self) -> Allocation:
        return Uniform()

    def initial_scorer(self) -> Scorer:
        return Magnitude()

    def schedule(self) -> Schedule:
        return Never()

    def drop_scorer(self) -> Scorer:
        return Magnitude()

    def grow_scorer(self) -> Scorer:
        return Random()

    def regrowth(self, layer: PrunableLayer) -> Literal["init", "zero"]:
        """How a grown unit of `layer` starts: from the layer's initialiser, or at zero."""
        return "init"

    # The hooks.

    def on_train_begin(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        num_epochs: int = 1,
        steps_per_epoch: int = 0,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | GradientSums | None = None,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        """Find the layers to prune (with `input_shape`, each filter's followers too, by
        tracing) and mask them if the method masks before training."""
        self.model, self.optimizer = model, optimizer
        self.num_epochs, self.steps_per_epoch = num_epochs, steps_per_epoch
        self.plan = self.schedule()
        self.layers = [
            layer
            for layer in discover_layers(
                model,
                self.include,
                self.exclude,
                self.granularity["conv"],
                self.granularity["linear"],
                input_shape,
            )
            if self.targets.for_kind(layer.kind) > 0
        ]
        self.prepare(batches)
        if self.draw is not None:
            self.install_masks(self.initial_scorer(), self.draw)
        self._capture_if_update_next()
        self._warn_about_update_rate()

    def prune_untrained(
        self, model: nn.Module, input_shape: tuple[int, int, int] | None = None
    ) -> None:
        """Mask `model`, untrained, as this method's run would end: its first mask, or
        (a method that starts dense) its final targets by magnitude of the weights as
        they are. What `bench --model` measures: the speed of the network a run of this
        method ends with, before any run exists."""
        self.on_train_begin(model, None, 1, input_shape=input_shape)
        if self.draw is None:
            self.install_masks(Magnitude())

    def replan(self, schedule: Schedule) -> None:
        """Change the masks on `schedule` from now on instead of the method's own (a
        federated client changes them only in the server's mask rounds)."""
        self.plan = schedule
        self._capture_if_update_next()

    @property
    def updates_every(self) -> int | None:
        """Optimiser steps between mask updates (None: the masks never change)."""
        return self.plan.updates_every(self.steps_per_epoch) if self.steps_per_epoch else None

    def _warn_about_update_rate(self) -> None:
        every = self.updates_every
        if every is None or not self.layers:
            return
        if every < 50:
            warnings.warn(
                f"{self.name} changes its masks every {every} optimiser steps (fewer than "
                "about 50): grown units barely train before the next change; "
                "`--method-option update_every=N` sets the step interval",
                SparsityWarning,
                stacklevel=4,  # whoever built the trainer (or called prune_untrained)
            )
        elif every > self.total_steps:
            warnings.warn(
                f"{self.name} would change its masks every {every} optimiser steps, but the "
                f"run has {self.total_steps}: lower `update_every`",
                SparsityWarning,
                stacklevel=4,
            )

    def prepare(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | GradientSums | None
    ) -> None:
        """Work before the first mask, such as scoring on a few batches (SNIP), or on
        gradients summed elsewhere."""

    def after_backward(self) -> None:
        """The gradients are in place, those of pruned units already gated; a method
        that needs them dense reads what the masks captured (`dense_gradient`)."""

    def update_due_after_step(self, masks_on_master: bool = True) -> float | None:
        """An optimiser step was taken: the amount of the mask update due now (None: no
        update), which the caller applies with `apply_update` once `model` holds the
        current weights. `masks_on_master`: the step trained `model` itself, so its dead
        units are zeroed again (a compact network has none to zero)."""
        if masks_on_master:
            self.masks.apply()
        self.step += 1
        due = self.plan.after_step(self.step, self.total_steps)
        if due is None:
            self._capture_if_update_next()
        return due

    def update_due_after_epoch(self, epoch: int) -> float | None:
        """Epoch `epoch` (from 0) ended: the amount of the mask update due now, if any."""
        return self.plan.after_epoch(epoch, self.num_epochs)

    def apply_update(self, amount: float) -> None:
        """Apply a scheduled update of `amount` to the weights of `model` as they are."""
        self.update(amount)
        # A layer gated by two masks (a gate's rows: its own, and as a follower) has
        # rows one mask regrew that the other still prunes.
        self.masks.apply()
        self._capture_if_update_next()

    def on_train_end(self) -> None:
        self.masks.apply()
        self.masks.unhook_gradients()

    # What the parts are used for.

    @property
    def total_steps(self) -> int:
        return self.num_epochs * self.steps_per_epoch

    def update(self, amount: float) -> None:
        """A scheduled update: swap `amount` of every layer's alive units."""
        for mask in self.masks:
            self.swap_units(mask, amount)

    def install_masks(self, scorer: Scorer, draw: Draw = "top") -> None:
        """Mask every pruned layer (its top units by `scorer`, or Erdos-Renyi draws at the
        allocated density), zero the dead units and their optimiser state."""
        self.masks.unhook_gradients()
        targets = self.allocation().targets(
            self.layers, [self.targets.for_kind(layer.kind) for layer in self.layers]
        )
        keeps = []
        for layer, target in zip(self.layers, targets, strict=True):
            if draw == "erdos-renyi":
                keeps.append(
                    criteria.erdos_renyi_mask(layer.unit_shape, target.density, self.generator)
                )
            else:
                n_keep = criteria.units_to_keep(layer.units, target.sparsity)
                keeps.append(keep_best(layer, scorer.scores(layer, self), n_keep))
        self.masks = MaskSet(
            [
                LayerMask(layer, connected(layer, keep))
                for layer, keep in zip(self.layers, keeps, strict=True)
            ]
        )
        self.masks.apply()
        self.masks.hook_gradients()
        for mask in self.masks:
            self._reset_optimizer_state(mask, ~mask.keep)

    @torch.no_grad()
    def keep_strongest(self, scorer: Scorer) -> None:
        """Each mask keeps as many units as it keeps now: those `scorer` ranks highest
        (a federated server choosing among the units its clients kept and grew)."""
        for mask in self.masks:
            keep = keep_best(mask.layer, scorer.scores(mask.layer, self), mask.alive)
            mask.update(connected(mask.layer, keep.to(mask.keep.device)))
        self.masks.apply()

    @torch.no_grad()
    def swap_units(self, mask: LayerMask, fraction: float) -> None:
        """Drop the lowest-scored `fraction` of alive units, grow as many of the units
        that were dead, by the drop and grow scorers."""
        keep = mask.keep
        dead_before = ~keep
        count = min(int(round(fraction * mask.alive)), int(dead_before.sum()))
        if count == 0:
            return
        drop = self.drop_scorer().scores(mask.layer, self).to(keep.device)
        dropped = criteria.keep_top(-drop.masked_fill(~keep, float("inf")), count).to(keep.device)
        grow = self.grow_scorer().scores(mask.layer, self).to(keep.device)
        grown = criteria.keep_top(grow.masked_fill(keep, -float("inf")), count).to(keep.device)
        kept = connected(mask.layer, (keep & ~dropped) | grown)
        grown = kept & dead_before
        dropped = keep & ~kept
        self._start_grown_units(mask.layer, grown)
        mask.update(kept)
        mask.apply()
        self._reset_optimizer_state(mask, dropped | grown)

    def dense_gradient(self, layer: PrunableLayer) -> torch.Tensor:
        gradient = self.masks.masks[layer.name].captured if len(self.masks) else None
        if gradient is None:
            gradient = layer.module.weight.grad
        if gradient is None:
            raise RuntimeError(f"{self.name}: no gradient of {layer.name} was captured")
        return gradient

    def _capture_if_update_next(self) -> None:
        """Ask the masks to keep the next backward's dense gradients when the next step
        updates the masks and the grow scorer reads gradients (nothing to do, every step,
        for a method that grows otherwise)."""
        if not self.grow_scorer().reads_gradients:
            return
        next_update = self.plan.after_step(self.step + 1, self.total_steps) is not None
        self.masks.capture_gradients(next_update)

    def _start_grown_units(self, layer: PrunableLayer, units: torch.Tensor) -> None:
        """Grown units start from the layer's initialiser (a zero filter behind a zero
        batch-norm scale would never receive a gradient), or at zero (RigL: the network's
        output does not change at the moment of growth); their batch norms start afresh,
        and their followers' rows (a depthwise filter, a gate's row) as the layer's do."""
        self._start_rows(layer, layer.module, units, zero_bias=layer.whole_rows)
        if layer.granularity != "filter":
            return
        for follower in (layer.bn, *layer.followers):
            if isinstance(follower, nn.BatchNorm1d | nn.BatchNorm2d):
                _start_norm(follower, units)
            elif follower is not None:
                self._start_rows(layer, follower, units, zero_bias=True)

    def _start_rows(
        self, layer: PrunableLayer, module: nn.Module, units: torch.Tensor, zero_bias: bool
    ) -> None:
        if self.regrowth(layer) == "zero":
            module.weight[units] = 0.0
        else:
            fresh = torch.empty(module.weight.shape, dtype=module.weight.dtype)
            init_weight = getattr(self.model, "init_weight", default_init_weight)
            init_weight(module, fresh, self.generator)
            module.weight[units] = fresh.to(module.weight.device)[units]
        if zero_bias and module.bias is not None:
            module.bias[units] = 0.0

    def _reset_optimizer_state(self, mask: LayerMask, units: torch.Tensor) -> None:
        if self.optimizer is None:
            return
        for param, _ in mask.gated():
            state = self.optimizer.state.get(param, {})
            for value in state.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value[units] = 0.0

    # Checkpointing: the masks, the random stream and the step, so a resumed run
    # continues exactly.

    def state_dict(self) -> dict:
        return {
            "masks": self.masks.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.step = state.get("step", 0)
        if state["masks"] and not len(self.masks):
            self.install_masks(Magnitude())  # a run that started dense, checkpointed pruned
        if len(self.masks):
            self.masks.load_state_dict(state["masks"])
        self._capture_if_update_next()


def keep_best(layer: PrunableLayer, scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """The `n_keep` best-scored units of `layer`; of the output layer, spread over its
    class rows (`criteria.keep_top_spread`)."""
    if layer.output and not layer.whole_rows and scores.dim() == 2:
        return criteria.keep_top_spread(scores, n_keep)
    return criteria.keep_top(scores, n_keep)


def _start_norm(norm: nn.BatchNorm1d | nn.BatchNorm2d, units: torch.Tensor) -> None:
    if norm.affine:
        norm.weight[units] = 1.0
        norm.bias[units] = 0.0
    if norm.track_running_stats:
        norm.running_mean[units] = 0.0
        norm.running_var[units] = 1.0


def default_init_weight(
    module: nn.Module, weight: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """torchvision's conv initialiser and PyTorch's default linear initialiser; a model
    with another scheme defines `init_weight(module, weight, generator)`."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
    else:
        nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)


def validate_options(method: type[PruningMethod], options: dict[str, Any]) -> MethodOptions:
    try:
        return method.Options(**options)
    except ValidationError as error:
        where = f"method_options ({method.name})"
        raise InputError(validation_message(error, where=where)) from None


def with_moved_settings(
    method: type[PruningMethod], options: dict[str, Any], moved: dict[str, Any]
) -> dict[str, Any]:
    """`options` with those of the `MOVED_SETTINGS` given (not None) that `method`
    declares; the same setting given both ways must agree."""
    merged = dict(options)
    for key, value in moved.items():
        if value is None or key not in method.Options.model_fields:
            continue
        if key in merged and merged[key] != value:
            raise InputError(
                f"{key} is given twice, as {value!r} and as method_options {key}: "
                f"{merged[key]!r}; give it once"
            )
        merged[key] = value
    return merged


METHODS: dict[str, type[PruningMethod]] = {}


def register_method(method: type[PruningMethod]) -> type[PruningMethod]:
    """Make `method` known by its name: the CLI, sweeps and the report list it."""
    METHODS[method.name] = method
    return method


def is_baseline(name: str) -> bool:
    """Whether `name` is the registered baseline (an unknown name is not)."""
    method = METHODS.get(name)
    return method is not None and method.baseline


def baseline_name() -> str:
    return next(name for name, method in METHODS.items() if method.baseline)


def scenario_label(
    method: str, scenario: str | None, conv_sparsity: float, linear_sparsity: float
) -> str:
    """How a run's sparsity is named: the baseline by its own name (it is one run
    whatever the scenario), a named scenario by its name, other targets by their values."""
    if is_baseline(method):
        return method
    return scenario or f"conv{conv_sparsity:g}-linear{linear_sparsity:g}"


def make_method(
    name: str,
    targets: SparsityTargets,
    *,
    options: dict[str, Any] | None = None,
    swap_fraction: float | None = None,
    fine_tune_epochs: int | None = None,
    allocation: str | None = None,
    **settings: Any,
) -> PruningMethod:
    """The method `name` at `targets`; the `MOVED_SETTINGS` may still be given here, and
    join its options where it declares them."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r} (choose from {', '.join(METHODS)})")
    method = METHODS[name]
    moved = {
        "swap_fraction": swap_fraction,
        "fine_tune_epochs": fine_tune_epochs,
        "allocation": allocation,
    }
    return method(targets, options=with_moved_settings(method, options or {}, moved), **settings)

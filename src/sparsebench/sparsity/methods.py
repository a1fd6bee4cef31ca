"""The pruning methods, each an initial-mask rule plus an update rule.

A method is driven by four hooks that any training loop can call:

    method.on_train_begin(model, optimizer, num_epochs)
    ...  loss.backward(); optimizer.step(); method.after_optimizer_step()
    method.on_epoch_end(epoch)          # epoch counts from 0
    method.on_train_end()

A new method is one small class: RigL, say, is `InTraining` with the regrow rule
changed to pick the largest gradients instead of random units.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from sparsebench.errors import InputError
from sparsebench.sparsity import criteria
from sparsebench.sparsity.layers import PrunableLayer, discover_layers
from sparsebench.sparsity.masks import LayerMask, MaskSet
from sparsebench.sparsity.scenarios import SparsityTargets


def unit_scores(layer: PrunableLayer) -> torch.Tensor:
    """Importance of each unit: a conv filter's L1 norm, a linear weight's magnitude."""
    if layer.kind == "conv":
        return criteria.filter_l1_norm(layer.module.weight)
    return criteria.weight_magnitude(layer.module.weight)


def unit_shape(layer: PrunableLayer) -> tuple[int, ...]:
    if layer.kind == "conv":
        return (layer.module.out_channels,)
    return tuple(layer.module.weight.shape)


# Initial-mask rules: which units each pruned layer starts with.


class InitialRule:
    def initial_masks(
        self, layers: list[PrunableLayer], sparsities: list[float], generator: torch.Generator
    ) -> list[torch.Tensor]:
        raise NotImplementedError


class MagnitudeInit(InitialRule):
    """Keep the highest-ranked units (filter L1, |w|): exactly the target count."""

    def initial_masks(self, layers, sparsities, generator):
        return [
            criteria.keep_top(unit_scores(layer), criteria.units_to_keep(layer.units, s))
            for layer, s in zip(layers, sparsities, strict=True)
        ]


class RandomInit(InitialRule):
    """Keep a uniformly random set of units of exactly the target count."""

    def initial_masks(self, layers, sparsities, generator):
        return [
            criteria.keep_top(
                criteria.random_scores(unit_shape(layer), generator),
                criteria.units_to_keep(layer.units, s),
            )
            for layer, s in zip(layers, sparsities, strict=True)
        ]


class ErdosRenyiInit(InitialRule):
    """Keep each unit independently with probability 1 - sparsity."""

    def initial_masks(self, layers, sparsities, generator):
        return [
            criteria.erdos_renyi_mask(unit_shape(layer), 1.0 - s, generator)
            for layer, s in zip(layers, sparsities, strict=True)
        ]


class ErkInit(InitialRule):
    """Erdos-Renyi draws with ERK layer densities: per layer kind, the overall density is
    1 - sparsity, but small layers keep more and large layers fewer units."""

    def initial_masks(self, layers, sparsities, generator):
        densities = [0.0] * len(layers)
        for kind in ("conv", "linear"):
            members = [i for i, layer in enumerate(layers) if layer.kind == kind]
            if not members:
                continue
            shapes = [tuple(layers[i].module.weight.shape) for i in members]
            layer_densities = criteria.erk_densities(shapes, 1.0 - sparsities[members[0]])
            for i, density in zip(members, layer_densities, strict=True):
                densities[i] = density
        return [
            criteria.erdos_renyi_mask(unit_shape(layer), d, generator)
            for layer, d in zip(layers, densities, strict=True)
        ]


# Update rules: how the masks change during training.


class UpdateRule:
    def on_epoch_end(self, method: PruningMethod, epoch: int) -> None:
        """Called after each epoch, before validation."""


class Fixed(UpdateRule):
    """The initial masks stay for the whole training."""


class PruneAndRegrow(UpdateRule):
    """After every epoch but the last, drop the weakest `swap_fraction` of each layer's
    alive units and regrow as many at random among the units that were dead.

    The last epoch is left alone so that the model that is tested has trained every unit
    it uses. Regrown units start from the layer's initialiser (a zero filter behind a
    zero batch-norm scale would never receive a gradient) with fresh optimiser state.
    """

    def on_epoch_end(self, method: PruningMethod, epoch: int) -> None:
        if epoch >= method.num_epochs - 1:
            return
        for mask in method.masks:
            method.swap_units(mask, method.swap_fraction)


class PruneAtEnd(UpdateRule):
    """Train dense, then prune by magnitude after the dense epochs; any fine-tune epochs
    that follow train the pruned network."""

    def on_epoch_end(self, method: PruningMethod, epoch: int) -> None:
        if epoch == method.num_epochs - method.fine_tune_epochs - 1:
            method.install_masks(MagnitudeInit())


class PruningMethod:
    """Base of every method: holds the pruned layers' masks and calls the rules."""

    name: ClassVar[str]
    initial_rule: ClassVar[InitialRule | None] = MagnitudeInit()
    update_rule: ClassVar[UpdateRule] = Fixed()

    def __init__(
        self,
        targets: SparsityTargets,
        *,
        swap_fraction: float = 0.2,
        fine_tune_epochs: int = 0,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= swap_fraction <= 1.0:
            raise InputError(f"swap_fraction must be in [0, 1], got {swap_fraction}")
        self.targets = targets
        self.swap_fraction = swap_fraction
        self.fine_tune_epochs = fine_tune_epochs
        self.include, self.exclude = include, exclude
        self.generator = torch.Generator().manual_seed(seed)
        self.masks = MaskSet([])
        self.layers: list[PrunableLayer] = []
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.num_epochs = 1

    # The hooks.

    def on_train_begin(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        num_epochs: int = 1,
    ) -> None:
        self.model, self.optimizer, self.num_epochs = model, optimizer, num_epochs
        self.layers = [
            layer
            for layer in discover_layers(model, self.include, self.exclude)
            if self.targets.for_kind(layer.kind) > 0
        ]
        if self.initial_rule is not None:
            self.install_masks(self.initial_rule)

    def after_optimizer_step(self) -> None:
        self.masks.apply()

    def on_epoch_end(self, epoch: int) -> None:
        self.update_rule.on_epoch_end(self, epoch)

    def on_train_end(self) -> None:
        self.masks.apply()
        self.masks.unhook_gradients()

    # What the rules use.

    def install_masks(self, rule: InitialRule) -> None:
        """Mask every pruned layer by `rule`, zero the dead units and their optimiser state."""
        self.masks.unhook_gradients()
        sparsities = [self.targets.for_kind(layer.kind) for layer in self.layers]
        keeps = rule.initial_masks(self.layers, sparsities, self.generator)
        self.masks = MaskSet(
            [LayerMask(layer, keep) for layer, keep in zip(self.layers, keeps, strict=True)]
        )
        self.masks.apply()
        self.masks.hook_gradients()
        for mask in self.masks:
            self._reset_optimizer_state(mask, ~mask.keep)

    @torch.no_grad()
    def swap_units(self, mask: LayerMask, fraction: float) -> None:
        """Drop the weakest `fraction` of alive units, regrow as many among the dead."""
        keep = mask.keep
        dead_before = ~keep
        count = min(int(round(fraction * mask.alive)), int(dead_before.sum()))
        if count == 0:
            return
        scores = unit_scores(mask.layer).to(keep.device).masked_fill(~keep, float("inf"))
        dropped = criteria.keep_top(-scores, count).to(keep.device)
        regrow_scores = criteria.random_scores(keep.shape, self.generator).to(keep.device)
        grown = criteria.keep_top(regrow_scores.masked_fill(keep, -1.0), count).to(keep.device)
        self._reinitialise(mask.layer, grown)
        mask.update((keep & ~dropped) | grown)
        mask.apply()
        self._reset_optimizer_state(mask, dropped | grown)

    def _reinitialise(self, layer: PrunableLayer, units: torch.Tensor) -> None:
        module = layer.module
        fresh = torch.empty(module.weight.shape, dtype=module.weight.dtype)
        init_weight = getattr(self.model, "init_weight", default_init_weight)
        init_weight(module, fresh, self.generator)
        module.weight[units] = fresh.to(module.weight.device)[units]
        if layer.kind == "conv":
            if module.bias is not None:
                module.bias[units] = 0.0
            if layer.bn is not None:
                if layer.bn.affine:
                    layer.bn.weight[units] = 1.0
                    layer.bn.bias[units] = 0.0
                if layer.bn.track_running_stats:
                    layer.bn.running_mean[units] = 0.0
                    layer.bn.running_var[units] = 1.0

    def _reset_optimizer_state(self, mask: LayerMask, units: torch.Tensor) -> None:
        if self.optimizer is None:
            return
        for param, _ in mask.gated():
            state = self.optimizer.state.get(param, {})
            for value in state.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value[units] = 0.0

    # Checkpointing: the masks and the random stream, so a resumed run continues exactly.

    def state_dict(self) -> dict:
        return {"masks": self.masks.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if state["masks"] and not len(self.masks):
            self.install_masks(MagnitudeInit())  # a post-training run checkpointed after pruning
        if len(self.masks):
            self.masks.load_state_dict(state["masks"])


def default_init_weight(
    module: nn.Module, weight: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """torchvision's conv initialiser and PyTorch's default linear initialiser; a model
    with another scheme defines `init_weight(module, weight, generator)`."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
    else:
        nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)


class Dense(PruningMethod):
    """No pruning: the baseline."""

    name = "dense"
    initial_rule = None


class PreTraining(PruningMethod):
    """Masks by magnitude of the freshly initialised weights, fixed for the whole run."""

    name = "pre"
    initial_rule = MagnitudeInit()
    update_rule = Fixed()


class InTraining(PruningMethod):
    """Random masks of exactly the target size, then prune-and-regrow after each epoch."""

    name = "in"
    initial_rule = RandomInit()
    update_rule = PruneAndRegrow()


class SET(InTraining):
    """Sparse Evolutionary Training (Mocanu et al. 2018): In-Training from an Erdos-Renyi
    initial mask (`allocation="erk"` spreads the density over layers by ERK)."""

    name = "set"
    initial_rule = ErdosRenyiInit()

    def __init__(self, targets: SparsityTargets, *, allocation: str = "er", **options) -> None:
        super().__init__(targets, **options)
        if allocation not in ("er", "erk"):
            raise InputError(f"SET allocation must be 'er' or 'erk', got {allocation!r}")
        if allocation == "erk":
            self.initial_rule = ErkInit()


class PostTraining(PruningMethod):
    """Train dense, prune by magnitude at the end; `fine_tune_epochs` train after that."""

    name = "post"
    initial_rule = None
    update_rule = PruneAtEnd()


METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls for cls in (Dense, PreTraining, InTraining, SET, PostTraining)
}


def make_method(name: str, targets: SparsityTargets, **options) -> PruningMethod:
    if name not in METHODS:
        raise InputError(f"unknown method {name!r} (choose from {', '.join(METHODS)})")
    if name != "set":
        options.pop("allocation", None)
    return METHODS[name](targets, **options)

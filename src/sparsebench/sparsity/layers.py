"""Which layers of a network can be pruned, and which batch norm belongs to which conv."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from torch import nn

LayerKind = Literal["conv", "linear"]
# What one unit of a layer is: a conv's whole filter (the study) or single weight; a
# linear layer's single weight (the study) or whole output neuron.
Granularity = Literal["filter", "weight", "neuron"]
CONV_GRANULARITIES = ("filter", "weight")
LINEAR_GRANULARITIES = ("weight", "neuron")


@dataclass(frozen=True)
class PrunableLayer:
    """A Conv2d or a Linear, and what its units are (`granularity`).

    `bn` is the BatchNorm2d that normalises this conv's output: a pruned filter's batch
    norm scale and shift are zeroed with it, so the channel's output is exactly zero.
    """

    name: str
    module: nn.Conv2d | nn.Linear
    kind: LayerKind
    bn: nn.BatchNorm2d | None = None
    granularity: Granularity = "filter"

    def __post_init__(self) -> None:
        if self.kind == "linear" and self.granularity == "filter":
            object.__setattr__(self, "granularity", "weight")

    @property
    def whole_rows(self) -> bool:
        """A unit is a whole output row of the weight (a filter, a neuron)."""
        return self.granularity in ("filter", "neuron")

    @property
    def unit_shape(self) -> tuple[int, ...]:
        weight = self.module.weight
        return (weight.shape[0],) if self.whole_rows else tuple(weight.shape)

    @property
    def units(self) -> int:
        """Filters or neurons when whole rows are units, else weights."""
        return self.module.weight.shape[0] if self.whole_rows else self.module.weight.numel()


def discover_layers(
    model: nn.Module,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    conv_granularity: Granularity = "filter",
    linear_granularity: Granularity = "weight",
) -> list[PrunableLayer]:
    """Every Conv2d and Linear of `model` whose name matches `include` and not `exclude`.

    Patterns are shell-style (`layer4.*`, `classifier.6`); by default every conv and
    linear layer is pruned, as in the study. With neuron granularity the output layer
    still loses single weights (its neurons are the classes). A conv's batch norm is the BatchNorm2d
    registered right after it with as many features as the conv has filters, which is how
    torchvision's and most hand-written networks are laid out.
    """
    named = list(model.named_modules())
    # The last linear layer's outputs are the classes: pruning its neurons would delete
    # classes, so it keeps single-weight units whatever `linear_granularity` says.
    linears = [name for name, module in named if isinstance(module, nn.Linear)]
    output_layer = linears[-1] if linears else None
    layers: list[PrunableLayer] = []
    for index, (name, module) in enumerate(named):
        if not _selected(name, include, exclude):
            continue
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                continue  # a grouped conv's filters are not independent units
            bn = _following_bn(named, index)
            layers.append(PrunableLayer(name, module, "conv", bn, conv_granularity))
        elif isinstance(module, nn.Linear):
            granularity = "weight" if name == output_layer else linear_granularity
            layers.append(PrunableLayer(name, module, "linear", None, granularity))
    return layers


def _selected(name: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    if not name:
        return False
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatchcase(name, p) for p in exclude))


def _following_bn(named: list[tuple[str, nn.Module]], index: int) -> nn.BatchNorm2d | None:
    conv = named[index][1]
    for _, module in named[index + 1 :]:
        if isinstance(module, nn.BatchNorm2d):
            return module if module.num_features == conv.out_channels else None
        if isinstance(module, nn.Conv2d | nn.Linear):
            return None
    return None

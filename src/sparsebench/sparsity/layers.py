"""Which layers of a network can be pruned, and which batch norm belongs to which conv."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sparsebench.channels import UngroupableNetwork, trace_channels

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
    `followers` are the other layers whose channels are this conv's filters one to one,
    found by tracing (`sparsebench.channels`): the depthwise conv that filters them, its batch
    norm, the gate rows that scale them. A pruned filter zeroes their rows too, so the
    channel is zero everywhere it goes and compaction can remove it.
    """

    name: str
    module: nn.Conv2d | nn.Linear
    kind: LayerKind
    bn: nn.BatchNorm2d | None = None
    granularity: Granularity = "filter"
    followers: tuple[nn.Module, ...] = ()
    output: bool = False  # the network's last linear layer: its rows are the classes

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
    input_shape: tuple[int, int, int] | None = None,
) -> list[PrunableLayer]:
    """Every Conv2d and Linear of `model` whose name matches `include` and not `exclude`.

    Patterns are shell-style (`layer4.*`, `classifier.6`); by default every conv and
    linear layer is pruned, as in the study. With neuron granularity the output layer
    still loses single weights (its neurons are the classes). A conv's batch norm is the BatchNorm2d
    registered right after it with as many features as the conv has filters, which is how
    torchvision's and most hand-written networks are laid out. With `input_shape`, a
    filter's followers are found by tracing; a network that cannot be traced has none.
    """
    named = list(model.named_modules())
    # The last linear layer's outputs are the classes: pruning its neurons would delete
    # classes, so it keeps single-weight units whatever `linear_granularity` says.
    linears = [name for name, module in named if isinstance(module, nn.Linear)]
    output_layer = linears[-1] if linears else None
    followers = _followers(model, input_shape) if conv_granularity == "filter" else {}
    layers: list[PrunableLayer] = []
    for index, (name, module) in enumerate(named):
        if not _selected(name, include, exclude):
            continue
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                continue  # a grouped conv's filters are not independent units
            bn = _following_bn(named, index)
            coupled = tuple(m for m in followers.get(name, ()) if m is not bn)
            layers.append(PrunableLayer(name, module, "conv", bn, conv_granularity, coupled))
        elif isinstance(module, nn.Linear):
            output = name == output_layer
            granularity = "weight" if output else linear_granularity
            layers.append(PrunableLayer(name, module, "linear", None, granularity, output=output))
    return layers


def _selected(name: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    if not name:
        return False
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatchcase(name, p) for p in exclude))


def _followers(
    model: nn.Module, input_shape: tuple[int, int, int] | None
) -> dict[str, list[nn.Module]]:
    """For each conv that alone produces its channels, the layers whose rows are those
    channels. A channel several layers add into (a residual stream) is not one filter's:
    each producer zeroes only its own batch norm, as in the study."""
    if input_shape is None:
        return {}
    try:
        groups = trace_channels(model, input_shape)
    except UngroupableNetwork:
        return {}  # trained masked, and refused by compaction with the reason
    modules = dict(model.named_modules())
    found: dict[str, list[nn.Module]] = {}
    for group in groups:
        if len(group.producers) != 1 or group.producers[0].offset != 0:
            continue
        producer = group.producers[0].module
        whole = [*group.norms, *group.depthwise, *group.scales]
        found[producer] = [
            modules[use.module]
            for use in whole
            if use.offset == 0 and use.repeat == 1 and _rows(modules[use.module]) == group.channels
        ]
    return found


def _rows(module: nn.Module) -> int:
    weight = getattr(module, "weight", None)
    return weight.shape[0] if isinstance(weight, torch.Tensor) else -1


def _following_bn(named: list[tuple[str, nn.Module]], index: int) -> nn.BatchNorm2d | None:
    conv = named[index][1]
    for _, module in named[index + 1 :]:
        if isinstance(module, nn.BatchNorm2d):
            return module if module.num_features == conv.out_channels else None
        if isinstance(module, nn.Conv2d | nn.Linear):
            return None
    return None

"""Which layers of a network can be pruned, and which batch norm belongs to which conv."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from torch import nn

LayerKind = Literal["conv", "linear"]


@dataclass(frozen=True)
class PrunableLayer:
    """A Conv2d (pruned by whole filters) or a Linear (pruned by single weights).

    `bn` is the BatchNorm2d that normalises this conv's output: a pruned filter's batch
    norm scale and shift are zeroed with it, so the channel's output is exactly zero.
    """

    name: str
    module: nn.Conv2d | nn.Linear
    kind: LayerKind
    bn: nn.BatchNorm2d | None = None

    @property
    def units(self) -> int:
        """Filters of a conv, weights of a linear layer."""
        if self.kind == "conv":
            return self.module.out_channels
        return self.module.weight.numel()


def discover_layers(
    model: nn.Module,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> list[PrunableLayer]:
    """Every Conv2d and Linear of `model` whose name matches `include` and not `exclude`.

    Patterns are shell-style (`layer4.*`, `classifier.6`); by default every conv and
    linear layer is pruned, as in the study. A conv's batch norm is the BatchNorm2d
    registered right after it with as many features as the conv has filters, which is how
    torchvision's and most hand-written networks are laid out.
    """
    named = list(model.named_modules())
    layers: list[PrunableLayer] = []
    for index, (name, module) in enumerate(named):
        if not _selected(name, include, exclude):
            continue
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                continue  # a grouped conv's filters are not independent units
            layers.append(PrunableLayer(name, module, "conv", _following_bn(named, index)))
        elif isinstance(module, nn.Linear):
            layers.append(PrunableLayer(name, module, "linear"))
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

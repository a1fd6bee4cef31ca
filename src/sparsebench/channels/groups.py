"""What a trace of a network's channels finds: groups of coupled channels, each printable
as the layers a user would have to change together."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sparsebench.errors import InputError


class UngroupableNetwork(InputError):
    """A network whose channels cannot be grouped: its operation is named."""


@dataclass(frozen=True)
class Use:
    """A module's share of a group: its channels start at `offset` in the module's
    dimension; a linear layer reading a flattened map sees `repeat` features each."""

    module: str
    offset: int = 0
    repeat: int = 1

    def per_channel(self, rows: torch.Tensor, channels: int) -> torch.Tensor:
        """Whether `rows` (one flag per entry of the module's dimension) hold for every
        entry of each of this use's `channels` (a flattened channel is `repeat` rows)."""
        span = rows[self.offset : self.offset + channels * self.repeat]
        return span.view(channels, self.repeat).all(dim=1)


@dataclass
class ChannelGroup:
    """Channels kept or removed together. `print(group)` says which layers couple them:

    16 channels, coupled; made by layer1.1.conv2, layer1.0.conv2, conv1;
    normalised by layer1.1.bn2, layer1.0.bn2, bn1; read by layer1.0.conv1, ...
    """

    channels: int
    producers: list[Use] = field(default_factory=list)  # conv or linear output rows
    consumers: list[Use] = field(default_factory=list)  # conv or linear input columns
    norms: list[Use] = field(default_factory=list)  # batch norms of these channels
    depthwise: list[Use] = field(default_factory=list)  # one filter per channel
    scales: list[Use] = field(default_factory=list)  # rows that only multiply them (gates)
    dropouts: list[Use] = field(default_factory=list)  # dropout modules on these channels
    fixed: str | None = None  # why no channel may go: the network's input or output

    @property
    def prunable(self) -> bool:
        return self.fixed is None

    def rows(self) -> list[Use]:
        """Every use sliced along its output dim: producers, norms, depthwise, scales."""
        return [*self.producers, *self.norms, *self.depthwise, *self.scales]

    def __str__(self) -> str:
        coupled = len(self.producers) + len(self.depthwise) > 1
        parts = [f"{self.channels} channels{', coupled' if coupled else ''}"]
        for role, verb in _VERBS.items():
            names = list(dict.fromkeys(use.module for use in getattr(self, role)))
            if names:
                parts.append(f"{verb} {', '.join(names)}")
        if self.fixed:
            parts.append(f"none may go: {self.fixed}")
        return "; ".join(parts)


ROLES = ("producers", "consumers", "norms", "depthwise", "scales", "dropouts")
_VERBS = {
    "producers": "made by",
    "depthwise": "filtered one by one by",
    "scales": "scaled by",
    "norms": "normalised by",
    "consumers": "read by",
    "dropouts": "dropped out by",
}


@dataclass
class ChannelTrace:
    """A network's channel groups, and the operations a slice of it could not repeat:
    random calls made as functions (`F.dropout`), which draw over whatever width they
    are given, so a network of fewer channels would draw other numbers."""

    groups: list[ChannelGroup]
    random_calls: list[str]

    def __str__(self) -> str:
        """One line per group, the coupled ones (a removed channel goes from each of
        their layers at once) first."""
        ordered = sorted(self.groups, key=lambda g: -(len(g.producers) + len(g.depthwise)))
        return "\n".join(f"- {group}" for group in ordered)

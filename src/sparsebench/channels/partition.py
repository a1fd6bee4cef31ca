"""Channel groups under construction: a union-find over group indices, which can also
split a group at a channel where a later operation couples its two parts to different
groups (a gate over a concatenation), and the layouts of tensors as runs of groups."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sparsebench.channels.groups import ROLES, ChannelGroup, Use


@dataclass(frozen=True)
class Segment:
    """A run of a tensor's channels (dim 1) that belong to one group."""

    group: int
    channels: int
    repeat: int = 1  # features per channel once flattened
    # Whether a removed channel (zero where it is produced) is still zero here: not
    # after a sigmoid, or a constant added.
    zero: bool = True


class GroupPartition:
    """The groups found so far, merged and split as the trace learns how they couple."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.groups: list[ChannelGroup] = []
        # A group whose channels turned out to be coupled with two groups part by part
        # (a gate over a concatenation) is split at a channel: (first part, second part).
        self.split: dict[int, tuple[int, int]] = {}

    def final_groups(self) -> list[ChannelGroup]:
        """The groups left when the trace ends: merged ones once, split ones as parts."""
        roots = {self._root(index) for index in range(len(self.groups))}
        return [self.groups[root] for root in sorted(roots) if root not in self.split]

    def _new_group(self, channels: int, fixed: str | None = None) -> int:
        self.parent.append(len(self.groups))
        self.groups.append(ChannelGroup(channels, fixed=fixed))
        return len(self.groups) - 1

    def _root(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def _group(self, index: int) -> ChannelGroup:
        return self.groups[self._root(index)]

    def _union(self, a: int, b: int) -> None:
        a, b = self._root(a), self._root(b)
        if a == b:
            return
        kept, gone = self.groups[a], self.groups[b]
        for name in ROLES:
            getattr(kept, name).extend(getattr(gone, name))
        kept.fixed = kept.fixed or gone.fixed
        self.parent[b] = a

    def _split(self, index: int, at: int) -> None:
        """Split a group's channels in two at `at`: every use of it becomes two."""
        root = self._root(index)
        group = self.groups[root]
        first = self._new_group(at, group.fixed)
        second = self._new_group(group.channels - at, group.fixed)
        for role in ROLES:
            for use in getattr(group, role):
                getattr(self.groups[first], role).append(use)
                shifted = use.offset + at * use.repeat
                getattr(self.groups[second], role).append(Use(use.module, shifted, use.repeat))
        self.split[root] = (first, second)

    def _expand(self, layout: list[Segment]) -> list[Segment]:
        """`layout` in terms of groups that are not split."""
        expanded = []
        for segment in layout:
            root = self._root(segment.group)
            if root in self.split:
                first, second = self.split[root]
                at = self.groups[first].channels
                parts = [
                    Segment(first, at, segment.repeat),
                    Segment(second, segment.channels - at, segment.repeat),
                ]
                expanded += [replace(part, zero=segment.zero) for part in self._expand(parts)]
            else:
                expanded.append(replace(segment, group=root))
        return expanded

    def _refine(self, layout: list[Segment], cuts: set[int]) -> list[Segment]:
        """Split the groups of `layout` so that a segment ends at every cut."""
        while True:
            layout = self._expand(layout)
            start = 0
            for segment in layout:
                inside = [cut for cut in cuts if start < cut < start + segment.channels]
                if inside:
                    self._split(segment.group, min(inside) - start)
                    break
                start += segment.channels
            else:
                return layout


def ends(layout: list[Segment]) -> list[int]:
    """Where each segment of `layout` ends, in channels from the tensor's first."""
    found, total = [], 0
    for segment in layout:
        total += segment.channels
        found.append(total)
    return found

"""Stratified, seeded splits for data that brings none."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch

from sparsebench.errors import DataWarning, InputError


def stratified_split(
    labels: torch.Tensor, fractions: dict[str, float], seed: int
) -> dict[str, torch.Tensor]:
    """Indices of each named split, taking `fractions` of every class (seeded).

    Each class is shuffled and cut at the cumulative fractions (rounded), so every split
    holds each class in about the same proportion; the last split takes the remainder.
    """
    names = list(fractions)
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for label in torch.unique(labels):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        start, cumulative = 0, 0.0
        for name in names:
            cumulative += fractions[name]
            end = len(members) if name == names[-1] else int(round(cumulative * len(members)))
            parts[name].append(members[start:end])
            start = end
    return {name: torch.sort(torch.cat(chunks)).values for name, chunks in parts.items()}


def held_out(labels: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    """Positions of `share` of each class's members (seeded), at least one of every
    class that has two or more: a validation split carved from a training split, which
    must not lose a class to rounding."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in torch.unique(labels):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = int(round(share * len(members)))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        chosen.append(members[:count])
    return torch.sort(torch.cat(chosen)).values


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` indices keeping every class's share (the study's reduced-size variant)."""
    if size <= 0:
        raise InputError(f"--subset-size must be positive, got {size}")
    if size >= len(labels):
        return torch.arange(len(labels))
    return stratified_split(labels, {"kept": size / len(labels), "rest": 1.0}, seed)["kept"]


def warn_shared_images(
    source: str, paths: list[Path], assigned: dict[str, list[int]], images: torch.Tensor
) -> None:
    """One warning naming the files when an image of one split is, pixel for pixel, an
    image of another (a data set that holds the same picture twice): its result there
    measures memory, not generalisation. Validation standing in for test is not this."""
    first: dict[bytes, tuple[str, int]] = {}
    shared = []
    for split in ("train", "val", "test"):
        if split == "val" and assigned["val"] is assigned["test"]:
            continue
        for index in assigned[split]:
            key = hashlib.blake2b(images[index].numpy().tobytes(), digest_size=16).digest()
            other = first.setdefault(key, (split, index))
            if other[0] != split:
                shared.append(
                    f"{paths[index].name} ({split}) = {paths[other[1]].name} ({other[0]})"
                )
    if shared:
        warnings.warn(
            f"{source}: {len(shared)} image(s) are in two splits as identical files: "
            f"{'; '.join(shared[:3])}{' ...' if len(shared) > 3 else ''}",
            DataWarning,
            stacklevel=3,
        )


def warn_thin_classes(
    source: str, class_names: list[str], labels: dict[str, torch.Tensor], val_is_test: bool
) -> None:
    """One warning line per class that some split holds none of, saying where its images
    went: a class with one image ends up in train only, and is never tested."""
    splits = [split for split in ("train", "val", "test") if not (split == "val" and val_is_test)]
    effect = {"train": "never trained on", "test": "never tested", "val": "never validated"}
    for index, name in enumerate(class_names):
        counts = {split: int((labels[split] == index).sum()) for split in splits}
        empty = [split for split, count in counts.items() if count == 0]
        total = sum(counts.values())
        if not empty or not total:
            continue
        warnings.warn(
            f"{source}: class {name!r} has {total} image(s), none in {' or '.join(empty)} "
            f"({', '.join(f'{split} {count}' for split, count in counts.items())}): it is "
            f"{' and '.join(effect[split] for split in empty)}",
            DataWarning,
            stacklevel=2,
        )

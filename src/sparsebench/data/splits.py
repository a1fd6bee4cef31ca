"""Stratified, seeded splits for data that brings none."""

from __future__ import annotations

import warnings

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


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` indices keeping every class's share (the study's reduced-size variant)."""
    if size <= 0:
        raise InputError(f"--subset-size must be positive, got {size}")
    if size >= len(labels):
        return torch.arange(len(labels))
    return stratified_split(labels, {"kept": size / len(labels), "rest": 1.0}, seed)["kept"]


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

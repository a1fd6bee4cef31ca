"""Achieved sparsity, read from the weights themselves (so it is true of any model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sparsebench.sparsity.layers import discover_layers


@dataclass(frozen=True)
class LayerSparsity:
    """One layer's achieved sparsity: for a conv, the fraction of filters that are
    entirely zero, or of its weights that are zero where that is more (a conv pruned by
    single weights); for a linear layer, the fraction of weights that are zero."""

    layer: str
    kind: str
    units: int
    pruned_units: int
    weights: int
    zero_weights: int

    @property
    def sparsity(self) -> float:
        units = self.pruned_units / self.units if self.units else 0.0
        weights = self.zero_weights / self.weights if self.weights else 0.0
        return max(units, weights)

    def as_dict(self) -> dict:
        return {**asdict(self), "sparsity": self.sparsity}


@torch.no_grad()
def sparsity_report(model: nn.Module) -> list[LayerSparsity]:
    rows = []
    for layer in discover_layers(model):
        weight = layer.module.weight
        zero = weight == 0
        if layer.kind == "conv":
            units, pruned = weight.shape[0], int(zero.flatten(1).all(dim=1).sum())
        else:
            units, pruned = weight.numel(), int(zero.sum())
        rows.append(
            LayerSparsity(layer.name, layer.kind, units, pruned, weight.numel(), int(zero.sum()))
        )
    return rows


def sparsity_by_kind(rows: list[LayerSparsity]) -> dict[str, float]:
    """Overall sparsity of each layer kind, weighted by the layers' weight counts (for
    convs, a pruned filter counts all its weights)."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        pruned_weights = max(row.pruned_units * (row.weights // row.units), row.zero_weights)
        acc = totals.setdefault(row.kind, [0.0, 0.0])
        acc[0] += pruned_weights
        acc[1] += row.weights
    return {kind: pruned / total for kind, (pruned, total) in totals.items() if total}

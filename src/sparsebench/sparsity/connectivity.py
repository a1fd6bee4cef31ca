"""A mask never disconnects the network: every pruned layer keeps a unit, and every row
of the output layer (every class) keeps a weight (layer collapse, Tanaka et al. 2020).

The output layer's budget is spread over its rows where a method ranks units
(`criteria.keep_top_spread`); this is the net under every mask a method chooses, random
draws and prune-and-regrow included: a mask that would leave a class row or a layer
empty is repaired, with a warning naming the layer and the rows, by moving weights from
the rows that keep the most (the count stays what the method chose).
"""

from __future__ import annotations

import warnings

import torch

from sparsebench.sparsity.layers import PrunableLayer


class DisconnectionWarning(UserWarning):
    """A mask would have left a class or a layer without weights, and was repaired."""


@torch.no_grad()
def connected(layer: PrunableLayer, keep: torch.Tensor) -> torch.Tensor:
    """`keep` (the layer's unit mask), repaired so the layer keeps a unit and, for the
    output layer, each class row a weight; `keep` itself when nothing needs repair."""
    if not bool(keep.any()):
        keep = keep.clone()
        keep.view(-1)[0] = True
        _warn(f"{layer.name}: the mask kept no unit; it keeps its first")
    if not layer.output or layer.whole_rows or keep.dim() != 2:
        return keep
    empty = (keep.sum(dim=1) == 0).nonzero().flatten().tolist()
    if not empty:
        return keep
    keep = keep.clone()
    weight = layer.module.weight.detach().abs().to(keep.device)
    repaired = []
    for row in empty:
        donor = int(keep.sum(dim=1).argmax())
        alive = keep[donor].nonzero().flatten()
        if len(alive) <= 1:
            break  # fewer weights than classes: nothing left to give
        column = alive[weight[donor, alive].argmin()]  # the donor's weakest weight
        keep[donor, column], keep[row, column] = False, True
        repaired.append(row)
    if repaired:
        _warn(
            f"{layer.name}: the mask left class row(s) {', '.join(map(str, repaired))} "
            "without weights; each keeps one, taken from the rows that keep the most"
        )
    return keep


def _warn(message: str) -> None:
    warnings.warn(message, DisconnectionWarning, stacklevel=3)

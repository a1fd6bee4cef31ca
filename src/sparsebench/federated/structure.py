"""Which entries of a full-size state a masked network actually holds.

With a mask shared by every client, the entries worth sending are those of the compact
network the mask leaves (`train.compact.build_compact`): a pruned filter's rows, and the
columns of the layers that read its channel, are not. `shared_structure` gives, by
state name, a boolean tensor of the full-size shape, True where the compact network
holds the entry (and its mask does not gate it off); a tensor it does not name travels
whole. Both sides compute it from the same masks, so no mask needs to travel with the
values (`payload.encode(..., "kept")`).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsebench.channels import trace_network
from sparsebench.sparsity.masks import MaskSet
from sparsebench.train.compact import build_compact


def shared_structure(
    model: nn.Module, masks: MaskSet, input_shape: tuple[int, int, int]
) -> dict[str, torch.Tensor]:
    """By name in `model.state_dict()`, the entries the compact network of `masks`
    holds; tensors it holds whole are left out."""
    if not len(masks):
        return {}
    _, slices = build_compact(model, trace_network(model, input_shape), masks, input_shape)
    names = {id(tensor): name for name, tensor in model.state_dict(keep_vars=True).items()}
    held: dict[str, torch.Tensor] = {}
    for piece in slices:
        name = names.get(id(piece.master))
        if name is None:
            continue
        entries = held.setdefault(name, torch.zeros(piece.master.shape, dtype=torch.bool))
        kept = torch.ones(piece.compact.shape, dtype=torch.bool)
        if piece.gate is not None:
            kept = piece.gate.cpu().bool()
        piece.write(entries, piece.read(entries) | kept)
    return {name: entries for name, entries in held.items() if not bool(entries.all())}

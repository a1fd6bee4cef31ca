"""Server-side aggregation of the clients' states (FedAvg, McMahan et al. 2017).

Floating-point tensors are averaged weighted by each client's number of training
examples. Integer tensors are counters (a batch norm's `num_batches_tracked`): the
largest is kept, as no client's count is a fraction of another's. A weight that every
client's mask keeps at zero stays exactly zero: a weighted mean of zeros is zero.

When clients hold different masks (a dynamic method's mask round), an entry is averaged
over the clients that hold it (`held`), as FedDST does (Bibikar et al. 2022): a unit one
client grew is not diluted by the zeros of those that did not; an entry no client holds
is zero.
"""

from __future__ import annotations

import torch

from sparsebench.errors import InputError


def federated_average(
    states: list[dict[str, torch.Tensor]],
    examples: list[int],
    held: list[dict[str, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """The example-weighted mean of `states` (each client's name -> tensor); `held`: by
    client, the entries each gated tensor holds (a tensor not named is held whole)."""
    if not states or len(states) != len(examples):
        raise InputError(
            f"FedAvg needs one example count per client state: {len(states)} states, "
            f"{len(examples)} counts"
        )
    if any(count <= 0 for count in examples):
        raise InputError(f"every client must have trained on examples, not {examples}")
    averaged: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        tensors = [state[name] for state in states]
        if not first.is_floating_point():
            averaged[name] = torch.stack(tensors).max(dim=0).values
            continue
        weights = torch.stack(
            [
                torch.full(first.shape, float(count), dtype=torch.float64)
                * (client_held[name] if client_held and name in client_held else 1.0)
                for count, client_held in zip(examples, held or [None] * len(states), strict=True)
            ]
        )
        stacked = torch.stack([t.to(torch.float64) for t in tensors])
        total = weights.sum(dim=0)
        mean = (stacked * weights).sum(dim=0) / total.clamp_min(1.0)
        averaged[name] = torch.where(total > 0, mean, 0.0).to(first.dtype)
    return averaged

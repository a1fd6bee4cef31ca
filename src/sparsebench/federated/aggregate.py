"""Server-side aggregation of the clients' states (FedAvg, McMahan et al. 2017).

Floating-point tensors are averaged weighted by each client's number of training
examples. Integer tensors are counters (a batch norm's `num_batches_tracked`): the
largest is kept, as no client's count is a fraction of another's. A weight that every
client's mask keeps at zero stays exactly zero: a weighted mean of zeros is zero.
"""

from __future__ import annotations

import torch

from sparsebench.errors import InputError


def federated_average(
    states: list[dict[str, torch.Tensor]], examples: list[int]
) -> dict[str, torch.Tensor]:
    """The example-weighted mean of `states` (each client's name -> tensor)."""
    if not states or len(states) != len(examples):
        raise InputError(
            f"FedAvg needs one example count per client state: {len(states)} states, "
            f"{len(examples)} counts"
        )
    if any(count <= 0 for count in examples):
        raise InputError(f"every client must have trained on examples, not {examples}")
    total = float(sum(examples))
    averaged: dict[str, torch.Tensor] = {}
    for name, first in states[0].items():
        tensors = [state[name] for state in states]
        if first.is_floating_point():
            stacked = torch.stack([t.to(torch.float64) for t in tensors])
            shares = torch.tensor(examples, dtype=torch.float64) / total
            mean = (stacked * shares.view(-1, *[1] * first.dim())).sum(dim=0)
            averaged[name] = mean.to(first.dtype)
        else:
            averaged[name] = torch.stack(tensors).max(dim=0).values
    return averaged

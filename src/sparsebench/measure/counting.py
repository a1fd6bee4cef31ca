"""Parameter and multiply-accumulate (MAC) counts, dense-equivalent and effective.

Dense-equivalent counts every weight; effective counts only non-zero weights (a pruned
filter or weight costs nothing once compacted). MACs are counted per sample from one
forward pass: a conv weight is used once per output position, a linear weight once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Counts:
    params_dense: int
    params_effective: int
    macs_dense: int
    macs_effective: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def count_model(model: nn.Module, input_shape: tuple[int, int, int]) -> Counts:
    """Counts for one sample of shape (C, H, W)."""
    params = [p for p in model.parameters()]
    params_dense = sum(p.numel() for p in params)
    params_effective = sum(int(torch.count_nonzero(p)) for p in params)
    macs = {"dense": 0, "effective": 0}

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        weight = module.weight
        positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        macs["dense"] += weight.numel() * positions
        macs["effective"] += int(torch.count_nonzero(weight)) * positions

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return Counts(params_dense, params_effective, macs["dense"], macs["effective"])

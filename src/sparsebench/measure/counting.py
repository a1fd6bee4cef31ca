"""Parameter and multiply-accumulate (MAC) counts, dense-equivalent and effective.

Dense-equivalent counts every stored weight (a CSR weight stores only its non-zeros);
effective counts only non-zero weights (a pruned filter or weight costs nothing once
compacted). MACs are counted per sample from one
forward pass: a conv weight is used once per output position, a linear weight once.
"""

from __future__ import annotations

import io
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


def model_file_bytes(model: nn.Module) -> int:
    """Size of the model's state dict as `torch.save` writes it (sparse tensors as CSR)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _weight_counts(weight: torch.Tensor) -> tuple[int, int]:
    """(stored weights, non-zero weights); a CSR weight stores only its non-zeros."""
    if weight.layout == torch.sparse_csr:
        values = weight.values()
        return values.numel(), int(torch.count_nonzero(values))
    return weight.numel(), int(torch.count_nonzero(weight))


@torch.no_grad()
def count_model(model: nn.Module, input_shape: tuple[int, int, int]) -> Counts:
    """Counts for one sample of shape (C, H, W)."""
    tensors = list(model.parameters()) + [
        b for b in model.buffers() if b.layout == torch.sparse_csr
    ]
    stored = [_weight_counts(t) for t in tensors]
    params_dense = sum(total for total, _ in stored)
    params_effective = sum(nonzero for _, nonzero in stored)
    macs = {"dense": 0, "effective": 0}

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        total, nonzero = _weight_counts(module.weight)
        positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        macs["dense"] += total * positions
        macs["effective"] += nonzero * positions

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
        or getattr(getattr(m, "weight", None), "layout", None) == torch.sparse_csr
    ]
    was_training = model.training
    model.eval()
    try:
        first = next(iter(tensors), None)
        device = first.device if first is not None else torch.device("cpu")
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return Counts(params_dense, params_effective, macs["dense"], macs["effective"])

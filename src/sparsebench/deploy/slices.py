"""Slicing single layers to kept channels, and how a compact linear layer is stored:
what every compaction (a walk of its own, or by channel groups) is made of."""

from __future__ import annotations

import time
import warnings
from typing import Literal

import torch
from torch import nn

from sparsebench.models.slicing import conv_like

LinearStorage = Literal["auto", "dense", "csr"]


@torch.no_grad()
def slice_conv(conv: nn.Conv2d, out_index: torch.Tensor, in_index: torch.Tensor) -> nn.Conv2d:
    """`conv` on the output channels `out_index` and input channels `in_index`; a
    depthwise conv (one filter per channel) keeps the filters of `out_index`."""
    if conv.groups > 1:
        sliced = conv_like(conv, len(out_index), len(out_index), groups=len(out_index))
        sliced.weight.copy_(conv.weight[out_index])
    else:
        sliced = conv_like(conv, len(in_index), len(out_index))
        sliced.weight.copy_(conv.weight[out_index][:, in_index])
    if conv.bias is not None:
        sliced.bias.copy_(conv.bias[out_index])
    return sliced


@torch.no_grad()
def slice_bn(bn: nn.BatchNorm2d | nn.BatchNorm1d, index: torch.Tensor) -> nn.Module:
    sliced = type(bn)(len(index), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    if bn.affine:
        sliced.weight.copy_(bn.weight[index])
        sliced.bias.copy_(bn.bias[index])
    if bn.track_running_stats:
        sliced.running_mean.copy_(bn.running_mean[index])
        sliced.running_var.copy_(bn.running_var[index])
        sliced.num_batches_tracked.copy_(bn.num_batches_tracked)
    return sliced


# Linear layers: unstructured sparsity, dense or CSR storage.


class CSRLinear(nn.Module):
    """A linear layer whose weight is stored as a CSR sparse matrix."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            csr = weight.detach().to_sparse_csr()
            # int32 indices halve the file of a layer with fewer than 2**31 weights.
            csr = torch.sparse_csr_tensor(
                csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape
            )
        self.register_buffer("weight", csr)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.sparse.mm(self.weight, x.t()).t()
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


@torch.no_grad()
def store_linear(
    layer: nn.Linear, storage: LinearStorage, sample: torch.Tensor | None = None
) -> nn.Module:
    """Keep `layer` dense or as CSR; `auto` times both on `sample` and keeps the faster."""
    if storage == "dense":
        return layer
    sparse = CSRLinear(layer.weight, layer.bias)
    if storage == "csr":
        return sparse
    sample = sample if sample is not None else torch.randn(64, layer.in_features)
    return sparse if _seconds(sparse, sample) < _seconds(layer, sample) else layer


def _seconds(module: nn.Module, x: torch.Tensor, repeats: int = 20) -> float:
    module(x)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            module(x)
        best = min(best, time.perf_counter() - started)
    return best

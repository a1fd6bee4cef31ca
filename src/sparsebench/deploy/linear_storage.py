"""How a compact network's linear layers are stored: dense, or as CSR where their
unstructured sparsity makes that faster."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn

from sparsebench.measure.timing import fastest

LinearStorage = Literal["auto", "dense", "csr"]


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
    choice = fastest({"csr": lambda: sparse(sample), "dense": lambda: layer(sample)}, 20)
    return sparse if choice == "csr" else layer

"""A loss term that keeps a trainer's weights near those it holds when the term is made:
FedProx's proximal term (Li et al. 2020), with which each client's local loss gains
mu/2 * ||w - w_global||^2, keeping its update near the global model it received and
steadying FedAvg when clients' data differ. It lives beside the trainer because it must
read the compact network's slices of the full-size weights.

A client trains the compact network of the shared mask, whose tensors are slices of the
full-size ones: the term is taken over what the stepping network holds, each tensor
against the same slice of the global model.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsebench.train.trainer import SparseTrainer


class ProximalTerm:
    """mu/2 times the squared distance of the stepping network's weights from the
    global weights the trainer holds now (when the term is made)."""

    def __init__(self, trainer: SparseTrainer, mu: float) -> None:
        self.trainer, self.mu = trainer, mu
        self.anchors = {id(param): param.detach().clone() for param in trainer.model.parameters()}
        self._pairs: tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def __call__(self, network: nn.Module) -> torch.Tensor:
        if self._pairs is None or self._pairs[0] is not network:
            self._pairs = (network, self._pair(network))
        total = sum(((param - anchor) ** 2).sum() for param, anchor in self._pairs[1])
        return 0.5 * self.mu * total

    def _pair(self, network: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each trainable tensor of `network` with its anchor (sliced for a compact one)."""
        if network is self.trainer.model:
            return [(param, self.anchors[id(param)]) for param in network.parameters()]
        return [
            (piece.compact, piece.read(self.anchors[id(piece.master)]))
            for piece in self.trainer.execution.slices
            if isinstance(piece.compact, nn.Parameter) and id(piece.master) in self.anchors
        ]

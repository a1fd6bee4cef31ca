"""SNIP (Lee et al. 2019): one-shot pruning at initialisation by connection sensitivity
|gradient x weight|, from a few training batches, then fixed.

The gradients may also come summed already (`GradientSums`): a federated server never
sees the images, so its clients sum them on their own and the server adds the sums.
Because SNIP sums gradients before taking |g x w|, the sum of the clients' sums scores
the network as SNIP would on all of their batches together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from sparsebench.errors import InputError
from sparsebench.sparsity.layers import PrunableLayer
from sparsebench.sparsity.methods import (
    Federation,
    MethodOptions,
    PruningMethod,
    register_method,
)
from sparsebench.sparsity.scorers import Saliency, Scorer


@dataclass(frozen=True)
class GradientSums:
    """Each conv and linear weight's gradient already summed over scoring batches, by
    the module's name: what SNIP scores in place of batches of its own."""

    by_module: dict[str, torch.Tensor]


class SnipOptions(MethodOptions):
    batches: int = Field(1, ge=1, le=1000, description="training batches the scores sum")


@register_method
class Snip(PruningMethod):
    name, display_name, colour, marker = "snip", "SNIP", "#9467bd", "P"
    Options = SnipOptions

    def prepare(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | GradientSums | None
    ) -> None:
        if batches is None:
            raise InputError("snip scores the network on training batches: pass `batches`")
        assert isinstance(self.options, SnipOptions) and self.model is not None
        if isinstance(batches, GradientSums):
            modules = dict(self.model.named_modules())
            self.gradients = {modules[name]: sums for name, sums in batches.by_module.items()}
            return
        self.gradients = summed_gradients(self.model, batches, self.options.batches)

    def prune_untrained(
        self, model: nn.Module, input_shape: tuple[int, int, int] | None = None
    ) -> None:
        raise InputError(
            "snip chooses its mask from gradients on training data, which an untrained "
            "network has not seen: bench a trained snip run by its id instead"
        )

    def initial_scorer(self) -> Scorer:
        return Saliency()

    @classmethod
    def federation(cls) -> Federation | None:
        return "client-scored"  # its scores need images, which stay on the clients

    def dense_gradient(self, layer: PrunableLayer) -> torch.Tensor:
        return self.gradients[layer.module]


def gradient_sums(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int
) -> GradientSums:
    """`summed_gradients` by module name, as they travel."""
    names = {module: name for name, module in model.named_modules()}
    sums = summed_gradients(model, batches, count)
    return GradientSums({names[module]: gradient for module, gradient in sums.items()})


def summed_gradients(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int
) -> dict[nn.Module, torch.Tensor]:
    """Every conv and linear weight's gradient summed over `count` batches, the model
    left as it was (batch-norm statistics restored, gradients cleared)."""
    buffers = {name: value.clone() for name, value in model.named_buffers()}
    sums: dict[nn.Module, torch.Tensor] = {}
    for index, (images, labels) in enumerate(batches):
        if index == count:
            break
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear) and module.weight.grad is not None:
                gradient = module.weight.grad.detach()
                sums[module] = gradient.clone() if module not in sums else sums[module] + gradient
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, value in model.named_buffers():
            value.copy_(buffers[name])
    return sums

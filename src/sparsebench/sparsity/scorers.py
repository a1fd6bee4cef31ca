"""How to rank a layer's units: one score per unit, higher for units worth keeping.

Kept apart from what is pruned with the ranking (Torch-Pruning's idea): a method picks
a scorer for its initial mask, one for what to drop and one for what to grow. A unit is
a conv filter or a single linear weight; a scorer reduces a weight-shaped quantity to
one number per unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from sparsebench.sparsity import criteria
from sparsebench.sparsity.layers import PrunableLayer

if TYPE_CHECKING:
    from sparsebench.sparsity.methods import PruningMethod


def row_sums(layer: PrunableLayer, values: torch.Tensor) -> torch.Tensor:
    """A weight-shaped quantity summed per unit: per filter or neuron, else as it is."""
    return values.flatten(1).sum(dim=1) if layer.whole_rows else values


class Scorer:
    """Scores of `layer`'s units for `method` (its generator, its captured gradients)."""

    # Whether the scores need the dense gradient of an update step, kept by the masks.
    reads_gradients: ClassVar[bool] = False

    def scores(self, layer: PrunableLayer, method: PruningMethod) -> torch.Tensor:
        raise NotImplementedError


class Magnitude(Scorer):
    """A filter's or neuron's L1 norm, a single weight's |w|."""

    def scores(self, layer, method):
        if layer.whole_rows:
            return criteria.filter_l1_norm(layer.module.weight)
        return criteria.weight_magnitude(layer.module.weight)


class Random(Scorer):
    """Uniform random scores from the run's generator: every unit as likely as another."""

    def scores(self, layer, method):
        return criteria.random_scores(layer.unit_shape, method.generator)


class GradientMagnitude(Scorer):
    """The dense gradient's magnitude, pruned units included (RigL's grow rule): |g| of a
    single weight, the L2 norm of a filter's or neuron's gradient. The gradient is the
    one the method captured before the masks gated it."""

    reads_gradients = True

    def scores(self, layer, method):
        gradient = method.dense_gradient(layer)
        if layer.whole_rows:
            return gradient.flatten(1).norm(dim=1)
        return gradient.abs()


class Saliency(Scorer):
    """SNIP's connection sensitivity |g x w| (Lee et al. 2019), summed over a filter's
    or neuron's weights, from the gradients of a few batches the method accumulated."""

    def scores(self, layer, method):
        saliency = (method.dense_gradient(layer) * layer.module.weight.detach()).abs()
        return row_sums(layer, saliency)

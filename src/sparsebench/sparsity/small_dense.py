"""The dense network of the same cost: the baseline a filter-pruned network must beat.

Filters pruned before training leave a thinner network (Liu et al. 2019, "Rethinking the
value of network pruning"): does pruning beat simply training the thin one from
scratch? `small-dense` trains, unpruned and from its own initialisation, for the same
epochs, the network whose every layer keeps the share of its channels the scenario's
filter pruning keeps: the model at width x (1 - conv sparsity). A conv layer that keeps
a share k of its filters, fed by one that keeps k of its own, does k^2 of its
multiply-adds, as the thin network's layer does; a residual network's pruned filters
cost more once compacted (a channel of a residual sum stays while any layer adding into
it keeps it), so there the small network is the cheaper. Every run states its
multiply-adds, so the budgets are in the tables. With no filter pruned (linear-only)
the small network is the dense one.
"""

from __future__ import annotations

from torch import nn

from sparsebench.sparsity.methods import PruningMethod, register_method
from sparsebench.sparsity.scenarios import SparsityTargets


@register_method
class SmallDense(PruningMethod):
    """No mask: the run's network is the thinner one (`network_width`)."""

    name, display_name, colour, marker = "small-dense", "Small dense", "#bcbd22", "P"
    draw = None

    @classmethod
    def network_width(
        cls,
        model: str,
        width: float,
        targets: SparsityTargets,
        shape: tuple[int, int, int, int],
    ) -> float:
        return round(width * (1.0 - targets.conv), 6)

    def prune_untrained(
        self, model: nn.Module, input_shape: tuple[int, int, int] | None = None
    ) -> None:
        """Its network is unpruned (and thinner: built at `network_width`)."""

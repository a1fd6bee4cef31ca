"""Static sparse training: a random mask of exactly the target size, never changed, the
ablation every dynamic-sparsity paper reports beside its method."""

from __future__ import annotations

from sparsebench.sparsity.allocation import Allocation, allocation_named
from sparsebench.sparsity.methods import AllocationOptions, PruningMethod, register_method
from sparsebench.sparsity.scorers import Random, Scorer


@register_method
class Static(PruningMethod):
    """Random units of exactly the allocated count (`allocation: erk` for ERK), fixed."""

    name, display_name, colour, marker = "static", "Static", "#7f7f7f", "x"
    Options = AllocationOptions

    def allocation(self) -> Allocation:
        return allocation_named(self.options.allocation)  # type: ignore[attr-defined]

    def initial_scorer(self) -> Scorer:
        return Random()

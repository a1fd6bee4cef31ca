"""The sparsity engine: prunable layers, masks, ranking criteria, methods, scenarios."""

from importlib import import_module

from sparsebench.sparsity.layers import PrunableLayer, discover_layers
from sparsebench.sparsity.masks import LayerMask, MaskSet
from sparsebench.sparsity.methods import METHODS, PruningMethod, make_method
from sparsebench.sparsity.report import LayerSparsity, sparsity_by_kind, sparsity_report
from sparsebench.sparsity.scenarios import SCENARIOS, SparsityTargets, scenario_targets
from sparsebench.sparsity.study import SET, Dense, InTraining, PostTraining, PreTraining

# Methods beyond the study register themselves when imported, in the order the CLI,
# sweeps and the report list them.
for _module in ("static", "snip", "rigl", "gmp", "lth", "small_dense"):
    import_module(f"sparsebench.sparsity.{_module}")

__all__ = [
    "METHODS",
    "SCENARIOS",
    "SET",
    "Dense",
    "InTraining",
    "LayerMask",
    "LayerSparsity",
    "MaskSet",
    "PostTraining",
    "PreTraining",
    "PrunableLayer",
    "PruningMethod",
    "SparsityTargets",
    "discover_layers",
    "make_method",
    "scenario_targets",
    "sparsity_by_kind",
    "sparsity_report",
]

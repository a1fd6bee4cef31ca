"""How a kind's target sparsity is spread over its layers."""

from __future__ import annotations

from dataclasses import dataclass

from sparsebench.errors import InputError
from sparsebench.sparsity import criteria
from sparsebench.sparsity.layers import PrunableLayer


@dataclass(frozen=True)
class LayerTarget:
    """A layer's share: the fraction of units removed, and the fraction kept (kept
    apart so that neither is a rounded 1 - the other)."""

    sparsity: float
    density: float


class Allocation:
    def targets(self, layers: list[PrunableLayer], sparsities: list[float]) -> list[LayerTarget]:
        raise NotImplementedError


class Uniform(Allocation):
    """Every layer of a kind at the kind's sparsity (the study; Erdos-Renyi draws at
    density 1 - sparsity are SET's `er`)."""

    def targets(self, layers, sparsities):
        return [LayerTarget(s, 1.0 - s) for s in sparsities]


class Erk(Allocation):
    """Erdos-Renyi-Kernel (Evci et al. 2020): per layer kind the overall density is
    1 - sparsity, but small layers keep more and large layers fewer units."""

    def targets(self, layers, sparsities):
        densities = [0.0] * len(layers)
        for kind in ("conv", "linear"):
            members = [i for i, layer in enumerate(layers) if layer.kind == kind]
            if not members:
                continue
            shapes = [tuple(layers[i].module.weight.shape) for i in members]
            layer_densities = criteria.erk_densities(shapes, 1.0 - sparsities[members[0]])
            for i, density in zip(members, layer_densities, strict=True):
                densities[i] = density
        return [LayerTarget(1.0 - d, d) for d in densities]


ALLOCATIONS: dict[str, type[Allocation]] = {"er": Uniform, "uniform": Uniform, "erk": Erk}


def allocation_named(name: str) -> Allocation:
    if name not in ALLOCATIONS:
        raise InputError(f"allocation must be 'er' or 'erk', got {name!r}")
    return ALLOCATIONS[name]()

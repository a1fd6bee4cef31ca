"""The study's sparsity scenarios (sparsity = fraction of units removed)."""

from __future__ import annotations

from dataclasses import dataclass

from sparsebench.errors import InputError


@dataclass(frozen=True)
class SparsityTargets:
    """Fraction of conv filters and of linear weights to remove, each in [0, 1)."""

    conv: float
    linear: float

    def __post_init__(self) -> None:
        for kind, value in (("conv", self.conv), ("linear", self.linear)):
            if not 0.0 <= value < 1.0:
                raise InputError(f"{kind} sparsity must be in [0, 1), got {value}")

    def for_kind(self, kind: str) -> float:
        return self.conv if kind == "conv" else self.linear


SCENARIOS: dict[str, SparsityTargets] = {
    "uniform": SparsityTargets(conv=0.8, linear=0.8),
    "mixed": SparsityTargets(conv=0.5, linear=0.8),
    "linear-only": SparsityTargets(conv=0.0, linear=0.8),
}


def scenario_targets(name: str) -> SparsityTargets:
    if name not in SCENARIOS:
        raise InputError(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    return SCENARIOS[name]

"""How a federation combines its clients' work: a small protocol in the shape of
Flower's `Strategy` (`serverapp/strategy/strategy.py`: what each client is told, how
replies are aggregated), plus what a client adds to its own loss. The base aggregates
as FedAvg does; FedProx is FedAvg with one override, as Flower's `fedprox.py` is.

A strategy of one's own subclasses `Strategy`, names itself, and registers:

    @register_strategy
    class FedMedian(FedAvg):
        name = "fedmedian"

        def aggregate(self, states, examples, held=None):
            ...

then `federate --strategy fedmedian` (and a sweep's `federated: {strategy: fedmedian}`)
trains with it, once its module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from sparsebench.errors import InputError
from sparsebench.federated.aggregate import federated_average
from sparsebench.settings.federated import FederatedSettings
from sparsebench.train.proximal import ProximalTerm
from sparsebench.train.trainer import SparseTrainer

Penalty = Callable[[nn.Module], torch.Tensor]


class Strategy:
    """The server's aggregation and the clients' loss term of one federation."""

    name: ClassVar[str]

    def __init__(self, settings: FederatedSettings) -> None:
        self.settings = settings

    def aggregate(
        self,
        states: list[dict[str, torch.Tensor]],
        examples: list[int],
        held: list[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The new global state from the clients' `states`, each trained on `examples`
        images; `held`: in a mask round, the entries each client's mask holds. By
        default FedAvg's example-weighted mean (McMahan et al. 2017)."""
        return federated_average(states, examples, held)

    def client_penalty(self, trainer: SparseTrainer) -> Penalty | None:
        """A term added to a client's loss at each step, made when the client has loaded
        the global model (None: its loss is the task's alone)."""
        return None


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(strategy: type[Strategy]) -> type[Strategy]:
    """Make `strategy` known by its name to `federate` and to sweeps."""
    STRATEGIES[strategy.name] = strategy
    return strategy


def strategy_for(settings: FederatedSettings) -> Strategy:
    """The registered strategy `settings.strategy` names; an InputError naming the
    choices for any other."""
    if settings.strategy not in STRATEGIES:
        raise InputError(
            f"strategy: unknown strategy {settings.strategy!r} (choose from "
            f"{', '.join(STRATEGIES)})"
        )
    return STRATEGIES[settings.strategy](settings)


@register_strategy
class FedAvg(Strategy):
    """Federated averaging (McMahan et al. 2017): the base's mean, no client term."""

    name = "fedavg"


@register_strategy
class FedProx(FedAvg):
    """FedProx (Li et al. 2020): FedAvg whose clients' losses gain mu/2 times the squared
    distance from the global model they received (`proximal_mu`)."""

    name = "fedprox"

    def client_penalty(self, trainer: SparseTrainer) -> Penalty | None:
        return ProximalTerm(trainer, self.settings.proximal_mu)

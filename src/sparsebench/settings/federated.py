"""The settings of a federated run: how the data is dealt, how rounds go, what is sent.

A federated run is a `RunConfig` (the model, data, method and local training: its
`epochs` are each client's local epochs per round, its `seed` seeds everything) with a
`FederatedSettings` beside it. Its id hashes both, so the same command finds the same
run again and resumes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparsebench.errors import InputError
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.methods import METHODS, Federation


def federated_methods() -> list[str]:
    """The registered methods that train federated, as each declares
    (`PruningMethod.federation`)."""
    return [name for name, method in METHODS.items() if method.federation() is not None]


MAX_CLIENTS = 10_000
MAX_ROUNDS = 100_000


class FederatedSettings(BaseModel):
    """How the clients are made and how the rounds go (defaults: FedAvg on a
    Dirichlet(0.5) label skew over 10 clients, half of them each round)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clients: int = Field(10, ge=1, le=MAX_CLIENTS, description="clients the data is dealt to")
    partition: Literal["iid", "dirichlet", "classes"] = Field(
        "dirichlet", description="iid, dirichlet (label skew by alpha) or classes (k per client)"
    )
    alpha: float = Field(0.5, description="Dirichlet concentration (0.1: strong skew)")
    classes_per_client: int = Field(2, description="classes partition: classes each client holds")
    rounds: int = Field(5, ge=1, le=MAX_ROUNDS, description="federated rounds")
    clients_per_round: int | None = Field(
        None, ge=1, le=MAX_CLIENTS, description="clients sampled each round (default: half)"
    )
    strategy: str = Field(
        "fedavg",
        description="fedavg, fedprox (a proximal term towards the global model), or a "
        "registered strategy of one's own (`federated.strategy`)",
    )
    proximal_mu: float = Field(0.01, ge=0, description="FedProx: weight of the proximal term")
    payload: Literal["auto", "dense", "kept", "bitmask", "int8"] = Field(
        "auto",
        description="what a model update carries: dense float32, kept weights of the shared "
        "structure, kept values with a bitmask, int8 values (auto: dense for dense "
        "training, kept for a fixed mask)",
    )
    mask_every: int = Field(
        3,
        ge=1,
        le=MAX_ROUNDS,
        description="set, rigl: rounds between mask readjustments (until the method's "
        "update_until of the rounds)",
    )
    round_timeout_s: float = Field(
        3600.0, gt=0, description="a client not answering within this is counted failed"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FederatedSettings:
        if self.partition == "dirichlet" and not 0 < self.alpha < float("inf"):
            raise ValueError(f"alpha must be a positive number, not {self.alpha}")
        if self.clients_per_round is not None and self.clients_per_round > self.clients:
            raise ValueError(
                f"clients_per_round {self.clients_per_round} is more than the "
                f"{self.clients} clients"
            )
        return self

    @property
    def per_round(self) -> int:
        return self.clients_per_round or max(1, self.clients // 2)

    def encoding(self, masked: bool) -> str:
        """The payload encoding used: `auto` resolved for a run with or without a mask."""
        if self.payload != "auto":
            return self.payload
        return "kept" if masked else "dense"


class FederatedRun(BaseModel):
    """One federated run: the run's own settings and the federation's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunConfig
    federated: FederatedSettings = FederatedSettings()

    @model_validator(mode="after")
    def _supported(self) -> FederatedRun:
        if self.federation is None:
            raise ValueError(
                f"method {self.run.method!r} does not train federated: it starts from the "
                "unpruned network and prunes while it trains, and no federated server "
                f"prunes on a schedule (use one of {', '.join(federated_methods())})"
            )
        return self

    @property
    def federation(self) -> Federation | None:
        return METHODS[self.run.method].federation()

    @property
    def scored_on_clients(self) -> bool:
        return self.federation == "client-scored"

    @property
    def dynamic(self) -> bool:
        return self.federation == "dynamic"

    def mask_amount(self, round_number: int) -> float | None:
        """The fraction of alive units each client swaps in `round_number`, if it is a
        mask round: every `mask_every` rounds until the method's `update_until` of the
        rounds, its own fraction (SET's swap, RigL's drop), constant or cosine-decayed
        as the method decays it over steps."""
        method = METHODS[self.run.method]
        schedule = method.round_schedule(self.run.method_settings, self.federated.mask_every)
        if schedule is None:
            return None
        return schedule.after_step(round_number, self.federated.rounds)

    def run_id(self) -> str:
        """A hash of the run's id and every federated setting (defaults included: a
        federated run has no earlier release whose ids must be kept)."""
        identity = {
            "federated": self.federated.model_dump(exclude={"round_timeout_s"}),
            "run": self.run.run_id(),
        }
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return "fl-" + hashlib.sha256(text.encode()).hexdigest()[:13]


def federated_run(run: dict, federated: dict) -> FederatedRun:
    """Validated settings, every problem one InputError naming the field."""
    from pydantic import ValidationError

    from sparsebench.errors import validation_message

    try:
        return FederatedRun(run=RunConfig(**run), federated=FederatedSettings(**federated))
    except ValidationError as error:
        raise InputError(validation_message(error, "federated run")) from None

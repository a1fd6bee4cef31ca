"""FedProx's proximal term: its value by hand, on the full-size and on the compact
network, and its pull on a client's update."""

from __future__ import annotations

import pytest
import torch

from sparsebench.data.registry import load_dataset
from sparsebench.federated.client import client_dataset, train_client
from sparsebench.settings.run import RunConfig
from sparsebench.train.build import build_run
from sparsebench.train.proximal import ProximalTerm

RUN = {"model": "resnet18", "width": 0.125, "dataset": "synthetic", "epochs": 1, "lr": 1e-2}


def trainer_of(**settings):
    data = load_dataset("synthetic")
    return build_run(RunConfig(**{**RUN, **settings}), data, torch.device("cpu")), data


def shift_every_weight(model: torch.nn.Module, by: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            param.add_(by)


def test_the_term_is_half_mu_times_the_squared_distance_on_the_full_network():
    trainer, _ = trainer_of(method="dense")
    term = ProximalTerm(trainer, mu=0.5)
    shift_every_weight(trainer.model, 0.1)
    entries = sum(param.numel() for param in trainer.model.parameters())
    assert float(term(trainer.model)) == pytest.approx(0.5 * 0.5 * 0.01 * entries, rel=1e-4)


def test_on_the_compact_network_the_term_counts_only_the_weights_it_holds():
    trainer, _ = trainer_of(method="pre", scenario="mixed")
    term = ProximalTerm(trainer, mu=2.0)
    shift_every_weight(trainer.model, 0.1)
    network, _ = trainer.execution.network_for_step()
    assert network is not trainer.model
    held = sum(param.numel() for param in network.parameters())
    full = sum(param.numel() for param in trainer.model.parameters())
    assert held < full / 2
    assert float(term(network)) == pytest.approx(0.5 * 2.0 * 0.01 * held, rel=1e-4)


def test_a_large_mu_keeps_the_update_near_the_global_model():
    distances = {}
    for mu in (0.0, 10.0):
        trainer, data = trainer_of(method="pre", scenario="mixed")
        start = {name: t.clone() for name, t in trainer.model.state_dict().items()}
        trainer.penalty = ProximalTerm(trainer, mu) if mu else None
        own = client_dataset(data, torch.arange(128))
        update = train_client(trainer, RunConfig(**{**RUN, "method": "pre"}), own, seed=3)
        distances[mu] = sum(
            float((update.state[name] - start[name]).pow(2).sum())
            for name, param in trainer.model.named_parameters()
        )
    assert distances[10.0] < 0.5 * distances[0.0]

"""The baselines the field asks for: the dense network of the same cost (`small-dense`),
iterative magnitude pruning with rewinding (`lth`) and Post-Training with retraining
(its learning rates are in test_schedule.py), checked by hand."""

from __future__ import annotations

import warnings

import pytest
import torch

from sparsebench.data.synthetic import make_synthetic
from sparsebench.deploy.load import load_run
from sparsebench.models import build_model
from sparsebench.sparsity import SCENARIOS
from sparsebench.sparsity.methods import SparsityWarning
from sparsebench.store import ResultsStore
from sparsebench.train import RunConfig
from sparsebench.train.build import build_run
from sparsebench.train.run import run_and_record

CPU = torch.device("cpu")


def _channels(model: torch.nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("model", ["resnet18", "vgg16"])
def test_small_dense_is_the_unpruned_network_of_the_scenarios_width(model):
    """Mixed keeps half the filters: small-dense is the model at half the width, with
    no mask, its own initialisation."""
    data = make_synthetic(samples=(32, 8, 8))
    config = RunConfig(
        dataset="synthetic", model=model, width=0.25, method="small-dense", scenario="mixed"
    )
    trainer = build_run(config, data, CPU)
    thin = build_model(model, num_classes=4, image_size=28, width=0.125)
    assert _channels(trainer.model) == _channels(thin)
    assert len(trainer.method.masks) == 0
    dense = build_model(model, num_classes=4, image_size=28, width=0.25)
    assert sum(_channels(thin)) < 0.6 * sum(_channels(dense))


def test_a_small_dense_run_is_found_again_at_its_width(tmp_path):
    """export, predict and serve build a stored run's network from its config: a
    small-dense run's weights load into the thin network."""
    config = RunConfig(
        dataset="synthetic",
        model="resnet18",
        width=0.25,
        method="small-dense",
        scenario="uniform",
        epochs=1,
        batch_size=64,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with ResultsStore(tmp_path / "r.db") as store:
            run_and_record(config, make_synthetic(samples=(64, 16, 16)), store, tmp_path / "runs")
    loaded = load_run(config.run_id(), tmp_path / "r.db")
    widths = _channels(build_model("resnet18", num_classes=4, image_size=28, width=0.05))
    assert _channels(loaded.model) == widths


def test_lth_prunes_a_share_each_round_and_rewinds_the_survivors():
    """Three epochs a round, rewinding to epoch 1, two rounds to uniform (0.8): round 1
    keeps sqrt(0.2) of the filters, round 2 a fifth; after each, every surviving weight
    is what it was after the first epoch, and the optimiser starts afresh."""
    data = make_synthetic(samples=(64, 16, 16))
    config = RunConfig(
        dataset="synthetic",
        model="vgg16",
        width=0.125,
        method="lth",
        scenario="uniform",
        epochs=3,
        batch_size=32,
        method_options={"rounds": 2, "rewind_epoch": 1},
        execution="masked",
    )
    assert config.total_epochs == 3 + 2 * 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparsityWarning)
        trainer = build_run(config, data, CPU)
    train = data.splits["train"]
    conv = trainer.model.features[0]
    kept_after_first = None
    filters = []
    for epoch in range(config.total_epochs):
        trainer.train()
        for start in range(0, 64, 32):
            trainer.step(train.images[start : start + 32].float() / 255, train.labels[start:][:32])
        if epoch == 0:
            kept_after_first = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.end_epoch(epoch)
        if epoch in (2, 4):  # a round ended: pruned, rewound
            alive = trainer.method.masks.masks["features.0"].keep
            filters.append(int(alive.sum()))
            assert torch.equal(conv.weight[alive], kept_after_first["features.0.weight"][alive])
            assert not trainer.optimizer.state
    total = conv.out_channels
    assert filters == [total - round(total * (1 - 0.2**0.5)), total - round(total * 0.8)]
    assert trainer.method.masks.masks["features.0"].alive == filters[-1]


def test_lth_resumes_with_its_rewind_point():
    data = make_synthetic(samples=(64, 16, 16))
    config = RunConfig(
        dataset="synthetic",
        model="resnet18",
        width=0.0625,
        method="lth",
        scenario=next(iter(SCENARIOS)),
        epochs=2,
        batch_size=32,
        method_options={"rounds": 1, "rewind_epoch": 1},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparsityWarning)
        trainer = build_run(config, data, CPU)
        trainer.end_epoch(0)  # the rewind point is kept after the first epoch
        state = trainer.state_dict()
        again = build_run(config, data, CPU)
    again.load_state_dict(state)
    saved = state["method"]["rewind_to"]
    assert again.method.rewind_to.keys() == saved.keys()
    assert all(torch.equal(again.method.rewind_to[k], v) for k, v in saved.items())

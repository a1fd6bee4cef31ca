"""No mask leaves a class row of the output layer, or a whole layer, without weights:
for every method, in every scenario, with 2 and with 10 classes; and the two mechanisms
behind it (the output layer's budget spread over its rows, the repair of any mask that
would disconnect) checked by hand."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from sparsebench.data.synthetic import make_synthetic
from sparsebench.sparsity import METHODS, SparsityTargets, make_method
from sparsebench.sparsity.connectivity import DisconnectionWarning, connected
from sparsebench.sparsity.criteria import keep_top_spread
from sparsebench.sparsity.layers import PrunableLayer
from sparsebench.sparsity.methods import SparsityWarning
from sparsebench.sparsity.scenarios import SCENARIOS
from sparsebench.train import RunConfig
from sparsebench.train.build import build_run

PRUNING = [name for name, method in METHODS.items() if not method.baseline]


def assert_connected(masks) -> None:
    for mask in masks:
        assert mask.alive > 0, f"{mask.layer.name} keeps no unit"
        if mask.layer.output:
            rows = mask.keep.sum(dim=1)
            assert bool((rows > 0).all()), f"{mask.layer.name} rows {rows.tolist()}"


@pytest.mark.parametrize("classes", [2, 10])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("method", PRUNING)
def test_no_method_disconnects_a_class_or_a_layer(method, scenario, classes):
    """Two epochs of four steps: every mask a method draws, regrows or prunes to is
    checked after each step and each epoch's end."""
    data = make_synthetic(num_classes=classes, samples=(64, 16, 16), image_size=28)
    options = {
        "rigl": {"update_every": 2},
        "gmp": {"update_every": 2},
        "lth": {"rounds": 1, "rewind_epoch": 1},
        "post": {"retrain": "lr-rewind", "fine_tune_epochs": 1},
    }.get(method, {})
    config = RunConfig(
        dataset="synthetic",
        model="resnet18",
        width=0.0625,
        method=method,
        scenario=scenario,
        epochs=2,
        batch_size=16,
        method_options=options,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparsityWarning)
        trainer = build_run(config, data, torch.device("cpu"))
    train = data.splits["train"]
    assert trainer.method.masks is not None
    for epoch in range(config.total_epochs):
        trainer.train()
        for start in range(0, 64, 16):
            trainer.step(train.images[start : start + 16].float() / 255, train.labels[start:][:16])
            assert_connected(trainer.method.masks)
        trainer.end_epoch(epoch)
        assert_connected(trainer.method.masks)
    output = [mask for mask in trainer.method.masks if mask.layer.output]
    if SCENARIOS[scenario].linear > 0 and METHODS[method].name != "small-dense":
        assert output and output[0].keep.shape[0] == classes


def test_the_output_layers_budget_is_spread_over_its_rows():
    """All the largest scores lie in row 0: a budget of 6 over 3 rows keeps each row's
    best two, not row 0's six."""
    scores = torch.tensor(
        [
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
            [0.1, 0.3, 0.2, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.5, 0.6, 0.0],
        ]
    )
    keep = keep_top_spread(scores, 6)
    assert keep.tolist() == [
        [True, True, False, False, False, False],
        [False, True, True, False, False, False],
        [False, False, False, True, True, False],
    ]
    # a budget that does not divide: each row's best two, then the best left anywhere
    assert keep_top_spread(scores, 7)[0].tolist() == [True, True, True, False, False, False]
    # units already pruned (-inf) are never a row's share
    pruned = scores.clone()
    pruned[1] = -float("inf")
    pruned[1, 4] = 0.2
    kept = keep_top_spread(pruned, 6)
    assert kept[1].tolist() == [False, False, False, False, True, False]
    assert int(kept.sum()) == 6


def _output_layer(rows: int, columns: int) -> PrunableLayer:
    linear = nn.Linear(columns, rows)
    with torch.no_grad():
        linear.weight.copy_(torch.arange(rows * columns, dtype=torch.float32).view(rows, columns))
    return PrunableLayer("fc", linear, "linear", output=True, granularity="weight")


def test_a_mask_that_empties_a_class_row_is_repaired_and_says_so():
    """Row 1 was left empty; it takes one weight from row 2 (which keeps the most), the
    column of row 2's weakest kept weight; the count stays 5."""
    layer = _output_layer(3, 4)
    keep = torch.tensor(
        [[True, False, False, False], [False, False, False, False], [False, True, True, True]]
    )
    with pytest.warns(DisconnectionWarning, match=r"fc: the mask left class row\(s\) 1 without"):
        repaired = connected(layer, keep)
    assert repaired.tolist() == [
        [True, False, False, False],
        [False, True, False, False],
        [False, False, True, True],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DisconnectionWarning)
        assert connected(layer, repaired) is repaired  # whole: nothing changes, nothing said


def test_a_layer_left_without_units_keeps_one():
    conv = PrunableLayer("conv1", nn.Conv2d(3, 4, 3), "conv")
    with pytest.warns(DisconnectionWarning, match="conv1: the mask kept no unit"):
        assert connected(conv, torch.zeros(4, dtype=torch.bool)).tolist() == [
            True,
            False,
            False,
            False,
        ]


def test_regrowth_that_would_empty_a_class_row_is_repaired():
    """SET on a 3-class output layer whose row 2 holds the only kept weights of its
    class: dropping by magnitude would take them all; the row keeps a weight."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.ones(3, 12))
        model[1].weight[2] = 1e-3  # the weakest row: magnitude drops it first
    method = make_method("set", SparsityTargets(0.0, 0.75), seed=0)
    method.on_train_begin(model, torch.optim.SGD(model.parameters(), lr=0.1), 1, 1)
    mask = method.masks.masks["1"]
    assert bool((mask.keep.sum(dim=1) > 0).all())
    drawn = mask.alive  # an Erdos-Renyi draw: about 9 of 36
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DisconnectionWarning)
        for _ in range(5):
            method.swap_units(mask, 0.9)
            assert bool((mask.keep.sum(dim=1) > 0).all())
            assert mask.alive == drawn  # the count the method chose

"""Conv layers pruned by single weights, linear layers by whole neurons: what a unit is
changes what the masks gate, and neuron pruning makes the compact network smaller."""

from __future__ import annotations

import json

import pytest
import torch
from test_methods import SmallNet
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.deploy.compact import compact_model
from sparsebench.measure.counting import count_model
from sparsebench.models import build_model
from sparsebench.sparsity import SparsityTargets, discover_layers, make_method


def masked(model, method="pre", targets=(0.5, 0.8), **granularity):
    pruning = make_method(method, SparsityTargets(*targets), seed=0, **granularity)
    pruning.on_train_begin(model, None, 1)
    return pruning


def test_neuron_pruning_removes_whole_rows_and_biases_but_not_the_classes():
    torch.manual_seed(0)
    model = SmallNet()
    with torch.no_grad():  # fc1's neurons: row L1 norms 1, 2, ..., 10
        model.fc1.weight.copy_(torch.arange(1, 11).float().view(10, 1).expand(10, 80) / 80)
    pruning = masked(model, targets=(0.0, 0.8), linear_granularity="neuron")
    fc1 = pruning.masks.masks["fc1"]
    assert fc1.keep.tolist() == [False] * 8 + [True, True]  # the two largest rows stay
    assert torch.all(model.fc1.weight[:8] == 0) and torch.all(model.fc1.bias[:8] == 0)
    assert torch.all(model.fc1.weight[8:] != 0)
    # fc2 is the output layer (its neurons are the classes): single weights, 20% kept
    layers = {layer.name: layer for layer in discover_layers(model, linear_granularity="neuron")}
    assert layers["fc2"].granularity == "weight" and layers["fc1"].granularity == "neuron"
    assert (
        pruning.masks.masks["fc2"].keep.shape == (3, 10) and pruning.masks.masks["fc2"].alive == 6
    )


def test_conv_weight_pruning_gates_single_weights_and_leaves_batch_norm():
    torch.manual_seed(0)
    model = SmallNet()
    pruning = masked(model, targets=(0.5, 0.0), conv_granularity="weight")
    conv1 = pruning.masks.masks["conv1"]
    assert conv1.keep.shape == model.conv1.weight.shape  # (6, 3, 3, 3)
    assert conv1.alive == 81  # half of 162 weights
    # the smallest |w| are gone, the largest stay
    magnitudes = model.conv1.weight.detach().abs()
    threshold = magnitudes[conv1.keep].min()
    assert torch.all(magnitudes[~conv1.keep] <= threshold)
    assert int((model.conv1.weight == 0).sum()) == 81
    assert torch.all(model.bn1.weight == 1)  # no filter is dead, batch norm untouched


def test_neuron_pruned_vgg16_compacts_exactly_into_smaller_linear_layers():
    torch.manual_seed(0)
    model = build_model("vgg16", num_classes=10, image_size=32, width=0.125).eval()
    masked(model, targets=(0.8, 0.8), linear_granularity="neuron")
    compact = compact_model(model, (3, 32, 32))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference, output = model(x), compact(x)
    assert torch.allclose(output, reference, rtol=1e-5, atol=1e-5 * reference.abs().max())
    # classifier.0 and classifier.3 kept a fifth of their neurons: their weights shrink
    hidden = model.classifier[0].out_features
    assert compact.get_submodule("classifier.0").out_features == hidden - round(0.8 * hidden)
    weight_level = build_model("vgg16", num_classes=10, image_size=32, width=0.125).eval()
    masked(weight_level, targets=(0.8, 0.8))
    smaller = count_model(compact, (3, 32, 32)).macs_effective
    weight_level_compact = compact_model(weight_level, (3, 32, 32))
    assert smaller < count_model(weight_level_compact, (3, 32, 32)).macs_effective


@pytest.mark.parametrize("method", ["pre", "in", "set", "post", "static", "snip", "rigl", "gmp"])
def test_every_method_trains_at_weight_and_neuron_granularity(tmp_path, method):
    args = ["train", "--model", "vgg16", "--width", "0.125", "--dataset", "synthetic"]
    args += ["--method", method, "--scenario", "uniform", "--epochs", "1", "--lr", "0.002"]
    args += ["--conv-granularity", "weight", "--linear-granularity", "neuron"]
    if method in ("rigl", "gmp"):
        args += ["--method-option", "update_every=3"]
    folder = ["--db", str(tmp_path / "r.db"), "--runs-dir", str(tmp_path / "runs"), "--json"]
    result = CliRunner().invoke(app, [*args, *folder])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    # SET's Erdos-Renyi draws keep a binomial count; RigL's weights grown at zero near
    # the end may still be exactly zero
    tolerance = {"set": 0.05, "rigl": 0.03}.get(method, 0.01)
    for layer in summary["sparsity"]["layers"]:
        if layer["kind"] == "conv":  # counted in zero weights: filters are not units here
            assert layer["zero_weights"] / layer["weights"] == pytest.approx(0.8, abs=tolerance)
    assert summary["sparsity"]["by_kind"]["linear"] == pytest.approx(0.8, abs=tolerance)

"""Compact execution trains the smaller network the masks leave, and is the same
computation as masked execution: the same masks and test accuracy, losses and parameters
to float round-off, for every method and both models.

The runs train in float64 (the `float64` fixture): in float32, convolutions over other
channel counts round differently, and Adam turns the sign of a near-zero gradient into a
step of the learning rate, so the two executions drift apart by a few steps on some CPUs
and not on others. In float64 they agree to 1.2e-14 (largest parameter difference,
measured under AVX2 and SSE kernels), so TOLERANCE can be tight enough that a unit
sliced wrongly, or a step missed, cannot hide in it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsebench.channels.slicing import DropoutOver
from sparsebench.data.synthetic import make_synthetic
from sparsebench.deploy.compact import compact_model
from sparsebench.train import RunConfig
from sparsebench.train.build import build_run
from sparsebench.train.compact import build_compact
from sparsebench.train.loop import RunInterrupted, train_run

CPU = torch.device("cpu")
# Width 0.09 gives odd channel counts (23 in ResNet18's third stage, 369 hidden neurons
# in VGG16's head), where an off-by-one in slicing would show.
BASE = {
    "width": 0.09,
    "dataset": "synthetic",
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.001,
    "seed": 5,
    "device": "cpu",
}
# RigL and GMP update every 3 steps here (4 steps an epoch), so their masks change many
# times, mid-epoch, between compact and dense steps.
METHODS = {
    "pre": {},
    "in": {},
    "set": {},
    "rigl": {"method_options": {"update_every": 3, "update_until": 0.9}},
    "gmp": {"method_options": {"update_every": 3}},
    "snip": {},
    "static": {},
    "post": {"fine_tune_epochs": 1},
}


@pytest.fixture(scope="module")
def data():
    return make_synthetic(seed=5, samples=(128, 32, 32))


TOLERANCE = 1e-9

pytestmark = [pytest.mark.usefixtures("float64"), pytest.mark.kernels]


def run(settings: dict, execution: str, data, folder: Path) -> tuple[dict, dict]:
    config = RunConfig(**{**BASE, **settings, "execution": execution})
    result = train_run(config, data, folder / execution / "checkpoint.pt")
    state = torch.load(folder / execution / "checkpoint.pt", weights_only=True)
    return result.as_json(), state


def assert_same_computation(masked: tuple[dict, dict], compact: tuple[dict, dict]) -> None:
    (summary_m, state_m), (summary_c, state_c) = masked, compact
    assert summary_c["execution"] == "compact" and summary_m["execution"] == "masked"
    for mask_name, keep in state_m["method"]["masks"].items():
        assert torch.equal(keep, state_c["method"]["masks"][mask_name]), mask_name
    assert summary_c["test"]["accuracy"] == summary_m["test"]["accuracy"]
    for row_m, row_c in zip(summary_m["epochs"], summary_c["epochs"], strict=True):
        assert row_c["train_loss"] == pytest.approx(row_m["train_loss"], rel=TOLERANCE)
        assert row_c["val_loss"] == pytest.approx(row_m["val_loss"], rel=TOLERANCE)
    for name, value in state_m["model"].items():
        if "running" in name or "num_batches" in name:
            continue  # statistics of pruned channels are not kept (they never matter)
        torch.testing.assert_close(state_c["model"][name], value, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("model", ["resnet18", "vgg16"])
@pytest.mark.parametrize("method", list(METHODS))
def test_compact_and_masked_runs_are_the_same_computation(tmp_path, data, model, method):
    settings = {"model": model, "method": method, "scenario": "uniform", **METHODS[method]}
    masked = run(settings, "masked", data, tmp_path)
    compact = run(settings, "compact", data, tmp_path)
    assert_same_computation(masked, compact)
    # and compact really trained less: every epoch after the masks exist
    executed = [row["train_macs_per_sample"] for row in compact[0]["epochs"]]
    dense = compact[0]["epochs"][0]["train_macs_dense_per_sample"]
    assert executed[-1] < 0.5 * dense
    assert all(row["train_macs_per_sample"] == dense for row in masked[0]["epochs"])


@pytest.mark.parametrize(
    "settings",
    [
        {"model": "vgg16", "method": "set", "linear_granularity": "neuron"},
        {"model": "resnet18", "method": "in", "weight_decay": 0.01},
        {"model": "resnet18", "method": "rigl", "conv_granularity": "weight"},
        {"model": "vgg16", "method": "static", "include": ["features.*"]},
        {"model": "resnet18", "method": "set", "preset": "study", "lr": 0.001},
        {"model": "vgg16", "method": "set", "optimizer": "sgd", "schedule": "step", "lr": 0.05},
    ],
    ids=["neurons", "weight-decay", "conv-weights", "some-layers", "study-adam", "sgd-step"],
)
def test_granularities_weight_decay_and_layer_choices_are_the_same_computation(
    tmp_path, data, settings
):
    settings = {"scenario": "uniform", **settings}
    assert_same_computation(
        run(settings, "masked", data, tmp_path), run(settings, "compact", data, tmp_path)
    )


@pytest.mark.parametrize("method", ["pre", "set"])
def test_the_mixed_scenario_is_the_same_computation(tmp_path, data, method):
    """Half the filters alive: convolutions over other channel counts than in uniform."""
    settings = {"model": "resnet18", "method": method, "scenario": "mixed", "epochs": 2}
    masked = run(settings, "masked", data, tmp_path)
    compact = run(settings, "compact", data, tmp_path)
    assert_same_computation(masked, compact)


def test_the_compact_network_computes_what_the_masked_one_does(data):
    """...and is as small as the physically pruned network: a ResNet's residual stream
    keeps every channel any block adds into it, but each block computes only its own
    filters, as the deployed network does (compacted from the masked weights' zeros)."""
    torch.manual_seed(0)
    for model in ("resnet18", "vgg16"):
        config = RunConfig(**{**BASE, "model": model, "method": "pre", "scenario": "uniform"})
        trainer = build_run(config, data, CPU)
        master = trainer.model
        network, _ = build_compact(
            master, trainer.execution.trace, trainer.method.masks, (3, 28, 28)
        )
        master.eval(), network.eval()
        images = torch.randn(8, 3, 28, 28)
        torch.testing.assert_close(network(images), master(images), atol=TOLERANCE, rtol=TOLERANCE)
        physical = compact_model(master, (3, 28, 28))
        assert conv_weights(network) == conv_weights(physical) < 0.1 * conv_weights(master)


def conv_weights(network: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in network.modules() if isinstance(m, torch.nn.Conv2d))


def test_a_pruned_filter_takes_its_bias_batch_norm_and_the_next_layers_inputs(data):
    config = RunConfig(**{**BASE, "model": "resnet18", "method": "pre", "scenario": "uniform"})
    trainer = build_run(config, data, CPU)
    master = trainer.model
    network, _ = build_compact(master, trainer.execution.trace, trainer.method.masks, (3, 28, 28))
    keep = trainer.method.masks.masks["layer1.0.conv1"].keep
    block = network.get_submodule("layer1.0")
    assert block.conv1.out_channels == int(keep.sum()) == block.bn1.num_features
    assert block.conv2.in_channels == int(keep.sum())
    alive_filters = keep.nonzero().flatten()
    torch.testing.assert_close(block.bn1.weight, master.layer1[0].bn1.weight[alive_filters])


def test_dropout_over_the_live_neurons_drops_what_full_width_dropout_drops():
    width, index = 7, torch.tensor([1, 4, 6])
    full = torch.randn(5, width)
    full[:, [0, 2, 3, 5]] = 0.0  # what pruned neurons output
    torch.manual_seed(3)
    expected = torch.nn.functional.dropout(full, 0.5, training=True)
    torch.manual_seed(3)
    got = DropoutOver(0.5, width, index).train()(full[:, index])
    assert torch.equal(got, expected[:, index])


def test_writing_back_steps_the_left_out_weights_as_masked_training_would(data):
    """A unit dropped mid-run leaves the next layer's weights that read it with Adam
    momentum: masked training keeps moving them; compact execution must too."""
    config = RunConfig(
        **{**BASE, "model": "vgg16", "method": "in", "scenario": "mixed", "swap_fraction": 0.5}
    )
    results = {}
    for execution in ("masked", "compact"):
        trainer = build_run(config.model_copy(update={"execution": execution}), data, CPU)
        images, labels = torch.randn(16, 3, 28, 28), torch.randint(0, 4, (16,))
        for _ in range(3):  # momentum on the weights that read the alive filters
            trainer.step(images, labels)
        alive = trainer.method.masks.masks["features.0"].keep.clone()
        trainer.end_epoch(0)  # swaps half the alive filters: their readers keep momentum
        dropped = alive & ~trainer.method.masks.masks["features.0"].keep
        assert dropped.any()
        readers_before = trainer.full_model().features[2].weight[:, dropped].detach().clone()
        for _ in range(4):
            taken = trainer.step(images, labels)
            assert (taken.network is trainer.model) is (execution == "masked")
        master = trainer.full_model()
        results[execution] = {name: p.detach().clone() for name, p in master.named_parameters()}
        # the weights reading dropped channels moved: there was something to reproduce
        assert not torch.equal(master.features[2].weight[:, dropped].detach(), readers_before)
    for name, value in results["masked"].items():
        torch.testing.assert_close(results["compact"][name], value, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("method", ["pre", "set"])
def test_an_interrupted_compact_run_resumes_to_the_uninterrupted_result(tmp_path, data, method):
    """The checkpoint holds the master, written back at the epoch's end: a resumed run
    rebuilds the compact network and its optimiser state from it and goes on exactly as
    the uninterrupted run, which kept its compact network (`pre`) or rebuilt it after the
    epoch's swap (`set`)."""
    config = RunConfig(
        **{**BASE, "model": "vgg16", "method": method, "scenario": "mixed", "weight_decay": 0.01}
    )
    whole = train_run(config, data, tmp_path / "whole" / "checkpoint.pt")
    with pytest.raises(RunInterrupted):
        train_run(config, data, tmp_path / "split" / "checkpoint.pt", stop_after_epoch=0)
    resumed = train_run(config, data, tmp_path / "split" / "checkpoint.pt")
    assert resumed.resumed_from_epoch == 1
    for row_whole, row_resumed in zip(whole.epochs, resumed.epochs, strict=True):
        assert row_resumed.train_loss == row_whole.train_loss
        assert row_resumed.val_loss == row_whole.val_loss
    assert resumed.test.loss == whole.test.loss


EDGE_MODELS = ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50"]


@pytest.mark.parametrize("model", EDGE_MODELS)
@pytest.mark.parametrize("method", ["pre", "set", "rigl"])
def test_the_edge_networks_train_compact_as_they_train_masked(tmp_path, data, model, method):
    """Inverted residuals, depthwise convs and squeeze-and-excitation gates: a pruned
    expansion filter takes its depthwise filter, both batch norms and its gate row, so
    compact training removes the channel and still computes what masked training does,
    through regrowth (SET from the initialiser, RigL at zero after a dense step)."""
    settings = {"model": model, "method": method, "scenario": "mixed", "epochs": 2}
    masked = run({**settings, **METHODS[method]}, "masked", data, tmp_path)
    compact = run({**settings, **METHODS[method]}, "compact", data, tmp_path)
    assert_same_computation(masked, compact)
    executed = compact[0]["epochs"][-1]["train_macs_per_sample"]
    assert executed < 0.7 * compact[0]["epochs"][0]["train_macs_dense_per_sample"]

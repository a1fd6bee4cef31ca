"""The methods beyond the study (static, SNIP, RigL, GMP) and step schedules, checked
against values worked out by hand on small layers."""

from __future__ import annotations

import copy
import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from test_methods import SmallNet, batches, train_steps
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import InputError
from sparsebench.sparsity import METHODS, SparsityTargets, make_method
from sparsebench.sparsity.methods import SparsityWarning
from sparsebench.sparsity.schedules import CubicRamp, EverySteps
from sparsebench.train import RunConfig
from sparsebench.train.trainer import SparseTrainer

runner = CliRunner()


def started(name, targets=(0.5, 0.8), steps_per_epoch=5, epochs=1, seed=0, **options):
    torch.manual_seed(seed)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    method = make_method(name, SparsityTargets(*targets), seed=seed, options=options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparsityWarning)
        return SparseTrainer(
            model,
            optimizer,
            method,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            batches=batches(3),
        )


def end_step_by_hand(method):
    """What the trainer does after a step it did not take (these tests read gradients
    between backward and the optimiser's step): the update due, applied."""
    due = method.update_due_after_step()
    if due is not None:
        method.apply_update(due)


def test_static_keeps_an_exact_random_mask_that_never_changes():
    trainer = started("static", steps_per_epoch=5, epochs=2)
    method = trainer.method
    before = {name: mask.keep.clone() for name, mask in method.masks.masks.items()}
    # of 6 and 5 filters: 6 - round(3) and 5 - round(2.5) (to even: 2) are kept
    assert int(before["conv1"].sum()) == 3 and int(before["conv2"].sum()) == 3
    assert int(before["fc1"].sum()) == 160 and int(before["fc2"].sum()) == 6  # 20% of 800, 30
    for epoch in range(2):
        train_steps(trainer, steps=5, seed=epoch)
        trainer.end_epoch(epoch)
    assert all(torch.equal(method.masks.masks[name].keep, keep) for name, keep in before.items())


def test_snip_keeps_the_units_of_largest_gradient_times_weight():
    trainer = started("snip", batches=2)
    model, method = trainer.model, trainer.method
    # The same scores by hand: summed gradients of two batches, times the weights.
    torch.manual_seed(0)
    twin = SmallNet()
    summed = {}
    for images, labels in list(batches(3))[:2]:
        twin.zero_grad()
        F.cross_entropy(twin(images), labels).backward()
        for name in ("conv1", "fc2"):
            grad = getattr(twin, name).weight.grad.clone()
            summed[name] = summed[name] + grad if name in summed else grad
    conv_scores = (summed["conv1"] * twin.conv1.weight).abs().flatten(1).sum(dim=1)
    expected = torch.zeros(6, dtype=torch.bool)
    expected[conv_scores.topk(3).indices] = True
    assert torch.equal(method.masks.masks["conv1"].keep, expected)
    # the output layer's 6 kept weights spread over its 3 classes: each row's best 2
    fc_scores = (summed["fc2"] * twin.fc2.weight).abs()
    expected_fc = torch.zeros(3, 10, dtype=torch.bool)
    expected_fc.scatter_(1, fc_scores.topk(2, dim=1).indices, True)
    assert torch.equal(method.masks.masks["fc2"].keep, expected_fc)
    # scoring left the network as it was: its batch-norm statistics untouched
    assert torch.equal(model.bn1.running_mean, torch.zeros(6))


def test_rigl_grows_the_pruned_units_with_the_largest_dense_gradient():
    trainer = started(
        "rigl", targets=(0.0, 0.5), steps_per_epoch=4, update_every=2, decay="constant"
    )
    model, optimizer, method = trainer.model, trainer.optimizer, trainer.method
    fc2 = method.masks.masks["fc2"]
    alive_before = fc2.keep.clone()
    assert int(alive_before.sum()) == 15
    # Step 1: no update. Step 2 updates, from the dense gradient of step 2's backward.
    train_steps(trainer, steps=1, seed=1)
    x, y = next(batches(1, seed=2))
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    method.after_backward()
    dense_gradient = method.masks.masks["fc2"].captured.clone()
    optimizer.step()
    weights = model.fc2.weight.detach().clone()  # what the drop rule ranks
    end_step_by_hand(method)
    # By hand: drop the round(0.3 * 15) = 4 (4.5 rounds to even) alive weights of
    # smallest |w| (after the step), grow the 4 dead ones of largest |dense gradient|.
    count = 4
    alive_scores = weights.abs().masked_fill(~alive_before, float("inf")).flatten()
    dropped = set(alive_scores.topk(count, largest=False).indices.tolist())
    dead_scores = dense_gradient.abs().masked_fill(alive_before, -float("inf")).flatten()
    grown = set(dead_scores.topk(count).indices.tolist())
    keep = fc2.keep.flatten()
    expected = set(alive_before.flatten().nonzero().flatten().tolist()) - dropped | grown
    assert set(keep.nonzero().flatten().tolist()) == expected
    assert all(float(model.fc2.weight.flatten()[i]) == 0.0 for i in grown)
    state = optimizer.state[model.fc2.weight]
    assert all(float(state["exp_avg"].flatten()[i]) == 0.0 for i in grown)


@pytest.mark.parametrize("regrowth", ["zero", "init"])
def test_growing_at_zero_leaves_the_output_unchanged_at_the_update(regrowth):
    """After an update the output is that of the network with only the drops applied:
    grown units add nothing (at zero), unlike units grown from the initialiser."""
    trainer = started(
        "rigl", targets=(0.0, 0.5), steps_per_epoch=4, update_every=1, regrowth=regrowth
    )
    model, optimizer, method = trainer.model, trainer.optimizer, trainer.method
    x, y = next(batches(1, seed=5))
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    method.after_backward()
    optimizer.step()
    method.masks.apply()
    keep_before = {name: mask.keep.clone() for name, mask in method.masks.masks.items()}
    twin = copy.deepcopy(model)
    end_step_by_hand(method)  # the update
    with torch.no_grad():
        for name, mask in method.masks.masks.items():
            dropped = keep_before[name] & ~mask.keep
            assert dropped.any()
            getattr(twin, name).weight[dropped] = 0.0  # only the drops
        model.eval(), twin.eval()
        same = torch.equal(model(x), twin(x))
    assert same == (regrowth == "zero")


def test_cosine_decayed_drop_fraction_and_the_end_of_updates():
    schedule = EverySteps(every=10, fraction=0.3, until=0.75, decay="cosine")
    # 200 steps: updates at 10, 20, ..., 140 (< 150), fraction 0.15 (1 + cos(pi t / 150))
    assert schedule.after_step(5, 200) is None
    assert schedule.after_step(10, 200) == pytest.approx(0.15 * (1 + math.cos(math.pi * 10 / 150)))
    assert schedule.after_step(140, 200) == pytest.approx(
        0.15 * (1 + math.cos(math.pi * 140 / 150))
    )
    assert schedule.after_step(150, 200) is None and schedule.after_step(160, 200) is None


@pytest.mark.parametrize(
    ("step", "expected"),
    # s_i = 0.1 of the target 0.8 = 0.08; ramp over steps 20..100 of 100 steps:
    # s_t = 0.8 + (0.08 - 0.8) (1 - (t - 20) / 80)^3
    [(20, 0.08), (40, 0.8 - 0.72 * 0.75**3), (60, 0.8 - 0.72 * 0.5**3), (100, 0.8)],
)
def test_gmp_follows_the_cubic_ramp(step, expected):
    method = started(
        "gmp",
        targets=(0.0, 0.8),
        steps_per_epoch=100,
        initial_sparsity=0.1,
        start=0.2,
        end=1.0,
        update_every=20,
    ).method
    ramp = method.plan
    assert isinstance(ramp, CubicRamp)
    method.step = step - 1
    with torch.no_grad():
        end_step_by_hand(method)
    fc1 = method.masks.masks["fc1"]
    assert 1 - fc1.alive / 800 == pytest.approx(expected, abs=1 / 800)  # fc1: 80 x 10
    assert method.masks.masks["fc2"].alive == 30 - round(expected * 30)


def test_gmp_never_regrows():
    trainer = started("gmp", targets=(0.5, 0.8), steps_per_epoch=10, update_every=2)
    method = trainer.method
    previous = {name: mask.keep.clone() for name, mask in method.masks.masks.items()}
    for seed in range(10):
        train_steps(trainer, steps=1, seed=seed)
        for name, mask in method.masks.masks.items():
            assert not (mask.keep & ~previous[name]).any()
            previous[name] = mask.keep.clone()
    assert method.masks.masks["conv1"].alive == 3  # the target, reached by the last step


def test_in_training_on_a_step_schedule_updates_every_n_steps():
    assert started("in", steps_per_epoch=10, epochs=3, update_every=5).method.updates_every == 5
    assert started("in", steps_per_epoch=10, epochs=3).method.updates_every == 10


def test_a_dynamic_method_that_updates_too_often_says_so():
    torch.manual_seed(0)
    model = SmallNet()
    method = make_method("set", SparsityTargets(0.5, 0.8))
    with pytest.warns(SparsityWarning, match="every 9 optimiser steps"):
        method.on_train_begin(model, None, 5, 9)


def test_method_options_are_checked_by_the_method():
    with pytest.raises(InputError, match=r"method_options \(rigl\): drop_fraction"):
        make_method("rigl", SparsityTargets(0.5, 0.8), options={"drop_fraction": 2})
    with pytest.raises(ValueError, match=r"update_evry: unknown key"):
        RunConfig(dataset="synthetic", method="set", method_options={"update_evry": 3})
    default = RunConfig(dataset="synthetic", method="rigl")
    spelled = RunConfig(dataset="synthetic", method="rigl", method_options={"decay": "cosine"})
    assert spelled.method_options == {} and spelled.run_id() == default.run_id()


@pytest.mark.parametrize("method", ["static", "snip", "rigl", "gmp"])
@pytest.mark.parametrize("scenario", ["uniform", "mixed", "linear-only"])
def test_every_new_method_trains_in_every_scenario(tmp_path, method, scenario):
    args = ["train", "--model", "resnet18", "--width", "0.125", "--dataset", "synthetic"]
    args += ["--method", method, "--scenario", scenario, "--epochs", "2", "--lr", "0.002"]
    if method in ("rigl", "gmp"):
        args += ["--method-option", "update_every=3"]
    result = runner.invoke(
        app, [*args, "--db", str(tmp_path / "r.db"), "--runs-dir", str(tmp_path / "runs"), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    conv, linear = {"uniform": (0.8, 0.8), "mixed": (0.5, 0.8), "linear-only": (0.0, 0.8)}[scenario]
    assert summary["sparsity"]["by_kind"]["conv"] == pytest.approx(conv, abs=0.02)
    assert summary["sparsity"]["by_kind"]["linear"] == pytest.approx(linear, abs=0.02)
    assert summary["mask_updates_every"] == (3 if method in ("rigl", "gmp") else None)


def test_every_method_has_a_display_name_and_a_colour():
    for method in METHODS.values():
        assert method.display_name and method.colour.startswith("#")
    assert list(METHODS)[-6:] == ["static", "snip", "rigl", "gmp", "lth", "small-dense"]

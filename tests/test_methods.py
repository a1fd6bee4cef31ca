import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.models import build_model
from sparsebench.sparsity import SparsityTargets, discover_layers, make_method, sparsity_report
from sparsebench.sparsity.report import sparsity_by_kind
from sparsebench.train.trainer import SparseTrainer


class SmallNet(nn.Module):
    """A conv with a batch norm, a conv with a bias and no batch norm, and two linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1, bias=True)
        self.fc1 = nn.Linear(5 * 4 * 4, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def batches(steps=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield (
            torch.randn(8, 3, 8, 8, generator=generator),
            torch.randint(0, 3, (8,), generator=generator),
        )


def trainer_of(model, method, epochs, optimizer=None):
    """A trainer of the study's per-epoch schedules (no step count needed)."""
    optimizer = optimizer or torch.optim.Adam(model.parameters())
    return SparseTrainer(model, optimizer, method, epochs=epochs, steps_per_epoch=0)


def train_steps(trainer, steps=5, seed=0):
    for x, y in batches(steps, seed):
        trainer.step(x, y)


def test_pre_training_masks_are_the_filters_with_largest_l1_norm():
    torch.manual_seed(0)
    model = SmallNet()
    with torch.no_grad():
        # conv1 filter L1 norms 6, 1, 5, 2, 4, 3 (each filter 27 weights).
        for index, norm in enumerate([6, 1, 5, 2, 4, 3]):
            model.conv1.weight[index] = norm / 27
        model.fc2.weight.copy_(torch.arange(30, dtype=torch.float32).view(3, 10) - 14.5)
    method = make_method("pre", SparsityTargets(conv=0.5, linear=0.8))
    method.on_train_begin(model, torch.optim.Adam(model.parameters()), num_epochs=1)
    keep = method.masks.masks["conv1"].keep
    assert keep.tolist() == [True, False, True, False, True, False]  # norms 6, 5, 4
    # fc2, the output layer, has rows -14.5 .. -5.5, -4.5 .. 4.5 and 5.5 .. 14.5: its
    # budget (0.2 of 30) is spread over its 3 classes, each keeping its 2 largest |w|
    # (row 1's 4.5s, at 10 and 19, rather than row 0's third largest).
    fc2_keep = method.masks.masks["fc2"].keep.flatten()
    assert fc2_keep.nonzero().flatten().tolist() == [0, 1, 10, 19, 28, 29]
    assert torch.equal(model.conv1.weight[1], torch.zeros(3, 3, 3))
    assert model.bn1.weight[1] == 0 and model.bn1.bias[1] == 0


@pytest.mark.parametrize("name", ["pre", "in", "set"])
def test_pruned_units_are_exactly_zero_after_every_adam_step(name):
    torch.manual_seed(1)
    model = SmallNet()
    with torch.no_grad():
        model.bn1.bias.fill_(0.5)  # a non-zero shift that pruning must clear
        model.conv2.bias.fill_(0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    method = make_method(name, SparsityTargets(conv=0.5, linear=0.8), seed=3)
    trainer = trainer_of(model, method, 3, optimizer)
    for epoch in range(3):
        for x, y in batches(4, seed=epoch):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            for mask in method.masks:
                for param, gate in mask.gated():
                    dead = gate.expand_as(param) == 0
                    assert torch.all(param.grad[dead] == 0), "a pruned weight got a gradient"
            optimizer.step()
            assert method.update_due_after_step() is None  # zeroes the dead units again
            conv1 = method.masks.masks["conv1"].keep
            conv2 = method.masks.masks["conv2"].keep
            assert torch.all(model.conv1.weight[~conv1] == 0)
            assert torch.all(model.bn1.weight[~conv1] == 0) and torch.all(
                model.bn1.bias[~conv1] == 0
            )
            assert torch.all(model.conv2.weight[~conv2] == 0)
            assert torch.all(model.conv2.bias[~conv2] == 0)
            fc1 = method.masks.masks["fc1"].keep
            assert torch.all(model.fc1.weight[~fc1] == 0)
        trainer.end_epoch(epoch)
    trainer.finish()
    # A dead conv1 filter's channel is exactly zero after the batch norm.
    activations = model.bn1(model.conv1(torch.randn(4, 3, 8, 8)))
    assert torch.all(activations[:, ~method.masks.masks["conv1"].keep] == 0)


def test_in_training_keeps_exact_counts_and_swaps_weakest_for_dead_units():
    torch.manual_seed(2)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    method = make_method("in", SparsityTargets(conv=0.5, linear=0.8), swap_fraction=0.2, seed=5)
    trainer = trainer_of(model, method, 3, optimizer)
    # conv1: 6 - 3; conv2: 5 - round(2.5) = 5 - 2; fc1: 800 / 5; fc2: 30 / 5.
    expected_alive = {"conv1": 3, "conv2": 3, "fc1": 160, "fc2": 6}
    assert {name: mask.alive for name, mask in method.masks.masks.items()} == expected_alive
    train_steps(trainer)

    fc1 = method.masks.masks["fc1"]
    before = fc1.keep.clone()
    magnitudes = model.fc1.weight.detach().abs().masked_fill(~before, float("inf")).flatten()
    weakest = set(torch.argsort(magnitudes, stable=True)[: round(0.2 * 160)].tolist())
    exp_avg = optimizer.state[model.fc1.weight]["exp_avg"]
    trainer.end_epoch(0)
    after = fc1.keep
    dropped = set((before & ~after).flatten().nonzero().flatten().tolist())
    grown = (~before & after).flatten().nonzero().flatten().tolist()
    assert dropped == weakest
    assert len(grown) == 32 and not set(grown) & dropped
    assert after.sum() == 160
    # Regrown weights come from the initialiser (non-zero) with fresh Adam state.
    flat_weight = model.fc1.weight.detach().flatten()
    assert torch.all(flat_weight[grown] != 0)
    assert torch.all(exp_avg.flatten()[grown] == 0)
    assert torch.all(optimizer.state[model.fc1.weight]["exp_avg_sq"].flatten()[grown] == 0)
    assert {name: mask.alive for name, mask in method.masks.masks.items()} == expected_alive
    # A regrown conv filter restarts its batch norm at scale 1, shift 0.
    conv1 = method.masks.masks["conv1"]
    assert torch.all(model.bn1.weight[conv1.keep] != 0)


def test_in_training_leaves_the_last_epoch_alone():
    model = SmallNet()
    method = make_method("in", SparsityTargets(0.5, 0.8), seed=0)
    trainer = trainer_of(model, method, 2)
    keep = {name: mask.keep.clone() for name, mask in method.masks.masks.items()}
    trainer.end_epoch(1)
    assert all(torch.equal(keep[name], m.keep) for name, m in method.masks.masks.items())


def test_post_training_trains_dense_then_prunes_by_magnitude():
    torch.manual_seed(3)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    method = make_method("post", SparsityTargets(conv=0.5, linear=0.8))
    trainer = trainer_of(model, method, 2, optimizer)
    assert len(method.masks) == 0
    train_steps(trainer)
    trainer.end_epoch(0)
    assert len(method.masks) == 0 and torch.all(model.fc1.weight != 0)
    norms = model.conv1.weight.detach().abs().flatten(1).sum(1)
    expected = set(torch.argsort(norms, descending=True)[:3].tolist())
    trainer.end_epoch(1)
    assert set(method.masks.masks["conv1"].keep.nonzero().flatten().tolist()) == expected
    report = {row.layer: row for row in sparsity_report(model)}
    assert report["conv1"].pruned_units == 3 and report["fc1"].zero_weights == 640


def test_set_draws_an_erdos_renyi_mask_per_layer():
    model = build_model("vgg16", num_classes=10, image_size=32, width=0.5)
    method = make_method("set", SparsityTargets(conv=0.5, linear=0.8), seed=11)
    method.on_train_begin(model, torch.optim.Adam(model.parameters()), num_epochs=5)
    fc = method.masks.masks["classifier.3"]  # 2048 x 2048 weights, each kept with p = 0.2
    n = fc.keep.numel()
    assert abs(fc.alive - 0.2 * n) < 5 * (n * 0.2 * 0.8) ** 0.5
    conv_alive = sum(m.alive for m in method.masks if m.layer.kind == "conv")
    conv_units = sum(m.keep.numel() for m in method.masks if m.layer.kind == "conv")
    assert abs(conv_alive / conv_units - 0.5) < 0.1


def test_dense_prunes_nothing_and_linear_only_leaves_convs_alone():
    model = SmallNet()
    before = [p.detach().clone() for p in model.parameters()]
    dense = make_method("dense", SparsityTargets(0.0, 0.0))
    dense.on_train_begin(model, None, 1)
    assert len(dense.masks) == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    method = make_method("pre", SparsityTargets(conv=0.0, linear=0.8))
    method.on_train_begin(model, None, 1)
    assert set(method.masks.masks) == {"fc1", "fc2"}


def test_include_and_exclude_patterns_choose_the_pruned_layers():
    model = build_model("resnet18", num_classes=4, image_size=28, width=0.125)
    method = make_method(
        "pre", SparsityTargets(0.5, 0.8), include=["layer4.*", "fc"], exclude=["*.downsample.*"]
    )
    method.on_train_begin(model, None, 1)
    assert sorted(method.masks.masks) == [
        "fc",
        "layer4.0.conv1",
        "layer4.0.conv2",
        "layer4.1.conv1",
        "layer4.1.conv2",
    ]
    report = {row.layer: row.sparsity for row in sparsity_report(model)}
    assert report["layer1.0.conv1"] == 0.0 and report["layer4.0.conv1"] == 0.5


def test_resnet_batch_norms_are_paired_with_their_convs():
    model = build_model("resnet18", num_classes=4, image_size=28, width=0.125)
    layers = {layer.name: layer for layer in discover_layers(model)}
    assert layers["conv1"].bn is model.bn1
    assert layers["layer2.0.conv2"].bn is model.layer2[0].bn2
    assert layers["layer2.0.downsample.0"].bn is model.layer2[0].downsample[1]
    assert layers["fc"].bn is None


def test_achieved_sparsity_by_kind_matches_the_mixed_scenario():
    model = build_model("resnet18", num_classes=8, image_size=28, width=0.25)
    method = make_method("pre", SparsityTargets(conv=0.5, linear=0.8))
    method.on_train_begin(model, None, 1)
    by_kind = sparsity_by_kind(sparsity_report(model))
    assert by_kind["conv"] == pytest.approx(0.5, abs=0.02)
    assert by_kind["linear"] == pytest.approx(0.8, abs=0.001)


def test_method_state_round_trips_for_resumption():
    torch.manual_seed(4)
    model = SmallNet()
    method = make_method("in", SparsityTargets(0.5, 0.8), seed=9)
    trainer_of(model, method, 4).end_epoch(0)
    state = method.state_dict()
    next_draw = method.generator.get_state()
    fresh_model = SmallNet()
    fresh_model.load_state_dict(model.state_dict())
    other = make_method("in", SparsityTargets(0.5, 0.8), seed=9)
    other.on_train_begin(fresh_model, torch.optim.Adam(fresh_model.parameters()), num_epochs=4)
    other.load_state_dict(state)
    assert all(torch.equal(a.keep, b.keep) for a, b in zip(method.masks, other.masks, strict=True))
    assert torch.equal(other.generator.get_state(), next_draw)


def test_post_training_fine_tune_epochs_train_the_pruned_network():
    torch.manual_seed(5)
    model = SmallNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    method = make_method("post", SparsityTargets(conv=0.5, linear=0.8), fine_tune_epochs=1)
    trainer = trainer_of(model, method, 3, optimizer)  # 2 dense epochs + 1 fine-tune
    for epoch in range(2):
        train_steps(trainer, seed=epoch)
        trainer.end_epoch(epoch)
    assert method.masks.masks["fc1"].alive == 160
    pruned = ~method.masks.masks["fc1"].keep
    alive_before = model.fc1.weight.detach()[~pruned].clone()
    train_steps(trainer, seed=2)
    trainer.end_epoch(2)
    trainer.finish()
    assert torch.all(model.fc1.weight[pruned] == 0)
    assert not torch.equal(model.fc1.weight.detach()[~pruned], alive_before)

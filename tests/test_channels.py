"""Coupled channels found by tracing: the groups of the study's networks, checked against
their architecture by hand, and of small networks with each coupling a user's own
network may have (a concatenation, a depthwise conv, a squeeze-and-excitation gate, a
flatten); what cannot be followed is refused in one line that names it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.channels import UngroupableNetwork, trace_channels, trace_network
from sparsebench.models import build_model
from sparsebench.sparsity import SCENARIOS, make_method

EDGE_MODELS = [
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
]


def producers(groups):
    """Each group as the sorted names of the layers producing it, with its channels."""
    return {tuple(sorted(u.module for u in g.producers)): g for g in groups}


def test_resnet18_groups_each_stages_residual_stream_and_each_blocks_inner_channels():
    model = build_model("resnet18", num_classes=4, image_size=32, width=0.0625)
    groups = producers(trace_channels(model, (3, 32, 32)))
    # One stream per stage: the stem (or the downsample) and every block's second conv.
    assert groups[("conv1", "layer1.0.conv2", "layer1.1.conv2")].channels == 4
    for stage, channels in ((2, 8), (3, 16), (4, 32)):
        stream = groups[
            (f"layer{stage}.0.conv2", f"layer{stage}.0.downsample.0", f"layer{stage}.1.conv2")
        ]
        assert stream.channels == channels and stream.prunable
        assert {u.module for u in stream.norms} == {
            f"layer{stage}.0.bn2",
            f"layer{stage}.0.downsample.1",
            f"layer{stage}.1.bn2",
        }
    # Inside a block, a conv's filters are read by the next conv alone.
    inner = groups[("layer3.1.conv1",)]
    assert [u.module for u in inner.consumers] == ["layer3.1.conv2"]
    assert [u.module for u in inner.norms] == ["layer3.1.bn1"]
    # 4 streams, 8 inner groups, the input and the classifier's output.
    assert len(groups) == 14
    assert groups[("fc",)].fixed == "the network's output"
    assert groups[()].fixed == "the network's input"


def test_a_group_prints_the_layers_a_user_changes_together():
    model = build_model("resnet18", num_classes=4, image_size=32, width=0.0625)
    trace = trace_network(model, (3, 32, 32))
    groups = producers(trace.groups)
    stream = str(groups[("conv1", "layer1.0.conv2", "layer1.1.conv2")])
    assert stream.startswith("4 channels, coupled; made by ")
    made = stream.split("; ")[1].removeprefix("made by ").split(", ")
    assert sorted(made) == ["conv1", "layer1.0.conv2", "layer1.1.conv2"]
    assert str(groups[("layer3.1.conv1",)]) == (
        "16 channels; made by layer3.1.conv1; normalised by layer3.1.bn1; read by layer3.1.conv2"
    )
    assert str(groups[("fc",)]) == "4 channels; made by fc; none may go: the network's output"
    # the trace lists the four coupled streams before the 8 inner groups
    lines = str(trace).splitlines()
    assert len(lines) == 14 and all(", coupled;" in line for line in lines[:4])
    assert not any(", coupled" in line for line in lines[4:])


def test_vgg16_flattened_map_gives_each_channel_its_spatial_features():
    model = build_model("vgg16", num_classes=4, image_size=224, width=0.0625)
    groups = producers(trace_channels(model, (3, 224, 224)))
    last_conv = groups[("features.28",)]
    [first_linear] = last_conv.consumers
    assert (first_linear.module, first_linear.offset, first_linear.repeat) == (
        "classifier.0",
        0,
        49,  # a 7x7 map per channel, as classifier.0's 32 * 49 inputs say
    )
    assert model.classifier[0].in_features == last_conv.channels * 49


class Branches(nn.Module):
    """Two branches concatenated, a depthwise conv, and a squeeze-and-excitation gate."""

    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(3, 6, 1)
        self.bn = nn.BatchNorm2d(10)
        self.depthwise = nn.Conv2d(10, 10, 3, padding=1, groups=10)
        self.squeeze = nn.Conv2d(10, 2, 1)
        self.excite = nn.Conv2d(2, 10, 1)
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(torch.cat([self.left(x), self.right(x)], dim=1)))
        x = self.depthwise(x)
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean((2, 3), keepdim=True)))))
        x = x * gate
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_a_concatenation_a_depthwise_conv_and_a_gate_couple_the_right_channels():
    groups = producers(trace_channels(Branches(), (3, 16, 16)))
    # The gate's rows multiply the concatenated channels one to one: left's 4 are
    # coupled with excite's first 4 rows, right's 6 with its last 6. The gate only
    # scales them (a removed channel is zero whatever it is): excite is no producer.
    four, six = groups[("left",)], groups[("right",)]
    assert (four.channels, six.channels) == (4, 6)
    assert [(u.module, u.offset) for u in four.scales] == [("excite", 0)]
    assert [(u.module, u.offset) for u in six.scales] == [("excite", 4)]
    # ... consumed where the concatenation put them.
    assert {(u.module, u.offset) for u in four.consumers} == {("squeeze", 0), ("fc", 0)}
    assert {(u.module, u.offset) for u in six.consumers} == {("squeeze", 4), ("fc", 4)}
    assert {(u.module, u.offset) for u in six.depthwise} == {("depthwise", 4)}
    assert {(u.module, u.offset) for u in six.norms} == {("bn", 4)}
    squeeze = groups[("squeeze",)]
    assert [u.module for u in squeeze.consumers] == ["excite"] and squeeze.prunable


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.conv(x)
        return self.conv(-x)


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.grouped = nn.Conv2d(8, 8, 3, groups=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grouped(self.conv(x))


class Normalised(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.GroupNorm(2, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Reused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv(x))


@pytest.mark.parametrize(
    ("network", "said"),
    [
        (DataDependent(), "DataDependent cannot be traced by torch.fx"),
        (Reused(), "cannot group the channels of conv: it is called more than once"),
        (Grouped(), "cannot group the channels of grouped: a grouped convolution (groups=2"),
        (Normalised(), "cannot follow channels through norm (GroupNorm)"),
    ],
)
def test_what_cannot_be_followed_is_refused_in_one_line_naming_it(network, said):
    with pytest.raises(UngroupableNetwork) as refused:
        trace_channels(network, (3, 16, 16))
    assert said in str(refused.value) and "\n" not in str(refused.value)


@torch.no_grad()
def zero_channel(model: nn.Module, group, channel: int, consumers: bool) -> None:
    """Remove one channel of `group` as compaction would: its producers' rows, its batch
    norms' scale and shift and its depthwise filters, and with `consumers` the columns
    that read it."""
    modules = dict(model.named_modules())
    for use in group.producers:
        layer = modules[use.module]
        layer.weight[use.offset + channel] = 0
        if layer.bias is not None:
            layer.bias[use.offset + channel] = 0
    for use in [*group.norms, *group.depthwise]:
        layer = modules[use.module]
        layer.weight[use.offset + channel] = 0
        if layer.bias is not None:
            layer.bias[use.offset + channel] = 0
    if consumers:
        for use in group.consumers:
            start = use.offset + channel * use.repeat
            modules[use.module].weight[:, start : start + use.repeat] = 0


@pytest.mark.parametrize(
    ("network", "shape"),
    [
        (lambda: build_model("resnet18", num_classes=4, image_size=32, width=0.125), (3, 32, 32)),
        (lambda: build_model("vgg16", num_classes=4, image_size=64, width=0.0625), (3, 64, 64)),
        (Branches, (3, 16, 16)),
        *(
            (
                lambda name=name: build_model(name, num_classes=4, image_size=64, width=0.25),
                (3, 64, 64),
            )
            for name in EDGE_MODELS
        ),
    ],
)
def test_a_channel_whose_producers_are_zeroed_is_read_by_no_one(network, shape):
    """Were a coupling missed (a stream member, a gate row, a flattened feature), the
    channel would not be zero where it is read, and zeroing the columns that read it
    would change the output."""
    torch.manual_seed(0)
    model = network().eval()
    with torch.no_grad():  # batch norms that do not normalise to zero mean: a missed
        for module in model.modules():  # coupling then shows in the output
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, *shape)
    for group in trace_channels(model, shape):
        if not group.prunable:
            continue
        channel = group.channels - 1
        producers_only = copy.deepcopy(model)
        zero_channel(producers_only, group, channel, consumers=False)
        before = producers_only(x)
        zero_channel(producers_only, group, channel, consumers=True)
        assert torch.equal(producers_only(x), before), [u.module for u in group.producers]


class Squashed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3)
        self.second = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.second(torch.sigmoid(self.first(x)))
        return self.fc(F.adaptive_avg_pool2d(x + 1, 1).flatten(1))


def test_a_channel_read_where_zero_became_another_value_is_kept():
    """A removed filter's channel is 0.5 after a sigmoid, and 1 after adding one: the
    layers reading it there would see a change, so its group cannot lose a channel. A
    gate's sigmoid scales a product, where zero stays zero: those groups stay prunable."""
    groups = producers(trace_channels(Squashed(), (3, 16, 16)))
    assert groups[("first",)].fixed == "second reads these channels where 0 became another value"
    assert groups[("second",)].fixed == "fc reads these channels where 0 became another value"
    for name in ("efficientnet_b0", "mobilenet_v3_small"):
        model = build_model(name, num_classes=4, image_size=64, width=0.25)
        gated = [
            g
            for g in trace_channels(model, (3, 64, 64))
            if any(u.module.endswith("fc2") for u in g.scales)
        ]
        assert gated and all(g.prunable for g in gated), name


class Head(nn.Module):
    """A dropout module over a classifier's hidden neurons, and one as a function call."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.conv = nn.Conv2d(3, 4, 3)
        self.hidden = nn.Linear(4, 6)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.hidden(torch.flatten(F.adaptive_avg_pool2d(self.conv(x), 1), 1)))
        x = F.dropout(x, 0.5, self.training) if self.functional else self.drop(x)
        return self.out(x)


def test_dropout_is_recorded_on_its_channels_and_a_functional_one_named():
    """A sliced network must draw dropout over the full width (the same random numbers
    as the full network): a module can be replaced to do so, a function call cannot."""
    trace = trace_network(Head(functional=False), (3, 8, 8))
    hidden = producers(trace.groups)[("hidden",)]
    assert [(u.module, u.offset) for u in hidden.dropouts] == [("drop", 0)]
    assert trace.random_calls == []
    assert trace_network(Head(functional=True), (3, 8, 8)).random_calls == [
        "dropout (call_function dropout)"
    ]


def test_a_pruned_expansion_filter_zeroes_what_follows_its_channel():
    """In an inverted residual with a gate (MobileNetV3), a pruned expansion filter's
    channel goes through a depthwise conv, its batch norm and a gate row: all are
    zeroed with it, so compaction can remove the channel. A residual stream's channels
    are every block's: each producer zeroes only its own batch norm, as in the study."""
    model = build_model("mobilenet_v3_small", num_classes=4, image_size=64, width=0.5)
    method = make_method("pre", SCENARIOS["mixed"], seed=0)
    method.prune_untrained(model, (3, 64, 64))
    block = model.features[4].block
    dead = (~method.masks.masks["features.4.block.0.0"].keep).nonzero().flatten()
    assert len(dead) > 0
    depthwise, norm, gate = block[1][0], block[1][1], block[2].fc2
    for layer in (depthwise, norm, gate):
        assert layer.weight[dead].eq(0).all(), layer
        assert layer.bias is None or layer.bias[dead].eq(0).all(), layer
    resnet = build_model("resnet18", num_classes=4, image_size=32, width=0.25)
    study = make_method("pre", SCENARIOS["mixed"], seed=0)
    study.prune_untrained(resnet, (3, 32, 32))
    assert all(layer.followers == () for layer in study.layers)

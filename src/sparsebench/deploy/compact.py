"""Compaction: a masked network becomes a dense one with its pruned filters removed.

A pruned filter's channel is exactly zero (weights, bias and batch-norm scale and shift
are zero), so removing it, and the matching input channels of every layer that reads
it, changes nothing but the work done. In ResNet18, channels inside a block go outright.
Channels that meet a residual addition form each stage's *stream*: the stream keeps the
union of the channels any of its contributors (stem or downsample, and every block's
second conv) keeps, and each contributor computes only its surviving filters and adds
them into the right stream channels. Linear layers keep their unstructured sparsity:
neurons whose weights are all zero are dropped (their constant output folded into the
next layer's bias), and each remaining layer is stored dense or as CSR.

Compaction is for inference: batch norms use their running statistics (eval mode).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.deploy.grouped import compact_by_groups
from sparsebench.deploy.slices import (
    LinearStorage,
    slice_bn,
    slice_conv,
    store_linear,
)
from sparsebench.errors import InputError
from sparsebench.models.resnet import BasicBlock, ResNet
from sparsebench.models.vgg import VGG

# Which channels a conv (+ batch norm) really produces.


@torch.no_grad()
def live_filters(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> torch.Tensor:
    """Indices of output channels that are not identically zero.

    A filter is dead when its weights are all zero and the channel's constant output
    (bias, through the batch norm) is exactly zero, which is what pruning leaves.
    """
    weight_dead = conv.weight.flatten(1).eq(0).all(dim=1)
    constant = conv.bias.clone() if conv.bias is not None else torch.zeros(conv.out_channels)
    if bn is not None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0
        constant = (constant - bn.running_mean) * scale + (bn.bias if bn.affine else 0.0)
    dead = weight_dead & constant.eq(0)
    return (~dead).nonzero().flatten()


@torch.no_grad()
def compact_linear_chain(linears: list[nn.Linear], in_index: torch.Tensor) -> list[nn.Linear]:
    """Linear layers joined by ReLU (and dropout, inert at inference), the first reading
    the features `in_index` of its input. A neuron whose weights are all zero outputs the
    constant relu(bias): it is dropped and that constant folded into the next bias."""
    out = []
    weights = [layer.weight.detach().clone() for layer in linears]
    biases = [
        layer.bias.detach().clone() if layer.bias is not None else torch.zeros(layer.out_features)
        for layer in linears
    ]
    weights[0] = weights[0][:, in_index]
    for i in range(len(linears)):
        if i < len(linears) - 1:
            dead = weights[i].eq(0).all(dim=1)
            if dead.any():
                constant = F.relu(biases[i][dead])
                biases[i + 1] += weights[i + 1][:, dead] @ constant
                weights[i] = weights[i][~dead]
                biases[i] = biases[i][~dead]
                weights[i + 1] = weights[i + 1][:, ~dead]
        layer = nn.Linear(weights[i].shape[1], weights[i].shape[0])
        layer.weight.copy_(weights[i])
        layer.bias.copy_(biases[i])
        out.append(layer)
    return out


# The architectures.


def compact_model(
    model: nn.Module,
    linear: LinearStorage = "dense",
    input_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    """The compact equivalent of a masked network, in eval mode: VGG and ResNets of
    basic blocks by their own walks, any other traceable network by its channel groups
    (`deploy.grouped`, which needs the input shape)."""
    if not isinstance(model, VGG) and not (isinstance(model, ResNet) and model.block is BasicBlock):
        if input_shape is None:
            raise InputError(f"compacting {type(model).__name__} needs its input shape")
        return compact_by_groups(model, input_shape, linear)  # it copies the model itself
    model = copy.deepcopy(model).cpu().eval()
    if isinstance(model, VGG):
        return _compact_vgg(model, linear).eval()
    return _compact_resnet(model, linear).eval()


class CompactVGG(nn.Module):
    """A compacted VGG. Its convolutions run channels-last: oneDNN is faster so on the
    thin layers pruning leaves (1.04x to 1.43x on VGG16 here, more the thinner they
    are). ResNet stays contiguous: its residual index_add made channels-last slower."""

    def __init__(self, features: nn.Sequential, avgpool: nn.Module, classifier: nn.Sequential):
        super().__init__()
        self.features = features.to(memory_format=torch.channels_last)
        self.avgpool, self.classifier = avgpool, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x.contiguous(memory_format=torch.channels_last))
        return self.classifier(torch.flatten(self.avgpool(x), 1))


@torch.no_grad()
def _compact_vgg(model: VGG, linear: LinearStorage) -> CompactVGG:
    layers: list[nn.Module] = []
    channels = torch.arange(model.features[0].in_channels)
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            alive = live_filters(module, None)
            layers.append(slice_conv(module, alive, channels))
            channels = alive
        else:
            layers.append(copy.deepcopy(module))
    pooled = model.avgpool.output_size
    cells = pooled[0] * pooled[1] if isinstance(pooled, tuple) else pooled * pooled
    # Flattening puts channel c at features c*cells ... c*cells + cells - 1.
    in_index = (channels.view(-1, 1) * cells + torch.arange(cells).view(1, -1)).flatten()
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    compacted = compact_linear_chain(linears, in_index)
    head: list[nn.Module] = []
    for i, layer in enumerate(compacted):
        head.append(store_linear(layer, linear))
        if i < len(compacted) - 1:
            head.append(nn.ReLU(inplace=True))
    return CompactVGG(nn.Sequential(*layers), copy.deepcopy(model.avgpool), nn.Sequential(*head))


class CompactBlock(nn.Module):
    """A BasicBlock over a compact stream: conv1 keeps its live filters, conv2 and the
    downsample compute only theirs and add them into their stream channels."""

    def __init__(
        self,
        conv1: nn.Conv2d,
        bn1: nn.BatchNorm2d,
        conv2: nn.Conv2d,
        bn2: nn.BatchNorm2d,
        main_index: torch.Tensor,
        width: int,
        downsample: nn.Sequential | None,
        shortcut_index: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = conv1, bn1, conv2, bn2
        self.downsample = downsample
        self.width = width
        # Where a contributor fills the whole stream in order, plain addition does (no
        # scatter): a block that lost no residual channel costs what the original did.
        self.main_is_whole = _is_whole(main_index, width)
        self.shortcut_is_whole = shortcut_index is not None and _is_whole(shortcut_index, width)
        self.register_buffer("main_index", main_index)
        self.register_buffer("shortcut_index", shortcut_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.downsample is None:
            identity = x
        elif self.shortcut_is_whole:
            identity = self.downsample(x)
        else:
            identity = _scatter(self.downsample(x), self.shortcut_index, self.width)
        if self.main_is_whole:
            return F.relu(identity + out)
        return F.relu(identity.index_add(1, self.main_index, out))


def _is_whole(index: torch.Tensor, width: int) -> bool:
    return len(index) == width and bool(torch.equal(index, torch.arange(width)))


def _scatter(values: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """`values` placed at channels `index` of a zero tensor `width` channels wide."""
    full = values.new_zeros(values.shape[0], width, *values.shape[2:])
    return full.index_copy(1, index, values)


class CompactResNet(nn.Module):
    def __init__(
        self,
        stem: nn.Sequential,
        stem_index: torch.Tensor,
        width: int,
        stages: nn.Sequential,
        fc: nn.Module,
    ) -> None:
        super().__init__()
        self.stem, self.stages, self.fc, self.width = stem, stages, fc, width
        self.stem_is_whole = _is_whole(stem_index, width)
        self.register_buffer("stem_index", stem_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = self.stem(x)
        if not self.stem_is_whole:
            stream = _scatter(stream, self.stem_index, self.width)
        stream = self.stages(stream)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(stream, 1), 1))


def stream_positions(members: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """Where each of `members` (channel numbers) sits in the compact `stream`."""
    lookup = {int(c): i for i, c in enumerate(stream.tolist())}
    return torch.tensor([lookup[int(c)] for c in members.tolist()], dtype=torch.long)


@torch.no_grad()
def _compact_resnet(model: ResNet, linear: LinearStorage) -> CompactResNet:
    """A ResNet over compact residual streams: each contributor to a stream computes only
    its own live filters and adds them in (measured faster than slicing by channel groups,
    where every contributor computes every channel the stream keeps)."""
    device = model.conv1.weight.device
    stem_alive = live_filters(model.conv1, model.bn1)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    blocks_out: list[nn.Module] = []
    previous = None  # channel numbers of the previous stage's stream
    stem_stream = None
    for stage_index, stage in enumerate(stages):
        blocks: list[BasicBlock] = list(stage)
        contributors = [live_filters(b.conv2, b.bn2) for b in blocks]
        first = blocks[0]
        if first.downsample is not None:
            shortcut_alive = live_filters(first.downsample[0], first.downsample[1])
        else:
            shortcut_alive = stem_alive if stage_index == 0 else None
        parts = contributors + ([shortcut_alive] if shortcut_alive is not None else [])
        stream = torch.unique(torch.cat(parts))  # sorted channel numbers
        if stage_index == 0:
            stem_stream = stream
            previous = stream
        for block_index, (block, alive2) in enumerate(zip(blocks, contributors, strict=True)):
            alive1 = live_filters(block.conv1, block.bn1)
            # The compact stream holds these channel numbers, in this (sorted) order.
            reads = previous if block_index == 0 else stream
            conv1 = slice_conv(block.conv1, alive1, reads)
            conv2 = slice_conv(block.conv2, alive2, alive1)
            downsample, shortcut_index = None, None
            if block_index == 0 and block.downsample is not None:
                downsample = nn.Sequential(
                    slice_conv(block.downsample[0], shortcut_alive, reads),
                    slice_bn(block.downsample[1], shortcut_alive),
                )
                shortcut_index = stream_positions(shortcut_alive, stream).to(device)
            elif block_index == 0 and previous is not None and not torch.equal(previous, stream):
                raise RuntimeError("a stage without downsample must keep the incoming stream")
            blocks_out.append(
                CompactBlock(
                    conv1,
                    slice_bn(block.bn1, alive1),
                    conv2,
                    slice_bn(block.bn2, alive2),
                    stream_positions(alive2, stream).to(device),
                    len(stream),
                    downsample,
                    shortcut_index,
                )
            )
        previous = stream
    assert stem_stream is not None and previous is not None
    return CompactResNet(
        _compact_stem(model, stem_alive),
        stream_positions(stem_alive, stem_stream).to(device),
        len(stem_stream),
        nn.Sequential(*blocks_out),
        store_linear(compact_linear_chain([model.fc], previous)[0], linear),
    )


def _compact_stem(model: ResNet, alive: torch.Tensor) -> nn.Sequential:
    return nn.Sequential(
        slice_conv(model.conv1, alive, torch.arange(model.conv1.in_channels)),
        slice_bn(model.bn1, alive),
        nn.ReLU(inplace=True),
        model.maxpool,
    )

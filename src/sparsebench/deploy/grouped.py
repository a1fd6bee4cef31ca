"""Compaction of any traceable network by its channel groups (`models.channels`).

A channel of a prunable group is removed when it is zero wherever it is read: every
layer producing it has an all-zero row and no bias there, and every batch norm and
depthwise conv it passes maps zero to zero (pruning zeroes a filter's batch-norm scale
and shift with it). Each layer is then sliced to the channels its groups keep, in the
network's own module tree, so its `forward` runs unchanged on fewer channels. A group
keeps at least one channel, so that every layer keeps a shape.

This is the compaction of the architectures that have no walk of their own in
`deploy.compact` (bottleneck ResNets, the mobile networks, a user's own network).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn

from sparsebench.deploy.slices import LinearStorage, slice_bn, slice_conv, store_linear
from sparsebench.models.channels import ChannelGroup, Use, trace_channels

# How far the compact network's outputs may be from the masked one's (relative, float32).
EXACT = 1e-5


@torch.no_grad()
def compact_by_groups(
    model: nn.Module, input_shape: tuple[int, int, int], linear: LinearStorage = "dense"
) -> nn.Module:
    """The compact equivalent of `model` (masked) for inputs of `input_shape`, in eval
    mode; checked to compute the masked network's outputs."""
    model = copy.deepcopy(model).cpu().eval()
    modules = dict(model.named_modules())
    rows: dict[str, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    columns: dict[str, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    for group in trace_channels(model, input_shape):
        kept = _kept_channels(group, modules)
        for use in [*group.producers, *group.norms, *group.depthwise]:
            rows[use.module].append((use.offset, use.offset + kept))
        for use in group.consumers:
            features = kept[:, None] * use.repeat + torch.arange(use.repeat)
            columns[use.module].append((use.offset, use.offset + features.flatten()))
    compact = copy.deepcopy(model)
    for name, module in modules.items():
        sliced = _sliced(module, _index(rows.get(name)), _index(columns.get(name)), linear)
        if sliced is not None:
            _replace(compact, name, sliced)
    _check_exact(model, compact, input_shape)
    return compact.eval()


def _kept_channels(group: ChannelGroup, modules: dict[str, nn.Module]) -> torch.Tensor:
    """The channels of `group` that are not zero everywhere (all, if it is fixed)."""
    if not group.prunable:
        return torch.arange(group.channels)
    zero = torch.ones(group.channels, dtype=torch.bool)
    span = group.channels
    for use in group.producers:
        layer = modules[use.module]
        zero &= layer.weight[use.offset : use.offset + span].flatten(1).eq(0).all(dim=1)
        if layer.bias is not None:
            zero &= layer.bias[use.offset : use.offset + span].eq(0)
    for use in group.depthwise:
        bias = modules[use.module].bias
        if bias is not None:
            zero &= bias[use.offset : use.offset + span].eq(0)
    for use in group.norms:
        zero &= _zero_maps_to_zero(modules[use.module], use, span)
    kept = (~zero).nonzero().flatten()
    return kept if len(kept) else torch.zeros(1, dtype=torch.long)


def _zero_maps_to_zero(norm: nn.Module, use: Use, channels: int) -> torch.Tensor:
    """Where a batch norm (in eval) gives zero for a zero input."""
    assert isinstance(norm, nn.BatchNorm2d | nn.BatchNorm1d)
    span = slice(use.offset, use.offset + channels)
    if norm.running_mean is None or norm.running_var is None:
        return torch.zeros(channels, dtype=torch.bool)  # batch statistics: no zero kept
    shift = -norm.running_mean[span] / torch.sqrt(norm.running_var[span] + norm.eps)
    if norm.affine:
        shift = shift * norm.weight[span] + norm.bias[span]
    return shift.eq(0)


def _index(parts: list[tuple[int, torch.Tensor]] | None) -> torch.Tensor | None:
    """A module's kept channels along one dimension, in the order its groups lie."""
    if not parts:
        return None
    return torch.cat([index for _, index in sorted(parts, key=lambda part: part[0])])


def _sliced(
    module: nn.Module,
    rows: torch.Tensor | None,
    columns: torch.Tensor | None,
    linear: LinearStorage,
) -> nn.Module | None:
    """`module` on its kept rows (outputs) and columns (inputs); None: unchanged."""
    if rows is None and columns is None:
        return None
    if isinstance(module, nn.Conv2d):
        out = rows if rows is not None else torch.arange(module.out_channels)
        into = columns if columns is not None else torch.arange(module.in_channels)
        return slice_conv(module, out, into)
    if isinstance(module, nn.Linear):
        out = rows if rows is not None else torch.arange(module.out_features)
        into = columns if columns is not None else torch.arange(module.in_features)
        layer = nn.Linear(len(into), len(out), bias=module.bias is not None)
        layer.weight.copy_(module.weight[out][:, into])
        if module.bias is not None:
            layer.bias.copy_(module.bias[out])
        return store_linear(layer, linear)
    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        assert rows is not None
        return slice_bn(module, rows)
    return None


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _check_exact(masked: nn.Module, compact: nn.Module, input_shape: tuple[int, int, int]) -> None:
    probe = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(0))
    reference, output = masked(probe), compact.eval()(probe)
    scale = reference.abs().max().clamp_min(1e-12)
    difference = float((output - reference).abs().max() / scale)
    if difference > EXACT:
        raise RuntimeError(
            f"compacting {type(masked).__name__} changed its outputs by {difference:.1e} "
            "(relative): a bug in the channel grouping; deploy the masked model"
        )

"""Compaction of any traceable network by its channel groups (`models.channels`).

A channel of a prunable group is removed when it is zero wherever it is read: every
layer producing it has an all-zero row and no bias there, and every batch norm and
depthwise conv it passes maps zero to zero (pruning zeroes a filter's batch-norm scale
and shift, and its followers' rows, with it). Each layer is then sliced to the channels
its groups keep (`models.slicing`, as compact training slices), in the network's own
module tree, so its `forward` runs unchanged on fewer channels. A group keeps at least
one channel, so that every layer keeps a shape.

This is the compaction of the architectures that have no walk of their own in
`deploy.compact` (bottleneck ResNets, the mobile networks, a user's own network).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparsebench.deploy.slices import LinearStorage, store_linear
from sparsebench.models.channels import ChannelGroup, trace_network
from sparsebench.models.slicing import Slicer, slice_network

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
    trace = trace_network(model, input_shape)
    kept = [kept_channels(group, modules) for group in trace.groups]
    compact = slice_network(model, trace, kept, Slicer()).eval()
    if linear != "dense":
        for name, module in list(compact.named_modules()):
            if isinstance(module, nn.Linear):
                _replace(compact, name, store_linear(module, linear))
    _check_exact(model, compact, input_shape)
    return compact


def kept_channels(group: ChannelGroup, modules: dict[str, nn.Module]) -> torch.Tensor:
    """The channels of `group` that are not zero everywhere (all, if it is fixed)."""
    if not group.prunable or not group.producers:
        return torch.arange(group.channels)
    zero = torch.ones(group.channels, dtype=torch.bool)
    for use in group.producers:
        layer = modules[use.module]
        zero &= use.per_channel(layer.weight.flatten(1).eq(0).all(dim=1), group.channels)
        if layer.bias is not None:
            zero &= use.per_channel(layer.bias.eq(0), group.channels)
    for use in group.depthwise:
        bias = modules[use.module].bias
        if bias is not None:
            zero &= use.per_channel(bias.eq(0), group.channels)
    for use in group.norms:
        zero &= use.per_channel(_zero_maps_to_zero(modules[use.module]), group.channels)
    kept = (~zero).nonzero().flatten()
    return kept if len(kept) else torch.zeros(1, dtype=torch.long)


def _zero_maps_to_zero(norm: nn.Module) -> torch.Tensor:
    """Where a batch norm (in eval) gives zero for a zero input."""
    assert isinstance(norm, nn.BatchNorm2d | nn.BatchNorm1d)
    if norm.running_mean is None or norm.running_var is None:
        return torch.zeros(norm.num_features, dtype=torch.bool)  # batch statistics
    shift = -norm.running_mean / torch.sqrt(norm.running_var + norm.eps)
    if norm.affine:
        shift = shift * norm.weight + norm.bias
    return shift.eq(0)


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

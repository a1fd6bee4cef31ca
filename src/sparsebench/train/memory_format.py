"""Channels-last training: convolutions in NHWC layout, where oneDNN trains them safely.

On the CPU, convolutional networks train about 1.25 times as fast with their
convolution weights, and so their activations, in channels-last (NHWC) layout as in
NCHW (`benchmarks/memory_format.py`). torch 2.13.0's oneDNN has one unsafe case there:
the weight gradient of a 1x1 convolution that it first reduces to unit stride (a
strided or padded 1x1, such as a ResNet shortcut) writes past its workspace when the
layer has fewer input channels per group than the kernel's block (8 with AVX2, 16 with
AVX-512). The process aborts ("double free or corruption"), hangs, or computes wrong
gradients (uxlfoundation/oneDNN#6035; reproduced by that benchmark). Pruning thins
exactly those layers. Under `channels_last` such a convolution alone keeps NCHW (its
weight stays contiguous and its input is made contiguous, which sends oneDNN to its NCHW
kernels); `auto` trains a network holding one NCHW throughout, which measured faster.

The layout changes where float sums are rounded, not what is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from sparsebench.settings.run import MEMORY_FORMATS

# The widest block of oneDNN's 1x1 kernels for float32 (AVX-512): below it, the unsafe case.
SAFE_INPUT_CHANNELS = 16


def wants_channels_last(memory_format: str, network: nn.Module) -> bool:
    """Whether `network` trains channels-last. `auto`: where it was measured to pay,
    float32 on the CPU (oneDNN's kernels; other types take PyTorch's own, which gain
    nothing), and only if no convolution needs NCHW: the layout changes around such a
    layer cost more than channels-last saves (a pruned ResNet18's epoch took 1.09 to
    1.54 times its NCHW epoch with one to three such shortcuts)."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(
            f"memory format must be {', '.join(MEMORY_FORMATS)}, got {memory_format!r}"
        )
    if memory_format != "auto":
        return memory_format == "channels_last"
    parameter = next(network.parameters(), None)
    return (
        parameter is not None
        and parameter.device.type == "cpu"
        and parameter.dtype == torch.float32
        and not any(
            reduced_to_unit_stride_unsafely(module)
            for module in network.modules()
            if isinstance(module, nn.Conv2d)
        )
    )


def reduced_to_unit_stride_unsafely(conv: nn.Conv2d) -> bool:
    """A 1x1 convolution that oneDNN reduces to unit stride, with too few input channels
    per group for its channels-last weight gradient to be safe."""
    pointwise = tuple(conv.kernel_size) == (1, 1)
    reduced = any(s > 1 for s in conv.stride) or conv.padding not in ((0, 0), "valid", "same")
    return pointwise and reduced and conv.in_channels // conv.groups < SAFE_INPUT_CHANNELS


@dataclass
class ChannelsLast:
    """What `to_channels_last` changed in a network, so `restore` can undo exactly that."""

    converted: list[tuple[nn.Parameter, tuple[int, ...]]] = field(default_factory=list)
    hooks: list[RemovableHandle] = field(default_factory=list)

    def restore(self) -> None:
        """Each converted weight back in its former layout, and no hook of ours left."""
        for hook in self.hooks:
            hook.remove()
        for weight, strides in self.converted:
            former = torch.empty_strided(
                weight.shape, strides, dtype=weight.dtype, device=weight.device
            )
            weight.data = former.copy_(weight.data)
        self.hooks.clear()
        self.converted.clear()


def to_channels_last(network: nn.Module) -> ChannelsLast:
    """Put `network`'s convolution weights in channels-last layout, in place (each
    parameter keeps its identity: optimisers and masks holding it follow), except those
    oneDNN cannot train safely so, whose input is made contiguous instead."""
    changes = ChannelsLast()
    for module in network.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        weight = module.weight
        layout = torch.channels_last
        if reduced_to_unit_stride_unsafely(module):
            layout = torch.contiguous_format
            changes.hooks.append(module.register_forward_pre_hook(_contiguous_input))
        if not weight.is_contiguous(memory_format=layout):
            changes.converted.append((weight, weight.stride()))
            weight.data = weight.data.contiguous(memory_format=layout)
    return changes


def _contiguous_input(
    module: nn.Module, args: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, ...]:
    return (args[0].contiguous(), *args[1:])

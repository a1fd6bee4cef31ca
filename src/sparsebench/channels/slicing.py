"""A network sliced to the channels its groups keep: the one implementation behind
compact training (channels kept by the masks) and compaction for inference (channels
that are not zero).

Every layer with weights becomes a slice of the original's tensors, recorded as a
`Slice` (training writes the compact values back through them); the rest of the module
tree is copied, so the network's own `forward` runs unchanged on fewer channels.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn.utils import skip_init

from sparsebench.channels import ChannelTrace, UngroupableNetwork, Use

# The layers slicing knows; a network with weights elsewhere is refused.
SLICEABLE = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class Slice:
    """A compact tensor that is `master[rows][:, cols]` (None: every row or column)."""

    master: torch.Tensor
    compact: torch.Tensor
    rows: torch.Tensor | None
    cols: torch.Tensor | None
    gate: torch.Tensor | None = None  # the mask gating `master`, sliced the same way

    def index(self) -> tuple:
        if self.rows is None and self.cols is None:
            return (...,)
        rows = self.rows if self.rows is not None else torch.arange(self.master.shape[0])
        rows = rows.to(self.master.device)
        if self.cols is None:
            return (rows,)
        return (rows[:, None], self.cols.to(self.master.device)[None, :])

    def read(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[self.index()]

    def write(self, tensor: torch.Tensor, value: torch.Tensor) -> None:
        tensor[self.index()] = value

    def outside(self) -> torch.Tensor | None:
        """Master entries the compact tensor leaves out (None: it holds them all)."""
        if self.rows is None and self.cols is None:
            return None
        covered = torch.zeros_like(self.master, dtype=torch.bool)
        self.write(covered, True)
        return ~covered


class DropoutOver(nn.Module):
    """Dropout on the kept channels `index` of a `width`-channel input, drawing its
    random mask over the full width as the full network's dropout does: the same random
    stream, so the same units are dropped. `feature`: one draw per channel (Dropout2d)."""

    def __init__(self, p: float, width: int, index: torch.Tensor, feature: bool = False) -> None:
        super().__init__()
        self.p, self.width, self.feature = p, width, feature
        self.register_buffer("index", index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        spatial = [1] * (x.dim() - 2) if self.feature else list(x.shape[2:])
        noise = x.new_empty(x.shape[0], self.width, *spatial).bernoulli_(1 - self.p)
        return x * noise.div_(1 - self.p)[:, self.index]


def conv_like(
    conv: nn.Conv2d, in_channels: int, out_channels: int, groups: int = 1, empty: bool = False
) -> nn.Conv2d:
    """A conv of `conv`'s kind (kernel, stride, padding, dilation, bias, device) on other
    channels; `empty`: its parameters left uninitialised, for values copied in."""
    make = partial(skip_init, nn.Conv2d) if empty else nn.Conv2d
    return make(
        in_channels,
        out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        groups=groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )


class Slicer:
    """Makes sliced layers, recording every slice it takes. Layers are made without
    initialising them: that would draw from the random stream that dropout draws from
    next. `gates`: by id of a tensor, the mask that multiplies it (a pruned filter's
    rows, a weight-level mask), sliced with it where the slice keeps a gated entry."""

    def __init__(self, gates: dict[int, torch.Tensor] | None = None) -> None:
        self.gates = gates or {}
        self.slices: list[Slice] = []

    def _take(
        self,
        master: torch.Tensor,
        compact: torch.Tensor,
        rows: torch.Tensor | None,
        cols: torch.Tensor | None,
    ) -> None:
        rows = None if _whole(rows, master, 0) else rows
        cols = None if _whole(cols, master, 1) else cols
        piece = Slice(master, compact, rows, cols)
        gate = self.gates.get(id(master))
        if gate is not None:
            sliced = piece.read(gate.expand_as(master))
            if not bool(sliced.all()):
                piece.gate = sliced.to(master.dtype).contiguous()
        with torch.no_grad():
            compact.copy_(piece.read(master))
        self.slices.append(piece)

    def conv(self, conv: nn.Conv2d, rows: torch.Tensor, cols: torch.Tensor) -> nn.Conv2d:
        """`conv` on output channels `rows` and input channels `cols`; a depthwise conv
        (one filter per channel) keeps the filters of `rows`."""
        depthwise = conv.groups > 1
        if depthwise:
            sliced = conv_like(conv, len(rows), len(rows), groups=len(rows), empty=True)
        else:
            sliced = conv_like(conv, len(cols), len(rows), empty=True)
        self._take(conv.weight, sliced.weight, rows, None if depthwise else cols)
        if conv.bias is not None:
            self._take(conv.bias, sliced.bias, rows, None)
        return sliced

    def linear(self, linear: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> nn.Linear:
        sliced = skip_init(
            nn.Linear,
            len(cols),
            len(rows),
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        self._take(linear.weight, sliced.weight, rows, cols)
        if linear.bias is not None:
            self._take(linear.bias, sliced.bias, rows, None)
        return sliced

    def norm(self, norm: nn.BatchNorm1d | nn.BatchNorm2d, rows: torch.Tensor) -> nn.Module:
        statistics = norm.running_mean
        sliced = type(norm)(
            len(rows),
            norm.eps,
            norm.momentum,
            norm.affine,
            norm.track_running_stats,
            device=statistics.device if statistics is not None else norm.weight.device,
            dtype=statistics.dtype if statistics is not None else norm.weight.dtype,
        )
        if norm.affine:
            self._take(norm.weight, sliced.weight, rows, None)
            self._take(norm.bias, sliced.bias, rows, None)
        if norm.track_running_stats:
            self._take(norm.running_mean, sliced.running_mean, rows, None)
            self._take(norm.running_var, sliced.running_var, rows, None)
            self._take(norm.num_batches_tracked, sliced.num_batches_tracked, None, None)
        return sliced


def slice_network(
    model: nn.Module,
    trace: ChannelTrace,
    kept: list[torch.Tensor],
    slicer: Slicer,
    random_streams: bool = False,
) -> nn.Module:
    """`model` on the channels `kept[i]` of each group `trace.groups[i]`. Every layer
    with weights is made by `slicer`; `random_streams`: dropout draws over the full
    width, as in `model` (training), instead of over the kept channels (inference)."""
    modules = dict(model.named_modules())
    rows: dict[str, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    columns: dict[str, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    dropouts: dict[str, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    widths: dict[str, int] = defaultdict(int)
    for group, channels in zip(trace.groups, kept, strict=True):
        for uses, index in ((group.rows(), rows), (group.consumers, columns)):
            for use in uses:
                index[use.module].append((use.offset, _features(channels, use)))
        for use in group.dropouts:
            dropouts[use.module].append((use.offset, _features(channels, use)))
            widths[use.module] += group.channels * use.repeat
    replacements: dict[int, nn.Module] = {}
    for name, module in modules.items():
        if _has_own_tensors(module):
            row, column = _index(rows.get(name)), _index(columns.get(name))
            replacements[id(module)] = _sliced(slicer, module, row, column)
        elif random_streams and name in dropouts and isinstance(module, nn.Dropout | nn.Dropout2d):
            index = _index(dropouts[name])
            if len(index) < widths[name]:
                feature = isinstance(module, nn.Dropout2d)
                replacements[id(module)] = DropoutOver(module.p, widths[name], index, feature)
    return copy.deepcopy(model, memo=dict(replacements))


def _features(channels: torch.Tensor, use: Use) -> torch.Tensor:
    """Where kept channels lie in a use's dimension (a flattened channel is `repeat`
    features in a row)."""
    features = channels[:, None] * use.repeat + torch.arange(use.repeat)
    return use.offset + features.flatten()


def _index(parts: list[tuple[int, torch.Tensor]] | None) -> torch.Tensor | None:
    """A module's kept channels along one dimension, in the order its groups lie."""
    if not parts:
        return None
    return torch.cat([index for _, index in sorted(parts, key=lambda part: part[0])])


def _whole(index: torch.Tensor | None, tensor: torch.Tensor, dim: int) -> bool:
    """`index` takes every entry along `dim` in order (or there is nothing to index)."""
    if index is None or tensor.dim() <= dim:
        return True
    size = tensor.shape[dim]
    return len(index) == size and bool(torch.equal(index, torch.arange(size)))


def _has_own_tensors(module: nn.Module) -> bool:
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return bool(tensors)


def check_sliceable(model: nn.Module) -> None:
    """Refuse, naming it, a layer with weights that slicing does not know."""
    for name, module in model.named_modules():
        if _has_own_tensors(module) and not isinstance(module, SLICEABLE):
            raise UngroupableNetwork(
                f"cannot slice {name or 'the network itself'} ({type(module).__name__}): "
                "its weights are not a convolution's, a linear layer's or a batch norm's"
            )


def _sliced(
    slicer: Slicer,
    module: nn.Module,
    rows: torch.Tensor | None,
    columns: torch.Tensor | None,
) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        every_out, every_in = module.out_channels, module.in_channels
    elif isinstance(module, nn.Linear):
        every_out, every_in = module.out_features, module.in_features
    else:
        every_out, every_in = module.num_features, 0
    out = rows if rows is not None else torch.arange(every_out)
    into = columns if columns is not None else torch.arange(every_in)
    if isinstance(module, nn.Conv2d):
        return slicer.conv(module, out, into)
    if isinstance(module, nn.Linear):
        return slicer.linear(module, out, into)
    return slicer.norm(module, out)

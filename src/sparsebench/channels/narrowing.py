"""What slicing by channel groups leaves for inference to remove: zero rows inside the
channels a group keeps.

A group keeps a channel that any of its producers computes. In a residual stream, each
contributor to a sum (a block's last conv and batch norm, a downsample) computes every
channel the stream keeps, but pruning left some of its rows zero: `narrow_sums` makes
it compute only its own and add them into their channels (`index_add`), so a block that
lost half its filters costs half, whatever the other blocks keep. In a classifier, a
hidden neuron whose weights are all zero outputs the constant relu(bias):
`fold_constant_neurons` drops it and adds that constant, through the next layer's
weights, into the next layer's bias.

Both rewrite a traced network and leave its outputs as they were: for inference (eval
mode: batch norms use their running statistics, dropout is inert) by the values that are
zero, and `narrow_sums` for compact training by the rows a mask gates to zero
(`train.compact`), which are zero in either mode.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from sparsebench.channels.slicing import Slicer

_SUMS = {operator.add, torch.add}
_RELUS = {F.relu, torch.relu}


def zero_maps_to_zero(norm: nn.Module) -> torch.Tensor:
    """Where a batch norm (in eval) gives zero for a zero input."""
    assert isinstance(norm, nn.BatchNorm2d | nn.BatchNorm1d)
    if norm.running_mean is None or norm.running_var is None:
        return torch.zeros(norm.num_features, dtype=torch.bool)  # batch statistics
    shift = -norm.running_mean / torch.sqrt(norm.running_var + norm.eps)
    if norm.affine:
        shift = shift * norm.weight + norm.bias
    return shift.eq(0)


def zero_rows(layer: nn.Conv2d | nn.Linear) -> torch.Tensor:
    """Output channels of a conv or linear layer that are zero whatever its input."""
    zero = layer.weight.flatten(1).eq(0).all(dim=1)
    return zero if layer.bias is None else zero & layer.bias.eq(0)


# The output channels of a conv (followed by its batch norms) that are zero whatever
# the input.
ZeroRows = Callable[[nn.Conv2d, list[nn.Module]], torch.Tensor]


def zero_in_eval(conv: nn.Conv2d, norms: list[nn.Module]) -> torch.Tensor:
    """Channels a conv and its batch norms (in eval) output as zero, by their values."""
    zero = zero_rows(conv)
    for norm in norms:
        zero &= zero_maps_to_zero(norm)
    return zero


def spread(values: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
    """`values` placed at channels `index` of a zero map `width` channels wide."""
    full = values.new_zeros(values.shape[0], width, *values.shape[2:])
    return full.index_copy(1, index, values)


@torch.no_grad()
def narrow_sums(
    network: fx.GraphModule, zero: ZeroRows = zero_in_eval, slicer: Slicer | None = None
) -> None:
    """Each contributor to a channel-by-channel sum computes only the channels `zero`
    does not find; its layers are sliced by `slicer` (which records the slices)."""
    slicer = slicer or Slicer()
    for node in list(network.graph.nodes):
        if not _is_plain_sum(node):
            continue
        contributions = [_contribution(network, operand, zero, slicer) for operand in node.args]
        if all(live is None for _, live in contributions):
            continue
        (first, first_live), (second, second_live) = contributions
        if first_live is not None and second_live is None:
            (first, first_live), (second, second_live) = (second, None), (first, first_live)
        width = node.meta["tensor_meta"].shape[1]
        with network.graph.inserting_before(node):
            base = first
            if first_live is not None:
                index = _constant(network, f"{node.name}_first", first_live)
                base = network.graph.call_function(spread, (first, index, width))
            index = _constant(network, f"{node.name}_second", second_live)
            narrowed = network.graph.call_method("index_add", (base, 1, index, second))
        node.replace_all_uses_with(narrowed)
        network.graph.erase_node(node)
    network.recompile()


def _is_plain_sum(node: fx.Node) -> bool:
    """A sum of two maps of the sum's own shape (no broadcast, no scale)."""
    summing = (node.op == "call_function" and node.target in _SUMS) or (
        node.op == "call_method" and node.target == "add"
    )
    if not summing or node.kwargs or len(node.args) != 2:
        return False
    shapes = [getattr(arg, "meta", {}).get("tensor_meta") for arg in (node, *node.args)]
    if any(meta is None or not hasattr(meta, "shape") for meta in shapes):
        return False
    return len(shapes[0].shape) == 4 and all(m.shape == shapes[0].shape for m in shapes[1:])


def _contribution(
    network: fx.GraphModule, operand: fx.Node, zero_of: ZeroRows, slicer: Slicer
) -> tuple[fx.Node, torch.Tensor | None]:
    """`operand`, and the channels it computes if it is a conv (and batch norm) read by
    the sum alone and some of its channels are zero (None otherwise), its layers then
    sliced to those channels."""
    chain = []
    node = operand
    if _module(network, node, nn.BatchNorm2d) is not None:
        chain.append(node)
        node = node.args[0]
    conv = _module(network, node, nn.Conv2d)
    if conv is None or conv.groups != 1 or any(len(n.users) != 1 for n in (node, *chain)):
        return operand, None
    chain.insert(0, node)
    norms = [network.get_submodule(str(n.target)) for n in chain[1:]]
    zero = zero_of(conv, norms)
    if not bool(zero.any()):
        return operand, None
    live = (~zero).nonzero().flatten()
    live = live if len(live) else torch.zeros(1, dtype=torch.long, device=zero.device)
    every_input = torch.arange(conv.in_channels)
    replace_module(network, str(chain[0].target), slicer.conv(conv, live, every_input))
    for link, norm in zip(chain[1:], norms, strict=True):
        replace_module(network, str(link.target), slicer.norm(norm, live))
    return operand, live


@torch.no_grad()
def fold_constant_neurons(network: fx.GraphModule) -> None:
    """A linear layer's neurons with all-zero weights, read through a ReLU (and inert
    dropout) by a second linear layer, are dropped and relu(bias) folded into the
    second layer's bias."""
    for node in list(network.graph.nodes):
        first = _module(network, node, nn.Linear)
        if first is None:
            continue
        reader = _through_relu(network, node)
        second = None if reader is None else _module(network, reader, nn.Linear)
        if second is None:
            continue
        dead = first.weight.eq(0).all(dim=1)
        if not bool(dead.any()) or bool(dead.all()):
            continue
        constant = F.relu(first.bias[dead]) if first.bias is not None else None
        if constant is not None and bool(constant.ne(0).any()) and second.bias is None:
            continue
        kept = (~dead).nonzero().flatten()
        slicer = Slicer()
        shorter = slicer.linear(first, kept, torch.arange(first.in_features))
        narrower = slicer.linear(second, torch.arange(second.out_features), kept)
        if constant is not None and narrower.bias is not None:
            narrower.bias += second.weight[:, dead] @ constant
        replace_module(network, str(node.target), shorter)
        replace_module(network, str(reader.target), narrower)


def _through_relu(network: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The one node that reads `node` through a single ReLU and any dropout modules."""
    relus = 0
    while len(node.users) == 1:
        node = next(iter(node.users))
        relu = (
            (node.op == "call_function" and node.target in _RELUS)
            or (node.op == "call_method" and node.target == "relu")
            or _module(network, node, nn.ReLU) is not None
        )
        if relu:
            relus += 1
        elif _module(network, node, nn.Dropout) is None:
            return node if relus == 1 else None
    return None


def _module(network: fx.GraphModule, node: object, kind: type[nn.Module]) -> nn.Module | None:
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return None
    module = network.get_submodule(str(node.target))
    return module if isinstance(module, kind) else None


def _constant(network: fx.GraphModule, name: str, value: torch.Tensor) -> fx.Node:
    network.register_buffer(name, value)
    return network.graph.get_attr(name)


def replace_module(network: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `network`'s submodule `name` is."""
    parent_name, _, child = name.rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, module)

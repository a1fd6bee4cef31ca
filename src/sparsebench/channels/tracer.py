"""Coupled channels, found by tracing a network with torch.fx.

Removing a conv's filter removes a channel from every layer that reads it, and from
every tensor that channel is added to or multiplied with: the channels of a residual
sum, of a squeeze-and-excitation gate and of the features it scales, of a depthwise
conv and of the layer feeding it, are one channel, kept or removed together. A
`ChannelGroup` is such a set: the layers that produce its channels (weight rows), read
them (weight columns, at an offset where a concatenation put them, and `repeat`
features per channel where a feature map was flattened before a linear layer), and
normalise them, or filter them one by one (a depthwise conv). A group that holds the
network's input or output cannot lose a channel. A gate (the sigmoid of a squeeze-and-
excitation) that multiplies a group's channels is sliced with them, but a channel is
zero whatever the gate is: its layers are the group's `scales`, not its producers.

Tracing follows the operations a network is built of; anything else is refused in one
line that names the operation, so an unusual network is never compacted wrongly.

Why torch.fx rather than Torch-Pruning's DependencyGraph: fx ships with PyTorch and is
kept exact by it (every call is a node, so an operation not understood is refused, not
passed through); and what compaction must prove beyond which channels are coupled (that
a removed channel is still zero where it is read, not after a sigmoid or an added
constant; that a gate only scales; how wide a dropout draws) is not what Torch-Pruning's
groups record: they say what to remove together, from the backward graph of one forward
pass. It stays a comparison in `benchmarks/inference_speedup.py`.
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from sparsebench.channels.groups import ChannelGroup, ChannelTrace, UngroupableNetwork, Use
from sparsebench.channels.operations import (
    FLATTEN_METHODS,
    JOIN,
    JOIN_METHODS,
    NOT_ZERO_FUNCTIONS,
    NOT_ZERO_MODULES,
    PASS_FUNCTIONS,
    PASS_METHODS,
    PASS_MODULES,
    SHAPE_METHODS,
)
from sparsebench.channels.partition import GroupPartition, Segment, ends


def trace_channels(model: nn.Module, input_shape: tuple[int, int, int]) -> list[ChannelGroup]:
    """The channel groups of `model` for inputs of `input_shape` (channels, height,
    width); an UngroupableNetwork naming the first operation that cannot be followed."""
    return trace_network(model, input_shape).groups


def trace_network(model: nn.Module, input_shape: tuple[int, int, int]) -> ChannelTrace:
    """`trace_channels`, with what else slicing the network must know."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception as error:  # fx raises several kinds, all meaning "not traceable"
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UngroupableNetwork(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(error).__name__}: "
            f"{first}); compaction needs a network without data-dependent control flow"
        ) from None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ShapeProp(traced).propagate(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return _ChannelTracer(traced).run()


class _ChannelTracer(GroupPartition):
    """Walks the graph once, node by node, recording each tensor's layout of groups."""

    def __init__(self, traced: fx.GraphModule) -> None:
        super().__init__()
        self.graph = traced.graph
        self.modules = dict(traced.named_modules())
        self.values: dict[fx.Node, list[Segment] | None] = {}
        self.random_calls: list[str] = []
        self.called: set[str] = set()

    def run(self) -> ChannelTrace:
        for node in self.graph.nodes:
            self.values[node] = self._follow(node)
        return ChannelTrace(self.final_groups(), self.random_calls)

    # What each operation does to the channels of its input.

    def _follow(self, node: fx.Node) -> list[Segment] | None:
        if node.op == "placeholder":
            return [
                Segment(self._new_group(_shape(node)[1], "the network's input"), _shape(node)[1])
            ]
        if node.op == "get_attr":
            return None
        if node.op == "output":
            for segment in self._tensor_args(node) or []:
                self._group(segment.group).fixed = "the network's output"
            return None
        if node.op == "call_module":
            return self._module(node, self.modules[str(node.target)])
        return self._function(node)

    def _module(self, node: fx.Node, module: nn.Module) -> list[Segment] | None:
        name = str(node.target)
        source = self._input(node)
        self._call_once(name, module)
        if isinstance(module, nn.Conv2d):
            return self._conv(name, module, source)
        if isinstance(module, nn.Linear):
            self._consume(name, source)
            return [self._produce(name, module.out_features)]
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            self._record(source, "norms", name)
            return source
        if isinstance(module, nn.Flatten):
            return self._flatten(node, source)
        if isinstance(module, nn.Dropout | nn.Dropout2d):
            self._record(source, "dropouts", name)
            return source
        if isinstance(module, PASS_MODULES):
            return _not_zero(source) if isinstance(module, NOT_ZERO_MODULES) else source
        raise UngroupableNetwork(
            f"cannot follow channels through {name} ({type(module).__name__}): "
            "compaction knows convolutions, linear layers, batch norms, activations, "
            "pooling, sums, products and concatenations"
        )

    def _conv(self, name: str, conv: nn.Conv2d, source: list[Segment]) -> list[Segment]:
        if conv.groups == 1:
            self._consume(name, source)
            return [self._produce(name, conv.out_channels)]
        if conv.groups == conv.in_channels == conv.out_channels:
            self._record(source, "depthwise", name)
            return source
        raise UngroupableNetwork(
            f"cannot group the channels of {name}: a grouped convolution (groups="
            f"{conv.groups}, {conv.in_channels} in, {conv.out_channels} out) that is not "
            "depthwise"
        )

    def _function(self, node: fx.Node) -> list[Segment] | None:
        target = node.target
        method = node.op == "call_method"
        tensors = [arg for arg in node.args if self._has_channels(arg)]
        if method and target in SHAPE_METHODS or target is getattr:
            return None
        if not tensors and not _tensor_like(node):
            return None
        if target in (F.dropout, F.dropout2d):
            self.random_calls.append(f"{node.name} ({_describe(node)})")
            return self._input(node)
        if (method and target in PASS_METHODS) or (not method and target in PASS_FUNCTIONS):
            source = self._input(node)
            return _not_zero(source) if target in NOT_ZERO_FUNCTIONS else source
        if (method and target in JOIN_METHODS) or (not method and target in JOIN):
            return self._join(node, tensors)
        if target is torch.cat:
            return self._concatenate(node)
        if target is torch.flatten or (method and target in FLATTEN_METHODS):
            return self._flatten(node, self._input(node))
        if method and target == "mean":
            return self._mean(node)
        raise UngroupableNetwork(
            f"cannot follow channels through {node.name} ({_describe(node)}): compaction "
            "knows convolutions, linear layers, batch norms, activations, pooling, sums, "
            "products and concatenations"
        )

    def _join(self, node: fx.Node, tensors: list[fx.Node]) -> list[Segment]:
        """A sum or product of two tensors couples their channels one to one; with a
        constant, or a tensor broadcast over channels, each channel stays as it is."""
        layouts = [self.values[t] for t in tensors if _shape(t)[1:2] != (1,)]
        layouts = [self._expand(layout) for layout in layouts if layout is not None]
        if not layouts:
            return self._input(node)
        product = node.target in (operator.mul, torch.mul, "mul", "mul_")
        # A sum with a constant, or with a map broadcast over channels, is not zero where
        # the channel is; a product with anything is.
        constant = len(layouts) < len([*node.args, *node.kwargs.values()])
        if len({sum(s.channels for s in layout) for layout in layouts}) > 1:
            raise UngroupableNetwork(
                f"cannot group the channels joined at {node.name} ({_describe(node)}): "
                "its operands have different numbers of channels"
            )
        cuts = {end for layout in layouts for end in ends(layout)}
        layouts = [self._refine(layout, cuts) for layout in layouts]
        layouts = [self._expand(layout) for layout in layouts]
        first = layouts[0]
        for other in layouts[1:]:
            for a, b in zip(first, other, strict=True):
                if product:
                    self._demote_gate(a, b)
                self._union(a.group, b.group)
        operands = zip(*[[s.zero for s in layout] for layout in layouts], strict=True)
        zeros = [any(z) if product else (all(z) and not constant) for z in operands]
        return [replace(s, zero=z) for s, z in zip(self._expand(first), zeros, strict=True)]

    def _concatenate(self, node: fx.Node) -> list[Segment]:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim not in (1, -3) or not isinstance(tensors, list | tuple):
            raise UngroupableNetwork(
                f"cannot group the channels at {node.name}: a concatenation over dim {dim} "
                "(only the channel dim, 1, is followed)"
            )
        joined: list[Segment] = []
        for tensor in tensors:
            joined += self._layout(tensor, node)
        return joined

    def _flatten(self, node: fx.Node, source: list[Segment]) -> list[Segment]:
        """A (N, C, H, W) map flattened to (N, C*H*W): each channel becomes H*W features."""
        before, after = _shape(node.args[0]), _shape(node)
        if len(after) != 2 or after[0] != before[0] or len(before) < 2:
            raise UngroupableNetwork(
                f"cannot follow channels through {node.name} ({_describe(node)}): a reshape "
                f"of {tuple(before)} to {tuple(after)} is not a flatten of all but the batch"
            )
        spatial = 1
        for size in before[2:]:
            spatial *= size
        return [replace(s, repeat=s.repeat * spatial) for s in source]

    def _mean(self, node: fx.Node) -> list[Segment]:
        """A mean over the spatial dims (a global average pool) keeps the channels."""
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = tuple(dims) if isinstance(dims, list | tuple) else (dims,)
        if sorted(d % len(_shape(node.args[0])) for d in dims) != [2, 3]:
            raise UngroupableNetwork(
                f"cannot follow channels through {node.name}: a mean over dims {dims} "
                "(only the spatial dims, 2 and 3, are followed)"
            )
        return self._input(node)

    def _demote_gate(self, a: Segment, b: Segment) -> None:
        """Of two channels multiplied, one zero where removed and one not (a gate): the
        gate's layers only scale the channel, so they are not what makes it zero."""
        for gate, gated in ((a, b), (b, a)):
            group = self._group(gate.group)
            if gated.zero and not gate.zero and not group.consumers:
                group.scales += [*group.producers, *group.norms, *group.depthwise]
                group.producers, group.norms, group.depthwise = [], [], []

    def _call_once(self, name: str, module: nn.Module) -> None:
        """A layer with weights called twice would be sliced for two places at once."""
        if name in self.called and any(True for _ in module.parameters(recurse=False)):
            raise UngroupableNetwork(
                f"cannot group the channels of {name}: it is called more than once, so its "
                "channels are coupled to two places"
            )
        self.called.add(name)

    # Recording a module's use of a group.

    def _produce(self, name: str, channels: int) -> Segment:
        group = self._new_group(channels)
        self.groups[group].producers.append(Use(name))
        return Segment(group, channels)

    def _consume(self, name: str, source: list[Segment]) -> None:
        offset = 0
        for segment in source:
            group = self._group(segment.group)
            group.consumers.append(Use(name, offset, segment.repeat))
            if not segment.zero:
                group.fixed = (
                    group.fixed or f"{name} reads these channels where 0 became another value"
                )
            offset += segment.channels * segment.repeat

    def _record(self, source: list[Segment], role: str, name: str) -> None:
        offset = 0
        for segment in source:
            getattr(self._group(segment.group), role).append(Use(name, offset, segment.repeat))
            offset += segment.channels * segment.repeat

    # Reading a node's inputs.

    def _has_channels(self, arg: object) -> bool:
        return isinstance(arg, fx.Node) and self.values.get(arg) is not None

    def _input(self, node: fx.Node) -> list[Segment]:
        return self._layout(node.args[0], node)

    def _layout(self, arg: object, node: fx.Node) -> list[Segment]:
        layout = self.values.get(arg) if isinstance(arg, fx.Node) else None
        if layout is None:
            raise UngroupableNetwork(
                f"cannot follow channels into {node.name} ({_describe(node)}): its input "
                "is not a feature map the trace followed"
            )
        return self._expand(layout)

    def _tensor_args(self, node: fx.Node) -> list[Segment] | None:
        arg = node.args[0]
        if isinstance(arg, list | tuple):
            arg = arg[0] if len(arg) == 1 else None
        layout = self.values.get(arg) if isinstance(arg, fx.Node) else None
        return None if layout is None else self._expand(layout)


def _not_zero(layout: list[Segment]) -> list[Segment]:
    return [replace(segment, zero=False) for segment in layout]


def _shape(node: object) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()


def _tensor_like(node: fx.Node) -> bool:
    return len(_shape(node)) >= 2


def _describe(node: fx.Node) -> str:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    return f"{node.op} {name}"

"""Compact execution: train the physically smaller network a run's masks describe.

The full-size masked model stays the master copy: masks are decided on it, it is what
checkpoints hold and what a `masked` run trains. Between mask changes the loop trains a
compact network whose every tensor is a slice of a master tensor: the network sliced to
the channels its masks keep alive, group by group (`sparsebench.channels` finds the channels
that go together, `models.slicing` slices), so any traceable network trains compact.
Its optimiser state is sliced from the master's, and written back, with the weights,
before anything reads the master (a mask update, a checkpoint).

A residual stream keeps every channel any of its contributors computes, so a block that
lost filters would still compute them, gated to zero, at the stream's width. As for
inference (`deploy.narrowing`), each contributor to a sum then computes only the rows
its masks leave and adds them into their channels: the compact network is rebuilt by
torch.fx for this, its modules called as before. A module whose `forward` reads
`self.training` stays one call in the graph, so that its train and eval behaviour stay
its own.

A compact and a masked run are the same computation. Pruned channels are exactly zero in
the masked model, so the weights that read them get a zero data gradient; with Adam such
a weight still moves while its momentum decays (a unit dropped mid-run), and weight decay
moves it too. Those master entries are stepped on write-back by the master's own
optimiser class with zero gradients, as many steps as the compact network took. (Running
batch-norm statistics of pruned channels are left alone: a pruned channel's output is
zero whatever they are, and a regrown one starts them afresh.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from sparsebench.channels import ChannelTrace, UngroupableNetwork, Use, trace_network
from sparsebench.channels.narrowing import narrow_sums
from sparsebench.channels.slicing import (
    DropoutOver,
    Slice,
    Slicer,
    check_sliceable,
    slice_network,
)
from sparsebench.measure.counting import count_model
from sparsebench.settings.run import MemoryFormat
from sparsebench.sparsity.masks import MaskSet
from sparsebench.sparsity.methods import PruningMethod
from sparsebench.train.memory_format import ChannelsLast, to_channels_last, wants_channels_last

# Forward plus backward (gradients of the inputs and of the weights) costs about three
# forward passes: how training multiply-adds per sample are reported.
TRAINING_PASSES = 3


def kept_by_masks(trace: ChannelTrace, master: nn.Module, masks: MaskSet) -> list[torch.Tensor]:
    """For each group, the channels some mask keeps alive: a channel goes when every
    layer making it has its row gated off by a pruned filter or neuron (a producer's
    weights, a batch norm's scale and shift, a depthwise filter's bias), so it is
    exactly zero in the masked network. A group keeps at least one channel."""
    dead_rows = {
        key: gate.reshape(-1).eq(0).cpu()
        for key, gate in _gates(masks, whole_rows_only=True).items()
    }
    modules = dict(master.named_modules())
    kept = []
    for group in trace.groups:
        dead = torch.tensor(group.prunable and bool(group.producers)).repeat(group.channels)
        for use in group.producers:
            dead &= _dead(dead_rows, modules[use.module].weight, use, group.channels)
        for use in group.norms:
            norm = modules[use.module]
            affine = norm.weight is not None
            dead &= _dead(dead_rows, norm.weight, use, group.channels) if affine else False
        for use in group.depthwise:
            bias = modules[use.module].bias
            if bias is not None:
                dead &= _dead(dead_rows, bias, use, group.channels)
        alive = (~dead).nonzero().flatten()
        kept.append(alive if len(alive) else torch.zeros(1, dtype=torch.long))
    return kept


def _dead(
    dead_rows: dict[int, torch.Tensor], param: torch.Tensor, use: Use, channels: int
) -> torch.Tensor:
    rows = dead_rows.get(id(param))
    if rows is None:
        return torch.zeros(channels, dtype=torch.bool)
    return use.per_channel(rows, channels)


def _gates(masks: MaskSet, whole_rows_only: bool = False) -> dict[int, torch.Tensor]:
    """By id of each gated tensor, the product of the gates on it (a gate's layer has
    rows gated by its own mask and, as a follower, by the mask of the filter it scales)."""
    gates: dict[int, torch.Tensor] = {}
    for mask in masks:
        if whole_rows_only and not mask.layer.whole_rows:
            continue
        for param, gate in mask.gated():
            known = gates.get(id(param))
            gates[id(param)] = gate if known is None else known * gate
    return gates


def build_compact(
    master: nn.Module, trace: ChannelTrace, masks: MaskSet, input_shape: tuple[int, int, int]
) -> tuple[nn.Module, list[Slice]]:
    """The compact network of `master` under `masks` for inputs of `input_shape`, and
    the slices it is made of."""
    # A residual stream keeps a channel one of its producers pruned: that producer's
    # row is in the compact network, and stays gated there until the sum is narrowed.
    slicer = Slicer(_gates(masks))
    kept = kept_by_masks(trace, master, masks)
    network = slice_network(master, trace, kept, slicer, random_streams=True)
    network, slices = _narrowed_sums(network, slicer.slices, input_shape)
    return network.train(master.training), slices


class _ModeKeepingTracer(fx.Tracer):
    """Calls as one node, besides torch's own layers, every module that behaves by
    `self.training` (dropout over the full width among them): tracing into it would fix
    the mode it was traced in."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if isinstance(module, DropoutOver) or "training" in type(module).forward.__code__.co_names:
            return True
        return super().is_leaf_module(module, qualified_name)


def _narrowed_sums(
    network: nn.Module, slices: list[Slice], input_shape: tuple[int, int, int]
) -> tuple[nn.Module, list[Slice]]:
    """`network` with every residual contributor computing only the rows its masks
    leave (`network` itself when there is none to narrow), and its slices of the
    master."""
    gates = {id(piece.compact): piece.gate for piece in slices if piece.gate is not None}
    narrowable = (
        module
        for module in network.modules()
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d) and id(module.weight) in gates
    )
    if not any(bool(_rows_off(gates, module.weight).any()) for module in narrowable):
        return network, slices  # no conv or batch norm row gated off: nothing to trace for
    graph = fx.GraphModule(network, _ModeKeepingTracer().trace(network))
    was_training = network.training
    graph.eval()  # a batch of one, and no dropout drawing from the random stream
    parameter = next(network.parameters())
    with torch.no_grad():
        sample = torch.zeros(1, *input_shape, device=parameter.device, dtype=parameter.dtype)
        ShapeProp(graph).propagate(sample)
    graph.train(was_training)
    narrowing = Slicer(gates)
    narrow_sums(graph, partial(_gated_off, gates), narrowing)
    if not narrowing.slices:
        return network, slices
    outer = {id(piece.compact): piece for piece in slices}
    narrowed = [_through(outer.pop(id(inner.master)), inner) for inner in narrowing.slices]
    return graph, [*outer.values(), *narrowed]


def _gated_off(
    gates: dict[int, torch.Tensor], conv: nn.Conv2d, norms: list[nn.Module]
) -> torch.Tensor:
    """Rows of a conv and the batch norms after it that masks gate to zero, in training
    and in eval: a batch norm's scale and shift gated (zero whatever its statistics),
    or, without one, the conv's weights and bias."""
    if norms:
        dead = torch.ones(conv.out_channels, dtype=torch.bool, device=conv.weight.device)
        for norm in norms:
            if not norm.affine:
                return torch.zeros_like(dead)
            dead &= _rows_off(gates, norm.weight) & _rows_off(gates, norm.bias)
        return dead
    dead = _rows_off(gates, conv.weight)
    return dead if conv.bias is None else dead & _rows_off(gates, conv.bias)


def _rows_off(gates: dict[int, torch.Tensor], tensor: torch.Tensor) -> torch.Tensor:
    gate = gates.get(id(tensor))
    if gate is None:
        return torch.zeros(tensor.shape[0], dtype=torch.bool, device=tensor.device)
    return gate.expand_as(tensor).reshape(tensor.shape[0], -1).eq(0).all(dim=1)


def _through(outer: Slice, inner: Slice) -> Slice:
    """`inner`, a slice of `outer`'s compact tensor, as a slice of `outer`'s master."""

    def composed(first: torch.Tensor | None, then: torch.Tensor | None) -> torch.Tensor | None:
        if then is None:
            return first
        then = then.cpu()
        return then if first is None else first.cpu()[then]

    rows, cols = composed(outer.rows, inner.rows), composed(outer.cols, inner.cols)
    return Slice(outer.master, inner.compact, rows, cols, inner.gate)


def trace_for_training(
    master: nn.Module, input_shape: tuple[int, int, int] | None
) -> tuple[ChannelTrace | None, str | None]:
    """The network's channel groups, or why compact training cannot slice it."""
    if input_shape is None:
        return None, "its input shape was not given"
    try:
        trace = trace_network(master, input_shape)
        check_sliceable(master)
    except UngroupableNetwork as error:
        return None, str(error)
    if trace.random_calls:
        return None, (
            f"{trace.random_calls[0]} draws random numbers over its input's width as a "
            "function call, which a sliced network cannot repeat (an nn.Dropout module can)"
        )
    return trace, None


class Execution:
    """Where a run's steps happen: on the master (masked, the study's way), or on the
    compact network of the current masks, switching back to the master for a step whose
    dense gradients the method reads (RigL's update step).

    `SparseTrainer` asks `network_for_step()` for the network and optimiser of each
    step, calls `step_taken()` after it, `sync()` before anything reads the master,
    `masks_may_have_changed()` after a method hook that can change the masks, and
    `release()` when training ends. `memory_format`: the layout each network trains in
    (`train.memory_format`), the master until `release()`.
    """

    def __init__(
        self,
        master: nn.Module,
        optimizer: torch.optim.Optimizer,
        method: PruningMethod,
        compact: bool,
        input_shape: tuple[int, int, int] | None = None,
        memory_format: MemoryFormat = "contiguous",
    ) -> None:
        self.master, self.optimizer, self.method = master, optimizer, method
        self.trace: ChannelTrace | None = None
        # Why a compact run trains masked (None: it does not, or masked was asked for).
        self.masked_because: str | None = None
        if compact:
            self.trace, self.masked_because = trace_for_training(master, input_shape)
        self.input_shape = input_shape
        self.compact = self.trace is not None
        self.memory_format = memory_format
        self._master_layout = ChannelsLast()
        self.layout = "contiguous"  # the layout the master trains in
        if wants_channels_last(memory_format, master):
            self._master_layout = to_channels_last(master)
            self.layout = "channels_last"
        self.network: nn.Module | None = None  # the compact network, when current
        self.network_optimizer: torch.optim.Optimizer | None = None
        self.slices: list[Slice] = []
        self.master_current = True
        # The learning rate of each compact step since the master was last current: the
        # left-out entries are stepped at the same rates (a schedule changes it per step).
        self._rates: list[float] = []
        self._masks_seen = self._mask_revision()
        self._macs: dict[nn.Module, int] = {}
        self._worth: tuple[tuple[int, int], bool] | None = None

    @property
    def name(self) -> str:
        return "compact" if self.compact else "masked"

    def _mask_revision(self) -> tuple[int, int]:
        return self.method.masks.revision

    def _worth_compacting(self) -> bool:
        """Some filter or neuron is pruned: otherwise the compact network is the master.
        Asked every step, answered once per mask revision (reading a mask on a GPU waits
        for it)."""
        revision = self._mask_revision()
        if self._worth is None or self._worth[0] != revision:
            worth = self.compact and any(
                mask.layer.whole_rows and not bool(mask.keep.all()) for mask in self.method.masks
            )
            self._worth = (revision, worth)
        return self._worth[1]

    def _dense_step_wanted(self) -> bool:
        return any(mask.capture for mask in self.method.masks)

    def network_for_step(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        if not self._worth_compacting() or self._dense_step_wanted():
            self.sync()
            self.network = None
            return self.master, self.optimizer
        if self.network is None:
            self._build()
        assert self.network is not None and self.network_optimizer is not None
        return self.network, self.network_optimizer

    def step_taken(self) -> bool:
        """The optimiser stepped the network `network_for_step` gave; whether that was
        the master (the method then zeroes its dead units again)."""
        if self.network is None:
            return True
        assert self.network_optimizer is not None
        self._rates.append(self.network_optimizer.param_groups[0]["lr"])
        self.master_current = False
        self._apply_gates()
        return False

    def masks_may_have_changed(self) -> None:
        revision = self._mask_revision()
        if revision != self._masks_seen:
            self._masks_seen = revision
            self.network = None  # the trainer synced the master first: rebuild from it

    def master_replaced(self) -> None:
        """The master's weights were loaded from elsewhere (a checkpoint): they are the
        current ones, and the compact network is rebuilt from them."""
        self.network, self.master_current = None, True

    def eval_network(self) -> nn.Module:
        """The network that validation and testing run: the compact one when it is."""
        if not self._worth_compacting():
            self.sync()
            return self.master
        if self.network is None:
            self._build()
        assert self.network is not None
        return self.network

    def macs_per_sample(self, network: nn.Module, input_shape: tuple[int, int, int]) -> int:
        """Forward multiply-adds of `network` for one sample (counted once per build)."""
        if network not in self._macs:
            self._macs = {known: macs for known, macs in self._macs.items() if known is self.master}
            self._macs[network] = count_model(network, input_shape).macs_dense
        return self._macs[network]

    def release(self) -> None:
        """Training ended: the master back in its own layout, with no hook of ours."""
        self.sync()
        self._master_layout.restore()

    def train(self) -> None:
        self.master.train()
        if self.network is not None:
            self.network.train()

    # Master <-> compact.

    def _build(self) -> None:
        self.sync()
        self._rates = []
        assert self.trace is not None and self.input_shape is not None
        self.network, self.slices = build_compact(
            self.master, self.trace, self.method.masks, self.input_shape
        )
        self.network.train(self.master.training)
        if wants_channels_last(self.memory_format, self.network):  # before its optimiser
            to_channels_last(self.network)
        group = {k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"}
        parameters = [piece.compact for piece in self._parameter_slices()]
        self.network_optimizer = type(self.optimizer)(parameters, **group)
        for piece in self._parameter_slices():
            master_state = self.optimizer.state.get(piece.master)
            if not master_state:  # no step yet: the optimiser starts it
                continue
            self.network_optimizer.state[piece.compact] = {
                key: piece.read(value).clone() if _per_entry(value, piece.master) else value.clone()
                for key, value in master_state.items()
            }
        for piece in self._parameter_slices():
            if piece.gate is not None:
                piece.compact.register_post_accumulate_grad_hook(_gating(piece.gate))

    def _parameter_slices(self) -> Iterator[Slice]:
        return (piece for piece in self.slices if isinstance(piece.compact, nn.Parameter))

    @torch.no_grad()
    def _apply_gates(self) -> None:
        for piece in self._parameter_slices():
            if piece.gate is not None:
                piece.compact.mul_(piece.gate)

    @torch.no_grad()
    def sync(self) -> None:
        """Write the compact network's weights, statistics and optimiser state back into
        the master, and step the master entries it leaves out as masked training would."""
        if self.master_current or self.network is None:
            self.master_current = True
            return
        assert self.network_optimizer is not None
        for piece in self.slices:
            if not isinstance(piece.compact, nn.Parameter):
                piece.write(piece.master, piece.compact)
                continue
            state = self.network_optimizer.state.get(piece.compact)
            if not state:
                piece.write(piece.master.data, piece.compact.data)
                continue
            master_state = self.optimizer.state.setdefault(piece.master, {})
            self._step_left_out(piece, master_state, state)
            piece.write(piece.master.data, piece.compact.data)
            for key, value in state.items():
                if _per_entry(value, piece.compact):
                    master_state.setdefault(key, torch.zeros_like(piece.master))
                    piece.write(master_state[key], value)
                else:
                    master_state[key] = value.clone()
        self.master_current, self._rates = True, []

    def _step_left_out(self, piece: Slice, master_state: dict, state: dict) -> None:
        """The master entries outside the compact tensor, stepped as many times as it
        was, with the zero data gradient masked training gives them."""
        outside = piece.outside()
        if outside is None:
            return
        group = {k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"}
        if "step" in state:  # Adam counts each weight's steps
            before = master_state.get("step")
            done = float(state["step"]) - (float(before) if before is not None else 0.0)
        else:  # SGD does not: every compact step since the master was current
            done = float(len(self._rates))
        if done <= 0:
            return
        moving = [value for value in master_state.values() if _per_entry(value, piece.master)]
        active = torch.zeros_like(outside)
        for value in moving:
            active |= value.ne(0)
        if group.get("weight_decay", 0):
            active |= piece.master.ne(0)
        active &= outside
        if not bool(active.any()):
            return
        values = nn.Parameter(piece.master.data[active].clone())
        stepper = type(self.optimizer)([values], **group)
        if master_state:
            stepper.state[values] = {
                key: value[active].clone() if _per_entry(value, piece.master) else value.clone()
                for key, value in master_state.items()
            }
        rates = self._rates[-round(done) :]
        for rate in [group["lr"]] * (round(done) - len(rates)) + rates:
            stepper.param_groups[0]["lr"] = rate
            values.grad = torch.zeros_like(values)
            stepper.step()
        piece.master.data[active] = values.data
        for key, value in stepper.state[values].items():
            if _per_entry(value, values):
                master_state.setdefault(key, torch.zeros_like(piece.master))
                master_state[key][active] = value


def _per_entry(value: object, like: torch.Tensor) -> bool:
    return torch.is_tensor(value) and value.shape == like.shape


def _gating(gate: torch.Tensor) -> Callable[[torch.Tensor], None]:
    def hook(param: torch.Tensor) -> None:
        param.grad.mul_(gate)

    return hook

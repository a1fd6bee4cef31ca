"""Compact execution: train the physically smaller network a run's masks describe.

The full-size masked model stays the master copy: masks are decided on it, it is what
checkpoints hold and what a `masked` run trains. Between mask changes the loop trains a
compact network whose every tensor is a slice of a master tensor (a conv's live filters
by the live channels it reads, their bias and batch-norm channels; a linear layer's live
neurons by its live inputs). Its optimiser state is sliced from the master's, and written
back, with the weights, before anything reads the master (a mask update, a checkpoint).

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
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import skip_init

from sparsebench.deploy.compact import compact_resnet_with
from sparsebench.deploy.slices import conv_like
from sparsebench.measure.counting import count_model
from sparsebench.models.resnet import BasicBlock, ResNet
from sparsebench.models.vgg import VGG
from sparsebench.sparsity.masks import LayerMask
from sparsebench.sparsity.methods import PruningMethod

# Forward plus backward (gradients of the inputs and of the weights) costs about three
# forward passes: how training multiply-adds per sample are reported.
TRAINING_PASSES = 3


@dataclass
class Slice:
    """A compact tensor that is `master[rows][:, cols]` (None: every row or column)."""

    master: torch.Tensor
    compact: torch.Tensor
    rows: torch.Tensor | None
    cols: torch.Tensor | None
    gate: torch.Tensor | None = None  # the weight-level mask, sliced the same way

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
    """Dropout on the live `index` of a `width`-wide layer, drawing its random mask over
    the full width as the masked model's dropout does: the same random stream, so the
    same units are dropped."""

    def __init__(self, p: float, width: int, index: torch.Tensor) -> None:
        super().__init__()
        self.p, self.width = p, width
        self.register_buffer("index", index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        noise = x.new_empty(x.shape[0], self.width).bernoulli_(1 - self.p).div_(1 - self.p)
        return x * noise[:, self.index]


class _Slicer:
    """Builds compact layers from master layers, recording every slice it takes. Layers
    are made without initialising them: that would draw from the random stream that the
    masked run's dropout draws from next."""

    def __init__(self, masks: dict[nn.Module, LayerMask]) -> None:
        self.masks = masks
        self.slices: list[Slice] = []

    def live_rows(self, module: nn.Module, bn: nn.BatchNorm2d | None = None) -> torch.Tensor:
        """A layer's filters or neurons that are not pruned (all of them when its units
        are single weights, or when it is not pruned); its batch norm goes with it."""
        mask = self.masks.get(module)
        out = module.weight.shape[0]
        if mask is None or not mask.layer.whole_rows:
            return torch.arange(out)
        return mask.keep.nonzero().flatten().cpu()

    def _take(
        self,
        master: torch.Tensor,
        compact: torch.Tensor,
        rows: torch.Tensor | None,
        cols: torch.Tensor | None,
        gated_by: LayerMask | None = None,
    ) -> None:
        piece = Slice(master, compact, rows, cols)
        if gated_by is not None and not gated_by.layer.whole_rows:
            piece.gate = piece.read(gated_by.keep).to(master.dtype)
        with torch.no_grad():
            compact.copy_(piece.read(master))
        self.slices.append(piece)

    def conv(self, conv: nn.Conv2d, rows: torch.Tensor, cols: torch.Tensor) -> nn.Conv2d:
        sliced = conv_like(conv, len(cols), len(rows), empty=True)
        self._take(conv.weight, sliced.weight, rows, cols, self.masks.get(conv))
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
        self._take(linear.weight, sliced.weight, rows, cols, self.masks.get(linear))
        if linear.bias is not None:
            self._take(linear.bias, sliced.bias, rows, None)
        return sliced

    def head(self, linear: nn.Linear, cols: torch.Tensor) -> nn.Linear:
        return self.linear(linear, self.live_rows(linear), cols)

    def bn(self, bn: nn.BatchNorm2d, rows: torch.Tensor) -> nn.BatchNorm2d:
        sliced = nn.BatchNorm2d(
            len(rows),
            bn.eps,
            bn.momentum,
            bn.affine,
            bn.track_running_stats,
            device=bn.running_mean.device if bn.running_mean is not None else None,
        )
        if bn.affine:
            self._take(bn.weight, sliced.weight, rows, None)
            self._take(bn.bias, sliced.bias, rows, None)
        if bn.track_running_stats:
            self._take(bn.running_mean, sliced.running_mean, rows, None)
            self._take(bn.running_var, sliced.running_var, rows, None)
            self._take(bn.num_batches_tracked, sliced.num_batches_tracked, None, None)
        return sliced


class CompactVGGTrainer(nn.Module):
    """A VGG's layers sliced to its live filters and neurons, laid out as VGG runs them
    (contiguous: the deployment `CompactVGG`'s channels-last layout changes rounding)."""

    def __init__(self, features: nn.Sequential, avgpool: nn.Module, classifier: nn.Sequential):
        super().__init__()
        self.features, self.avgpool, self.classifier = features, avgpool, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg(model: VGG, slicer: _Slicer) -> nn.Module:
    layers: list[nn.Module] = []
    channels = torch.arange(model.features[0].in_channels)
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            rows = slicer.live_rows(module)
            layers.append(slicer.conv(module, rows, channels))
            channels = rows
        else:
            layers.append(module)
    pooled = model.avgpool.output_size
    cells = pooled[0] * pooled[1] if isinstance(pooled, tuple) else pooled * pooled
    # Flattening puts channel c at features c*cells ... c*cells + cells - 1.
    features = (channels.view(-1, 1) * cells + torch.arange(cells).view(1, -1)).flatten()
    head: list[nn.Module] = []
    width = model.classifier[0].in_features
    for module in model.classifier:
        if isinstance(module, nn.Linear):
            rows = slicer.live_rows(module)
            head.append(slicer.linear(module, rows, features))
            features, width = rows, module.out_features
        elif isinstance(module, nn.Dropout) and len(features) < width:
            head.append(DropoutOver(module.p, width, features.to(_device_of(model))))
        else:
            head.append(module)
    return CompactVGGTrainer(nn.Sequential(*layers), model.avgpool, nn.Sequential(*head))


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def compactable(model: nn.Module) -> bool:
    """Whether compact training knows the network's architecture (else it trains masked)."""
    return isinstance(model, VGG) or (isinstance(model, ResNet) and model.block is BasicBlock)


def build_compact(
    master: nn.Module, masks: dict[nn.Module, LayerMask]
) -> tuple[nn.Module, list[Slice]]:
    """The compact network of `master` under `masks`, and the slices it is made of."""
    slicer = _Slicer(masks)
    if isinstance(master, VGG):
        network = _vgg(master, slicer)
    else:
        # The residual streams as deployment lays them out: a stage's stream keeps every
        # channel any of its contributors keeps; each adds its own into the stream.
        network = compact_resnet_with(master, slicer)
    return network.train(master.training), slicer.slices


class Execution:
    """Where a run's steps happen: on the master (masked, the study's way), or on the
    compact network of the current masks, switching back to the master for a step whose
    dense gradients the method reads (RigL's update step).

    `SparseTrainer` asks `network_for_step()` for the network and optimiser of each
    step, calls `step_taken()` after it, `sync()` before anything reads the master, and
    `masks_may_have_changed()` after a method hook that can change the masks.
    """

    def __init__(
        self,
        master: nn.Module,
        optimizer: torch.optim.Optimizer,
        method: PruningMethod,
        compact: bool,
    ) -> None:
        self.master, self.optimizer, self.method = master, optimizer, method
        self.compact = compact and compactable(master)
        self.network: nn.Module | None = None  # the compact network, when current
        self.network_optimizer: torch.optim.Optimizer | None = None
        self.slices: list[Slice] = []
        self.master_current = True
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

    def train(self) -> None:
        self.master.train()
        if self.network is not None:
            self.network.train()

    # Master <-> compact.

    def _build(self) -> None:
        self.sync()
        masks = {mask.layer.module: mask for mask in self.method.masks}
        self.network, self.slices = build_compact(self.master, masks)
        self.network.train(self.master.training)
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
        self.master_current = True

    def _step_left_out(self, piece: Slice, master_state: dict, state: dict) -> None:
        """The master entries outside the compact tensor, stepped as many times as it
        was, with the zero data gradient masked training gives them."""
        outside = piece.outside()
        if outside is None:
            return
        group = {k: v for k, v in self.optimizer.param_groups[0].items() if k != "params"}
        before = master_state.get("step")
        done = float(state["step"]) - (float(before) if before is not None else 0.0)
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
        for _ in range(round(done)):
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

"""Masks: which units of a layer are alive, and keeping the dead ones exactly zero.

Masks are boolean tensors applied in place after each optimiser step, plus a gradient
hook so that dead units never receive a gradient. Nothing rebuilds a weight in the
forward pass (that is what `torch.nn.utils.prune` does, and what costs it time).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import nn

from sparsebench.sparsity.layers import PrunableLayer


class LayerMask:
    """Alive units of one layer: filters or neurons (shape (out,)), or single weights
    (the weight's shape).

    A dead filter gates its weights, its bias, the scale and shift of its batch norm and
    the rows of the layers that follow its channel one to one (`PrunableLayer.followers`);
    a dead neuron its weights and bias (its output is exactly zero); a dead single weight
    gates that weight alone.
    """

    def __init__(self, layer: PrunableLayer, keep: torch.Tensor) -> None:
        self.layer = layer
        weight = layer.module.weight
        self.keep = keep.to(device=weight.device, dtype=torch.bool).clone()
        self._gate = self.keep.to(weight.dtype)
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        # When asked, the next backward's dense weight gradient is kept before it is
        # gated: a method growing by gradient (RigL) ranks the pruned units with it.
        self.capture = False
        self.captured: torch.Tensor | None = None
        # Counts changes, so whoever built something from this mask knows it is stale.
        self.revision = 0

    def gated(self) -> Iterator[tuple[nn.Parameter, torch.Tensor]]:
        """Each parameter this mask gates, with the gate shaped to multiply it."""
        module = self.layer.module
        if not self.layer.whole_rows:
            yield module.weight, self._gate
            return
        yield module.weight, self._gate.view(-1, *([1] * (module.weight.dim() - 1)))
        if module.bias is not None:
            yield module.bias, self._gate
        if self.layer.kind == "conv" and self.layer.bn is not None and self.layer.bn.affine:
            yield self.layer.bn.weight, self._gate
            yield self.layer.bn.bias, self._gate
        for follower in self.layer.followers:
            for param in (follower.weight, follower.bias):
                if isinstance(param, nn.Parameter):
                    yield param, self._gate.view(-1, *([1] * (param.dim() - 1)))

    def update(self, keep: torch.Tensor) -> None:
        """Replace the mask in place, so hooks holding the gate see the new one."""
        self.keep.copy_(keep)
        self._gate.copy_(self.keep)
        self.revision += 1

    @torch.no_grad()
    def apply(self) -> None:
        for param, gate in self.gated():
            param.mul_(gate)

    def hook_gradients(self) -> None:
        """Zero dead units' gradients in place once backward has accumulated them, so
        `param.grad` never holds a gradient for a pruned weight (no copy is made)."""
        for param, gate in self.gated():
            self._hooks.append(param.register_post_accumulate_grad_hook(self._gating(gate)))

    def _gating(self, gate: torch.Tensor):
        weight = self.layer.module.weight

        def hook(param: torch.Tensor) -> None:
            if self.capture and param is weight:
                self.captured = param.grad.detach().clone()
            param.grad.mul_(gate)

        return hook

    def unhook_gradients(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    @property
    def alive(self) -> int:
        return int(self.keep.sum())


_SERIALS = itertools.count()


class MaskSet:
    """The masks of every pruned layer of a model, keyed by layer name."""

    def __init__(self, masks: list[LayerMask]) -> None:
        self.masks = {m.layer.name: m for m in masks}
        self.serial = next(_SERIALS)
        # The parameters themselves, not their `.data`: a layout change (channels-last
        # training) gives a parameter new data, which a kept `.data` would not follow.
        self._params: list[torch.Tensor] = []
        self._gates: list[torch.Tensor] = []
        for mask in masks:
            for param, gate in mask.gated():
                self._params.append(param)
                self._gates.append(gate)

    def __iter__(self) -> Iterator[LayerMask]:
        return iter(self.masks.values())

    def __len__(self) -> int:
        return len(self.masks)

    @torch.no_grad()
    def apply(self) -> None:
        for param, gate in zip(self._params, self._gates, strict=True):
            param.data.mul_(gate)

    def hook_gradients(self) -> None:
        for mask in self:
            mask.hook_gradients()

    def unhook_gradients(self) -> None:
        for mask in self:
            mask.unhook_gradients()

    def capture_gradients(self, on: bool) -> None:
        for mask in self:
            mask.capture = on
            if not on:
                mask.captured = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: mask.keep.cpu().clone() for name, mask in self.masks.items()}

    @property
    def revision(self) -> tuple[int, int]:
        """Changes whenever a mask of the set changes, or the set is replaced."""
        return self.serial, sum(mask.revision for mask in self)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.masks) ^ set(state)
        if missing:
            raise KeyError(f"mask state does not match the pruned layers: {sorted(missing)}")
        for name, keep in state.items():
            self.masks[name].update(keep.to(self.masks[name].keep.device))
        self.apply()

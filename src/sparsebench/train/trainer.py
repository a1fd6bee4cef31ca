"""The sparse trainer: the one object a training loop talks to.

It owns the full-size network, its optimiser, the pruning method and where the steps
run (on the masked network, or on the compact one of the current masks: `Execution`),
and calls them in the one order that computes what `sparsebench train` computes. Getting
that order wrong by hand fails silently (a mask update that reads weights a compact
network has not written back yet), so nothing else calls the method's hooks:

    trainer = SparseTrainer(
        model, optimizer, method, epochs=10, steps_per_epoch=len(loader), input_shape=(3, 64, 64)
    )
    for epoch in range(10):
        trainer.train()
        for images, labels in loader:
            trainer.step(images, labels)
        accuracy = my_validation(trainer.eval_network())   # before the masks change
        trainer.end_epoch(epoch)
    trainer.finish()

The training loop of `sparsebench train`, derived runs and any loop of a user's own (a
federated client, another data pipeline) drive training only through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.settings.run import MemoryFormat
from sparsebench.sparsity.masks import MaskSet
from sparsebench.sparsity.methods import PruningMethod
from sparsebench.sparsity.schedules import AfterStep, Never
from sparsebench.sparsity.scorers import Magnitude
from sparsebench.train.compact import Execution

if TYPE_CHECKING:
    from sparsebench.sparsity.snip import GradientSums

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteLoss(ArithmeticError):
    """A step's loss was NaN or infinite; the optimiser did not take the step."""

    def __init__(self, loss: float) -> None:
        super().__init__(f"the training loss became {loss}")
        self.loss = loss


@dataclass(frozen=True)
class Step:
    """One step's outputs, and the network that took it (compact or full size)."""

    logits: torch.Tensor
    loss: torch.Tensor
    network: nn.Module


class SparseTrainer:
    """Trains `model` sparsely with `optimizer` under `method`.

    `compact`: train the physically smaller network of the current masks (the same
    computation, less work) where the model allows; otherwise every step trains the
    full-size, masked network. `input_shape` (channels, height, width) lets tracing find
    which channels go together (`sparsebench.channels`): compact training needs it, and so do
    pruned filters of networks other than VGG and ResNet, to zero the depthwise filters
    and gate rows that follow them. `batches`: unshuffled training batches for a method
    that scores before its first mask (SNIP), or the gradients it would sum, summed
    elsewhere (`GradientSums`). `learning_rate`: the rate at each step, from the step's
    number (`train.schedule`); without it the optimiser's own stays. `check_loss`:
    refuse a non-finite loss before the optimiser uses it (`NonFiniteLoss`); by default
    on the CPU only, where reading the loss costs no synchronisation. `memory_format`:
    contiguous, channels_last, or auto (channels-last where it was measured to pay:
    float32 on the CPU, for a network with no layer that must stay NCHW): the layout the
    networks train in (`train.memory_format`); `finish()` gives the model back in its
    own.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        method: PruningMethod,
        *,
        epochs: int,
        steps_per_epoch: int,
        compact: bool = True,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | GradientSums | None = None,
        input_shape: tuple[int, int, int] | None = None,
        loss: Loss = F.cross_entropy,
        check_loss: bool | None = None,
        memory_format: MemoryFormat = "auto",
        learning_rate: Callable[[int], float] | None = None,
    ) -> None:
        self.model, self.optimizer, self.method = model, optimizer, method
        self.learning_rate = learning_rate
        self.steps = 0  # optimiser steps taken, the learning rate's clock
        self.loss = loss
        # A term added to each step's loss, given the network taking the step (compact
        # or full size): FedProx's pull towards the global model (`train.proximal`).
        self.penalty: Callable[[nn.Module], torch.Tensor] | None = None
        device = next(model.parameters()).device
        self.check_loss = device.type == "cpu" if check_loss is None else check_loss
        method.on_train_begin(model, optimizer, epochs, steps_per_epoch, batches, input_shape)
        self.execution = Execution(model, optimizer, method, compact, input_shape, memory_format)

    @property
    def execution_name(self) -> str:
        """compact or masked: where this trainer's steps run."""
        return self.execution.name

    def train(self) -> None:
        """Put the networks in training mode (before an epoch's steps)."""
        self.execution.train()

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> Step:
        """One optimiser step on a batch, then whatever mask update the method's
        schedule asks for after it."""
        network, optimizer = self.execution.network_for_step()
        optimizer.zero_grad(set_to_none=True)
        logits = network(images)
        loss = self.loss(logits, labels)
        if self.penalty is not None:
            loss = loss + self.penalty(network)
        if self.check_loss and not torch.isfinite(loss):
            raise NonFiniteLoss(float(loss.detach()))
        loss.backward()
        self.method.after_backward()
        if self.learning_rate is not None:
            rate = self.learning_rate(self.steps)
            # the master's groups too: a compact network's optimiser is rebuilt from them
            for group in (*optimizer.param_groups, *self.optimizer.param_groups):
                group["lr"] = rate
        optimizer.step()
        self.steps += 1
        on_master = self.execution.step_taken()
        self._update(self.method.update_due_after_step(masks_on_master=on_master))
        return Step(logits, loss, network)

    def end_epoch(self, epoch: int) -> None:
        """Epoch `epoch` (from 0) ended: the method's end-of-epoch update, if one is due.
        Validate before this: units regrown now have not trained yet."""
        self._update(self.method.update_due_after_epoch(epoch))

    def finish(self) -> None:
        """End training: the full-size network holds the final weights, its dead units
        exactly zero, in its own layout, and no hook is left on it."""
        self.execution.release()
        self.method.on_train_end()

    def eval_network(self) -> nn.Module:
        """The network to evaluate: the compact one when training runs compact."""
        return self.execution.eval_network()

    def full_model(self) -> nn.Module:
        """The full-size network with the current weights (written back from the
        compact network first)."""
        self.execution.sync()
        return self.model

    def macs_per_sample(self, network: nn.Module, input_shape: tuple[int, int, int]) -> int:
        """Forward multiply-adds of `network` (a step's, or `full_model()`) per sample."""
        return self.execution.macs_per_sample(network, input_shape)

    def state_dict(self) -> dict[str, Any]:
        """The full-size weights, the optimiser's and the method's state: what a
        checkpoint needs to go on exactly."""
        self.execution.sync()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what `state_dict` gave (a state without "optimizer" or "method" keeps
        the current one: a kept best-validation epoch holds weights and masks only)."""
        self.model.load_state_dict(state["model"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "method" in state:
            self.method.load_state_dict(state["method"])
        self.steps = state.get("steps", self.steps)
        self.execution.master_replaced()
        self.execution.masks_may_have_changed()

    # Masks decided outside the method's own schedule: by a federated server, or a client
    # told by one. Each verb keeps the order the trainer guarantees (weights written
    # back before the method reads them, the execution resynced after the masks change).

    @property
    def masks(self) -> MaskSet:
        """The current masks: read them; change them only through the verbs below."""
        return self.method.masks

    def hold_masks(self) -> None:
        """From now on the masks change only when a verb below says so: the method's own
        schedule (and its warnings) no longer apply."""
        self.method.replan(Never())

    def change_masks_after_next_step(self, amount: float) -> None:
        """The method's own drop and grow of `amount` of its units, after the next step."""
        self.method.replan(AfterStep(1, amount))

    def use_masks(
        self, masks: dict[str, torch.Tensor], weights: dict[str, torch.Tensor] | None = None
    ) -> None:
        """Put `masks` (as `masks.state_dict()` gives them) in place of the current ones,
        with `weights` (a full-size state dict) or the current weights."""
        weights = self.full_model().state_dict() if weights is None else weights
        method = {**self.method.state_dict(), "masks": masks}
        self.load_state_dict({"model": weights, "method": method})

    def prune_now(self) -> None:
        """The method's pruning, applied to the current weights at once (a method that
        prunes after training, on a federation's final global model)."""
        self.execution.sync()
        self.method.apply_update(1.0)
        self.load_state_dict({"model": self.model.state_dict()})

    def keep_strongest(self) -> None:
        """Each layer keeps as many units as it has, those of largest magnitude in the
        current weights (FedDST's server step, after the weights were averaged)."""
        self.execution.sync()
        self.method.keep_strongest(Magnitude())
        self.load_state_dict({"model": self.model.state_dict()})

    def _update(self, amount: float | None) -> None:
        if amount is not None:
            self.execution.sync()  # the method reads the full-size weights
            self.method.apply_update(amount)
        self.execution.masks_may_have_changed()

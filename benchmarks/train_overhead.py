"""Masked-training overhead: per-epoch wall time of `pre`, `in` and `set` relative to
`dense`, and of the study's way of masking (`torch.nn.utils.prune`, which rebuilds every
weight in a forward pre-hook) relative to `dense`.

Workload: ResNet18 and VGG16 at width 0.25, 28x28 RGB inputs, batch 64, `--batches`
batches an epoch, the `mixed` scenario (conv 0.5, linear 0.8). All variants run in this
one process. This machine is shared and its speed drifts by several percent within a
minute, so the variants take turns every `--chunk` batches (in a shuffled order) and an
epoch's time is the sum of its chunks plus the method's end-of-epoch update. Each ratio
is the median over epochs of the variant's time over the same epoch's dense time, where
dense is the mean of two identical dense models (`dense`, `dense-again`): their ratios to
that mean show the noise floor, including the few percent by which two copies of one
model can differ in speed.

    python benchmarks/train_overhead.py [--batches 200] [--rounds 3] [--chunk 5]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch
from torch import nn
from torch.nn.utils import prune

from sparsebench.models import build_model
from sparsebench.sparsity import SparsityTargets, make_method
from sparsebench.train.trainer import SparseTrainer

TARGETS = SparsityTargets(conv=0.5, linear=0.8)
# "dense-again" is a second, identical dense model: its ratio is the noise floor.
VARIANTS = ("dense", "dense-again", "pre", "in", "set", "torch-prune")


def make_batches(count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(64, 3, 28, 28, generator=generator),
            torch.randint(0, 8, (64,), generator=generator),
        )
        for _ in range(count)
    ]


class Variant:
    """A model, its optimiser and its way of masking, trained one epoch at a time."""

    def __init__(self, model_name: str, variant: str, epochs: int) -> None:
        torch.manual_seed(0)
        self.model = build_model(model_name, num_classes=8, image_size=28, width=0.25)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        method_name = {"torch-prune": "pre", "dense-again": "dense"}.get(variant, variant)
        targets = SparsityTargets(0, 0) if method_name == "dense" else TARGETS
        self.method = make_method(method_name, targets)
        self.trainer = SparseTrainer(
            self.model, self.optimizer, self.method, epochs=epochs, steps_per_epoch=0, compact=False
        )
        if variant == "torch-prune":
            self._to_torch_prune()
        self.epoch = 0

    def _to_torch_prune(self) -> None:
        """The same masks as `pre`, applied the study's way: a forward pre-hook per layer
        multiplies `weight_orig` by the mask on every forward pass."""
        masks = self.method.masks
        self.method.masks.unhook_gradients()
        for mask in masks:
            module: nn.Module = mask.layer.module
            gate = next(iter(mask.gated()))[1].expand_as(module.weight)
            prune.custom_from_mask(module, "weight", gate.clone())
        # The optimiser must now update `weight_orig`, which replaced `weight`.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.method = make_method("dense", SparsityTargets(0, 0))
        self.trainer = SparseTrainer(
            self.model, self.optimizer, self.method, epochs=1, steps_per_epoch=0, compact=False
        )

    def train_batches(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        self.trainer.train()
        started = time.perf_counter()
        for x, y in batches:
            self.trainer.step(x, y)
        return time.perf_counter() - started

    def end_epoch(self) -> float:
        started = time.perf_counter()
        self.trainer.end_epoch(self.epoch)
        self.epoch += 1
        return time.perf_counter() - started


def epoch_times(
    variants: dict[str, Variant], batches: list, chunk: int, seed: int
) -> dict[str, float]:
    """One epoch of every variant, taking turns every `chunk` batches."""
    elapsed = dict.fromkeys(variants, 0.0)
    order = list(variants)
    shuffler = random.Random(seed)
    for start in range(0, len(batches), chunk):
        shuffler.shuffle(order)
        for name in order:
            elapsed[name] += variants[name].train_batches(batches[start : start + chunk])
    for name in order:
        elapsed[name] += variants[name].end_epoch()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per variant")
    parser.add_argument("--chunk", type=int, default=5, help="batches per turn")
    args = parser.parse_args()
    batches = make_batches(args.batches)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}"
    )
    print(
        f"workload: width 0.25, 28x28, batch 64, {args.batches} batches/epoch, "
        f"{args.rounds} epochs, turns of {args.chunk} batches, mixed scenario"
    )
    for model_name in ("resnet18", "vgg16"):
        variants = {name: Variant(model_name, name, args.rounds + 1) for name in VARIANTS}
        for variant in variants.values():
            variant.train_batches(batches[:5])  # warm-up: allocator, oneDNN kernels
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for epoch in range(args.rounds):
            for name, seconds in epoch_times(variants, batches, args.chunk, epoch).items():
                times[name].append(seconds)
        dense = [(a + b) / 2 for a, b in zip(times["dense"], times["dense-again"], strict=True)]
        print(f"\n{model_name}")
        print(f"  {'variant':<12} {'median epoch s':>15} {'vs dense':>9} {'overhead':>9}")
        for name in VARIANTS:
            ratios = [t / d for t, d in zip(times[name], dense, strict=True)]
            print(
                f"  {name:<12} {statistics.median(times[name]):>15.3f} "
                f"{statistics.median(ratios):>9.3f}"
            )


if __name__ == "__main__":
    main()

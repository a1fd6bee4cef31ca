"""`sparsebench train`'s dense epoch against the loop a user would write themselves.

The plain loop is what a PyTorch user writes for the same job: the images normalised
once into a float32 tensor, a `DataLoader` over a `TensorDataset` (shuffled, batch 64),
the same model built by sparsebench (eager, NCHW), Adam, cross-entropy, and the epoch's
accuracy summed from the logits. sparsebench's epoch is the one `train` runs
(`train.loop._train_epoch`: the trainer's step with its loss check, the metric
accumulator, the multiply-add count, peak memory and energy readings), in its default
layout (channels-last on the CPU), on its own batch loader (uint8 images normalised a
batch at a time).

This machine is shared and its speed drifts, so the two take turns a whole epoch at a
time (in a shuffled order each round) and each ratio is sparsebench's epoch over the
plain epoch of the same round; the median over rounds is reported. `--steps` then times
the parts of one sparsebench step apart (the batch taken from the loader, which a loader
preparing batches in the background would hide; the forward-backward-update with the
loss check; the metric update; the multiply-add count), to name the step where
sparsebench is slower.

    python benchmarks/plain_loop.py [--data PATH.npz] [--model resnet18] [--width 0.25]
        [--rounds 5] [--steps 50]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from sparsebench.data.registry import load_dataset
from sparsebench.measure.energy import EnergyMeter
from sparsebench.measure.memory import PeakMemory
from sparsebench.models import build_model
from sparsebench.settings.run import RunConfig
from sparsebench.train.build import build_run, prepare_dataset
from sparsebench.train.loop import EpochProgress, _train_epoch, _train_loader
from sparsebench.train.metrics import MetricAccumulator

BLOOD = Path(__file__).parents[1] / "../shared/data/bloodmnist_like/bloodmnist_like_28.npz"


def plain_epoch(model, optimizer, loader) -> float:  # noqa: ANN001
    """One epoch as a user writes it; its seconds."""
    model.train()
    correct = 0
    started = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        correct += int((logits.argmax(1) == labels).sum())
    return time.perf_counter() - started


def sparsebench_epoch(trainer, loader, data, epoch: int) -> float:  # noqa: ANN001
    device = loader.device
    row = _train_epoch(
        trainer, loader, data, PeakMemory(device), EnergyMeter(device), EpochProgress(), epoch, 1e-3
    )
    return float(row["train_time_s"])


def step_parts(trainer, loader, data, steps: int) -> dict[str, float]:  # noqa: ANN001
    """Median seconds of each part of a sparsebench step over `steps` steps."""
    shape = tuple(data.splits["train"].images.shape[1:])
    parts: dict[str, list[float]] = {"batch": [], "step": [], "metrics": [], "macs count": []}
    accumulator = MetricAccumulator(data.num_classes, loader.device)
    trainer.train()
    batches = iter(loader)
    for _ in range(min(steps, len(loader))):
        started = time.perf_counter()
        images, labels = next(batches)
        parts["batch"].append(time.perf_counter() - started)
        started = time.perf_counter()
        taken = trainer.step(images, labels)
        parts["step"].append(time.perf_counter() - started)
        started = time.perf_counter()
        accumulator.add(taken.logits, labels, taken.loss)
        parts["metrics"].append(time.perf_counter() - started)
        started = time.perf_counter()
        trainer.macs_per_sample(taken.network, shape)
        parts["macs count"].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=BLOOD.resolve())
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--rounds", type=int, default=5, help="epochs of each, taking turns")
    parser.add_argument("--steps", type=int, default=50, help="steps timed part by part")
    parser.add_argument("--limit", type=int, default=0, help="training images (0: all)")
    args = parser.parse_args()
    if args.data.exists():
        config = RunConfig(
            model=args.model, width=args.width, dataset="bloodmnist", data_path=str(args.data),
            method="dense", lr=1e-3, batch_size=64, device="cpu",
        )  # fmt: skip
        raw = load_dataset("bloodmnist", str(args.data))
        name = args.data.name
    else:
        config = RunConfig(model=args.model, width=args.width, dataset="synthetic", device="cpu")
        raw = load_dataset("synthetic")
        name = "synthetic images"
    data = prepare_dataset(config, raw)
    if args.limit:
        train = data.splits["train"]
        train.images, train.labels = train.images[: args.limit], train.labels[: args.limit]
    trainer = build_run(config, data, torch.device("cpu"))
    loader = _train_loader(data, config, torch.device("cpu"))
    torch.manual_seed(config.seed)
    plain = build_model(  # not build_run's: its trainer puts the network in its own layout
        config.model,
        num_classes=data.num_classes,
        in_channels=data.channels,
        image_size=data.image_size,
        width=config.width,
    )
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=config.lr)
    train = data.splits["train"]
    mean, std = data.mean.view(1, -1, 1, 1), data.std.view(1, -1, 1, 1)
    images = (train.images.float() / 255.0 - mean) / std
    plain_loader = DataLoader(
        TensorDataset(images.contiguous(), train.labels), batch_size=64, shuffle=True
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}"
    )
    print(
        f"workload: {config.model} width {config.width:g} on {name} "
        f"({len(train.labels)} training images, {data.image_size}x{data.image_size}), "
        f"batch 64, Adam, {args.rounds} epochs of each, taking turns"
    )
    plain_epoch(plain, plain_optimizer, [next(iter(plain_loader))])  # warm-up
    times: dict[str, list[float]] = {"plain": [], "sparsebench": []}
    shuffler = random.Random(0)
    for epoch in range(args.rounds):
        order = ["plain", "sparsebench"]
        shuffler.shuffle(order)
        for name in order:
            if name == "plain":
                times[name].append(plain_epoch(plain, plain_optimizer, plain_loader))
            else:
                times[name].append(sparsebench_epoch(trainer, loader, data, epoch))
    ratios = [s / p for s, p in zip(times["sparsebench"], times["plain"], strict=True)]
    print(f"  plain loop epoch        {statistics.median(times['plain']):8.2f} s (median)")
    print(f"  sparsebench train epoch {statistics.median(times['sparsebench']):8.2f} s (median)")
    print(f"  sparsebench / plain     {statistics.median(ratios):8.3f} (median of rounds)")
    print(f"  rounds: {', '.join(f'{ratio:.3f}' for ratio in ratios)}")
    parts = step_parts(trainer, loader, data, args.steps)
    total = sum(parts.values())
    print(f"  one sparsebench step, part by part (median of {args.steps} steps):")
    for name, seconds in parts.items():
        print(f"    {name:<12} {1000 * seconds:8.2f} ms  {seconds / total:6.1%}")


if __name__ == "__main__":
    main()

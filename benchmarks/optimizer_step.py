"""Adam's three implementations in a training step: one tensor at a time (PyTorch's
default on the CPU), `foreach` (a list of tensors per operation) and `fused` (one kernel
per parameter for the whole update).

Each model is built three times from one seed and trained on the same batches, one
optimiser implementation each, the three taking turns a step at a time so that they meet
the same machine; a step is timed whole and its optimiser update apart. The ratios are
the median step, and the median update, over the default's. The update touches every
weight a few times and multiplies nothing, so its share of the step is largest where the
convolutions are cheapest: thin networks on small images.

    python benchmarks/optimizer_step.py [--models resnet18,vgg16] [--widths 0.25,1]
        [--image-size 28] [--steps 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from sparsebench.models.registry import build_model

IMPLEMENTATIONS = {
    "default": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,vgg16")
    parser.add_argument("--widths", default="0.25,1")
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per implementation")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"batch 64, {args.image_size}x{args.image_size}, {args.steps} steps each"
    )
    print(
        f"{'model':<9} {'width':>5} {'default step ms':>16} {'update share':>13} "
        f"{'foreach step':>13} {'fused step':>11} {'foreach update':>15} {'fused update':>13}"
    )
    generator = torch.Generator().manual_seed(0)
    size = args.image_size
    images = torch.randn(64, 3, size, size, generator=generator)
    labels = torch.randint(0, 8, (64,), generator=generator)
    for model in args.models.split(","):
        for width in (float(w) for w in args.widths.split(",")):
            steps, updates = time_implementations(model, width, size, images, labels, args.steps)
            default_step = statistics.median(steps["default"])
            default_update = statistics.median(updates["default"])
            print(
                f"{model:<9} {width:>5g} {default_step * 1000:>16.1f} "
                f"{default_update / default_step:>13.3f} "
                f"{_median_ratio(steps, 'foreach'):>13.3f} {_median_ratio(steps, 'fused'):>11.3f} "
                f"{_median_ratio(updates, 'foreach'):>15.3f} "
                f"{_median_ratio(updates, 'fused'):>13.3f}"
            )


def time_implementations(
    model: str, width: float, size: int, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds of each step, and of its update, by implementation."""
    trained = {}
    for name, options in IMPLEMENTATIONS.items():
        torch.manual_seed(0)
        network = build_model(model, num_classes=8, image_size=size, width=width).train()
        trained[name] = (network, torch.optim.Adam(network.parameters(), lr=1e-4, **options))
    step_seconds: dict[str, list[float]] = {name: [] for name in trained}
    update_seconds: dict[str, list[float]] = {name: [] for name in trained}
    for step in range(steps + 2):  # two warm-up steps: allocator, kernels, optimiser state
        for name, (network, optimizer) in trained.items():
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(network(images), labels).backward()
            stepping = time.perf_counter()
            optimizer.step()
            ended = time.perf_counter()
            if step >= 2:
                step_seconds[name].append(ended - started)
                update_seconds[name].append(ended - stepping)
    return step_seconds, update_seconds


def _median_ratio(seconds: dict[str, list[float]], name: str) -> float:
    """The median over steps of `name`'s time over the default's in the same turn."""
    pairs = zip(seconds[name], seconds["default"], strict=True)
    return statistics.median(a / b for a, b in pairs)


if __name__ == "__main__":
    main()

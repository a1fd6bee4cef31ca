"""Channels-last against NCHW training: what the layout saves, and where oneDNN breaks.

Part 1, the hazard: the weight gradient of a 1x1, stride-2 convolution with `ic` input
channels, computed in channels-last and in NCHW, each case in a child process (a crash
takes only the child). torch 2.13.0's oneDNN aborts or returns wrong values below its
kernel's block of input channels; `train.memory_format` keeps such layers NCHW.

Part 2, the saving: every variant trains through `SparseTrainer` with
`memory_format=contiguous` and again with `channels_last`, on the same batches, taking
turns every `--chunk` batches in one process (the taking of turns of
`benchmarks/train_overhead.py`); a ratio is the median over epochs of the channels-last
epoch over the NCHW epoch of the same variant (below 1: channels-last is faster). Two
identical NCHW dense models give the noise floor.

Part 3 (`--compile`), what `torch.compile` would add: the dense model's plain training
step (forward, backward, Adam) eager and compiled (inductor), in each layout: the first
step's seconds (the compilation) and the median step over eager NCHW's, taking turns.

    python benchmarks/memory_format.py [--width 0.25] [--image-size 28] [--batches 60]
        [--rounds 3] [--chunk 5] [--models resnet18,vgg16] [--threads N] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from train_overhead import epoch_times  # the same taking of turns (benchmarks/)
from train_speedup import Variant, make_batches

from sparsebench.models import build_model
from sparsebench.train.memory_format import to_channels_last

VARIANTS = (
    "dense",
    "pre/mixed/masked",
    "pre/mixed/compact",
    "pre/uniform/compact",
    "set/mixed/compact",
    "rigl/mixed/compact",
)
FORMATS = ("contiguous", "channels_last")

# One case of part 1, run as `python -c CASE ic threads`: prints the largest error of
# the channels-last weight gradient relative to the NCHW one.
CASE = """
import sys, torch, torch.nn.functional as F
ic, threads = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0); torch.set_num_threads(threads)
x, w = torch.randn(32, ic, 28, 28), torch.randn(8, ic, 1, 1)
def gradient(layout):
    xx = x.contiguous(memory_format=layout).requires_grad_()
    ww = w.contiguous(memory_format=layout).requires_grad_()
    y = F.conv2d(xx, ww, stride=2)
    y.backward(torch.ones_like(y))
    return ww.grad
nchw, nhwc = gradient(torch.contiguous_format), gradient(torch.channels_last)
print(float((nhwc - nchw).abs().max() / nchw.abs().max()))
"""


def hazard(threads: int) -> None:
    print(f"\n1x1 stride-2 convolution, weight gradient in channels-last, {threads} thread(s):")
    for ic in (1, 2, 3, 4, 6, 7, 8, 12, 15, 16, 24, 32):
        try:
            done = subprocess.run(
                [sys.executable, "-c", CASE, str(ic), str(threads)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            print(f"  {ic:>3} input channels: hung (killed after 60 s)")
            continue
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            print(f"  {ic:>3} input channels: crashed (exit {done.returncode}: {last})")
            continue
        error = float(done.stdout.strip())
        verdict = "correct" if error < 1e-4 else "WRONG"
        print(f"  {ic:>3} input channels: {verdict} (largest error {error:.1e} of the largest)")


def saving(args: argparse.Namespace) -> None:
    batches = make_batches(args.batches, args.image_size, torch.device("cpu"))
    for model in args.models.split(","):
        variants = {
            f"{name}@{layout}": Variant(model, name, args_with(args, layout))
            for name in VARIANTS
            for layout in FORMATS
        }
        variants["dense@contiguous-again"] = Variant(model, "dense", args_with(args, "contiguous"))
        for variant in variants.values():
            variant.train_batches(batches[:2])  # warm-up: allocator, oneDNN kernels
        times: dict[str, list[float]] = {name: [] for name in variants}
        for epoch in range(args.rounds):
            for name, seconds in epoch_times(variants, batches, args.chunk, epoch).items():
                times[name].append(seconds)
        print(f"\n{model}")
        print(f"  {'variant':<22} {'NCHW epoch s':>13} {'channels-last epoch s':>22} {'ratio':>7}")
        for name in (*VARIANTS, "dense-again"):
            nchw, nhwc = (
                ("dense@contiguous", "dense@contiguous-again")
                if name == "dense-again"
                else (f"{name}@contiguous", f"{name}@channels_last")
            )
            ratio = statistics.median(a / b for a, b in zip(times[nhwc], times[nchw], strict=True))
            print(
                f"  {name:<22} {statistics.median(times[nchw]):>13.3f} "
                f"{statistics.median(times[nhwc]):>22.3f} {ratio:>7.3f}"
            )


def compiled(args: argparse.Namespace) -> None:
    batches = make_batches(10, args.image_size, torch.device("cpu"))
    for model in args.models.split(","):
        steps = {}
        for layout in FORMATS:
            for compile_it in (False, True):
                torch.manual_seed(0)
                network = build_model(
                    model, num_classes=8, image_size=args.image_size, width=args.width
                )
                if layout == "channels_last":
                    to_channels_last(network)
                optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
                forward = torch.compile(network) if compile_it else network
                steps[f"{'compiled' if compile_it else 'eager'} {layout}"] = (forward, optimizer)
        print(f"\n{model}: first step (s), then median step over eager contiguous's")
        first = {name: _timed_steps(*step, batches[:1]) for name, step in steps.items()}
        times: dict[str, list[float]] = {name: [] for name in steps}
        shuffler = random.Random(0)
        for _ in range(args.rounds):
            order = list(steps)
            shuffler.shuffle(order)
            for name in order:
                times[name].append(_timed_steps(*steps[name], batches))
        for name in steps:
            ratio = statistics.median(
                a / b for a, b in zip(times[name], times["eager contiguous"], strict=True)
            )
            print(f"  {name:<24} first step {first[name]:>7.1f} s   step ratio {ratio:.3f}")


def _timed_steps(network, optimizer, batches: list) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(images), labels).backward()
        optimizer.step()
    return time.perf_counter() - started


def args_with(args: argparse.Namespace, layout: str) -> argparse.Namespace:
    settings = copy.copy(args)
    settings.memory_format = layout
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batches", type=int, default=60, help="batches per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per variant")
    parser.add_argument("--chunk", type=int, default=5, help="batches per turn")
    parser.add_argument("--models", default="resnet18,vgg16")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-hazard", action="store_true", help="leave part 1 out")
    parser.add_argument("--compile", action="store_true", help="part 3: torch.compile")
    args = parser.parse_args()
    args.device, args.linear_granularity = torch.device("cpu"), "weight"
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {args.threads} torch threads, "
        f"torch {torch.__version__}"
    )
    if not args.skip_hazard:
        hazard(args.threads)
    print(
        f"\nworkload: width {args.width:g}, {args.image_size}x{args.image_size}, batch 64, "
        f"{args.batches} batches/epoch, {args.rounds} epochs, turns of {args.chunk} batches"
    )
    saving(args)
    if args.compile:
        compiled(args)


if __name__ == "__main__":
    main()

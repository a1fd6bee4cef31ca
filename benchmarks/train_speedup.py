"""Compact vs masked training: per-epoch wall time of `pre`, `set` and `rigl` in each
execution, relative to `dense`, against the limit (the physically pruned network trained
directly), and the memory a training step holds.

Every variant trains through the same code as `sparsebench train` (the method's hooks,
`train.compact.Execution`), on the same batches, in this one process. This machine is
shared and its speed drifts by several percent within a minute, so the variants take
turns every `--chunk` batches (in a shuffled order) and an epoch's time is the sum of its
chunks plus the method's end-of-epoch work (SET's swap, the write-back to the master).
Each ratio is the median over epochs of the variant's time over the same epoch's dense
time, dense being the mean of two identical dense models (`dense`, `dense-again`), whose
ratios to that mean show the noise floor. RigL updates every 100 steps (its default):
at each update it takes one dense step on the master and rebuilds the compact network.

The limit (`method/scenario/physical`): the network the method's first mask leaves,
built physically smaller (`deploy.compact_model`: every layer at its pruned width, the
residual sums narrowed, in the layout compact training runs in) and trained directly with
its own Adam, in a plain loop: no master copy, no write-back, no slicing, no masks. It is
what a fixed mask can cost at best; a dynamic method's masks move, so its limit is the
network of its widths, and its compact epoch pays the rebuilds too. "compact vs limit"
is the compact epoch over the physical one (1.00: no overhead); "steps vs limit" leaves
out the mask work ("mask work s", per epoch: the method's end-of-epoch update with the
write-back before it, and every compact network built), so the rest of the gap is the
steps' own. For the fixed mask of
`pre`, `method/scenario/bare` splits that overhead: the trainer's compact network taken
out and trained in the same plain loop (its "vs limit" is bare over physical).

Memory: what one training step of the network actually trained holds, counted: the
tensors autograd saves for the backward pass, and weights, gradients and Adam's moments.

    python benchmarks/train_speedup.py [--width 0.25] [--image-size 28] [--batches 200]
        [--rounds 3] [--chunk 5] [--models resnet18,vgg16] [--device cpu]
        [--linear-granularity weight|neuron] [--memory-format auto|contiguous|channels_last]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from train_overhead import epoch_times  # the same taking of turns (benchmarks/)

from sparsebench.deploy.compact import compact_model
from sparsebench.models import build_model
from sparsebench.sparsity import SCENARIOS, SparsityTargets, make_method
from sparsebench.train.memory_format import MEMORY_FORMATS, to_channels_last, wants_channels_last
from sparsebench.train.trainer import SparseTrainer

METHODS = ("pre", "set", "rigl")
SCENARIO_NAMES = ("mixed", "uniform")


def make_batches(count: int, size: int, device: torch.device) -> list:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(64, 3, size, size, generator=generator).to(device),
            torch.randint(0, 8, (64,), generator=generator).to(device),
        )
        for _ in range(count)
    ]


class Variant:
    """A model, its optimiser, its method and its execution, trained an epoch at a time."""

    def __init__(self, model: str, name: str, args: argparse.Namespace) -> None:
        torch.manual_seed(0)
        method, scenario, execution = (name.split("/") + ["", ""])[:3]
        method = "dense" if method == "dense-again" else method
        self.network = build_model(
            model, num_classes=8, image_size=args.image_size, width=args.width
        ).to(args.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-4, fused=True)
        targets = SCENARIOS[scenario] if scenario else SparsityTargets(0, 0)
        self.method = make_method(method, targets, linear_granularity=args.linear_granularity)
        epochs = args.rounds + 1
        self.trainer = SparseTrainer(
            self.network,
            self.optimizer,
            self.method,
            epochs=epochs,
            steps_per_epoch=args.batches,
            compact=execution == "compact",
            input_shape=(3, args.image_size, args.image_size),
            memory_format=args.memory_format,
        )
        self.epoch = 0
        self.mask_work = 0.0  # seconds of mask changes since `take_mask_work`
        build = self.trainer.execution._build

        def timed_build() -> None:
            started = time.perf_counter()
            build()
            self.mask_work += time.perf_counter() - started

        self.trainer.execution._build = timed_build

    def take_mask_work(self) -> float:
        """Seconds spent on mask changes since the last call: the method's end-of-epoch
        work (with the write-back before it) and every compact network built."""
        seconds, self.mask_work = self.mask_work, 0.0
        return seconds

    def train_batches(self, batches: list) -> float:
        self.trainer.train()
        started = time.perf_counter()
        for x, y in batches:
            self.trainer.step(x, y)
        _synchronise(x.device)
        return time.perf_counter() - started

    def end_epoch(self) -> float:
        started = time.perf_counter()
        self.trainer.end_epoch(self.epoch)
        self.epoch += 1
        seconds = time.perf_counter() - started
        self.mask_work += seconds
        return seconds


class PhysicalVariant:
    """The physically pruned network of a method's first mask, trained in a plain loop."""

    def __init__(self, model: str, name: str, args: argparse.Namespace) -> None:
        masked = Variant(model, name.replace("/physical", "/masked"), args).network
        shape = (3, args.image_size, args.image_size)
        network = compact_model(masked.cpu(), shape).to(memory_format=torch.contiguous_format)
        self.network = network.to(args.device).train()
        if wants_channels_last(args.memory_format, self.network):  # as the trainer would
            to_channels_last(self.network)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-4, fused=True)

    def train_batches(self, batches: list) -> float:
        started = time.perf_counter()
        for x, y in batches:
            self.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(self.network(x), y).backward()
            self.optimizer.step()
        _synchronise(x.device)
        return time.perf_counter() - started

    def end_epoch(self) -> float:
        return 0.0

    def take_mask_work(self) -> float:
        return 0.0


class BareVariant(PhysicalVariant):
    """The compact network the trainer trains, taken out of it and trained in the same
    plain loop as the limit: compact over bare is the trainer's own work per step, bare
    over physical what the compact network computes beyond the physical one (a ResNet's
    blocks compute every channel of the residual stream they add into)."""

    def __init__(self, model: str, name: str, args: argparse.Namespace) -> None:
        trainer = Variant(model, name.replace("/bare", "/compact"), args).trainer
        self.network = copy.deepcopy(trainer.eval_network()).train()
        for parameter in self.network.parameters():
            parameter._post_accumulate_grad_hooks = None  # the trainer's gating
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=1e-4, fused=True)


VARIANT_KINDS = {"physical": PhysicalVariant, "bare": BareVariant}


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_memory(
    variant: Variant | PhysicalVariant, batch: tuple[torch.Tensor, torch.Tensor]
) -> int:
    """Bytes a training step holds for its network: the tensors autograd saves for the
    backward pass (activations), and weights, gradients and Adam's two moments. Counted,
    not sampled, so it does not depend on what else the process holds."""
    if isinstance(variant, PhysicalVariant):
        network = variant.network
    else:
        network = variant.trainer.eval_network()  # the network the steps train
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = F.cross_entropy(network(batch[0]), batch[1])
    del loss
    weights = sum(p.numel() * p.element_size() for p in network.parameters())
    return sum(saved.values()) + 4 * weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batches", type=int, default=200, help="batches per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per variant")
    parser.add_argument("--chunk", type=int, default=5, help="batches per turn")
    parser.add_argument("--models", default="resnet18,vgg16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--linear-granularity",
        default="weight",
        choices=["weight", "neuron"],
        help="neuron: linear layers lose whole neurons, which compaction removes",
    )
    parser.add_argument(
        "--memory-format",
        default="auto",
        choices=MEMORY_FORMATS,
        help="the layout every variant trains in (auto: as `sparsebench train` does)",
    )
    args = parser.parse_args()
    args.device = torch.device(args.device)
    batches = make_batches(args.batches, args.image_size, args.device)
    names = ["dense", "dense-again"] + [
        f"{method}/{scenario}/{execution}"
        for method in METHODS
        for scenario in SCENARIO_NAMES
        for execution in ("masked", "compact", "physical", "bare")
        if execution != "bare" or method == "pre"  # a fixed mask: one compact network
    ]
    where = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "CPU"
    print(
        f"machine: {platform.processor() or platform.machine()} ({where}), "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print(
        f"workload: width {args.width:g}, {args.image_size}x{args.image_size}, batch 64, "
        f"{args.batches} batches/epoch, {args.rounds} epochs, turns of {args.chunk} batches, "
        f"linear granularity {args.linear_granularity}, memory format {args.memory_format}"
    )
    for model in args.models.split(","):
        variants = {
            name: VARIANT_KINDS.get(name.rsplit("/", 1)[-1], Variant)(model, name, args)
            for name in names
        }
        for variant in variants.values():
            variant.train_batches(batches[:2])  # warm-up: allocator, oneDNN kernels
        for variant in variants.values():
            variant.take_mask_work()  # the first compact networks, built in the warm-up
        times: dict[str, list[float]] = {name: [] for name in names}
        steps_only: dict[str, list[float]] = {name: [] for name in names}
        for epoch in range(args.rounds):
            for name, seconds in epoch_times(variants, batches, args.chunk, epoch).items():
                times[name].append(seconds)
                steps_only[name].append(seconds - variants[name].take_mask_work())
        dense = [(a + b) / 2 for a, b in zip(times["dense"], times["dense-again"], strict=True)]
        print(f"\n{model}")
        print(
            f"  {'variant':<22} {'median epoch s':>15} {'vs dense':>9} "
            f"{'compact speedup':>16} {'compact vs limit':>17} {'steps vs limit':>15} "
            f"{'mask work s':>12} {'step memory MiB':>16}"
        )
        for name in names:
            ratios = [t / d for t, d in zip(times[name], dense, strict=True)]
            speedup = overhead = steps = ""
            if name.endswith("/compact"):
                speedup = f"{_median_ratio(times, name.replace('/compact', '/masked'), name):.2f}x"
                limit = name.replace("/compact", "/physical")
                overhead = f"{_median_ratio(times, name, limit):.2f}"
                steps = f"{_median_ratio(steps_only, name, limit, times):.2f}"
            if name.endswith("/bare"):
                overhead = f"{_median_ratio(times, name, name.replace('/bare', '/physical')):.2f}"
            memory = step_memory(variants[name], batches[0])
            print(
                f"  {name:<22} {statistics.median(times[name]):>15.3f} "
                f"{statistics.median(ratios):>9.3f} {speedup:>16} {overhead:>17} {steps:>15} "
                f"{statistics.median(times[name]) - statistics.median(steps_only[name]):>12.3f} "
                f"{memory / 2**20:>16.1f}"
            )


def _median_ratio(
    times: dict[str, list[float]],
    over: str,
    under: str,
    under_times: dict[str, list[float]] | None = None,
) -> float:
    """The median over epochs of `over`'s epoch time over `under`'s in the same epoch
    (`under`'s from `under_times`, if given)."""
    unders = (under_times or times)[under]
    return statistics.median(a / b for a, b in zip(times[over], unders, strict=True))


if __name__ == "__main__":
    main()

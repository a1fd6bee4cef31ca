"""Real CPU inference saving of compaction: masked vs compact vs ONNX Runtime (float32,
int8), for full-width networks (VGG16 and ResNet18 by default; any registered one, such
as mobilenet_v3_small, efficientnet_b0 or resnet50, by --models) at 32x32 and 64x64
inputs, the three scenarios, batch 1 and 64, one thread and two, all measured side by
side in this one process. Weights come from initialisation with `pre` masks: speed does
not depend on training.

Optional comparison: Torch-Pruning (`pip install torch-pruning`, the `compare` extra)
removing the same channel groups (the channels our compaction removes, given to its
dependency graph by their first producer); our compact latency is printed relative to
its (batch 64, at the first of --threads), once both are checked against the masked
network. Skipped, with the reason, when the package is missing.

    python benchmarks/inference_speedup.py [--repeats 5] [--sizes 32,64] [--threads 1,2]
        [--models vgg16,resnet18] [--scenarios uniform,mixed] [--linear-granularity neuron]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics

import torch

from sparsebench.channels import trace_channels
from sparsebench.deploy.bench import bench_subject, benchmark_models
from sparsebench.deploy.compact import compact_model, kept_channels
from sparsebench.measure.timing import time_interleaved

SCENARIOS = ("uniform", "mixed", "linear-only")


def torch_pruning_ratio(
    model_name: str, size: int, scenario: str, repeats: int, threads: int
) -> str:
    """Our compact latency over Torch-Pruning's removing the same channel groups (batch
    64, `threads` threads), after checking both compute the masked network's outputs."""
    try:
        import torch_pruning as tp
    except ImportError:
        return "skipped: torch-pruning is not installed"
    masked, shape, _ = bench_subject(model_name, "pre", scenario, 1.0, size)
    ours = compact_model(masked, shape)
    pruned = copy.deepcopy(masked)
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=torch.randn(1, *shape))
    layers, modules = dict(pruned.named_modules()), dict(masked.named_modules())
    for group in trace_channels(masked, shape):
        removed = sorted(set(range(group.channels)) - set(kept_channels(group, modules).tolist()))
        if not removed or not group.producers:
            continue
        use = group.producers[0]
        layer = layers[use.module]
        remove = (
            tp.prune_conv_out_channels
            if isinstance(layer, torch.nn.Conv2d)
            else tp.prune_linear_out_channels
        )
        graph.get_pruning_group(layer, remove, idxs=[use.offset + i for i in removed]).prune()
    x = torch.randn(64, *shape)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            reference = masked(x)
            scale = reference.abs().max()
            if float((pruned(x) - reference).abs().max() / scale) > 1e-4:
                return "n/a (Torch-Pruning removed other channels)"
            calls = {"ours": lambda: ours(x), "tp": lambda: pruned(x)}
            seconds = time_interleaved(calls, repeats, 2)
    finally:
        torch.set_num_threads(previous)
    return f"{statistics.median(seconds['ours']) / statistics.median(seconds['tp']):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--models", default="vgg16,resnet18")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument(
        "--linear-granularity", default="weight", help="weight (the study) or neuron"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} cores for torch, "
        f"torch {torch.__version__}; repeats {args.repeats}; weights from initialisation"
    )
    header = (
        f"{'model':<9}{'size':>5} {'scenario':<12}{'thr':>4}{'batch':>6} {'variant':<11}"
        f"{'median ms':>10}{'p95 ms':>9}{'speedup':>8}{'MACs x':>7}{'effic.':>7}"
    )
    for model_name in args.models.split(","):
        for size in sizes:
            for scenario in args.scenarios.split(","):
                masked, shape, _ = bench_subject(
                    model_name,
                    "pre",
                    scenario,
                    1.0,
                    size,
                    linear_granularity=args.linear_granularity,
                )
                rows, difference = benchmark_models(
                    masked, shape, batch_sizes=[1, 64], threads=threads, repeats=args.repeats
                )
                print(f"\n{header}")
                for row in rows:
                    print(
                        f"{model_name:<9}{size:>5} {scenario:<12}{row.threads:>4}"
                        f"{row.batch_size:>6} {row.variant:<11}{row.latency_median_ms:>10.2f}"
                        f"{row.latency_p95_ms:>9.2f}{row.speedup:>8.2f}{row.mac_ratio:>7.2f}"
                        f"{row.efficiency:>7.2f}"
                    )
                ratio = torch_pruning_ratio(model_name, size, scenario, args.repeats, threads[0])
                print(
                    f"  max |compact - masked| / max |masked| = {difference:.1e}; "
                    f"compact / Torch-Pruning latency (batch 64, {threads[0]} thread(s)): {ratio}"
                )


if __name__ == "__main__":
    main()

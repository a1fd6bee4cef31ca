"""Why 80% unstructured sparsity does not pay on a CPU: one linear layer (VGG16's
4096 x 4096 classifier layer by default) with 80% of its weights zero, computed by
dense GEMM and by every sparse kernel at hand, side by side in this one process run.

Kernels: dense GEMM over the zeros (`F.linear`), PyTorch CSR with int32 and int64
indices (`torch.sparse.mm`, MKL where the build has it), PyTorch block-sparse BSR, and
scipy's CSR (if installed). Each is timed in turns, `--repeats` calls each, median
latency; the ratio is dense time over the kernel's time, next to the 1 / density that
a MAC count promises.

    python benchmarks/sparse_linear.py [--size 4096] [--sparsity 0.8] [--batch 64] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F


def kernels(weight: torch.Tensor, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        csr64 = weight.to_sparse_csr()
        csr32 = torch.sparse_csr_tensor(
            csr64.crow_indices().int(), csr64.col_indices().int(), csr64.values(), csr64.shape
        )
        calls: dict[str, Callable[[], object]] = {
            "dense GEMM": lambda: F.linear(x, weight),
            "torch CSR int32": lambda: torch.sparse.mm(csr32, x.t()),
            "torch CSR int64": lambda: torch.sparse.mm(csr64, x.t()),
        }
        for block in (4, 16):
            bsr = weight.to_sparse_bsr((block, block))
            calls[f"torch BSR {block}x{block}"] = lambda bsr=bsr: torch.sparse.mm(bsr, x.t())
    try:
        import scipy.sparse
    except ImportError:
        print("scipy not installed: its CSR kernel is skipped")
    else:
        matrix = scipy.sparse.csr_matrix(weight.numpy())
        xt = x.t().contiguous().numpy()
        calls["scipy CSR"] = lambda: matrix @ xt
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(args.size, args.size, generator=generator)
    weight[torch.rand(weight.shape, generator=generator) < args.sparsity] = 0.0
    x = torch.randn(args.batch, args.size, generator=generator)
    calls = kernels(weight, x)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}; "
        f"{args.size}x{args.size}, sparsity {args.sparsity:g}, batch {args.batch}; "
        f"MAC ratio promised: {1 / (1 - args.sparsity):.1f}"
    )
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for call in calls.values():
            call()  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.repeats):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                seconds[name].append(time.perf_counter() - started)
        dense = statistics.median(seconds["dense GEMM"])
        for name, values in seconds.items():
            median = statistics.median(values)
            print(
                f"{threads} thread(s)  {name:<16} {median * 1e3:8.1f} ms   "
                f"speedup over dense {dense / median:5.2f}"
            )


if __name__ == "__main__":
    main()

"""GPU check: full-width ResNet18 on the BloodMNIST-style file, 3 epochs, `dense` and
`set` (mixed scenario), on CUDA with Zeus energy. Prints each epoch's training time, peak
CUDA memory and joules, and the test accuracy.

    python benchmarks/gpu_train_check.py --data-path PATH/bloodmnist_like_28.npz
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from sparsebench.data import load_dataset
from sparsebench.train import RunConfig, train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    data = load_dataset("bloodmnist", args.data_path)
    for method in ("dense", "set"):
        config = RunConfig(
            model="resnet18",
            width=1.0,
            dataset="bloodmnist",
            data_path=args.data_path,
            method=method,
            scenario=None if method == "dense" else "mixed",
            epochs=args.epochs,
            device="cuda",
            seed=0,
        )
        with tempfile.TemporaryDirectory() as folder:
            result = train_run(config, data, Path(folder) / "checkpoint.pt")
        print(f"\nresnet18 width 1.0, bloodmnist 28x28, method {method} ({config.scenario_label})")
        print(
            f"  {'epoch':>5} {'train s':>8} {'peak MiB':>9} {'energy J':>9} {'source':>7} "
            f"{'train acc':>9} {'val acc':>8}"
        )
        for row in result.epochs:
            energy = "missing" if row.energy_j is None else f"{row.energy_j:.1f}"
            print(
                f"  {row.epoch + 1:>5} {row.train_time_s:>8.2f} "
                f"{row.peak_memory_bytes / 2**20:>9.0f} {energy:>9} "
                f"{row.energy_source or '-':>7} {row.train_accuracy:>9.4f} "
                f"{row.val_accuracy:>8.4f}"
            )
            if row.energy_j is None:
                print(f"        energy missing: {row.energy_missing_reason}")
        test = result.test
        print(
            f"  test accuracy {test.accuracy:.4f}, macro F1 {test.f1:.4f}, "
            f"inference {test.inference_time_per_sample_s * 1e6:.1f} us/sample, "
            f"inference energy {test.inference_energy_j} J, "
            f"sparsity {result.sparsity_by_kind}"
        )


if __name__ == "__main__":
    main()

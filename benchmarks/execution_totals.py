"""Total training time per run of the same sweep under two executions, side by side:
`benchmarks/cpu_bloodmnist_masked.yaml` and `..._compact.yaml` run into two databases.

    python benchmarks/execution_totals.py masked.db compact.db
"""

from __future__ import annotations

import argparse

import pandas as pd

from sparsebench.store import ResultsStore

KEYS = ["model", "method", "scenario"]


def totals(db: str) -> pd.DataFrame:
    with ResultsStore(db, read_only=True) as store:
        runs = store.table("runs")
        tests = store.table("test_metrics")
    runs = runs[runs.status == "finished"].merge(tests, on="run_id")
    runs["derived"] = runs.derived_from.notna()
    return runs[[*KEYS, "derived", "total_train_time_s", "accuracy"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("masked")
    parser.add_argument("compact")
    args = parser.parse_args()
    table = totals(args.masked).merge(
        totals(args.compact), on=[*KEYS, "derived"], suffixes=("_masked", "_compact")
    )
    table["compact_vs_masked"] = table.total_train_time_s_compact / table.total_train_time_s_masked
    table = table.sort_values(KEYS).reset_index(drop=True)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    trained = table[~table.derived]
    masked, compact = (
        trained.total_train_time_s_masked.sum(),
        trained.total_train_time_s_compact.sum(),
    )
    print(
        f"\nall trained runs: masked {masked:.0f} s, compact {compact:.0f} s "
        f"({compact / masked:.2f}x)"
    )


if __name__ == "__main__":
    main()

"""Megabytes uploaded to reach an accuracy, per federated run, against dense FedAvg in
the same federation, read from a report's tables (`sparsebench report` on a database
of federated runs).

The target is dense FedAvg's final validation accuracy where the run reaches it; where
it does not, the run's own best, which dense reached too (dense's own curve gives its
megabytes to that accuracy). Every target and crossing is read on the validation split
the server holds, never on the test split ("test at best val" is the test accuracy of
the round chosen so). "share" is the run's megabytes over dense's to the same target:
below 1, the sparse run got there uploading less.

    python benchmarks/federated_megabytes.py docs/results/federated/report
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def first_reaching(rounds: pd.DataFrame, target: float) -> tuple[float, int] | None:
    """Cumulative megabytes uploaded, and the round, when `target` was first reached."""
    reached = rounds[rounds.val_accuracy >= target]
    if reached.empty:
        return None
    return float(reached.mb_uploaded.iloc[0]), int(reached["round"].iloc[0])


def megabytes_to_targets(report: Path) -> pd.DataFrame:
    rounds = pd.read_csv(report / "federated_rounds.csv").sort_values("round")
    summary = pd.read_csv(report / "federated_summary.csv")
    rows = []
    for federation, runs in summary.groupby("federation"):
        dense = runs[runs.method == "dense"].iloc[0]
        dense_rounds = rounds[rounds.run_id == dense.run_id]
        for _, run in runs.sort_values(["method", "scenario"]).iterrows():
            own = rounds[rounds.run_id == run.run_id]
            reaches = own.val_accuracy.max() >= dense.final_val_accuracy
            target = dense.final_val_accuracy if reaches else own.val_accuracy.max()
            mine, theirs = first_reaching(own, target), first_reaching(dense_rounds, target)
            rows.append(
                {
                    "federation": federation,
                    "run": f"{run.method} {run.scenario}",
                    "final": round(run.final_accuracy, 3),
                    "test at best val": round(run.accuracy_at_best_val, 3),
                    "MB/round of dense": round(run.mb_per_round / dense.mb_per_round, 3),
                    "round s": round(run.round_s, 1),
                    "target": f"{'dense final' if reaches else 'own best'} {target:.3f}",
                    "MB (round)": f"{mine[0]:.1f} ({mine[1]})" if mine else "",
                    "dense MB (round)": f"{theirs[0]:.1f} ({theirs[1]})" if theirs else "",
                    "share": round(mine[0] / theirs[0], 3) if mine and theirs else None,
                }
            )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    table = megabytes_to_targets(Path(sys.argv[1])).fillna("")
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        print("| " + " | ".join(str(value) for value in row) + " |")

"""The federated runs of a results database: their rounds, labelled; the figure a reader
looks at first, test accuracy against rounds and against megabytes uploaded; and the
table that says whether sparse training paid, the megabytes each run uploaded to reach
dense FedAvg's final accuracy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sparsebench.data.registry import data_label
from sparsebench.report.figures import method_colour
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.methods import METHODS
from sparsebench.store.federated import federated_rounds, federated_runs
from sparsebench.store.results import open_results

MB = 1e6
# Method by colour, scenario by line: pre uniform and pre mixed side by side.
SCENARIO_LINES = {"uniform": "--", "mixed": "-", "linear-only": ":"}


def load_federated(db: str | Path) -> pd.DataFrame:
    """Every round of every finished federated run, with the run's labels and the
    megabytes uploaded up to and including the round."""
    with open_results(db, read_only=True) as store:
        runs = federated_runs(store)
        rounds = federated_rounds(store)
    runs = runs[runs.status == "finished"]
    if runs.empty:
        return pd.DataFrame()
    labels = pd.DataFrame([_labels(row.run_id, row.config_json) for row in runs.itertuples()])
    frame = rounds.merge(labels, on="run_id")
    frame = frame.sort_values(["run_id", "round"])
    frame["mb_uploaded"] = frame.groupby("run_id").bytes_up.cumsum() / MB
    return frame


def _labels(run_id: str, config_json: str) -> dict:
    config = json.loads(config_json)
    run = RunConfig(**config["run"])
    federated = config["federated"]
    partition = federated["partition"]
    if partition == "dirichlet":
        partition = f"Dirichlet {federated['alpha']:g}"
    elif partition == "classes":
        partition = f"{federated['classes_per_client']} classes each"
    return {
        "run_id": run_id,
        "method": run.method,
        "scenario": run.scenario_label,
        "model": run.model,
        "data_label": data_label(run.dataset, run.data_path, run.data_name),
        "federation": f"{federated['clients']} clients, {partition}",
        "seed": run.seed,
    }


def federated_figure(rounds: pd.DataFrame) -> Figure:
    """One row per data set, model and federation: accuracy against rounds (left) and
    against cumulative megabytes uploaded (right), one line per method and scenario."""
    groups = list(rounds.groupby(["data_label", "model", "federation"], sort=False))
    figure, axes = plt.subplots(
        len(groups), 2, figsize=(11, 3.6 * len(groups)), squeeze=False, constrained_layout=True
    )
    for row, ((data, model, federation), group) in enumerate(groups):
        by_round, by_bytes = axes[row]
        for (method, scenario, seed), run in group.groupby(["method", "scenario", "seed"]):
            label = f"{METHODS[method].display_name}, {scenario}" if method in METHODS else method
            style = {
                "color": "black" if METHODS[method].baseline else method_colour(method),
                "linestyle": SCENARIO_LINES.get(scenario, "-"),
                "marker": ".",
                "label": f"{label} (seed {seed})",
            }
            by_round.plot(run["round"], run.test_accuracy, **style)
            by_bytes.plot(run.mb_uploaded, run.test_accuracy, **style)
        by_round.set(xlabel="round (0: the initial model)", ylabel="test accuracy")
        by_bytes.set(xlabel="megabytes uploaded by the clients, cumulative", xscale="symlog")
        by_round.set_title(f"{data}, {model}, {federation}", loc="left", fontsize=10)
        by_bytes.legend(fontsize=7, loc="lower right")
        for axis in (by_round, by_bytes):
            axis.grid(alpha=0.3)
    return figure


# The runs a sparse run is compared with: dense FedAvg on the same data, model,
# federation and seed (the same clients, the same rounds' samples).
SAME_FEDERATION = ["data_label", "model", "federation", "seed"]


def federated_summary(rounds: pd.DataFrame) -> pd.DataFrame:
    """One row per federated run: its final test accuracy and that of the round that
    validated best, the megabytes it uploaded in all and a round (the set-up apart), its
    mean round time, and the megabytes uploaded up to the first round whose validation
    accuracy reached dense FedAvg's final one in the same federation (empty when it
    never did, no dense run shares its federation, or its rounds predate validation),
    with that as a share of what dense uploaded to get there. The test split chooses
    nothing here."""
    rows = []
    for run_id, run in rounds.sort_values("round").groupby("run_id", sort=False):
        last = run.iloc[-1]
        training = run[run["round"] > 0]
        rows.append(
            {
                **{key: last[key] for key in [*SAME_FEDERATION, "method", "scenario"]},
                "run_id": run_id,
                "rounds": int(last["round"]),
                "final_accuracy": float(last.test_accuracy),
                "final_val_accuracy": float(last.get("val_accuracy", float("nan"))),
                **_best_validation_round(run),
                "mb_uploaded": float(last.mb_uploaded),
                "mb_per_round": float(training.bytes_up.mean() / MB),
                "setup_mb_up": float(run[run["round"] == 0].bytes_up.sum() / MB),
                "round_s": float(training.round_time_s.mean()),
                "run_rounds": run,
            }
        )
    table = pd.DataFrame(rows)
    table["key"] = table[SAME_FEDERATION].apply(tuple, axis=1)
    table["is_dense"] = table.method.map(lambda method: METHODS[method].baseline)
    finals = table[table.is_dense].set_index("key").final_val_accuracy.to_dict()
    table["mb_to_dense_final"] = [
        _mb_to_reach(row.run_rounds, finals.get(row.key)) for row in table.itertuples()
    ]
    dense_mb = table[table.is_dense].set_index("key").mb_to_dense_final.to_dict()
    table["of_dense_mb"] = [
        float("nan") if row.is_dense else row.mb_to_dense_final / dense_mb.get(row.key, math.nan)
        for row in table.itertuples()
    ]
    return table.drop(columns=["run_rounds", "key", "is_dense"])


def _best_validation_round(run: pd.DataFrame) -> dict[str, float]:
    """The round whose global model validated best (the earliest of equals), and its
    test accuracy: a choice the test split never sees. Rounds stored before the server
    validated have none (NaN)."""
    validated = run.dropna(subset=["val_accuracy"]) if "val_accuracy" in run else run.iloc[:0]
    if validated.empty:
        return {"best_val_round": float("nan"), "accuracy_at_best_val": float("nan")}
    best = validated.loc[validated.val_accuracy.idxmax()]
    return {"best_val_round": int(best["round"]), "accuracy_at_best_val": float(best.test_accuracy)}


def _mb_to_reach(run: pd.DataFrame, accuracy: float | None) -> float:
    """Megabytes uploaded up to the first round validating at `accuracy` or above (NaN:
    never)."""
    if accuracy is None or "val_accuracy" not in run:
        return float("nan")
    reached = run[run.val_accuracy >= accuracy]
    return float(reached.mb_uploaded.iloc[0]) if len(reached) else float("nan")

"""The report's tables: the study's Table 1, the per-run table, the inference benchmark."""

from __future__ import annotations

import pandas as pd

from sparsebench.models.registry import model_display_name
from sparsebench.report.references import REFERENCES, literature_for
from sparsebench.report.results import METHOD_NAMES, Results
from sparsebench.store.db import BENCH_COLUMNS

PER_RUN_COLUMNS = [
    "run_id",
    "model",
    "width",
    "data_label",
    "layout",
    "dataset",
    "data_path",
    "method",
    "scenario",
    "seed",
    "epochs",
    "device",
    "execution",
    "derived_from",
    "test_accuracy",
    "test_balanced_accuracy",
    "test_majority_share",
    "test_f1",
    "test_loss",
    "total_train_time_s",
    "total_train_energy_j",
    "train_energy_missing_reason",
    "inference_time_per_sample_s",
    "inference_energy_j",
    "inference_energy_missing_reason",
    "sparsity_conv",
    "sparsity_linear",
    "params_dense",
    "params_effective",
    "macs_dense",
    "macs_effective",
    "train_macs_per_sample",
    "train_macs_dense_per_sample",
]


def per_run_table(results: Results) -> pd.DataFrame:
    return (
        results.runs.sort_values(["dataset", "model", "method", "scenario", "seed"])[
            PER_RUN_COLUMNS
        ]
        .rename(columns={"data_label": "data"})
        .reset_index(drop=True)
    )


def table_one(results: Results) -> pd.DataFrame:
    """Best test accuracy (over seeds) of dense and of every method in the `mixed`
    scenario, per data set and model, with the mean and spread beside it, and the
    literature's accuracies with their protocols. A cell with no result says why: "not
    run", or how its run ended ("diverged", "failed")."""
    runs = results.runs
    chosen = runs[(runs.method == "dense") | (runs.scenario == "mixed")]
    rows = []
    for dataset in results.datasets():
        names = set(runs[runs.data_label == dataset].dataset)
        for model in results.models():
            row: dict[str, object] = {"data set": dataset, "model": model_display_name(model)}
            for method in results.methods():
                values = chosen[
                    (chosen.data_label == dataset)
                    & (chosen.model == model)
                    & (chosen.method == method)
                ].test_accuracy.dropna()
                column = (
                    "Dense" if method == "dense" else f"{METHOD_NAMES.get(method, method)} (mixed)"
                )
                absent = results.ended_as("mixed", dataset, model, method) or "not run"
                row[f"{column} best"] = values.max() if len(values) else absent
                row[f"{column} mean ± sd (n)"] = _mean_spread(values) or absent
            row["literature (protocol)"] = "; ".join(
                literature_for(name, model) for name in sorted(names)
            )
            rows.append(row)
    return pd.DataFrame(rows)


def references_table(results: Results) -> pd.DataFrame:
    """Literature accuracies for the data sets and models in the results."""
    datasets = set(results.runs.dataset)
    models = set(results.runs.model)
    return pd.DataFrame(
        [
            {
                "data set": ref.dataset,
                "model": ref.model,
                "setting": ref.setting,
                "accuracy": ref.accuracy,
                "source": ref.source,
                "sd": ref.spread,
                "protocol": ref.protocol,
            }
            for ref in REFERENCES
            if ref.dataset in datasets and ref.model in models
        ]
    )


def bench_table(results: Results) -> pd.DataFrame:
    """The latest inference benchmark of each subject, variant, batch size and thread count."""
    bench = results.bench
    if bench.empty:
        return bench
    latest = (
        bench.sort_values("created_at")
        .groupby(["subject", "variant", "batch_size", "threads"], as_index=False)
        .last()
    )
    columns = ["subject", "run_id", *BENCH_COLUMNS, "max_rel_difference"]
    columns.remove("macs_per_sample")
    columns.remove("energy_source")
    return latest[columns].sort_values(["subject", "threads", "batch_size"])


def _mean_spread(values: pd.Series) -> str | None:
    if values.empty:
        return None
    if len(values) == 1:
        return f"{values.iloc[0]:.4f} (1)"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f} ({len(values)})"

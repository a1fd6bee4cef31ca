"""The report's tables: the study's Table 1, the per-run table, the inference benchmark."""

from __future__ import annotations

import pandas as pd

from sparsebench.models.registry import model_display_name
from sparsebench.report.references import REFERENCES, literature_for
from sparsebench.report.results import Results, baseline_rows, method_name
from sparsebench.report.spread import spread_of
from sparsebench.sparsity.methods import is_baseline
from sparsebench.store.schema import BENCH_COLUMNS

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
    "test_auroc",
    "test_average_precision",
    "positive_class",
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
    "params_compact",
    "macs_compact",
    "train_macs_per_sample",
    "train_macs_dense_per_sample",
    "training_macs",
    "numerics",
    "release",
    "cpu_capability",
]


def per_run_table(results: Results) -> pd.DataFrame:
    return (
        results.runs.sort_values(["dataset", "model", "method", "scenario", "seed"])[
            PER_RUN_COLUMNS
        ]
        .rename(columns={"data_label": "data"})
        .reset_index(drop=True)
    )


def _table_one_cells(results: Results):
    """(data set, model, method, its column name, test accuracies over seeds, what a cell
    without a result says) for dense and every method in the `mixed` scenario."""
    runs = results.runs
    chosen = runs[baseline_rows(runs) | (runs.scenario == "mixed")]
    for dataset in results.datasets():
        for model in results.models():
            for method in results.methods():
                runs = chosen[
                    (chosen.data_label == dataset)
                    & (chosen.model == model)
                    & (chosen.method == method)
                ]
                values = runs[results.metric.column].dropna()
                name = method_name(method)
                absent = results.ended_as("mixed", dataset, model, method) or "not run"
                if len(runs):  # finished, without this metric: AUROC of six classes
                    absent = f"no {results.metric.label}"
                yield dataset, model, method, name, values, absent


def table_one(results: Results) -> pd.DataFrame:
    """Best test accuracy (or the report's metric) over seeds of dense and of every
    method in the `mixed` scenario, per data set and model, with the mean ± sd (n) and
    the 95% interval of the mean beside it, and the literature's accuracies with their
    protocols (`table1.csv`). A cell with no result says why: "not run", how its run
    ended ("diverged", "failed"), or that the metric does not apply ("no AUROC")."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for dataset, model, method, name, values, absent in _table_one_cells(results):
        row = rows.setdefault(
            (dataset, model), {"data set": dataset, "model": model_display_name(model)}
        )
        column = name if is_baseline(method) else f"{name} (mixed)"
        spread = spread_of(values)
        row[f"{column} best"] = values.max() if len(values) else absent
        row[f"{column} mean ± sd (n)"] = spread.cell(4) if spread else absent
        row[f"{column} 95% interval"] = spread.interval(4) if spread else absent
    runs = results.runs
    for (dataset, model), row in rows.items():
        names = set(runs[runs.data_label == dataset].dataset)
        row["literature (protocol)"] = "; ".join(
            literature_for(name, model) for name in sorted(names)
        )
    return pd.DataFrame(list(rows.values()))


def table_one_page(results: Results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 as the report page shows it, to fit a screen: one cell per result, the
    mean test accuracy (or the report's metric) ± its standard deviation over seeds
    (number of seeds), to three places, and beside it, of the same shape, each cell's
    95% interval (the page shows it when the pointer rests on the cell); the best over
    seeds and the literature are in `table1.csv` and the references table. Nine
    methods fit 1280 pixels only when a cell may wrap: it wraps before the number of
    seeds, never inside `mean ± sd`."""
    rows: dict[tuple[str, str], dict[str, object]] = {}
    intervals: dict[tuple[str, str], dict[str, object]] = {}
    for dataset, model, _, name, values, absent in _table_one_cells(results):
        keys = {"data set": dataset, "model": model_display_name(model)}
        row = rows.setdefault((dataset, model), dict(keys))
        interval = intervals.setdefault((dataset, model), {key: "" for key in keys})
        spread = spread_of(values)
        row[name] = spread.cell(3).replace(" ± ", NO_BREAK_PLUS_MINUS) if spread else absent
        interval[name] = f"95% interval {spread.interval(3)}" if spread else ""
    return pd.DataFrame(list(rows.values())), pd.DataFrame(list(intervals.values()))


NO_BREAK_PLUS_MINUS = "\u00a0±\u00a0"


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

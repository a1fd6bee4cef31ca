"""The user's question in one look: which method and sparsity to pick for this box.

Every configuration (method and scenario, its seeds averaged) is a point of test
accuracy against inference time per image (as tested: the compact network for compact
runs) or against total training time; the Pareto front joins the points no other point
beats on both. The recommendation table names, per data set and model, the fastest
configuration within one accuracy point of dense, and the most accurate one within a
latency budget the user sets.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsebench.models.registry import model_display_name
from sparsebench.report.figures import METHOD_COLOURS, literal, panel_grid
from sparsebench.report.results import METHOD_NAMES, Results
from sparsebench.sparsity.methods import METHODS

# "Within one point of dense": one percentage point of test accuracy.
ACCURACY_TOLERANCE = 0.01
AXES = {
    "inference_ms": "inference time per image (ms, as tested)",
    "train_s": "total training time (s)",
}


def configurations(results: Results) -> pd.DataFrame:
    """One row per data set, model, method and scenario: seeds averaged."""
    runs = results.runs.assign(
        inference_ms=results.runs.inference_time_per_sample_s * 1e3,
        train_s=results.runs.total_train_time_s,
        scenario=results.runs.scenario.fillna("dense"),
    )
    return (
        runs.groupby(["data_label", "model", "method", "scenario"], as_index=False)
        .agg(
            accuracy=(results.metric.column, "mean"),  # the report's metric
            inference_ms=("inference_ms", "mean"),
            train_s=("train_s", "mean"),
            seeds=("seed", "nunique"),
        )
        .dropna(subset=["accuracy"])
    )


def pareto_front(cost: pd.Series, accuracy: pd.Series) -> pd.Series:
    """True where no other point costs no more and is at least as accurate, and better in
    one of the two."""
    costs, accuracies = cost.to_numpy(), accuracy.to_numpy()
    on_front = []
    for c, a in zip(costs, accuracies, strict=True):
        dominated = (costs <= c) & (accuracies >= a) & ((costs < c) | (accuracies > a))
        on_front.append(bool(np.isfinite(c)) and not dominated.any())
    return pd.Series(on_front, index=cost.index)


def tradeoff_figure(results: Results, cost: str) -> Figure:
    points = configurations(results)
    label = results.metric.label
    figure, panels = panel_grid(
        results, f"{label[0].upper()}{label[1:]} against {AXES[cost]}; Pareto front joined"
    )
    for (dataset, model), axis in panels.items():
        panel = points[(points.data_label == dataset) & (points.model == model)].dropna(
            subset=[cost]
        )
        for row in panel.itertuples():
            method = METHODS.get(row.method)
            axis.scatter(
                getattr(row, cost),
                row.accuracy,
                color=METHOD_COLOURS.get(row.method, "grey"),
                marker=method.marker if method else "o",
                s=40,
                zorder=3,
            )
            point = "dense" if row.method == "dense" else row.scenario
            axis.annotate(
                literal(point),
                (getattr(row, cost), row.accuracy),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        front = panel[pareto_front(panel[cost], panel.accuracy)].sort_values(cost)
        axis.plot(front[cost], front.accuracy, color="black", lw=1, alpha=0.6, zorder=2)
        axis.set_xlabel(AXES[cost], fontsize=8)
        axis.set_ylabel(label)
    methods = [m for m in results.methods() if m in set(points.method)]
    handles = [
        plt.Line2D(
            [],
            [],
            color=METHOD_COLOURS.get(m, "grey"),
            lw=0,
            markersize=7,
            marker=METHODS[m].marker if m in METHODS else "o",
        )
        for m in methods
    ]
    figure.legend(
        handles,
        [METHOD_NAMES.get(m, m) for m in methods],
        loc="lower center",
        ncol=min(len(methods), 9),
        fontsize=8,
        frameon=False,
    )
    figure.tight_layout(rect=(0, 0.06, 1, 0.95))
    return figure


def recommendations(results: Results, latency_budget_ms: float | None = None) -> pd.DataFrame:
    """Per data set and model: dense, the fastest configuration within one accuracy
    point of dense, and the most accurate within the latency budget."""
    points = configurations(results)
    metric = results.metric.label.removeprefix("test ")
    rows = []
    for (dataset, model), panel in points.groupby(["data_label", "model"], sort=True):
        dense = panel[panel.method == "dense"]
        row: dict[str, object] = {"data set": dataset, "model": model_display_name(model)}
        if dense.empty:
            row[f"dense {metric}"] = "not run"
            row["fastest within 1 point of dense"] = "no dense run to compare with"
        else:
            base = dense.iloc[0]
            row[f"dense {metric}"] = round(float(base.accuracy), 4)
            row["dense ms/image"] = round(float(base.inference_ms), 4)
            close = panel[
                (panel.method != "dense") & (panel.accuracy >= base.accuracy - ACCURACY_TOLERANCE)
            ].dropna(subset=["inference_ms"])
            row["fastest within 1 point of dense"] = (
                _name(close.loc[close.inference_ms.idxmin()], metric) if len(close) else "none"
            )
        if latency_budget_ms is None:
            row[_budget_column(None)] = "give report --latency-budget-ms"
        else:
            within = panel[panel.inference_ms <= latency_budget_ms]
            row[_budget_column(latency_budget_ms)] = (
                _name(within.loc[within.accuracy.idxmax()], metric) if len(within) else "none"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _budget_column(budget: float | None) -> str:
    if budget is None:
        return "most accurate within budget"
    return f"most accurate within {budget:g} ms/image"


def _name(row: pd.Series, metric: str) -> str:
    method = METHOD_NAMES.get(row.method, row.method)
    where = "" if row.method == "dense" else f", {row.scenario}"
    return f"{method}{where}: {metric} {row.accuracy:.4f}, {row.inference_ms:.4g} ms/image"

"""The user's question in one look: which method and sparsity to pick for this box.

Every configuration (method and scenario, its seeds averaged) is a point of test
accuracy against inference time per image (as tested: the compact network for compact
runs) or against total training time; the Pareto front joins the points no other point
beats on both. The recommendation table names, per data set and model, the fastest
configuration within one accuracy point of dense, and the most accurate one within a
latency budget the user sets.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from sparsebench.models.registry import model_display_name
from sparsebench.report.compare import CONFIGURATION, by_seed, configuration_runs, keyed_runs
from sparsebench.report.figures import (
    literal,
    method_colour,
    method_legend,
    panel_grid,
    seed_note,
)
from sparsebench.report.foundations import foundations
from sparsebench.report.results import Cost, Results, baseline_rows, method_name
from sparsebench.report.spread import (
    ALPHA,
    difference_p,
    difference_text,
    paired_difference,
    spread_of,
)
from sparsebench.sparsity.methods import METHODS, baseline_name, is_baseline

# "Within one point of dense": one percentage point of test accuracy (a difference of
# exactly one point, 0.89 against 0.90, is within, whatever the floats' last bits say).
ACCURACY_TOLERANCE = 0.01 + 1e-9
AXES = {
    "inference_ms": "inference time per image (ms, as tested)",
    "mmacs": "multiply-adds per image (millions)",
    "train_s": "total training time (s)",
}


def configurations(results: Results) -> pd.DataFrame:
    """One row per data set, model, method and scenario: seeds averaged, the metric's
    standard deviation over seeds beside its mean (NaN for one seed)."""
    runs = keyed_runs(results)
    runs = runs.assign(
        inference_ms=runs.inference_time_per_sample_s * 1e3,
        # what the network that runs computes: the compact one's where it trained so
        mmacs=runs.macs_compact.fillna(runs.macs_effective) / 1e6,
        train_s=runs.total_train_time_s,
    )
    return (
        runs.groupby(CONFIGURATION, as_index=False)
        .agg(
            accuracy=(results.metric.column, "mean"),  # the report's metric
            accuracy_sd=(results.metric.column, "std"),
            inference_ms=("inference_ms", "mean"),
            mmacs=("mmacs", "mean"),
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
    return pd.Series(on_front, index=cost.index, dtype=bool)


def tradeoff_figure(results: Results, cost: str) -> Figure:
    points = configurations(results)
    label = results.metric.label
    figure, panels = panel_grid(
        results,
        f"{results.metric.heading} against {AXES[cost]}; Pareto front joined"
        f"{seed_note(results.runs) or '; whiskers: sd over seeds'}",
    )
    for (dataset, model), axis in panels.items():
        panel = points[(points.data_label == dataset) & (points.model == model)].dropna(
            subset=[cost]
        )
        on_front = pareto_front(panel[cost], panel.accuracy)
        for row, first in zip(panel.itertuples(), on_front, strict=True):
            _draw_point(axis, row, getattr(row, cost), first)
        front = panel[on_front].sort_values(cost)
        axis.plot(front[cost], front.accuracy, color="black", lw=1, alpha=0.6, zorder=2)
        axis.set_xlabel(AXES[cost], fontsize=8)
        axis.set_ylabel(label)
    methods = [m for m in results.methods() if m in set(points.method)]
    handles = [
        plt.Line2D(
            [],
            [],
            color=method_colour(m),
            lw=0,
            markersize=7,
            marker=METHODS[m].marker if m in METHODS else "o",
        )
        for m in methods
    ]
    method_legend(figure, handles, [method_name(m) for m in methods])
    drop_colliding_labels(figure)
    return figure


def drop_colliding_labels(figure: Figure) -> None:
    """Keep a point's label only where it overlaps no label kept before it (the Pareto
    front's first) and no other point's marker: crowded points are told apart by the
    legend's markers instead of by text printed over text or hidden under a marker."""
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        markers = _marker_boxes(axis)
        labels = [text for text in axis.texts if text.get_gid() in ("front", "point")]
        labels.sort(key=lambda text: text.get_gid() != "front")
        kept: list[Bbox] = []
        for text in labels:
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            anchor = axis.transData.transform(text.xy)
            covered = any(
                box.overlaps(marker) and not marker.contains(*anchor) for marker in markers
            )
            if covered or any(box.overlaps(other) for other in kept):
                text.remove()
            else:
                kept.append(box)


def _marker_boxes(axis: Axes) -> list[Bbox]:
    """The display box of every scattered marker of the axis."""
    boxes = []
    for collection in axis.collections:
        if not isinstance(collection, PathCollection) or not len(collection.get_offsets()):
            continue  # whiskers are line collections: a label may cross one
        sizes = collection.get_sizes()
        # a marker of area s points² is about sqrt(s) points across
        half = np.sqrt(sizes.max()) * axis.figure.dpi / 72 / 2
        for x, y in collection.get_offset_transform().transform(collection.get_offsets()):
            boxes.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    return boxes


def _draw_point(axis: Axes, row: Any, cost: float, on_front: bool = False) -> None:
    """One configuration: its marker, its seeds' sd as a whisker, its scenario named."""
    method = METHODS.get(row.method)
    if row.accuracy_sd > 0:  # several seeds: one standard deviation either way
        axis.errorbar(
            cost,
            row.accuracy,
            yerr=row.accuracy_sd,
            color=method_colour(row.method),
            lw=0.8,
            alpha=0.6,
            zorder=2,
        )
    axis.scatter(
        cost,
        row.accuracy,
        color=method_colour(row.method),
        marker=method.marker if method else "o",
        s=40,
        zorder=3,
    )
    point = row.method if is_baseline(row.method) else row.scenario
    axis.annotate(
        literal(point),
        (cost, row.accuracy),
        fontsize=6,
        xytext=(3, 3),
        textcoords="offset points",
        gid="front" if on_front else "point",
    )


def recommendations(results: Results, latency_budget_ms: float | None = None) -> pd.DataFrame:
    """Per data set and model: dense, the cheapest configuration within one point of
    dense (the fastest, or with `results.cost` "macs" the fewest multiply-adds), and the
    most accurate within the latency budget.

    "Within one point" is judged on the 95% interval of the paired difference from
    dense (over shared seeds): a configuration qualifies when the whole interval lies
    above minus one point. When none does (one seed has no interval; a few noisy seeds
    a wide one), the cell says so and names the cheapest whose mean does, as the
    candidate to run more seeds of. The most accurate within the budget is ranked by the
    mean, and the cell counts the others not shown worse than it. Each row says what it
    rests on (`foundations`)."""
    points = configurations(results)
    groups = configuration_runs(results)
    column = results.metric.column
    metric = results.metric.label.removeprefix("test ")
    cost = results.cost
    rows = []
    for (dataset, model), panel in points.groupby(["data_label", "model"], sort=True):
        row: dict[str, object] = {"data set": dataset, "model": model_display_name(model)}
        dense_runs = groups.get((dataset, model, baseline_name(), baseline_name()))
        dense = panel[baseline_rows(panel)]
        row["rests on"] = foundations(dense_runs, results.epochs, column, results.margin)
        if dense.empty or dense_runs is None:
            row[f"dense {metric}"] = "not run"
            row[close_column(cost)] = "no dense run to compare with"
        else:
            dense_spread = spread_of(dense_runs[column])
            row[f"dense {metric}"] = dense_spread.cell(4) if dense_spread else "n/a"
            row[f"dense {cost.unit}"] = round(float(dense.iloc[0][cost.column]), 4)
            row[close_column(cost)] = _cheapest_close(
                panel, groups, by_seed(dense_runs, column), column, metric, cost
            )
        if latency_budget_ms is None:
            # Ranked by multiply-adds, times are not compared: no budget is hinted at.
            if cost.name == "latency":
                row[_budget_column(None)] = "give report --latency-budget-ms"
        else:
            within = panel[panel.inference_ms <= latency_budget_ms]
            row[_budget_column(latency_budget_ms)] = (
                _most_accurate(within, groups, column, metric) if len(within) else "none"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def close_column(cost: Cost) -> str:
    return f"{cost.cheapest} within 1 point of dense"


def _cheapest_close(
    panel: pd.DataFrame,
    groups: dict[tuple[str, str, str, str], pd.DataFrame],
    dense: pd.Series,
    column: str,
    metric: str,
    cost: Cost,
) -> str:
    shown, by_mean = [], []
    for point in panel[~baseline_rows(panel)].dropna(subset=[cost.column]).itertuples():
        runs = groups[(point.data_label, point.model, point.method, point.scenario)]
        difference = paired_difference(by_seed(runs, column), dense)
        if difference is None:
            continue
        price = getattr(point, cost.column)
        if difference.low is not None and difference.low >= -ACCURACY_TOLERANCE:
            shown.append((price, point, difference))
        elif difference.mean >= -ACCURACY_TOLERANCE:
            by_mean.append((price, point, difference))
    if shown:
        _, point, difference = min(shown, key=lambda item: item[0])
        return f"{_name(point, metric, cost)}; minus dense {difference_text(difference)}"
    if by_mean:
        _, point, difference = min(by_mean, key=lambda item: item[0])
        return (
            f"none shown at 95%; by the mean: {_name(point, metric, cost)}; minus dense "
            f"{difference_text(difference)}"
        )
    return "none"


def _most_accurate(
    within: pd.DataFrame,
    groups: dict[tuple[str, str, str, str], pd.DataFrame],
    column: str,
    metric: str,
) -> str:
    ranked = within.sort_values("accuracy", ascending=False)
    best = ranked.iloc[0]
    best_seeds = by_seed(groups[(best.data_label, best.model, best.method, best.scenario)], column)
    if best_seeds.size < 2:
        return f"{_name(best, metric)} (one seed: not ranked against the others)"
    close = 0
    for other in ranked.iloc[1:].itertuples():
        seeds = by_seed(
            groups[(other.data_label, other.model, other.method, other.scenario)], column
        )
        difference = paired_difference(seeds, best_seeds)
        shown_worse = (
            difference is not None
            and difference.sd is not None
            and difference.mean < 0
            and difference_p(difference) < ALPHA
        )
        close += not shown_worse
    return _name(best, metric) + (f"; {close} other(s) not shown worse than it" if close else "")


def _budget_column(budget: float | None) -> str:
    if budget is None:
        return "most accurate within budget"
    return f"most accurate within {budget:g} ms/image"


def _name(row: pd.Series, metric: str, cost: Cost | None = None) -> str:
    """The configuration, its metric and its cost: time per image, and with `cost` the
    multiply-adds the recommendation ranked by, its time beside them."""
    method = method_name(row.method)
    where = "" if is_baseline(row.method) else f", {row.scenario}"
    named = f"{method}{where}: {metric} {row.accuracy:.4f}"
    if cost is not None and cost.column != "inference_ms":
        named += f", {getattr(row, cost.column):.4g} {cost.unit}"
    return f"{named}, {row.inference_ms:.4g} ms/image"

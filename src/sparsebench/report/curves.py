"""Where a method breaks: the report's metric against sparsity, the view every pruning
paper uses. One curve per method through the mean over seeds at each conv target, with
a band from the lowest to the highest seed; dense as a horizontal band. Drawn when some
method ran at two conv targets or more (a sweep's `sparsities:` axis)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from sparsebench.report.figures import (
    _legend,
    method_colour,
    method_line,
    panel_grid,
    seed_note,
)
from sparsebench.report.results import Results, baseline_rows
from sparsebench.sparsity.methods import baseline_name, is_baseline

# What the curves run along: the conv target, the multiply-adds the pruned network still
# executes per image (as a share of dense), or the inference time per test image that
# every run measures as it was tested (the compact network for compact runs).
AXES = {
    "conv_target": "conv filters pruned (target)",
    "macs_share": "multiply-adds per image, share of dense",
    "inference_ms": "inference time per image (ms, as tested)",
}


def has_curves(results: Results) -> bool:
    sparse = results.runs[~baseline_rows(results.runs)]
    targets = sparse.groupby(["data_label", "model", "method"]).conv_target.nunique()
    return bool((targets >= 2).any())


def sparsity_figure(results: Results, axis_name: str) -> Figure:
    metric = results.metric
    runs = results.runs.assign(
        macs_share=results.runs.macs_effective / results.runs.macs_dense,
        inference_ms=results.runs.inference_time_per_sample_s * 1e3,
    )
    figure, panels = panel_grid(
        results,
        f"{metric.heading} against {AXES[axis_name]}{seed_note(results.runs)}",
    )
    for (dataset, model), axis in panels.items():
        panel = runs[(runs.data_label == dataset) & (runs.model == model)]
        dense = panel[baseline_rows(panel)][metric.column].dropna()
        if len(dense):
            axis.axhspan(dense.min(), dense.max(), color="grey", alpha=0.2, lw=0)
            axis.axhline(dense.mean(), color=method_colour(baseline_name()), lw=1)
        for method in results.methods():
            if is_baseline(method):
                continue
            points = _points(panel[panel.method == method], axis_name, metric.column)
            if points.empty:
                continue
            colour, style = method_colour(method), method_line(method)
            for piece in same_seed_count_pieces(points):
                axis.plot(piece.x, piece["mean"], marker="o", ms=3, color=colour, ls=style, lw=1.2)
                axis.fill_between(piece.x, piece["min"], piece["max"], color=colour, alpha=0.15)
        axis.set_xlabel(AXES[axis_name], fontsize=8)
        axis.set_ylabel(metric.label)
    _legend(figure, results.methods())
    return figure


def _points(runs: pd.DataFrame, axis_name: str, column: str) -> pd.DataFrame:
    """Per conv target: where it lies on the axis (mean over seeds), the metric's mean,
    lowest and highest over seeds, and how many seeds."""
    if runs.empty:
        return pd.DataFrame()
    grouped = runs.dropna(subset=[column]).groupby("conv_target")
    points = pd.DataFrame(
        {
            "x": grouped[axis_name].mean(),
            "mean": grouped[column].mean(),
            "min": grouped[column].min(),
            "max": grouped[column].max(),
            "seeds": grouped.seed.nunique(),
        }
    )
    return points.sort_values("x")


def same_seed_count_pieces(points: pd.DataFrame) -> list[pd.DataFrame]:
    """A curve cut where its seed count changes: a line from a three-seed mean to a
    one-seed value draws a zig-zag that is the seeds, not the sparsity."""
    piece_of = (points.seeds != points.seeds.shift()).cumsum()
    return [piece for _, piece in points.groupby(piece_of, sort=False)]

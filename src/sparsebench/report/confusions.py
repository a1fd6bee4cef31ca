"""Where each network errs: per data set, the test confusion matrices of dense and of
every method in the `mixed` scenario (Table 1's), one row per model, summed over seeds.
Each row of a matrix is normalised to the true class's images, so its diagonal is the
per-class recall: a network that calls every defect good shows an empty defect row."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sparsebench.models.registry import model_display_name
from sparsebench.report.figures import literal, plt
from sparsebench.report.results import Results, baseline_rows, method_name

# Class names are written on the axes up to this many classes; beyond, indices.
NAMED_CLASSES = 10


def shown_scenario(runs: pd.DataFrame) -> str | None:
    """The scenario whose matrices are drawn beside dense's: `mixed`, Table 1's, where
    the data has runs in it; else (a grid of sparsity lists alone) the one that most
    methods ran, and among those the nearest to mixed's targets (conv 0.5, linear 0.8);
    None with no sparse run."""
    sparse = runs[~baseline_rows(runs)]
    if (sparse.scenario == "mixed").any():
        return "mixed"
    if sparse.empty:
        return None
    scenarios = sparse.groupby("scenario").agg(
        methods=("method", "nunique"),
        conv=("conv_target", "first"),
        linear=("linear_target", "first"),
    )
    scenarios["distance"] = (scenarios.conv - 0.5).abs() + (scenarios.linear - 0.8).abs()
    ranked = scenarios.sort_values(["methods", "distance"], ascending=[False, True])
    return str(ranked.index[0])


def confusion_figure(results: Results, dataset: str) -> Figure:
    runs = results.runs[results.runs.data_label == dataset]
    scenario = shown_scenario(runs)
    runs = runs[baseline_rows(runs) | (runs.scenario == scenario)]
    models = [m for m in results.models() if m in set(runs.model)]
    methods = [m for m in results.methods() if m in set(runs.method)]
    width = max(1.9 * len(methods) + 1.2, 4.0)
    figure, axes = plt.subplots(
        len(models), len(methods), figsize=(width, 2.1 * len(models) + 1.2), squeeze=False
    )
    shown = "dense" if scenario is None else f"dense and scenario {scenario}"
    what = f"{shown} (rows: true class, shares of its images; summed over seeds)"
    # About 13 characters of 10-point text to an inch: the title wraps to the figure,
    # and the data's name, on a line of its own, is never broken.
    title = f"Test confusion matrices on {dataset}\n{textwrap.fill(what, int(width * 13))}"
    figure.suptitle(literal(title), fontsize=10)
    names = next((n for n in runs.class_names if n), [])
    for row, model in enumerate(models):
        for column, method in enumerate(methods):
            axis = axes[row][column]
            chosen = runs[(runs.model == model) & (runs.method == method)]
            matrices = [np.array(c, dtype=float) for c in chosen.test_confusion if c]
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(literal(method_name(method)), fontsize=8)
            if column == 0:
                axis.set_ylabel(literal(model_display_name(model)), fontsize=8)
            if not matrices:
                axis.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=8)
                continue
            total = sum(matrices)
            shares = total / np.maximum(total.sum(axis=1, keepdims=True), 1)
            axis.imshow(shares, vmin=0, vmax=1, cmap="Blues")
            size = len(shares)
            if size <= NAMED_CLASSES and column == 0 and len(names) == size:
                axis.set_yticks(range(size), [literal(n) for n in names], fontsize=6)
            if size <= 4:
                for i in range(size):
                    for j in range(size):
                        colour = "white" if shares[i, j] > 0.6 else "black"
                        axis.text(
                            j,
                            i,
                            f"{shares[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6,
                            color=colour,
                        )
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    return figure

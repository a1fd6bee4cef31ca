"""Where each network errs: per data set, the test confusion matrices of dense and of
every method in the `mixed` scenario (Table 1's), one row per model, summed over seeds.
Each row of a matrix is normalised to the true class's images, so its diagonal is the
per-class recall: a network that calls every defect good shows an empty defect row."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from sparsebench.models.registry import model_display_name
from sparsebench.report.figures import literal, plt
from sparsebench.report.results import Results, baseline_rows, method_name

# Class names are written on the axes up to this many classes; beyond, indices.
NAMED_CLASSES = 10


def confusion_figure(results: Results, dataset: str) -> Figure:
    runs = results.runs[results.runs.data_label == dataset]
    runs = runs[baseline_rows(runs) | (runs.scenario == "mixed")]
    models = [m for m in results.models() if m in set(runs.model)]
    methods = [m for m in results.methods() if m in set(runs.method)]
    figure, axes = plt.subplots(
        len(models),
        len(methods),
        figsize=(1.9 * len(methods) + 1.2, 2.1 * len(models) + 1.0),
        squeeze=False,
    )
    figure.suptitle(
        literal(
            f"Test confusion matrices on {dataset}, dense and scenario mixed "
            "(rows: true class, shares of its images; summed over seeds)"
        ),
        fontsize=10,
    )
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
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    return figure

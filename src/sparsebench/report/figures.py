"""The study's figures: per scenario, one panel per data set and model, a line or a bar
per method, the mean over seeds with its spread, units on every axis.

A method that was not run, or a measurement that is missing (energy on a machine without
a readable sensor), is written into its panel as such: it is never drawn as zero.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sparsebench.models.registry import model_display_name  # noqa: E402
from sparsebench.report.results import Results, method_name  # noqa: E402
from sparsebench.sparsity.methods import METHODS  # noqa: E402


def method_colour(method: str) -> str:
    known = METHODS.get(method)
    return "grey" if known is None else known.colour


def method_line(method: str) -> str | tuple:
    known = METHODS.get(method)
    return "-" if known is None else known.linestyle


@dataclass(frozen=True)
class CurveMetric:
    column: str
    title: str
    unit: str


@dataclass(frozen=True)
class BarMetric:
    column: str
    title: str
    unit: str
    scale: float = 1.0
    missing_reason: str | None = None  # the column saying why a value is missing
    energy: bool = False
    training: bool = False  # a cost of training: it depends on the run's execution
    levels: bool = False  # draw the majority-class and chance levels of the test split


CURVES = [
    CurveMetric("train_accuracy", "Training accuracy per epoch", "accuracy (fraction correct)"),
    CurveMetric("train_loss", "Training loss per epoch", "cross-entropy loss"),
]
BARS = [
    BarMetric("total_train_time_s", "Total training time", "seconds", training=True),
    BarMetric("test_accuracy", "Test accuracy", "accuracy (fraction correct)", levels=True),
    BarMetric(
        "total_train_energy_j",
        "Total training energy",
        "joules",
        missing_reason="train_energy_missing_reason",
        energy=True,
        training=True,
    ),
    BarMetric(
        "inference_time_per_sample_s", "Average inference time", "milliseconds per image", 1e3
    ),
    BarMetric(
        "inference_energy_j",
        "Inference energy (test split, model load included)",
        "joules",
        missing_reason="inference_energy_missing_reason",
        energy=True,
    ),
]


@dataclass
class FigureNotes:
    """What a figure shows besides its drawing: counts of measured and missing values."""

    measured: int = 0
    missing: int = 0
    reasons: set[str] = field(default_factory=set)
    not_run: list[str] = field(default_factory=list)
    executions: Counter[str] = field(default_factory=Counter)  # runs drawn, by execution


def seed_note(runs: pd.DataFrame) -> str:
    """What a figure says when no point of it has a second seed: its bands and whiskers
    are absent, not narrow."""
    keys = ["data_label", "model", "method", "scenario"]
    if runs.empty or runs.fillna({"scenario": ""}).groupby(keys).seed.nunique().max() > 1:
        return ""
    return "; one seed: no spread shown"


def literal(text: str) -> str:
    """Text from the data shown as it is: matplotlib reads `$...$` as mathematics."""
    return text.replace("$", r"\$")


def panel_grid(results: Results, title: str) -> tuple[Figure, dict[tuple[str, str], plt.Axes]]:
    datasets, models = results.datasets(), results.models()
    figure, axes = plt.subplots(
        len(datasets),
        len(models),
        figsize=(max(7.0, 4.4 * len(models)), 3.3 * len(datasets) + 0.9),
        squeeze=False,
    )
    # about eleven characters of an 11-point title per inch of figure: wrap, not clip
    figure.suptitle(literal(textwrap.fill(title, int(figure.get_figwidth() * 11))), fontsize=11)
    runs = results.runs
    panels = {}
    for row, dataset in enumerate(datasets):
        for column, model in enumerate(models):
            axis = axes[row][column]
            axis.set_title(literal(f"{model_display_name(model)} on {dataset}"), fontsize=9)
            axis.grid(alpha=0.3)
            if not ((runs.data_label == dataset) & (runs.model == model)).any():
                # A grid run in part (a sweep still going, `--only`): say so, no empty axes.
                axis.text(0.5, 0.5, "no finished runs", ha="center", va="center",
                          transform=axis.transAxes, color="grey")  # fmt: skip
                axis.set_xticks([])
                axis.set_yticks([])
            panels[(dataset, model)] = axis
    return figure, panels


def _legend(figure: Figure, methods: list[str], bars: bool = False) -> None:
    handles = [
        Patch(color=method_colour(m), alpha=0.85)
        if bars
        else plt.Line2D([], [], color=method_colour(m), linestyle=method_line(m), lw=2)
        for m in methods
    ]
    method_legend(figure, handles, [method_name(m) for m in methods])


def method_legend(figure: Figure, handles: list[Any], labels: list[str]) -> None:
    """The methods' key in one column right of the panels, laid out after them: it grows
    downwards with the number of methods, where a row across the top ran off both edges
    of the figure at eleven methods. The figure is saved with a tight box to hold it."""
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    figure.legend(
        handles,
        labels,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        handlelength=2.5,
        frameon=False,
    )


def curve_figure(
    results: Results, scenario: str, metric: CurveMetric
) -> tuple[Figure, FigureNotes]:
    """Lines: the mean over seeds per epoch; band: the lowest to the highest seed."""
    notes = FigureNotes()
    epochs = results.in_scenario(results.epochs, scenario)
    runs = results.in_scenario(results.runs, scenario)
    figure, panels = panel_grid(results, f"{metric.title}, scenario {scenario}{seed_note(runs)}")
    methods = results.methods()
    for (dataset, model), axis in panels.items():
        panel = epochs[(epochs.data_label == dataset) & (epochs.model == model)]
        not_run = []
        for method in methods:
            rows = panel[panel.method == method]
            if rows.empty:
                not_run.append(method)
                notes.not_run.append(f"{method_name(method)} ({model}, {dataset})")
                continue
            by_epoch = rows.groupby("epoch")[metric.column]
            mean, low, high = by_epoch.mean(), by_epoch.min(), by_epoch.max()
            x = mean.index + 1
            colour = method_colour(method)
            axis.plot(x, mean.values, color=colour, linestyle=method_line(method))
            axis.fill_between(x, low.values, high.values, color=colour, alpha=0.15, lw=0)
        _mark_not_run(axis, not_run)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric.unit)
    _legend(figure, methods)
    return figure, notes


def bar_figure(results: Results, scenario: str, metric: BarMetric) -> tuple[Figure, FigureNotes]:
    """Bars: the mean over seeds; whiskers: the standard deviation; dots: each seed."""
    notes = FigureNotes()
    runs = results.in_scenario(results.runs, scenario)
    devices = ", ".join(sorted(set(runs.device.dropna()))) or "unknown device"
    how = f"on {devices}"
    if metric.training:
        executions = sorted(set(runs.execution))
        how += f", {' and '.join(executions)} execution"
        if len(executions) > 1:
            how += ": masked bars hatched"
    figure, panels = panel_grid(
        results, f"{metric.title}, scenario {scenario} ({how}){seed_note(runs)}"
    )
    methods = results.methods()
    positions = np.arange(len(methods))
    for (dataset, model), axis in panels.items():
        panel = runs[(runs.data_label == dataset) & (runs.model == model)]
        top = panel[metric.column].max() * metric.scale
        label_y = 0.02 * (top if top > 0 else 1)  # NaN (nothing measured) compares False
        for position, method in zip(positions, methods, strict=True):
            rows = panel[panel.method == method]
            if rows.empty:
                ended = results.ended_as(scenario, dataset, model, method)
                if ended is None:
                    notes.not_run.append(f"{method_name(method)} ({model}, {dataset})")
                _slot_text(axis, position, label_y, ended or "not run")
                continue
            if metric.training:
                notes.executions.update(rows.execution)
            values = rows[metric.column] * metric.scale
            measured = values.dropna()
            notes.measured += len(measured)
            notes.missing += len(values) - len(measured)
            if metric.missing_reason:
                notes.reasons.update(rows[metric.missing_reason].dropna())
            if measured.empty:
                _slot_text(axis, position, label_y, "missing")
                continue
            spread = measured.std(ddof=1) if len(measured) > 1 else 0.0
            masked = metric.training and (rows.execution == "masked").any()
            axis.bar(
                position,
                measured.mean(),
                color=method_colour(method),
                alpha=0.85,
                yerr=spread if len(measured) > 1 else None,
                capsize=3,
                hatch="//" if masked and runs.execution.nunique() > 1 else None,
            )
            axis.scatter(np.full(len(measured), position), measured, s=9, color="black", zorder=3)
        axis.set_xticks(positions, [method_name(m) for m in methods], rotation=30, ha="right")
        axis.set_xlim(-0.6, len(methods) - 0.4)
        if metric.levels:
            _draw_levels(axis, panel)
        axis.set_ylabel(metric.unit)
        if panel[metric.column].isna().all() and not panel.empty:
            reasons = sorted(panel[metric.missing_reason].dropna()) if metric.missing_reason else []
            _missing_panel(axis, reasons[0] if reasons else "not measured")
        axis.tick_params(axis="x", labelsize=8)
    _legend(figure, methods, bars=True)
    return figure, notes


LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1}


def _draw_levels(axis: plt.Axes, panel: pd.DataFrame) -> None:
    """The accuracy a network that learned nothing reaches: always answering the test
    split's largest class, and guessing uniformly (drawn only where it differs). On
    imbalanced inspection data the first is far above the second, and a bar at it means
    the network finds no defect."""
    majority = panel.test_majority_share.dropna()
    chance = panel.test_chance.dropna()
    if majority.empty:
        return
    level = float(majority.max())
    axis.axhline(level, color="black", linestyle="--", linewidth=0.9, zorder=4)
    axis.annotate(
        f"majority class {level:.3f}",
        (0.99, level),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=7,
        bbox=LABEL_BOX,
    )
    if not chance.empty and abs(float(chance.max()) - level) > 0.01:
        axis.axhline(float(chance.max()), color="grey", linestyle=":", linewidth=0.9, zorder=4)
        axis.annotate(
            f"chance {float(chance.max()):.3f}",
            (0.99, float(chance.max())),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=7,
            bbox=LABEL_BOX,
        )


def _missing_panel(axis: plt.Axes, reason: str) -> None:
    """A panel with no measured value at all says so across its face."""
    axis.set_yticks([])
    axis.text(
        0.5,
        0.55,
        "missing (not zero):\n" + textwrap.fill(reason, 40),
        transform=axis.transAxes,
        ha="center",
        va="center",
        fontsize=8,
        color="#a33",
    )


def _slot_text(axis: plt.Axes, position: float, y: float, text: str) -> None:
    axis.text(position, y, text, rotation=90, ha="center", va="bottom", fontsize=8, color="grey")


def _mark_not_run(axis: plt.Axes, methods: list[str]) -> None:
    if methods:
        names = ", ".join(method_name(m) for m in methods)
        axis.text(
            0.02, 0.02, f"not run: {names}", transform=axis.transAxes, fontsize=7, color="grey"
        )

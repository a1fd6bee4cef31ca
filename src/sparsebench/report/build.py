"""`sparsebench report`: every figure and table of the study from a results database,
written with an `index.html` that opens from the file system (no server, no network).

The report is built in a temporary folder beside `out_dir` and moved into place whole,
so a failed or interrupted report never leaves a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from sparsebench.errors import InputError
from sparsebench.report.compare import against_dense
from sparsebench.report.confusions import confusion_figure
from sparsebench.report.curves import has_curves, sparsity_figure
from sparsebench.report.entries import FigureEntry, Report, Tables
from sparsebench.report.federated import federated_figure, federated_summary, load_federated
from sparsebench.report.figures import BARS, CURVES, FigureNotes, bar_figure, curve_figure
from sparsebench.report.page import (
    federated_page,
    figure_html,
    html_table,
    index_html,
    sections,
)
from sparsebench.report.producers import mixed_configurations
from sparsebench.report.results import (
    COSTS,
    METRICS,
    Cost,
    Results,
    load_results,
)
from sparsebench.report.spread import MARGIN
from sparsebench.report.tables import (
    bench_table,
    per_run_table,
    references_table,
    table_one,
    table_one_page,
)
from sparsebench.report.tradeoff import (
    close_column,
    recommendations,
    tradeoff_figure,
)

MARKER = ".sparsebench-report"


def build_report(
    db: str | Path,
    out_dir: str | Path,
    latency_budget_ms: float | None = None,
    svg: bool = True,
    metric: str = "accuracy",
    select: str | None = None,
    rank_by: str = "latency",
    margin: float = MARGIN,
) -> Report:
    """`svg=False` writes PNG figures only: a report committed to a repository or mailed
    is half the size. `metric` (a key of METRICS) is what Table 1, the trade-off figures
    and the recommendations compare methods by; `select` whose weights' test metrics
    every figure and table shows: the best validation epoch's (by default, where the
    runs kept them) or the last epoch's;
    `rank_by` (a key of COSTS) what the recommendations call the cheapest by; `margin`
    the difference from dense that counts as none (equivalence, `report.spread`)."""
    db, out_dir = Path(db), Path(out_dir)
    if metric not in METRICS:
        raise InputError(f"--metric: unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    if rank_by not in COSTS:
        raise InputError(f"--rank-by: expected {' or '.join(COSTS)}, got {rank_by!r}")
    _check_replaceable(out_dir)
    results = replace(
        load_results(db, select), metric=METRICS[metric], cost=COSTS[rank_by], margin=margin
    )
    if results.empty and results.left_out:
        raise InputError(
            f"{db}: none of its {results.left_out} finished run(s) has best-validation "
            "metrics (they were stored before sparsebench kept them): report --select last"
        )
    federated = load_federated(db)
    if results.empty and federated.empty:
        raise InputError(f"{db}: no finished runs to report")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        report = _write(results, federated, db, staging, latency_budget_ms, svg)
        _replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.out_dir = out_dir
    report.index = out_dir / "index.html"
    report.tables = [out_dir / path.name for path in report.tables]
    return report


def _check_replaceable(out_dir: Path) -> None:
    """A report replaces only an empty folder or an earlier report: `--out .` must never
    take a user's folder with it."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: a file, not a folder for the report; choose another --out")
    entries = {entry.name for entry in out_dir.iterdir()}
    earlier_report = MARKER in entries or {"index.html", "figures"} <= entries
    if entries and not earlier_report:
        raise InputError(
            f"{out_dir}: a folder that is not an earlier sparsebench report (it would be "
            "replaced whole); choose an empty or new --out"
        )


def _replace_folder(staging: Path, out_dir: Path) -> None:
    os.chmod(staging, 0o755)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out_dir)


def _write(
    results: Results,
    federated: pd.DataFrame,
    db: Path,
    folder: Path,
    latency_budget_ms: float | None,
    svg: bool,
) -> Report:
    report = Report(out_dir=folder, index=folder / "index.html", svg=svg)
    (folder / MARKER).write_text("written by sparsebench report; replaced by the next one\n")
    (folder / "figures").mkdir()
    federated_parts = _federated_section(federated, report)
    if results.empty:
        page = federated_page(db, federated_parts)
    else:
        _draw_figures(results, report)
        tables = _write_tables(results, report, latency_budget_ms)
        page = index_html(results, db, report, tables, federated_parts)
    (folder / "index.html").write_text(page)
    return report


def answers(advice: pd.DataFrame, cost: Cost) -> list[str]:
    """Each data set and model's recommendation in one line, with what it rests on."""
    close = close_column(cost)
    return [
        f"{row['data set']}, {row['model']}: {close}: {row[close]} (rests on: {row['rests on']})"
        for _, row in advice.iterrows()
    ]


def _federated_section(federated: pd.DataFrame, report: Report) -> list[str]:
    """The federated runs' figure and round table (nothing without federated runs)."""
    if federated.empty:
        return []
    title = "Federated runs: test accuracy against rounds and megabytes uploaded"
    entry = _save(federated_figure(federated), report, "federated", "accuracy", title)
    report.figures.append(entry)
    path = report.out_dir / "federated_rounds.csv"
    federated.to_csv(path, index=False)
    report.tables.append(path)
    summary = federated_summary(federated)
    summary_path = report.out_dir / "federated_summary.csv"
    summary.to_csv(summary_path, index=False)
    report.tables.append(summary_path)
    shown = summary.drop(columns=["run_id"]).rename(columns=FEDERATED_SUMMARY_HEADINGS)
    formats = {heading: "{:.3f}" for heading in FEDERATED_SUMMARY_HEADINGS.values()}
    formats.update({"round s": "{:.1f}", "rounds": "{:d}", "data": "{}"})
    return [
        "<h2 id='federated'>Federated runs</h2>",
        "<p>Each round's global model on the held-out test split; megabytes are the "
        "clients' replies as serialised by Flower, summed from the set-up (round 0). "
        "<a href='federated_rounds.csv'>CSV</a> of every round, with bytes down, failed "
        "clients and round times.</p>",
        figure_html(report, entry),
        "<p>Whether sparse training paid: the megabytes each run uploaded until its "
        "global model first reached the final accuracy of dense FedAvg in the same "
        "federation (same data, model, clients and seed), and that as a share of what "
        "dense uploaded to get there; missing: never reached, or no dense run in that "
        "federation. "
        "<a href='federated_summary.csv'>CSV</a>.</p>",
        f"<div class='scroll'>{html_table(shown, formats)}</div>",
    ]


FEDERATED_SUMMARY_HEADINGS = {
    "data_label": "data",
    "final_accuracy": "final test accuracy",
    "final_val_accuracy": "final validation accuracy",
    "best_val_round": "best validation round",
    "accuracy_at_best_val": "its test accuracy",
    "mb_uploaded": "MB uploaded",
    "mb_per_round": "MB up a round",
    "setup_mb_up": "set-up MB up",
    "round_s": "round s",
    "mb_to_dense_final": "MB to dense's final validation accuracy",
    "of_dense_mb": "of dense's MB",
}


def _draw_figures(results: Results, report: Report) -> None:
    metric = results.metric.heading
    # Ranked by multiply-adds, the times as tested are not comparisons between runs:
    # the figures that would read them as such draw multiply-adds or are left out.
    by_time = results.cost.name == "latency"
    per_image = "inference_ms" if by_time else "mmacs"
    for cost, title in (
        (
            per_image,
            f"{metric} against {'inference time' if by_time else 'multiply-adds'} per image",
        ),
        ("train_s", f"{metric} against total training time"),
    ):
        report.figures.append(
            _save(tradeoff_figure(results, cost), report, "tradeoff", cost, title)
        )
    if has_curves(results):
        for axis_name, title in (
            ("conv_target", f"{metric} against conv sparsity"),
            ("macs_share", f"{metric} against multiply-adds per image"),
            *([("inference_ms", f"{metric} against inference time per image")] if by_time else []),
        ):
            figure = sparsity_figure(results, axis_name)
            report.figures.append(_save(figure, report, "sparsity", axis_name, title))
    for index, dataset in enumerate(results.datasets()):
        figure = confusion_figure(results, dataset)
        title = f"Test confusion matrices on {dataset}"
        report.figures.append(_save(figure, report, "confusion", str(index), title))
    for scenario in sections(results):
        for metric in CURVES:
            figure, notes = curve_figure(results, scenario, metric)
            report.figures.append(_save(figure, report, scenario, metric.column, metric.title))
            report.figures[-1].notes = notes
        for metric in BARS:
            figure, notes = bar_figure(results, scenario, metric)
            if metric.energy and notes.measured == 0:
                plt.close(figure)
                report.not_drawn.setdefault(scenario, []).append(_unmeasured(metric.title, notes))
                continue
            entry = _save(figure, report, scenario, metric.column, metric.title, metric.energy)
            entry.notes = notes
            report.figures.append(entry)


def _write_tables(results: Results, report: Report, latency_budget_ms: float | None) -> Tables:
    """Every table of the report as CSV (the per-run one also as Parquet), listed in
    `report.tables`; the tables the page shows."""
    folder = report.out_dir
    advice = recommendations(results, latency_budget_ms)
    report.answers = answers(advice, results.cost)
    comparisons = against_dense(results)
    mixed = mixed_configurations(results)
    if not mixed.empty:
        report.cautions.append(
            f"{len(mixed)} configuration(s) pool runs of different releases or machines "
            "(mixed_producers.csv): their means are over two experiments"
        )
    runs = per_run_table(results)
    first = table_one(results)
    references = references_table(results)
    bench = bench_table(results)
    runs.to_csv(folder / "runs.csv", index=False)
    runs.to_parquet(folder / "runs.parquet", index=False)
    report.tables += [folder / "runs.csv", folder / "runs.parquet"]
    for table, name in (
        (first, "table1.csv"),
        (advice, "recommendations.csv"),
        (comparisons, "comparisons.csv"),
        *([(mixed, "mixed_producers.csv")] if not mixed.empty else []),
        *([(bench, "inference_bench.csv")] if not bench.empty else []),
    ):
        table.to_csv(folder / name, index=False)
        report.tables.append(folder / name)
    references.to_csv(folder / "references.csv", index=False)
    return Tables(*table_one_page(results), references, bench, runs, advice, comparisons, mixed)


def _save(
    figure: plt.Figure, report: Report, scenario: str, column: str, title: str, energy: bool = False
) -> FigureEntry:
    stem = f"figures/{scenario}_{column}"
    # "tight": the methods' legend stands right of the panels, outside the axes' area
    figure.savefig(report.out_dir / f"{stem}.png", dpi=110, bbox_inches="tight")
    if report.svg:
        figure.savefig(report.out_dir / f"{stem}.svg", bbox_inches="tight")
    plt.close(figure)
    return FigureEntry(scenario, title, stem, energy, FigureNotes())


def _unmeasured(title: str, notes: FigureNotes) -> str:
    """Why a figure of a quantity that no run measured is left out."""
    reasons = "; ".join(sorted(notes.reasons)) or "no reason recorded"
    return f"{title}: not drawn, no run shown measured it ({reasons})."

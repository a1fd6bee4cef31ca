"""`sparsebench runs`, `tables` and `report`: what the results database holds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sparsebench.cli.app import app, check_range, fail, out, say, show
from sparsebench.cli.options import (
    DEFAULT_DB,
    DEFAULT_TRACK_DIR,
    ReportDir,
    ResultsDb,
    Select,
    Track,
    TrackDir,
    TrackExperiment,
    check_select,
)
from sparsebench.errors import InputError

if TYPE_CHECKING:
    import pandas as pd


@app.command()
def runs(
    db: ResultsDb = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    select: Select = "best-val",
) -> None:
    """List stored runs with their test metrics (of the best validation epoch's weights,
    or of the last epoch's with --select last)."""
    from sparsebench.store.results import open_results

    if fmt not in ("table", "csv", "json"):
        raise fail(f"--format: expected table, csv or json, got {fmt!r}")
    check_select(select)
    with open_results(db, read_only=True) as store:
        frame = _named_data(store.runs_overview(select))
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records") + "\n")
    else:
        table = Table(title=str(db))
        columns = [
            "run_id",
            "model",
            "data",
            "method",
            "scenario",
            "seed",
            "status",
            "test_accuracy",
            "test_balanced_accuracy",
            "test_f1",
            "test_auroc",
            "total_train_time_s",
            "sparsity_conv",
            "sparsity_linear",
        ]
        for column in columns:
            table.add_column(column, no_wrap=column == "run_id")
        for record in frame[columns].itertuples(index=False):
            table.add_row(*(_cell(value) for value in record))
        out.print(table)


def _named_data(frame: pd.DataFrame) -> pd.DataFrame:
    """The data's own name (`data`) and the layout its loader read (`layout`), after
    the columns earlier releases printed, so scripts reading them by position still
    read what they did; `dataset` stays the loader's key."""
    from sparsebench.data.registry import data_label, dataset_display_name

    names = [
        data_label(dataset, path, name)
        for dataset, path, name in zip(frame.dataset, frame.data_path, frame.data_name, strict=True)
    ]
    frame = frame.drop(columns=["data_name"])
    frame["data"] = names
    frame["layout"] = frame.dataset.map(dataset_display_name)
    return frame


@app.command()
def tables(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the exported tables")],
    db: ResultsDb = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Export every results table to CSV or Parquet files."""
    from sparsebench.store import export_tables
    from sparsebench.store.results import open_results

    if fmt not in ("csv", "parquet"):
        raise fail(f"--format: expected csv or parquet, got {fmt!r}")
    with open_results(db, read_only=True) as store:
        for path in export_tables(store, out_dir, fmt):  # type: ignore[arg-type]
            show(str(path))


@app.command()
def report(
    out_dir: ReportDir = Path("report"),
    db: ResultsDb = DEFAULT_DB,
    latency_budget_ms: Annotated[
        float | None,
        typer.Option(help="recommend the most accurate run within this time per image"),
    ] = None,
    svg: Annotated[
        bool, typer.Option(help="write every figure as SVG beside its PNG (--no-svg: PNG only)")
    ] = True,
    metric: Annotated[
        str,
        typer.Option(
            help="what Table 1, the trade-off figures and the recommendations compare: "
            "accuracy, balanced_accuracy, f1 or auroc (two-class data)"
        ),
    ] = "accuracy",
    select: Select = None,
    margin: Annotated[
        float,
        typer.Option(
            help="the difference from dense that counts as none: a configuration is "
            "equivalent to dense when two one-sided tests show its difference within it"
        ),
    ] = 0.01,
    rank_by: Annotated[
        str,
        typer.Option(
            help="what the recommendations call the cheapest by: latency (inference time "
            "per image as tested) or macs (multiply-adds per image, the same on every "
            "machine: for runs timed on several machines or beside other work)"
        ),
    ] = "latency",
    track: Track = None,
    track_dir: TrackDir = DEFAULT_TRACK_DIR,
    track_experiment: TrackExperiment = "sparsebench",
) -> None:
    """The study's figures (PNG + SVG), Table 1, every run, and an offline index.html."""
    from sparsebench.report import build_report
    from sparsebench.tracking import log_made_files, tracker_named

    try:
        tracker = tracker_named(track, track_dir, track_experiment)
        if select is not None:
            check_select(select)
        if latency_budget_ms is not None:
            check_range("--latency-budget-ms", latency_budget_ms, 0, 1e9, above=True)
        check_range("--margin", margin, 0, 1, above=True)
        built = build_report(
            db, out_dir, latency_budget_ms, svg, metric, select, rank_by, margin=margin
        )
    except InputError as error:
        raise fail(str(error)) from None
    kinds = "PNG + SVG" if svg else "PNG"
    for answer in built.answers:
        show(answer)
    for caution in built.cautions:
        say(f"caution: {caution}")
    say(f"{len(built.figures)} figures ({kinds}) and {len(built.tables)} tables in {out_dir}")
    figures = [built.out_dir / f"{figure.stem}.png" for figure in built.figures]
    log_made_files(tracker, None, [*figures, built.index, *built.tables])
    show(str(built.index.resolve()))


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)

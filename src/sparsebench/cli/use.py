"""`sparsebench predict`: a finished run classifying new images."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from sparsebench.cli.app import app, check_range, fail, printable, say
from sparsebench.cli.options import DEFAULT_DB, MovedRunsDir, ResultsDb
from sparsebench.errors import InputError
from sparsebench.files import written_whole


@app.command()
def predict(
    run_id: Annotated[str, typer.Argument(help="a finished run's id (sparsebench runs)")],
    images: Annotated[list[Path] | None, typer.Argument(help="image files")] = None,
    folder: Annotated[Path | None, typer.Option(help="classify every image under DIR")] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="write the predictions here (else stdout)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    onnx: Annotated[
        Path | None, typer.Option(help="an exported ONNX model of the run (float or int8)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="images per forward pass")] = 64,
    top_k: Annotated[int, typer.Option(help="classes listed per image")] = 3,
    db: ResultsDb = DEFAULT_DB,
    runs_dir: MovedRunsDir = None,
) -> None:
    """Classify image files with a run's compact model (or its exported ONNX model),
    preprocessed as its training data was. Exit code 1 if any image could not be read."""
    from sparsebench.data.progress import quiet_progress
    from sparsebench.deploy.load import load_run
    from sparsebench.deploy.predict import (
        Preprocessing,
        image_paths,
        onnx_classifier,
        predict,
        torch_classifier,
    )

    if fmt not in ("csv", "json"):
        raise fail(f"--format: expected csv or json, got {fmt!r}")
    check_range("--batch-size", batch_size, 1, 65_536)
    check_range("--top-k", top_k, 1, 1000)
    try:
        paths = image_paths(images or [], folder)
        run = load_run(run_id, db, runs_dir)
        preprocessing = Preprocessing.of_run(run)
        classify = onnx_classifier(onnx) if onnx is not None else torch_classifier(run)
    except InputError as error:
        raise fail(str(error)) from None
    rows: list[dict[str, Any]] = []
    with quiet_progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn()) as progress:
        task = progress.add_task("images", total=len(paths))
        for row in predict(paths, preprocessing, classify, batch_size, top_k):
            rows.append(row)
            progress.advance(task)
            if row["error"] is not None:
                say(f"error: {printable(row['error'])}")
    text = _as_json(rows) if fmt == "json" else _as_csv(rows)
    if out_path is None:
        sys.stdout.write(text)
    else:
        with written_whole(out_path) as temporary:
            temporary.write_text(text, encoding="utf-8")
        say(f"{len(rows)} predictions written to {out_path}")
    failed = sum(row["error"] is not None for row in rows)
    if failed:
        say(f"{failed} of {len(rows)} images could not be read")
        sys.exit(1)


def _as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1) + "\n"


def _as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "class", "class_index", "probability", "top_k", "error"])
    for row in rows:
        top = ";".join(f"{t['class']}:{t['probability']:.4f}" for t in row.get("top_k", []))
        probability = row.get("probability")
        writer.writerow(
            [
                row["path"],
                row.get("class", ""),
                row.get("class_index", ""),
                "" if probability is None else f"{probability:.6f}",
                top,
                row["error"] or "",
            ]
        )
    return buffer.getvalue()

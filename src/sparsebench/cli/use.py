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
    """Classify image files with a run's compact model or its exported ONNX model.

    Preprocessed as the run's training data was; exit code 1 if an image is unreadable."""
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
        reference = torch_classifier(run) if onnx is not None else None
        for row in predict(paths, preprocessing, classify, batch_size, top_k, reference):
            rows.append(row)
            progress.advance(task)
            if row["error"] is not None:
                say(f"error: {printable(row['error'])}")
    if onnx is not None:
        _say_agreement(onnx, rows)
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


def _say_agreement(onnx: Path, rows: list[dict[str, Any]]) -> None:
    """How often the ONNX model (an int8 one, above all) picks the compact model's class;
    the rows keep only what predict prints."""
    pairs = [
        (row["class_index"], row.pop("reference_class_index"))
        for row in rows
        if row["error"] is None
    ]
    same = sum(a == b for a, b in pairs)
    if pairs:
        say(
            f"{onnx}: the run's compact model gives the same class for {same} of "
            f"{len(pairs)} images ({same / len(pairs):.1%})"
        )


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


@app.command()
def serve(
    run_id: Annotated[str, typer.Argument(help="a finished run's id (sparsebench runs)")],
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    onnx: Annotated[
        Path | None, typer.Option(help="serve an exported ONNX model of the run instead")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="images classified together at most")] = 16,
    max_wait_ms: Annotated[
        float, typer.Option(help="how long the first request waits for others to batch with")
    ] = 5.0,
    max_body_mb: Annotated[float, typer.Option(help="largest request body accepted")] = 20.0,
    db: ResultsDb = DEFAULT_DB,
    runs_dir: MovedRunsDir = None,
) -> None:
    """Serve a run over HTTP: POST /predict, GET /health, GET /metrics.

    POST /predict takes an image's bytes (or a one-file form): class and probabilities."""
    import uvicorn

    from sparsebench.deploy.load import load_run
    from sparsebench.deploy.predict import Preprocessing, onnx_classifier, torch_classifier
    from sparsebench.deploy.serve import make_app

    check_range("--port", port, 1, 65_535)
    check_range("--max-batch", max_batch, 1, 4096)
    check_range("--max-wait-ms", max_wait_ms, 0, 60_000)
    check_range("--max-body-mb", max_body_mb, 0, 4096, above=True)
    try:
        run = load_run(run_id, db, runs_dir)
        preprocessing = Preprocessing.of_run(run)
        classify = onnx_classifier(onnx) if onnx is not None else torch_classifier(run)
    except InputError as error:
        raise fail(str(error)) from None
    _check_free(host, port)
    application = make_app(
        run.run_id,
        classify,
        preprocessing,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_bytes=int(max_body_mb * 2**20),
    )
    model = f"ONNX model {onnx}" if onnx is not None else "compact model"
    say(f"serving run {run.run_id} ({model}) on http://{host}:{port} (Ctrl-C stops)")
    uvicorn.run(application, host=host, port=port, log_level="warning")


def _check_free(host: str, port: int) -> None:
    """Fail in one line, before the model server starts, when the address is taken."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise fail(f"--port {port}: cannot listen on {host}:{port} ({error.strerror})") from None

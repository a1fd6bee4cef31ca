"""`sparsebench export` and `bench`: a trained run as a smaller network, measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sparsebench.cli.app import app, check_range, fail, out, show
from sparsebench.cli.options import (
    DEFAULT_DB,
    DEFAULT_TRACK_DIR,
    AsJson,
    MovedRunsDir,
    ResultsDb,
    Track,
    TrackDir,
    TrackExperiment,
)
from sparsebench.errors import InputError
from sparsebench.settings.run import MAX_BATCH


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="a finished run's id (sparsebench runs)")],
    out_path: Annotated[Path, typer.Option("--out", help="the ONNX file to write")],
    db: ResultsDb = DEFAULT_DB,
    runs_dir: MovedRunsDir = None,
    compact: Annotated[
        bool, typer.Option("--compact/--no-compact", help="remove pruned filters first")
    ] = True,
    quantize: Annotated[str | None, typer.Option(help="int8: also write MODEL.int8.onnx")] = None,
    calibration_samples: Annotated[int, typer.Option(help="train images to calibrate")] = 256,
    as_json: AsJson = False,
    track: Track = None,
    track_dir: TrackDir = DEFAULT_TRACK_DIR,
    track_experiment: TrackExperiment = "sparsebench",
) -> None:
    """Export a trained run to ONNX (compact, optionally int8) and check it in ONNX Runtime."""
    from sparsebench.deploy.export import export_run
    from sparsebench.tracking import log_made_files, tracker_named

    check_range("--calibration-samples", calibration_samples, 1, 1_000_000)

    try:
        tracker = tracker_named(track, track_dir, track_experiment)
        result = export_run(
            run_id,
            db,
            runs_dir,
            out_path,
            compact=compact,
            quantize=quantize,
            calibration_samples=calibration_samples,
        )
    except InputError as error:
        raise fail(str(error)) from None
    models = [Path(result[key]) for key in ("onnx", "onnx_int8") if key in result]
    log_made_files(tracker, result["run_id"], models)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    show(
        f"wrote {result['onnx']} ({result['onnx_bytes'] / 2**20:.2f} MiB), "
        f"max difference to PyTorch {result['max_abs_difference']:.2e} "
        f"({result['max_rel_difference']:.2e} relative)"
    )
    for table in export_tables(result, run_id, compact):
        out.print(table)
    if "onnx_int8" in result:
        show(f"wrote {result['onnx_int8']} ({result['onnx_int8_bytes'] / 2**20:.2f} MiB)")


def export_tables(result: dict[str, Any], run_id: str, compact: bool) -> list[Table]:
    """The sizes of the masked and compact networks, and the test accuracy of each export."""
    sizes = Table(title="masked vs compact")
    for column in ("model", "parameters", "non-zero", "MACs/sample", "file MiB"):
        sizes.add_column(column, justify="left" if column == "model" else "right")
    for name, numbers in result["counts"].items():
        sizes.add_row(
            name,
            f"{numbers['params_dense']:,}",
            f"{numbers['params_effective']:,}",
            f"{numbers['macs_dense']:,}",
            f"{numbers['file_bytes'] / 2**20:.2f}",
        )
    table = Table(title=f"test accuracy of run {run_id}")
    for column in ("model", "accuracy"):
        table.add_column(column)
    table.add_row(
        "PyTorch" + (" (compact)" if compact else ""), f"{result['test_accuracy_torch']:.4f}"
    )
    table.add_row("ONNX Runtime, float32", f"{result['test_accuracy_onnx']:.4f}")
    if "onnx_int8" in result:
        table.add_row(
            f"ONNX Runtime, int8 ({result['calibration_samples']} calibration images)",
            f"{result['test_accuracy_int8']:.4f}",
        )
    return [sizes, table]


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > MAX_BATCH:
        raise fail(f"{flag}: expected integers from 1 to {MAX_BATCH}, got {text!r}")
    return values


@app.command()
def bench(
    run_id: Annotated[str | None, typer.Argument(help="a finished run (else --model ...)")] = None,
    model: Annotated[str, typer.Option(help="without RUN_ID: vgg16 or resnet18")] = "resnet18",
    method: Annotated[str, typer.Option(help="without RUN_ID: the masks to apply")] = "pre",
    scenario: Annotated[str, typer.Option(help="without RUN_ID: uniform, mixed, ...")] = "mixed",
    width: Annotated[float, typer.Option(help="without RUN_ID: channel multiplier")] = 1.0,
    image_size: Annotated[int, typer.Option(help="without RUN_ID: input size")] = 32,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,64",
    threads: Annotated[str, typer.Option(help="comma-separated thread counts")] = "",
    repeats: Annotated[int, typer.Option(help="timed calls per measurement")] = 20,
    linear: Annotated[str, typer.Option(help="compact linear storage: auto, dense, csr")] = "auto",
    db: ResultsDb = DEFAULT_DB,
    runs_dir: MovedRunsDir = None,
    as_json: AsJson = False,
) -> None:
    """Inference latency, throughput and energy: masked vs compact vs ONNX Runtime."""
    import torch

    from sparsebench.deploy.bench import benchmark_models
    from sparsebench.store.results import open_results

    check_range("--width", width, 0, 4, above=True)
    check_range("--image-size", image_size, 28, 224)
    check_range("--repeats", repeats, 1, 100_000)
    sizes = _int_list(batch_sizes, "--batch-sizes")
    thread_counts = _int_list(threads, "--threads") if threads else [torch.get_num_threads()]
    if linear not in ("auto", "dense", "csr"):
        raise fail(f"--linear: expected auto, dense or csr, got {linear!r}")
    try:
        network, shape, subject, calibration = _bench_network(
            run_id, (model, method, scenario, width, image_size), db, runs_dir
        )
    except InputError as error:
        raise fail(str(error)) from None
    rows, difference = benchmark_models(
        network,
        shape,
        batch_sizes=sizes,
        threads=thread_counts,
        repeats=repeats,
        calibration=calibration,
        linear=linear,  # type: ignore[arg-type]
    )
    records = [row.as_dict() for row in rows]
    with open_results(db) as store:
        store.record_inference_bench(run_id, subject, records, difference)
    if as_json:
        payload = {
            "subject": subject,
            "run_id": run_id,
            "max_rel_difference": difference,
            "rows": records,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    out.print(bench_table(subject, rows, difference))


def _bench_network(
    run_id: str | None,
    subject: tuple[str, str, str, float, int],
    db: Path,
    runs_dir: Path | None,
) -> tuple[Any, tuple[int, int, int], str, list[Any] | None]:
    """The network to measure, its input shape, what it is, and calibration batches: a
    stored run's, or `subject`'s (model, method, scenario, width, image size) masks on
    random weights."""
    from sparsebench.deploy.bench import bench_subject
    from sparsebench.deploy.export import calibration_batches
    from sparsebench.deploy.load import load_run

    if run_id is None:
        network, shape, name = bench_subject(*subject)
        return network, shape, name, None
    run = load_run(run_id, db, runs_dir)
    return run.model, run.input_shape, f"run {run_id}", calibration_batches(run.dataset(), 256)


def bench_table(subject: str, rows: list[Any], difference: float) -> Table:
    """Latency, throughput, speedup and energy of every variant, as measured."""
    table = Table(title=f"{subject}: CPU inference (compact vs masked difference {difference:.1e})")
    for column in (
        "variant",
        "batch",
        "threads",
        "median ms",
        "p95 ms",
        "per s",
        "speedup",
        "MAC ratio",
        "efficiency",
        "J/inference",
    ):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        energy = (
            "missing" if row.energy_per_inference_j is None else f"{row.energy_per_inference_j:.4f}"
        )
        table.add_row(
            row.variant,
            str(row.batch_size),
            str(row.threads),
            f"{row.latency_median_ms:.2f}",
            f"{row.latency_p95_ms:.2f}",
            f"{row.throughput_per_s:.1f}",
            f"{row.speedup:.2f}",
            f"{row.mac_ratio:.2f}",
            f"{row.efficiency:.2f}",
            energy,
        )
    missing = {row.energy_missing_reason for row in rows if row.energy_per_inference_j is None}
    if missing:
        table.caption = "energy missing: " + "; ".join(sorted(missing))
    return table

"""The command line: parses, calls one function, prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from sparsebench.errors import InputError

app = typer.Typer(
    help="Train, compare and deploy sparse (pruned) convolutional networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
if not out.is_terminal:
    out = Console(width=200)  # piped tables stay whole; a terminal gets its own width
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


class RichEpochProgress:
    """A progress bar per epoch on stderr; silent when stderr is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = None

    def __enter__(self) -> RichEpochProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def start_epoch(self, epoch: int, total_epochs: int, batches: int) -> None:
        self.task = self.progress.add_task(
            "train", total=batches, epoch=f"{epoch + 1}/{total_epochs}", status=""
        )

    def advance(self) -> None:
        self.progress.advance(self.task)

    def end_epoch(self, row: dict[str, Any]) -> None:
        status = (
            f"loss {row['train_loss']:.3f}  acc {row['train_accuracy']:.3f}  "
            f"val acc {row['val_accuracy']:.3f}  {row['train_time_s']:.1f}s"
        )
        self.progress.update(self.task, status=status)


@app.command()
def train(
    model: Annotated[str | None, typer.Option(help="vgg16, resnet18 or a registered model")] = None,
    width: Annotated[
        float | None, typer.Option(help="channel multiplier; 1.0 is the real model")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="resize inputs to N x N (28..224)")] = None,
    dataset: Annotated[str | None, typer.Option(help="data set name, e.g. bloodmnist")] = None,
    data_path: Annotated[str | None, typer.Option(help="file or folder of the data set")] = None,
    split: Annotated[
        str | None, typer.Option(help="paper, csv:1cls, csv:2cls_highshot or csv:FILE")
    ] = None,
    subset_size: Annotated[int | None, typer.Option(help="stratified subset of N images")] = None,
    in_channels: Annotated[
        int | None, typer.Option(help="1 or 3 model input channels (default: the data's)")
    ] = None,
    visa_objects: Annotated[
        str | None, typer.Option(help="VisA objects, comma-separated (default: all)")
    ] = None,
    elpv_classes: Annotated[int | None, typer.Option(help="ELPV: 2 (defect >= 0.5) or 4")] = None,
    augment: Annotated[
        bool | None, typer.Option("--augment/--no-augment", help="random horizontal flips")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="decoded-image cache (default ~/.cache/sparsebench)")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="MedMNIST: fetch the published file into the cache")
    ] = False,
    method: Annotated[str | None, typer.Option(help="dense, pre, in, post or set")] = None,
    scenario: Annotated[str | None, typer.Option(help="uniform, mixed or linear-only")] = None,
    conv_sparsity: Annotated[float | None, typer.Option(help="fraction of filters removed")] = None,
    linear_sparsity: Annotated[
        float | None, typer.Option(help="fraction of linear weights removed")
    ] = None,
    swap_fraction: Annotated[
        float | None, typer.Option(help="share of units swapped per epoch")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(help="prune only layers matching (repeatable), e.g. 'layer4.*'"),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="never prune layers matching (repeatable), e.g. fc")
    ] = None,
    fine_tune_epochs: Annotated[
        int | None, typer.Option(help="post: epochs of training after pruning (study: 0)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="training epochs (study: 50)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size (study: 64)")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (study: 1e-4)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    runs_dir: Annotated[Path, typer.Option(help="checkpoints, one folder per run")] = Path("runs"),
    config: Annotated[Path | None, typer.Option(help="YAML run config; flags override it")] = None,
    force: Annotated[bool, typer.Option(help="train again even if the run is finished")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the run summary as JSON")] = False,
) -> None:
    """Train one network with one pruning method and store every metric."""
    from sparsebench.config import load_run_config
    from sparsebench.data import load_dataset
    from sparsebench.models import model_names
    from sparsebench.store import ResultsStore
    from sparsebench.train.loop import resolve_device
    from sparsebench.train.run import run_and_record

    try:
        run_config = load_run_config(
            config,
            model=model,
            width=width,
            image_size=image_size,
            dataset=dataset,
            data_path=data_path,
            split=split,
            subset_size=subset_size,
            in_channels=in_channels,
            visa_objects=visa_objects.split(",") if visa_objects else None,
            elpv_classes=elpv_classes,
            augment=augment,
            method=method,
            scenario=scenario,
            conv_sparsity=conv_sparsity,
            linear_sparsity=linear_sparsity,
            swap_fraction=swap_fraction,
            fine_tune_epochs=fine_tune_epochs,
            include=include or None,
            exclude=exclude or None,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            device=device,
        )
        known = model_names()
        if run_config.model not in known:
            raise InputError(
                f"--model: unknown model {run_config.model!r} (choose from {', '.join(known)})"
            )
        resolve_device(run_config.device)
        data = load_dataset(
            run_config.dataset, run_config.data_path, run_config.data_options(cache_dir, download)
        )
    except InputError as error:
        raise fail(str(error)) from None

    err.print(
        f"run {run_config.run_id()}: {run_config.model} x{run_config.width:g} on "
        f"{data.name} ({', '.join(f'{k} {v}' for k, v in data.summary()['samples'].items())}), "
        f"method {run_config.method}, {run_config.scenario_label}",
        highlight=False,
    )
    err.print(class_count_table(data.summary()))
    try:
        with ResultsStore(db) as store, RichEpochProgress(err) as progress:
            summary = run_and_record(
                run_config, data, store, runs_dir, progress=progress, force=force
            )
    except KeyboardInterrupt:
        err.print(
            f"interrupted: run the same command again to resume run {run_config.run_id()} "
            "from its last finished epoch"
        )
        raise typer.Exit(code=130) from None
    if summary.get("reused"):
        err.print(f"run {summary['run_id']} was already finished in {db}; use --force to retrain")
    if as_json:
        sys.stdout.write(json.dumps(summary, default=float) + "\n")
    else:
        out.print(summary_table(summary))


def class_count_table(data: dict[str, Any]) -> Table:
    """Samples per class in each split, so a user can check the data was read right."""
    table = Table(title=f"{data['name']}: {data['source']}")
    counts = data["class_counts"]
    for column in ("class", *counts, "total"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in data["classes"]:
        row = [counts[split][name] for split in counts]
        total = sum(row) - (counts["val"][name] if _val_is_test(data) else 0)
        table.add_row(name, *map(str, row), str(total))
    if _val_is_test(data):
        table.caption = "validation is the test split (the study's protocol for this data)"
    return table


def _val_is_test(data: dict[str, Any]) -> bool:
    counts = data["class_counts"]
    return data["samples"]["val"] == data["samples"]["test"] and counts["val"] == counts["test"]


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"run {summary['run_id']}")
    table.add_column("epoch", justify="right")
    for column in (
        "train loss",
        "train acc",
        "val acc",
        "val F1",
        "time s",
        "peak MiB",
        "energy J",
    ):
        table.add_column(column, justify="right")
    for row in summary["epochs"]:
        energy = "missing" if row["energy_j"] is None else f"{row['energy_j']:.1f}"
        table.add_row(
            str(row["epoch"] + 1),
            f"{row['train_loss']:.4f}",
            f"{row['train_accuracy']:.4f}",
            f"{row['val_accuracy']:.4f}",
            f"{row['val_f1']:.4f}",
            f"{row['train_time_s']:.1f}",
            f"{row['peak_memory_bytes'] / 2**20:.0f}",
            energy,
        )
    test = summary["test"]
    by_kind = summary["sparsity"]["by_kind"]
    caption = (
        f"test: accuracy {test['accuracy']:.4f}  F1 {test['f1']:.4f}  precision "
        f"{test['precision']:.4f}  recall {test['recall']:.4f}  "
        f"inference {test['inference_time_per_sample_s'] * 1e3:.3f} ms/sample\n"
        f"sparsity: conv {by_kind.get('conv', 0):.3f}  linear {by_kind.get('linear', 0):.3f}  "
        f"params {test['params_effective']:,}/{test['params_dense']:,}  "
        f"MACs {test['macs_effective']:,}/{test['macs_dense']:,}"
    )
    if test["inference_energy_j"] is None and summary["epochs"]:
        caption += f"\nenergy missing: {summary['epochs'][-1]['energy_missing_reason']}"
    table.caption = caption
    return table


@app.command()
def runs(
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """List stored runs with their final test metrics."""
    from sparsebench.store import ResultsStore

    if fmt not in ("table", "csv", "json"):
        raise fail(f"--format: expected table, csv or json, got {fmt!r}")
    if not db.is_file():
        raise fail(f"{db}: results database does not exist")
    with ResultsStore(db) as store:
        frame = store.runs_overview()
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records") + "\n")
    else:
        table = Table(title=str(db))
        columns = [
            "run_id",
            "model",
            "dataset",
            "method",
            "scenario",
            "seed",
            "status",
            "test_accuracy",
            "test_f1",
            "total_train_time_s",
            "sparsity_conv",
            "sparsity_linear",
        ]
        for column in columns:
            table.add_column(column, no_wrap=column == "run_id")
        for record in frame[columns].itertuples(index=False):
            table.add_row(*(_cell(value) for value in record))
        out.print(table)


@app.command()
def tables(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the exported tables")],
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Export every results table to CSV or Parquet files."""
    from sparsebench.store import ResultsStore, export_tables

    if fmt not in ("csv", "parquet"):
        raise fail(f"--format: expected csv or parquet, got {fmt!r}")
    if not db.is_file():
        raise fail(f"{db}: results database does not exist")
    with ResultsStore(db) as store:
        for path in export_tables(store, out_dir, fmt):  # type: ignore[arg-type]
            out.print(str(path))


class RichSweepProgress:
    """Runs done, running, failed and left on stderr; silent when it is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("runs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = None

    def __enter__(self) -> RichSweepProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def update(self, state: Any) -> None:
        counts = (
            f"{state.done} done, {state.running} running, {len(state.failed)} failed, "
            f"{state.left} left"
        )
        if self.task is None:
            self.task = self.progress.add_task("sweep", total=state.total, counts=counts)
        self.progress.update(self.task, completed=state.done + len(state.failed), counts=counts)

    def run_ended(self, run: Any, result: dict[str, Any]) -> None:
        if not self.console.is_terminal:
            return
        what = f"{run.config.model} {run.config.dataset} {run.config.method} "
        what += f"{run.config.scenario_label} seed {run.config.seed}"
        if result["ok"]:
            accuracy = result["summary"]["test"]["accuracy"]
            self.progress.console.print(
                f"{run.action:>6} {run.run_id} {what}: test accuracy {accuracy:.4f} "
                f"({result['seconds']:.0f} s)",
                highlight=False,
            )
        else:
            self.progress.console.print(
                f"failed {run.run_id} {what}: {result['error']}", highlight=False
            )


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="sweep YAML, e.g. configs/quick.yaml")],
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    runs_dir: Annotated[Path, typer.Option(help="checkpoints, one folder per run")] = Path("runs"),
    executor: Annotated[str, typer.Option(help="local or ray")] = "local",
    workers: Annotated[
        int | None,
        typer.Option(help="runs at once (local: one per core, at most 8; ray: what fits)"),
    ] = None,
    threads_per_run: Annotated[
        int | None, typer.Option(help="local: torch threads per run (default: cores / workers)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="join this Ray cluster instead of starting one")
    ] = None,
    cpus_per_run: Annotated[float, typer.Option(help="ray: CPUs each run reserves")] = 1.0,
    gpus_per_run: Annotated[float, typer.Option(help="ray: GPUs each run reserves")] = 0.0,
    cache_dir: Annotated[Path | None, typer.Option(help="decoded-image cache")] = None,
    download: Annotated[
        bool, typer.Option(help="MedMNIST: fetch the published files into the cache")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="list what would be trained, derived, resumed or skipped")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
) -> None:
    """Run a grid of runs; finished runs are skipped and interrupted ones resumed."""
    from sparsebench.config import load_sweep_config
    from sparsebench.store import ResultsStore
    from sparsebench.sweep.plan import expand_grid, plan_counts, plan_sweep

    if executor not in ("local", "ray"):
        raise fail(f"--executor: expected local or ray, got {executor!r}")
    try:
        sweep_config = load_sweep_config(config)
        grid = expand_grid(sweep_config)
    except InputError as error:
        raise fail(str(error)) from None
    if dry_run and not db.is_file():
        planned = plan_sweep(grid, None, runs_dir)
    else:
        with ResultsStore(db) as store:
            planned = plan_sweep(grid, store, runs_dir)
    counts = plan_counts(planned)
    if dry_run:
        if as_json:
            plan = {"config": str(config), "counts": counts}
            plan["runs"] = [run.as_dict() for run in planned]
            sys.stdout.write(json.dumps(plan) + "\n")
        else:
            out.print(plan_table(planned, counts, config))
        return

    from sparsebench.sweep.runner import run_sweep

    try:
        if executor == "local":
            from sparsebench.sweep.executors import LocalExecutor

            runner = LocalExecutor(workers, threads_per_run)
        else:
            from sparsebench.sweep.executors import RayExecutor

            runner = RayExecutor(ray_address, cpus_per_run, gpus_per_run, workers)
    except InputError as error:
        raise fail(str(error)) from None
    err.print(
        f"sweep {sweep_config.name}: {len(planned)} runs ({_counts_text(counts)}); "
        f"{runner.description}; results in {db}",
        highlight=False,
    )
    try:
        with ResultsStore(db) as store, RichSweepProgress(err) as progress:
            state = run_sweep(
                planned,
                store,
                runs_dir,
                runner,
                cache_dir=cache_dir,
                download=download,
                progress=progress,
            )
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to go on where the sweep stopped")
        raise typer.Exit(code=130) from None
    outcome = {
        "config": str(config),
        "counts": counts,
        "finished": len(state.finished),
        "failed": state.failed,
        "db": str(db),
    }
    if as_json:
        sys.stdout.write(json.dumps(outcome) + "\n")
    else:
        out.print(
            f"sweep {sweep_config.name}: {len(state.finished)} run(s) finished, "
            f"{counts['skip']} already done, {len(state.failed)} failed; results in {db}",
            highlight=False,
        )
        for failure in state.failed:
            out.print(f"  failed {failure['run_id']}: {failure['error']}", highlight=False)
    if state.failed:
        raise typer.Exit(code=1)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{number} to {action}" for action, number in counts.items())


def plan_table(planned: list[Any], counts: dict[str, int], config: Path) -> Table:
    table = Table(title=f"{config}: {len(planned)} runs")
    table.caption = (
        f"{counts['train']} to train, {counts['resume']} to resume, "
        f"{counts['derive']} derived from dense runs, {counts['skip']} skipped (already finished)"
    )
    for column in ("action", "run_id", "model", "dataset", "method", "scenario", "seed"):
        table.add_column(column, no_wrap=column == "run_id")
    table.add_column("derived from", no_wrap=True)
    for run in planned:
        row = run.as_dict()
        table.add_row(
            row["action"],
            row["run_id"],
            row["model"],
            row["dataset"],
            row["method"],
            row["scenario"],
            str(row["seed"]),
            row["derived_from"] or "",
        )
    return table


@app.command()
def report(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the report")] = Path("report"),
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
) -> None:
    """The study's figures (PNG + SVG), Table 1, every run, and an offline index.html."""
    from sparsebench.report import build_report

    try:
        built = build_report(db, out_dir)
    except InputError as error:
        raise fail(str(error)) from None
    err.print(
        f"{len(built.figures)} figures (PNG + SVG) and {len(built.tables)} tables in {out_dir}",
        highlight=False,
    )
    out.print(str(built.index.resolve()), highlight=False)


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="the sweep to run")] = Path("configs/quick.yaml"),
    workers: Annotated[
        int | None, typer.Option(help="runs at once (default: one per core, at most 8)")
    ] = None,
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    runs_dir: Annotated[Path, typer.Option(help="checkpoints, one folder per run")] = Path("runs"),
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the report")] = Path("report"),
) -> None:
    """The whole loop offline: the quick sweep (every method and scenario on real
    solar-cell images, ELPV), then the report; prints the path of its index.html."""
    failed = False
    try:
        sweep(
            config,
            db=db,
            runs_dir=runs_dir,
            executor="local",
            workers=workers,
            threads_per_run=None,
            ray_address=None,
            cpus_per_run=1.0,
            gpus_per_run=0.0,
            cache_dir=None,
            download=False,
            dry_run=False,
            as_json=False,
        )
    except typer.Exit as exit_:
        if exit_.exit_code != 1:  # 1: some runs failed; the report shows the others
            raise
        failed = True
    report(out_dir=out_dir, db=db)
    if failed:
        raise typer.Exit(code=1)


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="a finished run's id (sparsebench runs)")],
    out_path: Annotated[Path, typer.Option("--out", help="the ONNX file to write")],
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    runs_dir: Annotated[Path, typer.Option(help="checkpoints, one folder per run")] = Path("runs"),
    compact: Annotated[
        bool, typer.Option("--compact/--no-compact", help="remove pruned filters first")
    ] = True,
    quantize: Annotated[str | None, typer.Option(help="int8: also write MODEL.int8.onnx")] = None,
    calibration_samples: Annotated[int, typer.Option(help="train images to calibrate")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Export a trained run to ONNX (compact, optionally int8) and check it in ONNX Runtime."""
    from sparsebench.deploy.export import export_run

    try:
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
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    out.print(
        f"wrote {result['onnx']} ({result['onnx_bytes'] / 2**20:.2f} MiB), "
        f"max difference to PyTorch {result['max_abs_difference']:.2e} "
        f"({result['max_rel_difference']:.2e} relative)"
    )
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
    out.print(sizes)
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
        out.print(f"wrote {result['onnx_int8']} ({result['onnx_int8_bytes'] / 2**20:.2f} MiB)")
    out.print(table)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise fail(f"{flag}: expected positive integers, got {text!r}")
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
    db: Annotated[Path, typer.Option(help="results database")] = Path("results.db"),
    runs_dir: Annotated[Path, typer.Option(help="checkpoints, one folder per run")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
) -> None:
    """Inference latency, throughput and energy: masked vs compact vs ONNX Runtime."""
    import torch

    from sparsebench.deploy.bench import bench_subject, benchmark_models
    from sparsebench.deploy.export import calibration_batches
    from sparsebench.deploy.load import load_run
    from sparsebench.store import ResultsStore

    sizes = _int_list(batch_sizes, "--batch-sizes")
    thread_counts = _int_list(threads, "--threads") if threads else [torch.get_num_threads()]
    if linear not in ("auto", "dense", "csr"):
        raise fail(f"--linear: expected auto, dense or csr, got {linear!r}")
    calibration = None
    try:
        if run_id is not None:
            run = load_run(run_id, db, runs_dir)
            network, shape = run.model, run.input_shape
            subject = f"run {run_id}"
            calibration = calibration_batches(run.dataset(), 256)
        else:
            network, shape, subject = bench_subject(model, method, scenario, width, image_size)
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
    with ResultsStore(db) as store:
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
    out.print(table)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

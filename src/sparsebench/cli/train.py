"""`sparsebench train`: one run, with a progress bar per epoch and its summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

from sparsebench.cli.app import app, err, fail, failure_line, out, plain, say
from sparsebench.cli.options import (
    DEFAULT_DB,
    DEFAULT_TRACK_DIR,
    AsJson,
    CacheDir,
    Download,
    ResultsDb,
    RunsDir,
    Track,
    TrackDir,
    TrackExperiment,
)
from sparsebench.cli.settings import run_settings_as_options
from sparsebench.errors import InputError
from sparsebench.store.layout import DEFAULT_RUNS_DIR
from sparsebench.store.records import EpochRecord, RunSummary, TestMetrics

if TYPE_CHECKING:
    from sparsebench.data.dataset import ImageDataset
    from sparsebench.settings.run import RunConfig


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

    def end_epoch(self, row: EpochRecord) -> None:
        status = (
            f"loss {row.train_loss:.3f}  acc {row.train_accuracy:.3f}  "
            f"val acc {row.val_accuracy:.3f}  {row.train_time_s:.1f}s"
        )
        self.progress.update(self.task, status=status)


@app.command()
@run_settings_as_options
def train(
    cache_dir: CacheDir = None,
    download: Download = False,
    db: ResultsDb = DEFAULT_DB,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    config: Annotated[Path | None, typer.Option(help="YAML run config; flags override it")] = None,
    force: Annotated[bool, typer.Option(help="train again even if the run is finished")] = False,
    track: Track = None,
    track_dir: TrackDir = DEFAULT_TRACK_DIR,
    track_experiment: TrackExperiment = "sparsebench",
    as_json: AsJson = False,
    **settings: Any,
) -> None:
    """Train one network with one pruning method and store every metric."""
    from sparsebench.data.registry import data_label, dataset_display_name
    from sparsebench.tracking import log_finished, tracker_named

    try:
        run_config, data = run_config_and_data(settings, config, db, cache_dir, download)
        tracker = tracker_named(track, track_dir, track_experiment)
    except InputError as error:
        raise fail(str(error)) from None
    name = data_label(run_config.dataset, run_config.data_path, run_config.data_name)
    samples = ", ".join(f"{k} {v}" for k, v in data.summary()["samples"].items())
    say(
        f"run {run_config.run_id()}: {run_config.model} x{run_config.width:g} on {name} "
        f"({dataset_display_name(run_config.dataset)} layout; {samples}), "
        f"method {run_config.method}, {run_config.scenario_label}"
    )
    if not as_json:  # the result goes to stdout; stderr keeps to progress and problems
        out.print(class_count_table(data.summary()))
    summary = _train_and_store(run_config, data, db, runs_dir, force)
    if summary.reused:
        say(f"run {summary.run_id} was already finished in {db}; use --force to retrain")
    else:
        log_finished(tracker, summary.as_json())
    if as_json:
        sys.stdout.write(json.dumps(summary.as_json(), default=float) + "\n")
    else:
        out.print(summary_table(summary))


def run_config_and_data(
    settings: dict[str, Any], config: Path | None, db: Path, cache_dir: Path | None, download: bool
) -> tuple[RunConfig, ImageDataset]:
    """The run's config and its data, checked trainable before the database is opened."""
    from sparsebench.data import load_dataset
    from sparsebench.deploy.load import finished_run_checkpoint
    from sparsebench.models.pretrained import RUN_PREFIX
    from sparsebench.models.registry import model_spec
    from sparsebench.settings.reading import load_run_config
    from sparsebench.train.build import check_trainable, resolve_device

    start = settings.get("init_from")
    if start is not None and start.startswith(RUN_PREFIX):
        settings["init_from"] = str(finished_run_checkpoint(start[len(RUN_PREFIX) :], db))
    run_config = load_run_config(config, **settings)
    try:
        model_spec(run_config.model)
    except InputError as error:
        raise InputError(f"--model: {error}") from None
    resolve_device(run_config.device)
    data = load_dataset(
        run_config.dataset, run_config.data_path, run_config.loader_options(cache_dir, download)
    )
    check_trainable(run_config, data)
    return run_config, data


def _train_and_store(
    run_config: RunConfig, data: ImageDataset, db: Path, runs_dir: Path, force: bool
) -> RunSummary:
    """Train (or resume) the run into `db`; each way it can stop is one line."""
    from sparsebench.store.db import StoreError
    from sparsebench.store.results import open_results
    from sparsebench.train.loop import RunDiverged
    from sparsebench.train.run import run_and_record

    try:
        with open_results(db) as store, RichEpochProgress(err) as progress:
            return run_and_record(run_config, data, store, runs_dir, progress=progress, force=force)
    except KeyboardInterrupt:
        say(
            f"interrupted: run the same command again to resume run {run_config.run_id()} "
            "from its last finished epoch"
        )
        raise typer.Exit(code=130) from None
    except RunDiverged as error:
        raise fail(f"run {run_config.run_id()} diverged (stored as diverged): {error}") from None
    except (OSError, StoreError) as error:
        line = failure_line(error)
        assert line is not None
        raise fail(
            f"{line[0]}; run {run_config.run_id()} is interrupted, and this command resumes it"
        ) from None


def class_count_table(data: dict[str, Any]) -> Table:
    """Samples per class in each split, so a user can check the data was read right."""
    table = Table(title=plain(f"{data['name']}: {data['source']}"))
    counts = data["class_counts"]
    for column in ("class", *counts, "total"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name in data["classes"]:
        row = [counts[split][name] for split in counts]
        total = sum(row) - (counts["val"][name] if _val_is_test(data) else 0)
        table.add_row(plain(name), *map(str, row), str(total))
    if _val_is_test(data):
        table.caption = "validation is the test split (the study's protocol for this data)"
    return table


def _val_is_test(data: dict[str, Any]) -> bool:
    counts = data["class_counts"]
    return data["samples"]["val"] == data["samples"]["test"] and counts["val"] == counts["test"]


def size_line(test: TestMetrics) -> str:
    """A run's size, each figure named for what it counts: the compact network's own
    (what compact execution trained and tested), the full-size network's non-zero
    weights and all of them."""
    full = (
        f"full-size network: params {test.params_effective:,} non-zero of "
        f"{test.params_dense:,}, MACs {test.macs_effective:,} non-zero of {test.macs_dense:,}"
    )
    if test.params_compact is None or test.macs_compact is None:
        return full
    return (
        f"compact network: params {test.params_compact:,}, MACs {test.macs_compact:,} per "
        f"image; {full}"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ranking(test: TestMetrics) -> str:
    """AUROC and average precision, for two-class data, with the class they score."""
    if test.positive_class is None:
        return ""
    return (
        f"AUROC {_number(test.auroc)}  AP {_number(test.average_precision)} "
        f"(positive: {plain(test.positive_class)})  "
    )


def summary_table(summary: RunSummary) -> Table:
    table = Table(title=f"run {summary.run_id}")
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
    for row in summary.epochs:
        energy = "missing" if row.energy_j is None else f"{row.energy_j:.1f}"
        peak = "n/a" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**20:.0f}"
        table.add_row(
            str(row.epoch + 1),
            f"{row.train_loss:.4f}",
            f"{row.train_accuracy:.4f}",
            f"{row.val_accuracy:.4f}",
            f"{row.val_f1:.4f}",
            f"{row.train_time_s:.1f}",
            peak,
            energy,
        )
    test = summary.test_best_val or summary.test
    assert test is not None
    by_kind = summary.sparsity_by_kind
    selected = (
        f"best validation epoch {test.epoch + 1}"
        if summary.test_best_val is not None and test.epoch is not None
        else "last epoch"
    )
    caption = (
        f"test ({selected}): accuracy {test.accuracy:.4f}  "
        f"balanced {_number(test.balanced_accuracy)}  "
        f"{_ranking(test)}F1 {test.f1:.4f}  precision "
        f"{test.precision:.4f}  recall {test.recall:.4f}  "
        f"inference {test.inference_time_per_sample_s * 1e3:.3f} ms/image (PyTorch, "
        f"batch {summary.config.get('eval_batch_size', 256)}, as tested)\n"
        f"sparsity: conv {by_kind.get('conv', 0):.3f}  linear {by_kind.get('linear', 0):.3f}\n"
        f"{size_line(test)}"
    )
    if test.inference_energy_j is None and summary.epochs:
        caption += f"\nenergy missing: {summary.epochs[-1].energy_missing_reason}"
    table.caption = caption
    return table

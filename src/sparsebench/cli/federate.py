"""`sparsebench federate`: one federated run on Flower's simulation engine, its rounds
stored, and a table of them."""

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

from sparsebench.cli.app import app, err, fail, failure_line, out, say
from sparsebench.cli.options import DEFAULT_DB, AsJson, CacheDir, Download, ResultsDb, RunsDir
from sparsebench.cli.settings import run_settings_as_options
from sparsebench.errors import InputError
from sparsebench.store.layout import DEFAULT_RUNS_DIR

PANEL = "Federation"
MB = 1e6


@app.command()
@run_settings_as_options
def federate(
    clients: Annotated[
        int, typer.Option(help="clients the training split is dealt to", rich_help_panel=PANEL)
    ] = 10,
    partition: Annotated[
        str, typer.Option(help="iid, dirichlet (label skew) or classes", rich_help_panel=PANEL)
    ] = "dirichlet",
    alpha: Annotated[
        float,
        typer.Option(help="Dirichlet concentration (0.1: strong skew)", rich_help_panel=PANEL),
    ] = 0.5,
    classes_per_client: Annotated[
        int, typer.Option(help="classes partition: classes per client", rich_help_panel=PANEL)
    ] = 2,
    rounds: Annotated[int, typer.Option(help="federated rounds", rich_help_panel=PANEL)] = 5,
    clients_per_round: Annotated[
        int | None, typer.Option(help="clients each round (default: half)", rich_help_panel=PANEL)
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            help="fedavg, fedprox (local loss pulled towards the global model), or a "
            "registered strategy of your own",
            rich_help_panel=PANEL,
        ),
    ] = "fedavg",
    proximal_mu: Annotated[
        float, typer.Option(help="fedprox: weight mu of the proximal term", rich_help_panel=PANEL)
    ] = 0.01,
    mask_every: Annotated[
        int,
        typer.Option(help="set, rigl: rounds between mask readjustments", rich_help_panel=PANEL),
    ] = 3,
    payload: Annotated[
        str,
        typer.Option(
            help="dense, kept, bitmask, int8 or auto (kept for a fixed mask)", rich_help_panel=PANEL
        ),
    ] = "auto",
    parallel: Annotated[
        int | None,
        typer.Option(
            help="clients training at once (default: one per core)", rich_help_panel=PANEL
        ),
    ] = None,
    cache_dir: CacheDir = None,
    download: Download = False,
    db: ResultsDb = DEFAULT_DB,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    config: Annotated[Path | None, typer.Option(help="YAML run config; flags override it")] = None,
    as_json: AsJson = False,
    **settings: Any,
) -> None:
    """Train one model federated over clients that keep their images (Flower), measuring
    every byte sent. `--epochs` is each client's local epochs per round (default 1)."""
    from sparsebench.cli.train import run_config_and_data
    from sparsebench.data.registry import data_label, dataset_display_name
    from sparsebench.settings.federated import federated_run

    settings.setdefault("epochs", 1)
    federation = {
        "clients": clients,
        "partition": partition,
        "alpha": alpha,
        "classes_per_client": classes_per_client,
        "rounds": rounds,
        "clients_per_round": clients_per_round,
        "strategy": strategy,
        "proximal_mu": proximal_mu,
        "payload": payload,
        "mask_every": mask_every,
    }
    from sparsebench.federated.strategy import strategy_for

    try:
        run_config, data = run_config_and_data(settings, config, db, cache_dir, download)
        fed = federated_run(run_config.model_dump(exclude={"init_digest"}), federation)
        strategy_for(fed.federated)  # a strategy name no module registered: refused now
    except InputError as error:
        raise fail(str(error)) from None
    run_id = fed.run_id()
    name = data_label(run_config.dataset, run_config.data_path, run_config.data_name)
    say(
        f"federated run {run_id}: {run_config.model} x{run_config.width:g} on {name} "
        f"({dataset_display_name(run_config.dataset)} layout), "
        f"method {run_config.method} ({run_config.scenario_label}), {clients} clients "
        f"({_dealt(fed.federated)}), {fed.federated.per_round} per round, {rounds} rounds"
    )
    rows = _simulate(fed, data, db, runs_dir, parallel)
    if as_json:
        sys.stdout.write(json.dumps({"run_id": run_id, "rounds": rows}, default=float) + "\n")
    else:
        out.print(round_table(rows))


def _dealt(settings: Any) -> str:
    if settings.partition == "dirichlet":
        return f"Dirichlet alpha {settings.alpha:g}"
    if settings.partition == "classes":
        return f"{settings.classes_per_client} classes each"
    return "IID"


def _simulate(fed: Any, data: Any, db: Path, runs_dir: Path, parallel: int | None) -> list[dict]:
    """Run (or resume) the federation; each way it can stop is one line."""
    from sparsebench.federated.apps import simulate
    from sparsebench.store.db import StoreError
    from sparsebench.store.federated import federated_rounds
    from sparsebench.store.locks import RunBusy
    from sparsebench.store.results import open_results

    try:
        with RoundProgress(err, fed.federated.rounds) as progress:
            simulate(fed, data, db, runs_dir, parallel, progress.round_stored)
    except KeyboardInterrupt:
        say(f"interrupted: run the same command again to resume run {fed.run_id()}")
        raise typer.Exit(code=130) from None
    except RunBusy as error:
        raise fail(str(error)) from None
    except (OSError, StoreError, InputError, RuntimeError) as error:
        line = failure_line(error)
        raise fail(
            f"{line[0] if line else error}; run {fed.run_id()} resumes with this command"
        ) from None
    with open_results(db, read_only=True) as store:
        return federated_rounds(store, fed.run_id()).drop(columns="run_id").to_dict("records")


class RoundProgress:
    """Rounds done, with the last one's accuracy and megabytes, on stderr; silent when
    it is not a terminal."""

    def __init__(self, console: Console, rounds: int) -> None:
        self.progress = Progress(
            TextColumn("rounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("federate", total=rounds, last="")

    def __enter__(self) -> RoundProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def round_stored(self, row: Any) -> None:
        last = f"test acc {row.test_accuracy:.4f}, {row.bytes_up / MB:.2f} MB up"
        self.progress.update(self.task, completed=row.round, last=last)


def round_table(rows: list[dict]) -> Table:
    table = Table(title="rounds (round 0: set-up and the initial model)")
    for column in ("round", "test acc", "balanced", "MB up", "MB down", "failed", "round s"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["round"]),
            f"{row['test_accuracy']:.4f}",
            f"{row['test_balanced_accuracy']:.4f}",
            f"{row['bytes_up'] / MB:.3f}",
            f"{row['bytes_down'] / MB:.3f}",
            f"{row['clients_failed']}/{row['clients_sampled']}",
            f"{row['round_time_s']:.1f}",
        )
    return table


def federate_grid(
    sweep_config: Any, grid: list[Any], where: Any, dry_run: bool, as_json: bool
) -> None:
    """A sweep with a `federated:` block (`sweep.federated`): its runs trained federated,
    those finished skipped; `dry_run` lists them."""
    from sparsebench.sweep.federated import plan_federated, tasks_to_train

    tasks = plan_federated(sweep_config, grid, where.db)
    if dry_run:
        rows = [task.row() for task in tasks]
        if as_json:
            sys.stdout.write(json.dumps({"config": str(where.config), "runs": rows}) + "\n")
        else:
            for row in rows:
                say(" ".join(f"{key}={value}" for key, value in row.items()))
        return
    for task, data in tasks_to_train(tasks, where.cache_dir, where.download):
        run = task.fed.run
        name = f"federated run {task.fed.run_id()}"
        say(f"{name}: {run.method} ({run.scenario_label}), seed {run.seed}")
        _simulate(task.fed, data, where.db, where.runs_dir, None)
    trained = sum(not task.done for task in tasks)
    summary = {"config": str(where.config), "federated": trained, "skipped": len(tasks) - trained}
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        say(
            f"sweep {sweep_config.name}: {trained} federated run(s) trained, "
            f"{len(tasks) - trained} already done; results in {where.db}"
        )

"""`sparsebench sweep` and `demo`: grids of runs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
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
)
from rich.table import Table

from sparsebench.cli.app import app, err, fail, out, printable, say, show
from sparsebench.cli.options import (
    DEFAULT_DB,
    DEFAULT_TRACK_DIR,
    AsJson,
    CacheDir,
    Download,
    ReportDir,
    ResultsDb,
    RunsDir,
    Track,
    TrackDir,
    TrackExperiment,
)
from sparsebench.cli.results import report
from sparsebench.data.registry import data_label
from sparsebench.errors import InputError
from sparsebench.store.layout import DEFAULT_RUNS_DIR
from sparsebench.tracking import log_finished, tracker_named


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
            f"{len(state.diverged)} diverged, {state.left} left"
        )
        if self.task is None:
            self.task = self.progress.add_task("sweep", total=state.total, counts=counts)
        self.progress.update(self.task, completed=state.ended, counts=counts)

    def run_ended(self, run: Any, result: dict[str, Any]) -> None:
        if not self.console.is_terminal:
            return
        data = data_label(run.config.dataset, run.config.data_path, run.config.data_name)
        what = f"{run.config.model} {data} {run.config.method} "
        what += f"{run.config.scenario_label} seed {run.config.seed}"
        if result["ok"]:
            accuracy = result["summary"].test.accuracy
            self.progress.console.print(
                f"{run.action:>6} {run.run_id} {what}: test accuracy {accuracy:.4f} "
                f"({result['seconds']:.0f} s)",
                markup=False,
                highlight=False,
            )
        else:
            status = result.get("status", "failed")
            self.progress.console.print(
                printable(f"{status} {run.run_id} {what}: {result['error']}"),
                markup=False,
                highlight=False,
            )


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="sweep YAML, e.g. configs/quick.yaml")],
    db: ResultsDb = DEFAULT_DB,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    executor: Annotated[str, typer.Option(help="local, ray or a registered executor")] = "local",
    executor_option: Annotated[
        list[str] | None,
        typer.Option(help="the executor's own setting KEY=VALUE (repeatable)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="runs at once (local: one per core, at most 8; ray: what fits)"),
    ] = None,
    threads_per_run: Annotated[
        int | None, typer.Option(help="local: torch threads per run (default: cores / workers)")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="ray: join this Ray cluster instead of starting one")
    ] = None,
    cpus_per_run: Annotated[
        float | None, typer.Option(help="ray: CPUs each run reserves (default 1)")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(help="ray: GPUs each run reserves (default 0)")
    ] = None,
    cache_dir: CacheDir = None,
    download: Download = False,
    dry_run: Annotated[
        bool, typer.Option(help="list what would be trained, derived, resumed or skipped")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="run only the part of the grid with KEY=VALUE (data, model, method, "
            "scenario, seed; repeatable: values of one key are alternatives)"
        ),
    ] = None,
    as_json: AsJson = False,
    track: Track = None,
    track_dir: TrackDir = DEFAULT_TRACK_DIR,
    track_experiment: TrackExperiment = "sparsebench",
) -> None:
    """Run a grid of runs; finished runs are skipped and interrupted ones resumed."""
    from sparsebench.cli.settings import parse_pairs
    from sparsebench.sweep.executors import executor_settings

    flags = {
        "workers": workers,
        "threads_per_run": threads_per_run,
        "ray_address": ray_address,
        "cpus_per_run": cpus_per_run,
        "gpus_per_run": gpus_per_run,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    given.update(parse_pairs(executor_option or [], "--executor-option"))
    settings = executor_settings(executor, given)
    tracker = tracker_named(track, track_dir, track_experiment) if not dry_run else None
    where = SweepPlace(config, db, runs_dir, cache_dir, download)
    part = _only(only or [])
    sweep_file(
        where, executor, settings, dry_run=dry_run, as_json=as_json, tracker=tracker, only=part
    )


def _only(pairs: list[str]) -> dict[str, set[str]]:
    """`--only KEY=VALUE` pairs as each key's accepted values."""
    only: dict[str, set[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise fail(f"--only: expected KEY=VALUE, got {pair!r}")
        only.setdefault(key.strip(), set()).add(value.strip())
    return only


@dataclass(frozen=True)
class SweepPlace:
    """A sweep's file, where its results go, and where its data comes from."""

    config: Path
    db: Path
    runs_dir: Path
    cache_dir: Path | None = None
    download: bool = False


def sweep_file(
    where: SweepPlace,
    executor: str,
    settings: Any,
    dry_run: bool = False,
    as_json: bool = False,
    tracker: Any = None,
    only: dict[str, set[str]] | None = None,
) -> None:
    """Plan (`dry_run`) or run the sweep `where.config` with executor `executor`, and
    say what became of it; exit code 1 if a run failed or diverged. `only`: the part of
    the grid to run, each key's accepted values (`select_runs`)."""
    from sparsebench.sweep.executors import make_executor
    from sparsebench.sweep.plan import check_sweep_data, expand_grid, select_runs
    from sparsebench.sweep.settings import load_sweep_config

    sweep_config = load_sweep_config(where.config)
    grid = expand_grid(sweep_config)
    if only:
        try:
            grid = select_runs(grid, only)
        except InputError as error:
            raise fail(str(error)) from None
    if sweep_config.federated is not None:
        from sparsebench.cli.federate import federate_grid

        check_sweep_data(sweep_config, where.config, where.download)
        federate_grid(sweep_config, grid, where, dry_run, as_json)
        return
    if dry_run:
        show_plan(
            where.config, sweep_config, grid, where.db, where.runs_dir, where.download, as_json
        )
        return
    check_sweep_data(sweep_config, where.config, where.download)
    runner = make_executor(executor, settings)
    state, counts = run_grid(
        sweep_config,
        grid,
        where.db,
        where.runs_dir,
        runner,
        where.cache_dir,
        where.download,
        tracker,
    )
    outcome = {
        "config": str(where.config),
        "counts": counts,
        "finished": len(state.finished),
        "failed": state.failed,
        "diverged": state.diverged,
        "held": state.held,
        "db": str(where.db),
    }
    if as_json:
        sys.stdout.write(json.dumps(outcome) + "\n")
    else:
        show(
            f"sweep {sweep_config.name}: {len(state.finished)} run(s) finished, "
            f"{counts['skip']} already done, {len(state.failed)} failed, "
            f"{len(state.diverged)} diverged, {len(state.held)} left to another process; "
            f"results in {where.db}"
        )
        for kind in ("failed", "diverged", "held"):
            for entry in outcome[kind]:
                show(f"  {kind} {entry['run_id']}: {entry['error']}")
    if state.failed or state.diverged:
        raise typer.Exit(code=1)


def show_plan(
    config: Path,
    sweep_config: Any,
    grid: list[Any],
    db: Path,
    runs_dir: Path,
    download: bool,
    as_json: bool,
) -> None:
    """What a sweep would do, from the database as it is (read only, if there is one);
    then, if a data set cannot be read, that too (exit code 2)."""
    from sparsebench.store.results import open_results
    from sparsebench.sweep.plan import check_sweep_data, plan_counts, plan_sweep

    data_problem = None
    try:
        check_sweep_data(sweep_config, config, download)
    except InputError as error:
        data_problem = error
    if db.is_file():
        with open_results(db, read_only=True) as store:
            planned = plan_sweep(grid, store, runs_dir)
    else:
        planned = plan_sweep(grid, None, runs_dir)
    counts = plan_counts(planned)
    if as_json:
        plan = {"config": str(config), "counts": counts}
        plan["runs"] = [run.as_dict() for run in planned]
        sys.stdout.write(json.dumps(plan) + "\n")
    else:
        out.print(plan_table(planned, counts, config))
    if data_problem is not None:
        raise fail(str(data_problem))


def run_grid(
    sweep_config: Any,
    grid: list[Any],
    db: Path,
    runs_dir: Path,
    runner: Any,
    cache_dir: Path | None,
    download: bool,
    tracker: Any = None,
) -> tuple[Any, dict[str, int]]:
    """Plan against the database and run what is left, with a progress display."""
    from sparsebench.store.results import open_results
    from sparsebench.sweep.plan import plan_counts, plan_sweep
    from sparsebench.sweep.runner import run_sweep

    with open_results(db) as store:
        planned = plan_sweep(grid, store, runs_dir)
        counts = plan_counts(planned)
        say(
            f"sweep {sweep_config.name}: {len(planned)} runs ({_counts_text(counts)}); "
            f"{runner.description}; results in {db}"
        )
        try:
            with RichSweepProgress(err) as progress:
                state = run_sweep(
                    planned,
                    store,
                    runs_dir,
                    runner,
                    cache_dir=cache_dir,
                    download=download,
                    progress=progress,
                    on_finished=lambda summary: log_finished(tracker, summary.as_json()),
                )
        except KeyboardInterrupt:
            say("interrupted: run the same command again to go on where the sweep stopped")
            raise typer.Exit(code=130) from None
    return state, counts


def _counts_text(counts: dict[str, int]) -> str:
    shown = {action: number for action, number in counts.items() if action != "weights"}
    text = ", ".join(f"{number} to {action}" for action, number in shown.items())
    if counts.get("weights"):
        text += f", {counts['weights']} finished dense run(s) to train again for their weights"
    return text


def plan_table(planned: list[Any], counts: dict[str, int], config: Path) -> Table:
    table = Table(title=f"{config}: {len(planned)} runs")
    table.caption = (
        f"{counts['train']} to train, {counts['resume']} to resume, "
        f"{counts['derive']} derived from dense runs, {counts['skip']} skipped (already "
        "finished or diverged)"
        + (
            f"; {counts['weights']} finished dense run(s) trained again for the weights "
            "their derived runs need"
            if counts["weights"]
            else ""
        )
    )
    for column in ("action", "run_id", "model", "data", "method", "scenario", "seed"):
        table.add_column(column, no_wrap=column == "run_id")
    table.add_column("derived from", no_wrap=True)
    for run in planned:
        row = run.as_dict()
        table.add_row(
            row["action"],
            row["run_id"],
            row["model"],
            row["data"],
            row["method"],
            row["scenario"],
            str(row["seed"]),
            row["derived_from"] or "",
        )
    return table


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="the sweep to run")] = Path("configs/quick.yaml"),
    workers: Annotated[
        int | None, typer.Option(help="runs at once (default: one per core, at most 8)")
    ] = None,
    db: ResultsDb = DEFAULT_DB,
    runs_dir: RunsDir = DEFAULT_RUNS_DIR,
    out_dir: ReportDir = Path("report"),
) -> None:
    """The whole loop offline: the quick sweep, then the report.

    Every method and scenario on real solar-cell images (ELPV); prints index.html's path."""
    from sparsebench.sweep.executors import executor_settings

    failed = False
    try:
        settings = executor_settings("local", {"workers": workers})
        sweep_file(SweepPlace(config, db, runs_dir), "local", settings)
    except typer.Exit as exit_:
        if exit_.exit_code != 1:  # 1: some runs failed; the report shows the others
            raise
        failed = True
    report(out_dir=out_dir, db=db)
    if failed:
        raise typer.Exit(code=1)

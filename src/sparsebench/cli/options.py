"""Options that several commands take, declared once: the same flag, help and default
wherever they appear."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DB = Path("results.db")
DEFAULT_TRACK_DIR = Path("tensorboard")

ResultsDb = Annotated[Path, typer.Option("--db", help="results database")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="checkpoints, one folder per run")]
# For commands that read a finished run: the database knows where its checkpoint is.
MovedRunsDir = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir",
        help="the folder of run folders, if it moved (default: where the database says)",
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="decoded-image cache (default ~/.cache/sparsebench)"),
]
Download = Annotated[
    bool, typer.Option("--download", help="MedMNIST: fetch the published files into the cache")
]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
ReportDir = Annotated[Path, typer.Option("--out", help="folder for the report")]
Track = Annotated[
    str | None,
    typer.Option(
        "--track", help="also log each finished run to mlflow or tensorboard (optional extras)"
    ),
]
TrackDir = Annotated[
    Path, typer.Option("--track-dir", help="tensorboard: folder of event files, one per run")
]
TrackExperiment = Annotated[
    str, typer.Option("--track-experiment", help="mlflow: the experiment's name")
]

Select = Annotated[
    str | None,
    typer.Option(
        help="which weights' test metrics: best-val (the best validation epoch's, at the "
        "trained sparsity; model selection never sees the test split; the default, where "
        "the runs kept them) or last (the last epoch's, the study's)"
    ),
]


def check_select(select: str) -> None:
    from sparsebench.cli.app import fail
    from sparsebench.store.schema import SELECTIONS

    if select not in SELECTIONS:
        raise fail(f"--select: expected {' or '.join(SELECTIONS)}, got {select!r}")

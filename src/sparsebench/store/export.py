"""Export the results tables to CSV or Parquet, each file written then renamed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from sparsebench.files import written_whole
from sparsebench.store.db import ResultsStore

TABLES = ("runs", "epochs", "test_metrics", "layer_sparsity", "inference_bench")


def write_table(frame: pd.DataFrame, path: Path, fmt: Literal["csv", "parquet"]) -> None:
    with written_whole(path) as temporary:
        if fmt == "csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)


def export_tables(
    store: ResultsStore, out_dir: str | Path, fmt: Literal["csv", "parquet"] = "csv"
) -> list[Path]:
    """Write every table, plus the runs overview, as `out_dir/<table>.<fmt>`."""
    out = Path(out_dir)
    written = []
    frames = {name: store.table(name) for name in TABLES}
    frames["overview"] = store.runs_overview()
    for name, frame in frames.items():
        path = out / f"{name}.{fmt}"
        write_table(frame, path, fmt)
        written.append(path)
    return written

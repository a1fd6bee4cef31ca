"""What a report is made of: its figures, its tables and the answers it prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sparsebench.report.figures import FigureNotes


@dataclass
class FigureEntry:
    scenario: str
    title: str
    stem: str
    energy: bool
    notes: FigureNotes


@dataclass
class Report:
    out_dir: Path
    index: Path
    svg: bool = True
    figures: list[FigureEntry] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    # the answer, one line per data set and model: what `report` prints on the terminal
    answers: list[str] = field(default_factory=list)
    # what the reader must know before trusting the answers (printed after them)
    cautions: list[str] = field(default_factory=list)
    # per section, figures not drawn and why (a quantity no run measured)
    not_drawn: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Tables:
    """The tables the report page shows."""

    first: pd.DataFrame
    first_intervals: pd.DataFrame  # each Table 1 cell's 95% interval, shown on hover
    references: pd.DataFrame
    bench: pd.DataFrame
    runs: pd.DataFrame
    advice: pd.DataFrame
    comparisons: pd.DataFrame
    mixed: pd.DataFrame  # configurations pooling runs of different producers

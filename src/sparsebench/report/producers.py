"""What produced a report's runs, said once, and every configuration that pools runs of
different producers named: floats computed by another release's numerics or another
CPU's kernels differ in their last bits and training amplifies that, so a mean over
seeds from two producers is a mean over two experiments."""

from __future__ import annotations

import pandas as pd

from sparsebench.models.registry import model_display_name
from sparsebench.report.compare import CONFIGURATION, keyed_runs
from sparsebench.report.results import Results, method_name

# What a producer is: the code that trained (its numerics and release) and the machine's
# kernels (the processor and the CPU capability torch dispatched to).
PRODUCER = {"numerics": "numerics", "release": "release", "machine": "machine"}


def producers_text(results: Results) -> str:
    """One sentence: the releases, numerics and machines of every run in the report."""
    runs = _with_machine(results.runs)
    said = []
    for column, name in PRODUCER.items():
        values = _values(runs[column])
        plural = "s" if len(values) > 1 else ""
        said.append(f"{name}{plural} {', '.join(values)}")
    return f"Produced by {'; '.join(said)}."


def mixed_configurations(results: Results) -> pd.DataFrame:
    """Each configuration (data set, model, method, scenario) whose runs come from more
    than one numerics, release or machine, and what differs; empty when none does."""
    runs = _with_machine(keyed_runs(results))
    rows = []
    for (dataset, model, method, scenario), group in runs.groupby(CONFIGURATION, sort=False):
        differs = {
            name: ", ".join(_values(group[column]))
            for column, name in PRODUCER.items()
            if group[column].fillna("unrecorded").nunique() > 1
        }
        if differs:
            rows.append(
                {
                    "data set": dataset,
                    "model": model_display_name(model),
                    "method": method_name(method),
                    "scenario": scenario,
                    "runs": len(group),
                    "mixes": "; ".join(f"{name}s {values}" for name, values in differs.items()),
                }
            )
    return pd.DataFrame(rows, columns=[*_HEADINGS])


_HEADINGS = ["data set", "model", "method", "scenario", "runs", "mixes"]


def _with_machine(runs: pd.DataFrame) -> pd.DataFrame:
    machine = runs.processor.fillna("unrecorded") + " (" + runs.cpu_capability.fillna("?") + ")"
    return runs.assign(machine=machine.where(runs.processor.notna()))


def _values(column: pd.Series) -> list[str]:
    """The distinct values, each with its count of runs, `unrecorded` for runs stored
    before sparsebench recorded it."""
    counts = column.astype("string").fillna("unrecorded").value_counts()
    if len(counts) == 1:
        return [str(counts.index[0])]
    return [f"{value} ({count} runs)" for value, count in counts.items()]

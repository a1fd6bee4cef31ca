"""Every configuration against dense, seed by seed: what the report may rank and what
it must call noise (see `spread`)."""

from __future__ import annotations

import pandas as pd

from sparsebench.models.registry import model_display_name
from sparsebench.report.results import Results, baseline_rows, method_name
from sparsebench.report.spread import (
    difference_text,
    paired_difference,
    spread_of,
    verdict,
)
from sparsebench.sparsity.methods import baseline_name, is_baseline


def by_seed(runs: pd.DataFrame, column: str) -> pd.Series:
    """A configuration's values indexed by seed (a seed run twice counts once, its mean)."""
    return runs.groupby("seed")[column].mean()


CONFIGURATION = ["data_label", "model", "method", "scenario"]


def keyed_runs(results: Results) -> pd.DataFrame:
    """The finished runs, a baseline run's scenario being the baseline's name (it is one
    run whatever the scenario)."""
    baseline = baseline_name()
    runs = results.runs.assign(scenario=results.runs.scenario.fillna(baseline))
    runs.loc[baseline_rows(runs), "scenario"] = baseline
    return runs


def configuration_runs(results: Results) -> dict[tuple[str, str, str, str], pd.DataFrame]:
    """The finished runs of each data set, model, method and scenario."""
    return {key: group for key, group in keyed_runs(results).groupby(CONFIGURATION, sort=False)}


def against_dense(results: Results) -> pd.DataFrame:
    """Per data set, model and configuration: its mean ± sd (n) and 95% interval, the
    paired difference from dense over shared seeds, and the verdict (better, worse,
    within noise, one seed)."""
    column = results.metric.column
    groups = configuration_runs(results)
    rows = []
    for (dataset, model, method, scenario), runs in groups.items():
        if is_baseline(method):
            continue
        spread = spread_of(runs[column])
        if spread is None:
            continue
        dense = groups.get((dataset, model, baseline_name(), baseline_name()))
        difference = (
            None
            if dense is None
            else paired_difference(by_seed(runs, column), by_seed(dense, column))
        )
        rows.append(
            {
                "data set": dataset,
                "model": model_display_name(model),
                "method": method_name(method),
                "scenario": scenario,
                results.metric.label: spread.cell(),
                "95% interval": spread.interval(),
                "minus dense (95% interval, shared seeds)": (
                    "no dense run" if difference is None else difference_text(difference)
                ),
                "against dense": "no dense run" if dense is None else verdict(difference),
            }
        )
    return pd.DataFrame(rows)

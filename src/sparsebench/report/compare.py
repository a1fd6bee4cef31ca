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
    verdict_text,
    verdicts,
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
    """Per data set, model and configuration: its mean ± sd (n), 95% interval and
    per-seed values, the paired difference from dense over shared seeds, and the
    verdict on it, corrected over every comparison of the report (`spread`)."""
    column = results.metric.column
    groups = configuration_runs(results)
    rows, differences = [], []
    for (dataset, model, method, scenario), runs in groups.items():
        if is_baseline(method):
            continue
        spread = spread_of(runs[column])
        if spread is None:
            continue
        dense = groups.get((dataset, model, baseline_name(), baseline_name()))
        seeds = by_seed(runs, column)
        difference = None if dense is None else paired_difference(seeds, by_seed(dense, column))
        differences.append(difference)
        rows.append(
            {
                "data set": dataset,
                "model": model_display_name(model),
                "method": method_name(method),
                "scenario": scenario,
                results.metric.label: spread.cell(),
                "95% interval": spread.interval(),
                "per seed": per_seed_text(seeds),
                "minus dense (95% interval, shared seeds)": (
                    "no dense run" if difference is None else difference_text(difference)
                ),
                "against dense": "no dense run" if dense is None else "",
            }
        )
    found = verdicts(differences, results.margin)
    for row, verdict, difference in zip(rows, found, differences, strict=True):
        if difference is not None:
            row["against dense"] = verdict_text(verdict, results.margin)
    return pd.DataFrame(rows)


def per_seed_text(seeds: pd.Series, places: int = 3) -> str:
    """`s0 0.981, s1 0.992, s2 0.989`: the values a cell's mean is of."""
    return ", ".join(f"s{seed} {value:.{places}f}" for seed, value in seeds.items())

"""The results a report draws, read from the database into tidy tables.

Only finished runs are drawn. A dense run belongs to every scenario (it is the baseline
each scenario is compared with), and a derived `post` run carries its dense run's
training. Missing measurements stay missing (NaN with the reason), never zero; runs that
diverged or failed are listed with why, and a figure marks their slot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sparsebench.confusion import balanced_accuracy, majority_share
from sparsebench.data.registry import data_label, dataset_display_name
from sparsebench.errors import InputError
from sparsebench.report.spread import MARGIN
from sparsebench.sparsity.methods import METHODS, is_baseline
from sparsebench.sparsity.scenarios import SCENARIOS
from sparsebench.store.results import open_results
from sparsebench.store.schema import SELECTIONS

SCENARIO_NAMES = {
    name: f"{name}: {targets.conv:.0%} of conv filters and {targets.linear:.0%} of linear "
    "weights pruned"
    for name, targets in SCENARIOS.items()
}


def method_name(method: str) -> str:
    """How figures and tables name a method: its display name, read from the registry
    when drawn (a method registered after import shows too); an unknown method, stored
    by a release that had it, under its stored name."""
    known = METHODS.get(method)
    return method if known is None else known.display_name


def baseline_rows(frame: pd.DataFrame) -> pd.Series:
    """Which rows of a table of runs are runs of the baseline (dense)."""
    return frame.method.map(is_baseline).astype(bool)


@dataclass(frozen=True)
class Metric:
    """The test metric that Table 1, the trade-off figures and the recommendations
    compare methods by (`report --metric`)."""

    name: str
    column: str
    label: str

    @property
    def heading(self) -> str:
        """The label opening a title: its first letter raised ('AUROC' stays as it is)."""
        return self.label[0].upper() + self.label[1:]


METRICS = {
    metric.name: metric
    for metric in (
        Metric("accuracy", "test_accuracy", "test accuracy"),
        Metric("balanced_accuracy", "test_balanced_accuracy", "balanced accuracy"),
        Metric("f1", "test_f1", "macro F1"),
        # Two-class data only: data with more classes has no value, and shows none.
        Metric("auroc", "test_auroc", "AUROC"),
        Metric("average_precision", "test_average_precision", "average precision"),
    )
}


@dataclass(frozen=True)
class Cost:
    """What the recommendations rank configurations by when they name the cheapest
    within one point of dense (`report --rank-by`): the inference time each run was
    tested at, or its multiply-adds per image, which no machine changes."""

    name: str
    column: str  # of `tradeoff.configurations`
    unit: str
    cheapest: str  # how the recommendation names the cheapest


COSTS = {
    cost.name: cost
    for cost in (
        Cost("latency", "inference_ms", "ms/image", "fastest"),
        Cost("macs", "mmacs", "MMACs/image", "fewest multiply-adds"),
    )
}


@dataclass
class Results:
    runs: pd.DataFrame  # one row per finished run
    epochs: pd.DataFrame  # one row per epoch of a finished run, with the run's keys
    bench: pd.DataFrame  # inference benchmark rows (deploy.bench), possibly empty
    # runs that ended without results (diverged, failed), with their keys and error
    unfinished: pd.DataFrame = field(default_factory=pd.DataFrame)
    metric: Metric = METRICS["accuracy"]
    cost: Cost = COSTS["latency"]
    select: str = "best-val"  # whose test metrics: the last epoch's or the best validation's
    left_out: int = 0  # finished runs without test metrics of that selection
    # no run of the database kept best-validation metrics, so the default fell back
    no_best_val: bool = False
    margin: float = MARGIN  # of equivalence, in the metric's units

    @property
    def empty(self) -> bool:
        return self.runs.empty

    def scenarios(self) -> list[str]:
        present = set(self.runs.loc[~baseline_rows(self.runs), "scenario"])
        known = [name for name in SCENARIOS if name in present]
        return known + sorted(present - set(known))

    def panels(self) -> list[tuple[str, str]]:
        """(data set, model) pairs in a stable order: rows of data sets, columns of models."""
        return [(dataset, model) for dataset in self.datasets() for model in self.models()]

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.runs.sort_values("created_at").data_label))

    def models(self) -> list[str]:
        return sorted(set(self.runs.model), key=lambda m: (m != "vgg16", m))

    def methods(self) -> list[str]:
        """The methods this database holds runs of (finished or not), in registry order;
        a method the registry no longer knows comes last, under its stored name."""
        present = set(self.runs.method) | set(self.unfinished.get("method", []))
        known = [name for name in METHODS if name in present]
        return known + sorted(present - set(known))

    def in_scenario(self, frame: pd.DataFrame, scenario: str) -> pd.DataFrame:
        return frame[(frame.scenario == scenario) | baseline_rows(frame)]

    def ended_as(self, scenario: str, dataset: str, model: str, method: str) -> str | None:
        """`diverged` or `failed` where a method has no finished run in a panel but did
        end so; None where it was not run at all."""
        if self.unfinished.empty:
            return None
        rows = self.in_scenario(self.unfinished, scenario)
        rows = rows[(rows.data_label == dataset) & (rows.model == model) & (rows.method == method)]
        return None if rows.empty else str(sorted(rows.status)[0])


def load_results(db: str | Path, select: str | None = None) -> Results:
    """The finished runs with the test metrics of the best validation epoch's weights
    (runs stored before those were kept are left out: `Results.left_out` counts them),
    or with `select="last"` of the last epoch's (the study's protocol). Without
    `select`, best-val; the last epoch's for a database none of whose runs kept them."""
    if select is not None and select not in SELECTIONS:
        raise InputError(f"--select: expected {' or '.join(SELECTIONS)}, got {select!r}")
    with open_results(db, read_only=True) as store:
        finished, kept = (
            store.connection.execute(query).fetchone()[0]
            for query in (
                "SELECT COUNT(*) FROM runs WHERE status = 'finished'",
                """SELECT COUNT(*) FROM best_val_metrics JOIN runs USING (run_id)
                   WHERE status = 'finished'""",
            )
        )
        no_best_val = select is None and finished > 0 and kept == 0
        select = select or ("last" if no_best_val else "best-val")
        table = "best_val_metrics" if select == "best-val" else "test_metrics"
        runs = pd.read_sql_query(
            f"""SELECT r.run_id, r.model, r.dataset, r.method, r.scenario, r.seed, r.epochs,
                      r.config_json, r.data_json, r.device, r.created_at, r.derived_from,
                      r.provenance_json,
                      r.total_train_time_s, r.total_train_energy_j,
                      r.sparsity_conv, r.sparsity_linear,
                      r.conv_sparsity AS conv_target, r.linear_sparsity AS linear_target,
                      t.accuracy AS test_accuracy, t.f1 AS test_f1, t.loss AS test_loss,
                      t.auroc AS test_auroc, t.average_precision AS test_average_precision,
                      t.positive_class,
                      t.inference_time_per_sample_s, t.inference_energy_j,
                      t.inference_energy_source, t.inference_energy_missing_reason,
                      t.params_dense, t.params_effective, t.macs_dense, t.macs_effective,
                      t.params_compact, t.macs_compact,
                      t.confusion_json
               FROM runs r JOIN {table} t USING (run_id)
               WHERE r.status = 'finished'""",
            store.connection,
        )
        epochs = pd.read_sql_query(
            """SELECT e.* FROM epochs e JOIN runs r USING (run_id)
               WHERE r.status = 'finished' ORDER BY e.run_id, e.epoch""",
            store.connection,
        )
        bench = store.table("inference_bench")
        unfinished = pd.read_sql_query(
            """SELECT run_id, model, dataset, method, scenario, seed, status, error,
                      config_json, created_at
               FROM runs WHERE status IN ('diverged', 'failed') ORDER BY created_at""",
            store.connection,
        )
    runs, unfinished, epochs = _derived_columns(runs, unfinished, epochs)
    return Results(
        runs=runs,
        epochs=epochs,
        bench=bench,
        unfinished=unfinished,
        select=select,
        left_out=finished - len(runs),
        no_best_val=no_best_val,
    )


def _derived_columns(
    runs: pd.DataFrame, unfinished: pd.DataFrame, epochs: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the report reads off the stored rows: the config's settings it shows, the
    data's own names, the metrics the confusion matrices give, the runs' keys on epochs."""
    for frame in (runs, unfinished):
        configs = frame.config_json.map(json.loads)
        frame["data_path"] = configs.map(lambda c: c.get("data_path"))
        frame["data_name"] = configs.map(lambda c: c.get("data_name"))
        frame["width"] = configs.map(lambda c: c.get("width"))
        # Runs stored before compact execution existed all trained masked.
        frame["execution"] = configs.map(lambda c: c.get("execution", "masked"))
    for frame in (runs, unfinished):
        frame["data_label"] = _data_labels(frame)
        frame["layout"] = frame.dataset.map(dataset_display_name)
    paths_per_label = runs.groupby("data_label").data_path.nunique(dropna=False)
    for frame in (runs, unfinished):
        frame["data_label"] = _distinct_labels(frame, paths_per_label)
    unfinished = unfinished.drop(columns=["config_json"])
    runs["train_energy_missing_reason"] = _energy_reasons(epochs, runs)
    for column in ("train_macs_per_sample", "train_macs_dense_per_sample"):
        runs[column] = runs.run_id.map(epochs.groupby("run_id")[column].mean())
    # the whole training's multiply-adds: unequal budgets (GMP and Post-Training train
    # partly dense, LTH several times) are visible
    per_sample = runs.run_id.map(epochs.groupby("run_id").train_macs_per_sample.sum(min_count=1))
    runs["training_macs"] = per_sample * runs.data_json.map(_train_samples)
    provenance = runs.pop("provenance_json").map(lambda text: json.loads(text) if text else {})
    for key in ("numerics", "release", "cpu_capability", "processor"):
        runs[key] = provenance.map(lambda produced, key=key: produced.get(key))
    runs["numerics"] = runs.numerics.fillna(1).astype(int)  # stored before numerics 2
    confusions = runs.confusion_json.map(lambda text: json.loads(text) if text else [])
    runs["test_majority_share"] = confusions.map(majority_share)
    runs["test_chance"] = confusions.map(lambda c: 1 / len(c) if c else None)
    runs["test_balanced_accuracy"] = confusions.map(balanced_accuracy)
    runs["test_confusion"] = confusions
    runs["class_names"] = runs.data_json.map(_class_names)
    runs = runs.drop(columns=["config_json", "confusion_json", "data_json"])
    keys = ["run_id", "model", "data_label", "method", "scenario", "seed", "derived_from"]
    epochs = epochs.merge(runs[keys], on="run_id")
    return runs, unfinished, epochs


def _data_labels(runs: pd.DataFrame) -> pd.Series:
    if not len(runs):
        return pd.Series(dtype=str)
    return runs.apply(lambda row: data_label(row.dataset, row.data_path, row.data_name), axis=1)


def _distinct_labels(runs: pd.DataFrame, paths_per_label: pd.Series) -> pd.Series:
    """Labels with their path where one name covers data read from several places."""

    def label(row: pd.Series) -> str:
        if paths_per_label.get(row.data_label, 0) > 1 and isinstance(row.data_path, str):
            return f"{row.data_label} ({row.data_path})"
        return row.data_label

    return runs.apply(label, axis=1) if len(runs) else pd.Series(dtype=str)


def _train_samples(data_json: str | None) -> float | None:
    if not data_json:
        return None
    return (json.loads(data_json).get("samples") or {}).get("train")


def _class_names(data_json: str | None) -> list[str]:
    """The classes of a run's data, in label order, as its data summary stored them."""
    if not data_json:
        return []
    return list(json.loads(data_json).get("classes") or [])


def _energy_reasons(epochs: pd.DataFrame, runs: pd.DataFrame) -> pd.Series:
    reasons = epochs.dropna(subset=["energy_missing_reason"]).groupby("run_id")
    first = reasons.energy_missing_reason.first()
    return runs.run_id.map(first)

"""Reading the results database: a run's status and summary, whole tables, and the
overview `sparsebench runs` shows. `ResultsStore` is a `RunReader`; these methods only
read, so a store opened read-only has them all."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd

from sparsebench.confusion import balanced_accuracy
from sparsebench.store.errors import named_errors
from sparsebench.store.locks import ProcessIdentity
from sparsebench.store.records import (
    EpochRecord,
    RunSummary,
    TestMetrics,
)
from sparsebench.store.schema import LAYER_COLUMNS, OVERVIEW_COLUMNS, OVERVIEW_METRICS, SELECTIONS


class RunReader:
    """The reading half of `ResultsStore`, on its `connection` (its SQLite errors named
    by the store's `error_for`)."""

    connection: sqlite3.Connection

    @named_errors
    def current_run_id(self, run_id: str) -> str:
        """The id a run has now, given the one it has now or one an earlier release gave it."""
        row = self.connection.execute(
            "SELECT run_id FROM run_aliases WHERE alias = ?", (run_id,)
        ).fetchone()
        return run_id if row is None else row["run_id"]

    @named_errors
    def earlier_run_ids(self, run_id: str) -> list[str]:
        """The ids earlier releases gave the run (its checkpoints may hold one)."""
        rows = self.connection.execute(
            "SELECT alias FROM run_aliases WHERE run_id = ? ORDER BY alias", (run_id,)
        )
        return [row["alias"] for row in rows]

    def _live_claims(self) -> set[str]:
        rows = self.connection.execute("SELECT * FROM run_locks").fetchall()
        return {
            row["run_id"]
            for row in rows
            if ProcessIdentity(row["host"], row["pid"], row["process_started"] or 0.0).alive()
        }

    def _shown_status(self, run_id: str, status: str) -> str:
        """A run stored as running whose process is gone (killed, or its disk filled up
        before it could say so) is interrupted: running it again resumes it."""
        if status == "running" and run_id not in self._live_claims():
            return "interrupted"
        return status

    @named_errors
    def run_status(self, run_id: str) -> str | None:
        row = self.connection.execute(
            "SELECT status FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else self._shown_status(run_id, row["status"])

    @named_errors
    def run_summary(self, run_id: str) -> RunSummary | None:
        """A stored run, in the shape of a run that just trained."""
        run = self.connection.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if run is None:
            return None
        epochs = [
            EpochRecord.from_row(row)
            for row in self.connection.execute(
                "SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)
            )
        ]
        test = self._test_metrics("test_metrics", run_id)
        best_val = self._test_metrics("best_val_metrics", run_id)
        layers = [
            {c: row[c] for c in LAYER_COLUMNS}
            for row in self.connection.execute(
                "SELECT * FROM layer_sparsity WHERE run_id = ? ORDER BY rowid", (run_id,)
            )
        ]
        by_kind = {}
        if run["sparsity_conv"] is not None:
            by_kind["conv"] = run["sparsity_conv"]
        if run["sparsity_linear"] is not None:
            by_kind["linear"] = run["sparsity_linear"]
        return RunSummary(
            run_id=run_id,
            status=self._shown_status(run_id, run["status"]),
            config=json.loads(run["config_json"]),
            device=run["device"],
            data=json.loads(run["data_json"]) if run["data_json"] else None,
            epochs=epochs,
            test=test,
            test_best_val=best_val,
            layers=layers,
            sparsity_by_kind=by_kind,
            error=run["error"],
            derived_from=run["derived_from"],
            legacy_run_id=run["legacy_run_id"],
            earlier_run_ids=self.earlier_run_ids(run_id),
            checkpoint=run["checkpoint"],
            provenance=json.loads(run["provenance_json"]) if run["provenance_json"] else None,
        )

    def _test_metrics(self, table: str, run_id: str) -> TestMetrics | None:
        row = self.connection.execute(
            f"SELECT * FROM {table} WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        return TestMetrics.from_row(row, json.loads(row["confusion_json"]))

    @named_errors
    def table(self, name: str) -> pd.DataFrame:
        if name not in (
            "runs",
            "epochs",
            "test_metrics",
            "best_val_metrics",
            "layer_sparsity",
            "inference_bench",
            "run_locks",
        ):
            raise ValueError(f"unknown table {name!r}")
        return pd.read_sql_query(f"SELECT * FROM {name}", self.connection)

    @named_errors
    def runs_overview(self, select: str = "best-val") -> pd.DataFrame:
        """One row per run with its test metrics (empty where not finished): those of the
        best validation epoch, or with `select="last"` those of the last epoch's weights;
        which in `selected` (a run stored before best-validation metrics were kept shows
        its last epoch's), the epoch in `selected_epoch`; `data_path` and `data_name` as
        the run was given them."""
        if select not in SELECTIONS:
            raise ValueError(f"unknown selection {select!r}")
        last_epoch = "(SELECT MAX(epoch) FROM epochs e WHERE e.run_id = r.run_id)"
        if select == "best-val":
            chosen = "b.run_id IS NOT NULL"
            pick = {
                column: f"CASE WHEN {chosen} THEN b.{column} ELSE l.{column} END"
                for column in OVERVIEW_METRICS
            }
            selected = f"""CASE WHEN {chosen} THEN 'best-val'
                                WHEN l.run_id IS NOT NULL THEN 'last' END"""
            epoch = f"CASE WHEN {chosen} THEN b.epoch ELSE {last_epoch} END"
        else:
            pick = {column: f"l.{column}" for column in OVERVIEW_METRICS}
            selected = "CASE WHEN l.run_id IS NOT NULL THEN 'last' END"
            epoch = last_epoch
        named = {"positive_class", "inference_time_per_sample_s", "params_effective"}
        named |= {"macs_effective", "confusion_json", "params_compact", "macs_compact"}
        metrics = ", ".join(
            f"{value} AS {column if column in named else 'test_' + column}"
            for column, value in pick.items()
        )
        frame = pd.read_sql_query(
            f"""SELECT r.run_id, r.model, r.dataset, r.method, r.scenario, r.seed, r.epochs,
                      r.status, {metrics}, r.total_train_time_s, r.total_train_energy_j,
                      r.sparsity_conv, r.sparsity_linear, r.derived_from, r.error,
                      {selected} AS selected, {epoch} AS selected_epoch,
                      json_extract(r.config_json, '$.data_path') AS data_path,
                      json_extract(r.config_json, '$.data_name') AS data_name
               FROM runs r LEFT JOIN test_metrics l USING (run_id)
                           LEFT JOIN best_val_metrics b USING (run_id)
               ORDER BY r.created_at""",
            self.connection,
        )[[*OVERVIEW_COLUMNS, "selected", "params_compact", "macs_compact"]]
        confusions = frame.pop("confusion_json").map(lambda text: json.loads(text) if text else [])
        balanced = confusions.map(balanced_accuracy)
        frame.insert(frame.columns.get_loc("test_accuracy") + 1, "test_balanced_accuracy", balanced)
        live = self._live_claims()
        stale = (frame.status == "running") & ~frame.run_id.isin(live)
        frame.loc[stale, "status"] = "interrupted"
        return frame

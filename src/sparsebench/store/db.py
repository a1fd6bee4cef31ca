"""The results database: SQLite in WAL mode, written in transactions by one writer.

Tables: `runs` (config JSON, status, timings), `epochs` (one row per epoch, train and
validation metrics with time, memory and energy), `test_metrics` (one row per finished
run: the last epoch's weights), `best_val_metrics` (the same, of the weights of the best
validation epoch, with that epoch), `layer_sparsity` (achieved sparsity of each layer of
a finished run), `inference_bench` (sparsebench bench), `run_aliases` (the ids earlier
releases gave a run, by which users and checkpoints know it) and `run_locks` (which
process trains a run now).

Commands that only read open it read-only: a missing, empty or foreign file is an error,
never a new database. Every SQLite error is raised as a `StoreError` naming the file.
WAL needs every process on one machine: the database is not for a network file system.

This module opens the database and writes runs' lives; the tables are declared in
`store.schema`, an older release's database is brought up to date by
`store.migrations`, reading is `store.reader`, federated runs' rows `store.federated`.
"""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from sparsebench.store.errors import StoreError, StoreFull, named_errors
from sparsebench.store.locks import ProcessIdentity, RunBusy
from sparsebench.store.migrations import Migration, create_tables, migrate
from sparsebench.store.reader import RunReader
from sparsebench.store.records import (
    EPOCH_COLUMNS,
    TEST_COLUMNS,
    EpochRecord,
    RunRecord,
    RunSummary,
)
from sparsebench.store.schema import (
    BENCH_COLUMNS,
    LAYER_COLUMNS,
    SCHEMA_VERSION,
)

# How a stored run config maps to its current run id (None: not a valid config). The
# store knows nothing of configs: whoever opens an older database gives it
# (`sparsebench.store.results.open_results`), to migrate its run ids.
RunIdentity = Callable[[dict], "str | None"]


class ResultsStore(RunReader):
    """The only code that writes results. Open it where results are gathered (the CLI
    or a sweep's driver); workers hand their results over rather than writing here.

    `read_only` is for commands that only look: the file must be an existing
    sparsebench database (one written by an older release is migrated, with a line
    saying so), and nothing is created or changed. `run_identity` maps a stored config
    to its current run id; a database whose run ids need migrating is refused without it.
    """

    def __init__(
        self, path: str | Path, read_only: bool = False, run_identity: RunIdentity | None = None
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.run_identity = run_identity
        self.me = ProcessIdentity.current()
        if read_only:
            self._check_exists()
        elif not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = self._connect()
        except sqlite3.DatabaseError as error:
            raise self.error_for(error) from None
        try:
            self._prepare()
        except BaseException:
            self.connection.close()
            raise

    def _check_exists(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"{self.path}: results database does not exist")
        if self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: empty file, not a results database")

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            connection = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
        else:
            connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @named_errors
    def _prepare(self) -> None:
        version = self.connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row["name"]
            for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: results database schema {version} is newer than this "
                f"sparsebench reads ({SCHEMA_VERSION}): upgrade sparsebench"
            )
        if tables and "runs" not in tables:
            raise StoreError(f"{self.path}: an SQLite database, but not a sparsebench one")
        if self.read_only and "runs" not in tables:
            raise StoreError(f"{self.path}: holds no results (no runs table)")
        if not self.read_only:  # only now that the file is known to be ours
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            # Reading an older release's database needs its newer columns: migrate it
            # once, saying so, rather than refuse it.
            self.connection.close()
            self.read_only = False
            self.connection = self._connect()
            self.connection.execute("PRAGMA journal_mode=WAL")
        self._create_or_migrate(version, bool(tables))

    def _create_or_migrate(self, version: int, existed: bool) -> None:
        # Rebuilding `runs` (SQLite cannot change a CHECK) must not cascade to the
        # tables that reference it, so foreign keys are off until it is done.
        self.connection.execute("PRAGMA foreign_keys=OFF")
        with self.transaction() as cursor:
            if existed:
                migrate(cursor, Migration(self.path, version, self._rekeyed))
            else:
                create_tables(cursor)
            if cursor.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise StoreError(f"{self.path}: rows that refer to no run; not migrated")
            cursor.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.connection.execute("PRAGMA foreign_keys=ON")
        if existed:
            warnings.warn(
                f"{self.path}: migrated from results database schema {version} to "
                f"{SCHEMA_VERSION} (this sparsebench's); older releases cannot write it",
                stacklevel=4,
            )

    def _rekeyed(self, config: dict) -> str | None:
        """A stored config's current run id, by the identity the store was opened with."""
        if self.run_identity is None:
            raise StoreError(
                f"{self.path}: written by an older release, its run ids need migrating: "
                "open it with sparsebench.store.results.open_results"
            )
        return self.run_identity(config)

    def error_for(self, error: Exception) -> StoreError:
        """`error` from SQLite as one line naming the file and what the user can do."""
        text = (
            str(error).rsplit(": ", 1)[-1]
            if isinstance(error, pd.errors.DatabaseError)
            else str(error)
        )
        if "full" in text:
            return StoreFull(f"{self.path}: cannot write: the disk is full ({text})")
        if "not a database" in text or "malformed" in text:
            return StoreError(
                f"{self.path}: damaged or not a results database ({text}); restore it or "
                "name another file with --db"
            )
        if "readonly" in text or "read-only" in text:
            return StoreError(f"{self.path}: cannot be written ({text})")
        return StoreError(f"{self.path}: {text}")

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("COMMIT")

    # Writing a run's life.

    @named_errors
    def begin_run(
        self,
        run: RunRecord,
        device: str,
        data: dict,
        checkpoint: str | Path | None = None,
    ) -> bool:
        """Record a run as running, without results yet, claimed by this process (RunBusy
        if another live process holds it); a run seen before keeps its creation time.
        `checkpoint`: where the run's checkpoint is written, so that the run is found
        again by its id alone. True when the store had no row for the run before."""
        now = time.time()
        run_id = run.run_id
        with self.transaction() as cursor:
            self.claim(cursor, run_id)
            created = (
                cursor.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None
            )
            cursor.execute(
                """INSERT INTO runs (run_id, config_json, model, dataset, method, scenario,
                       conv_sparsity, linear_sparsity, seed, epochs, status, device, data_json,
                       created_at, started_at, checkpoint)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status='running', error=NULL,
                       device=excluded.device, data_json=excluded.data_json,
                       started_at=excluded.started_at, finished_at=NULL,
                       checkpoint=COALESCE(excluded.checkpoint, checkpoint)""",
                (
                    run_id,
                    json.dumps(run.config, sort_keys=True),
                    run.model,
                    run.dataset,
                    run.method,
                    run.scenario,
                    run.conv_sparsity,
                    run.linear_sparsity,
                    run.seed,
                    run.epochs,
                    device,
                    json.dumps(data),
                    now,
                    now,
                    str(Path(checkpoint).resolve()) if checkpoint is not None else None,
                ),
            )
            # A run that starts again owns no results until it reports them; a resumed
            # one gets its checkpointed epochs back through `replace_epochs`.
            for table in ("epochs", "test_metrics", "layer_sparsity"):
                cursor.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        return created

    @named_errors
    def replace_epochs(self, run_id: str, rows: list[EpochRecord]) -> None:
        """Make the stored epochs exactly `rows` (a resumed run's checkpointed history)."""
        with self.transaction() as cursor:
            cursor.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            for row in rows:
                self._insert_epoch(cursor, run_id, row)

    @named_errors
    def record_epoch(self, run_id: str, row: EpochRecord) -> None:
        with self.transaction() as cursor:
            self._insert_epoch(cursor, run_id, row)

    def _insert_epoch(self, cursor: sqlite3.Cursor, run_id: str, row: EpochRecord) -> None:
        columns = ", ".join(EPOCH_COLUMNS)
        marks = ", ".join("?" for _ in EPOCH_COLUMNS)
        stored = row.as_row()
        cursor.execute(
            f"INSERT OR REPLACE INTO epochs (run_id, {columns}) VALUES (?, {marks})",
            (run_id, *(stored[c] for c in EPOCH_COLUMNS)),
        )

    @named_errors
    def finish_run(self, run_id: str, summary: RunSummary, derived_from: str | None = None) -> None:
        """Store a finished run's epochs, test metrics and layer sparsity, all or nothing.
        `derived_from` names the dense run whose training a derived `post` run reuses."""
        test, epochs, best_val = summary.test, summary.epochs, summary.test_best_val
        assert test is not None, f"run {run_id} finished without test metrics"
        energies = [row.energy_j for row in epochs]
        total_energy = None if any(e is None for e in energies) else float(sum(energies))
        by_kind = summary.sparsity_by_kind
        with self.transaction() as cursor:
            cursor.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
            for row in epochs:
                self._insert_epoch(cursor, run_id, row)
            columns = ", ".join(TEST_COLUMNS)
            marks = ", ".join("?" for _ in TEST_COLUMNS)
            cursor.execute(
                f"""INSERT OR REPLACE INTO test_metrics (run_id, {columns}, confusion_json)
                    VALUES (?, {marks}, ?)""",
                (run_id, *test.stored(), json.dumps(test.confusion_matrix)),
            )
            cursor.execute("DELETE FROM best_val_metrics WHERE run_id = ?", (run_id,))
            if best_val is not None:
                cursor.execute(
                    f"""INSERT INTO best_val_metrics (run_id, epoch, {columns}, confusion_json)
                        VALUES (?, ?, {marks}, ?)""",
                    (
                        run_id,
                        best_val.epoch,
                        *best_val.stored(),
                        json.dumps(best_val.confusion_matrix),
                    ),
                )
            cursor.execute("DELETE FROM layer_sparsity WHERE run_id = ?", (run_id,))
            cursor.executemany(
                f"""INSERT INTO layer_sparsity (run_id, {", ".join(LAYER_COLUMNS)})
                    VALUES (?, {", ".join("?" for _ in LAYER_COLUMNS)})""",
                [(run_id, *(layer[c] for c in LAYER_COLUMNS)) for layer in summary.layers],
            )
            cursor.execute(
                """UPDATE runs SET status='finished', error=NULL, finished_at=?,
                       total_train_time_s=?, total_train_energy_j=?, sparsity_conv=?,
                       sparsity_linear=?, derived_from=?,
                       device=COALESCE(?, device), data_json=COALESCE(?, data_json),
                       provenance_json=?
                   WHERE run_id=?""",
                (
                    time.time(),
                    float(sum(row.train_time_s for row in epochs)),
                    total_energy,
                    by_kind.get("conv"),
                    by_kind.get("linear"),
                    derived_from,
                    summary.device,
                    json.dumps(summary.data) if summary.data else None,
                    json.dumps(summary.provenance) if summary.provenance else None,
                    run_id,
                ),
            )
            self.release(cursor, run_id)

    @named_errors
    def record_inference_bench(
        self, run_id: str | None, subject: str, rows: list[dict], max_rel_difference: float
    ) -> None:
        """One benchmark's rows (deploy.bench), all or nothing."""
        columns = BENCH_COLUMNS
        now = time.time()
        with self.transaction() as cursor:
            cursor.executemany(
                f"""INSERT INTO inference_bench (run_id, subject, {", ".join(columns)},
                        max_rel_difference, created_at)
                    VALUES (?, ?, {", ".join("?" for _ in columns)}, ?, ?)""",
                [
                    (run_id, subject, *(row[c] for c in columns), max_rel_difference, now)
                    for row in rows
                ],
            )

    @named_errors
    def end_run(self, run_id: str, status: str, error: str | None, created: bool) -> None:
        """Store how a run that did not finish ended (`sparsebench.train.outcome` decides
        the status). A `refused` run that `begin_run` created is removed whole, so a
        refused input leaves nothing behind; one seen before stays, resumable, with why."""
        if status != "refused":
            self.mark_run(run_id, status, error)
        elif created:
            with self.transaction() as cursor:
                cursor.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                self.release(cursor, run_id)
        else:
            self.mark_run(run_id, "interrupted", error)

    def mark_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Set a run's status to `interrupted`, `failed` or `diverged` (with why)."""
        with self.transaction() as cursor:
            cursor.execute(
                "UPDATE runs SET status=?, error=?, finished_at=? WHERE run_id=?",
                (status, error, time.time(), run_id),
            )
            self.release(cursor, run_id)

    # Claims: one process trains a run at a time. `begin_run` claims it; `finish_run`
    # and `mark_run` give it up; a claim whose process died is stale.

    def claim(self, cursor: sqlite3.Cursor, run_id: str) -> None:
        """Claim `run_id` (a run's or a federated run's) for this process, inside the
        caller's transaction; RunBusy naming the live process that holds it."""
        row = cursor.execute("SELECT * FROM run_locks WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None:
            holder = ProcessIdentity(row["host"], row["pid"], row["process_started"] or 0.0)
            if holder != self.me and holder.alive():
                raise RunBusy(
                    f"run {run_id} is being trained by {holder.describe(row['acquired_at'])} "
                    f"using {self.path}: wait for it to end, or stop it"
                )
        cursor.execute(
            """INSERT OR REPLACE INTO run_locks (run_id, host, pid, process_started,
                   acquired_at) VALUES (?, ?, ?, ?, ?)""",
            (run_id, self.me.host, self.me.pid, self.me.started, time.time()),
        )

    def release(self, cursor: sqlite3.Cursor, run_id: str) -> None:
        """Give up this process's claim on `run_id`, inside the caller's transaction."""
        cursor.execute(
            "DELETE FROM run_locks WHERE run_id = ? AND host = ? AND pid = ?",
            (run_id, self.me.host, self.me.pid),
        )

"""An older release's results database brought to this schema: an ordered list of
steps, each applied to a database of the versions it names, in order (the version each
step answers is in `store.schema`'s history). The steps run in one transaction with the
creation of every table the database lacks (`SCHEMA`), so a migration that fails leaves
the database as it was."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparsebench.store.schema import (
    LATER_EPOCH_COLUMNS,
    NUMERICS_1,
    RUNS_COLUMNS,
    SCHEMA,
    SCHEMA_10_COLUMNS,
)

# A stored config's current run id (None: not a valid config); raises where the store
# was opened without a way to tell (`ResultsStore._rekeyed`).
Rekey = Callable[[dict], "str | None"]


@dataclass(frozen=True)
class Migration:
    """What a step may need to know: the database's file, its schema version before the
    migration, and how a stored config maps to its current run id."""

    path: Path
    version: int
    rekey: Rekey


@dataclass(frozen=True)
class Step:
    """`apply` to a database of a version `applies_to` accepts, and why."""

    applies_to: Callable[[int], bool]
    apply: Callable[[sqlite3.Cursor, Migration], None]
    why: str


def migrate(cursor: sqlite3.Cursor, migration: Migration) -> None:
    """Every step a database of schema `migration.version` needs, in order."""
    for step in STEPS:
        if step.applies_to(migration.version):
            step.apply(cursor, migration)


def add_columns(cursor: sqlite3.Cursor, table: str, columns: dict[str, str]) -> None:
    """Add to `table` those of `columns` (name: SQL type) it lacks."""
    present = {row["name"] for row in cursor.execute(f"PRAGMA table_info({table})")}
    for column, kind in columns.items():
        if column not in present:
            cursor.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _rebuild_runs(cursor: sqlite3.Cursor, migration: Migration) -> None:
    """The columns schemas 2 to 4 added, and `runs` rebuilt for its new CHECK (SQLite
    cannot change one in place)."""
    add_columns(
        cursor,
        "runs",
        {"derived_from": "TEXT", "legacy_run_id": "TEXT", "checkpoint": "TEXT"},
    )
    cursor.execute("ALTER TABLE runs ADD COLUMN provenance_json TEXT")
    cursor.execute(f"CREATE TABLE runs_v4 ({RUNS_COLUMNS})")
    cursor.execute("INSERT INTO runs_v4 SELECT * FROM runs")
    cursor.execute("DROP TABLE runs")
    cursor.execute("ALTER TABLE runs_v4 RENAME TO runs")


def create_tables(cursor: sqlite3.Cursor, migration: Migration | None = None) -> None:
    """Every table of this schema the database lacks (all of them in a new one)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            cursor.execute(statement)


def _add_checkpoint(cursor: sqlite3.Cursor, migration: Migration) -> None:
    cursor.execute("ALTER TABLE runs ADD COLUMN checkpoint TEXT")


def _add_epoch_columns(cursor: sqlite3.Cursor, migration: Migration) -> None:
    add_columns(cursor, "epochs", LATER_EPOCH_COLUMNS)


def _mark_numerics_1(cursor: sqlite3.Cursor, migration: Migration) -> None:
    """Say in every stored config what its run computed (`NUMERICS_1`), so that it keeps
    its id and is never taken for a run of today's numerics; schema 10's columns."""
    pairs = ", ".join("?, ?" for _ in NUMERICS_1)
    for table, where in (("runs", "$"), ("federated_runs", "$.run")):
        values = [item for key, value in NUMERICS_1.items() for item in (f"{where}.{key}", value)]
        cursor.execute(
            f"""UPDATE {table} SET config_json = json_set(config_json, {pairs})
                WHERE json_extract(config_json, ?) IS NULL""",
            (*values, f"{where}.numerics"),
        )
    for table, columns in SCHEMA_10_COLUMNS.items():
        add_columns(cursor, table, columns)


def _rekey_runs(cursor: sqlite3.Cursor, migration: Migration) -> None:
    """Give every run its current id, keeping the one it had as an alias (a user's
    scripts, and checkpoint folders, know it), and a first release's id also as
    `legacy_run_id`."""
    cursor.execute(
        """INSERT OR IGNORE INTO run_aliases (alias, run_id)
           SELECT legacy_run_id, run_id FROM runs WHERE legacy_run_id IS NOT NULL"""
    )
    rows = cursor.execute("SELECT run_id, config_json FROM runs").fetchall()
    taken = {row["run_id"] for row in rows}
    for row in rows:
        old = row["run_id"]
        new = migration.rekey(json.loads(row["config_json"]))
        if new is None or new == old:
            continue
        if new in taken:
            warnings.warn(
                f"{migration.path}: run {old} is the same computation as run {new} (they "
                "differed in a setting their method does not read); it keeps its id",
                stacklevel=6,
            )
            continue
        taken.add(new)
        _rename_run(cursor, old, new, first_release=migration.version < 4)


def _rename_run(cursor: sqlite3.Cursor, old: str, new: str, first_release: bool) -> None:
    cursor.execute("UPDATE runs SET run_id = ? WHERE run_id = ?", (new, old))
    if first_release:
        cursor.execute("UPDATE runs SET legacy_run_id = ? WHERE run_id = ?", (old, new))
    cursor.execute("UPDATE run_aliases SET run_id = ? WHERE run_id = ?", (new, old))
    cursor.execute("INSERT OR IGNORE INTO run_aliases VALUES (?, ?)", (old, new))
    cursor.execute("UPDATE runs SET derived_from = ? WHERE derived_from = ?", (new, old))
    for table in RUN_TABLES:
        cursor.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", (new, old))
    cursor.execute("DELETE FROM run_locks WHERE run_id = ?", (old,))


# The tables whose rows belong to one run, by its id.
RUN_TABLES = ("epochs", "test_metrics", "best_val_metrics", "layer_sparsity", "inference_bench")

STEPS = [
    Step(lambda v: v < 4, _rebuild_runs, "schemas 1-3: runs' later columns and CHECK"),
    Step(lambda v: True, create_tables, "every table of this schema the database lacks"),
    Step(lambda v: v == 4, _add_checkpoint, "schema 4: runs.checkpoint"),
    Step(lambda v: v < 6, _add_epoch_columns, "schema 5: the epochs' later columns"),
    # before rekeying: the run ids of numerics 1 are hashed from the marked configs
    Step(lambda v: v < 10, _mark_numerics_1, "schema 9: numerics 1 said; schema 10's columns"),
    Step(lambda v: v < 8, _rekey_runs, "schema 7: run ids without unread settings"),
]

"""Federated runs in the results database: the run, one row per round, one per client.

A round's row and its clients' rows are written in one transaction, before the
server's state file of that round is renamed into place; a run resumes from the round
of its state file, dropping any row written after it (that round is trained again, to
the same result).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pandas as pd

from sparsebench.store.db import ResultsStore, StoreError
from sparsebench.store.records import ClientRoundRecord, RoundRecord


def begin_federated_run(
    store: ResultsStore, run_id: str, config: dict[str, Any], partition: dict[str, Any]
) -> bool:
    """Record the run as running (again, when it resumes), with how its data was dealt,
    claimed by this process as a run is (RunBusy if another live process holds it).
    True when the store had no row for it before."""
    with _named(store), store.transaction() as cursor:
        store.claim(cursor, run_id)
        seen = "SELECT 1 FROM federated_runs WHERE run_id=?"
        created = cursor.execute(seen, (run_id,)).fetchone() is None
        cursor.execute(
            """INSERT INTO federated_runs (run_id, config_json, status, partition_json, created_at)
               VALUES (?, ?, 'running', ?, ?)
               ON CONFLICT(run_id) DO UPDATE SET status='running', error=NULL,
                   finished_at=NULL, partition_json=excluded.partition_json""",
            (run_id, json.dumps(config, sort_keys=True), json.dumps(partition), time.time()),
        )
    return created


def record_round(
    store: ResultsStore, run_id: str, row: RoundRecord, clients: list[ClientRoundRecord]
) -> None:
    """A finished round and its clients' parts, together or not at all."""
    values = row.as_row()
    with _named(store), store.transaction() as cursor:
        cursor.execute(
            f"INSERT OR REPLACE INTO federated_rounds (run_id, {', '.join(values)}) "
            f"VALUES (?, {', '.join('?' * len(values))})",
            (run_id, *values.values()),
        )
        for client in clients:
            part = client.as_row()
            cursor.execute(
                f"INSERT OR REPLACE INTO federated_clients (run_id, round, {', '.join(part)}) "
                f"VALUES (?, ?, {', '.join('?' * len(part))})",
                (run_id, row.round, *part.values()),
            )


def drop_rounds_after(store: ResultsStore, run_id: str, last_round: int) -> None:
    """Forget rounds after `last_round` (written, but their state was never saved)."""
    with _named(store), store.transaction() as cursor:
        for table in ("federated_rounds", "federated_clients"):
            cursor.execute(f"DELETE FROM {table} WHERE run_id=? AND round>?", (run_id, last_round))


def end_federated_run(
    store: ResultsStore, run_id: str, status: str, error: str | None = None, created: bool = False
) -> None:
    """Store how the run ended (`finished`, or what `train.outcome` decides) and give up
    its claim; a `refused` run that `begin_federated_run` created leaves nothing behind,
    one seen before stays, resumable, with why (as `ResultsStore.end_run`)."""
    with _named(store), store.transaction() as cursor:
        if status == "refused" and created:
            for table in ("federated_clients", "federated_rounds", "federated_runs"):
                cursor.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
        else:
            cursor.execute(
                "UPDATE federated_runs SET status=?, error=?, finished_at=? WHERE run_id=?",
                ("interrupted" if status == "refused" else status, error, time.time(), run_id),
            )
        store.release(cursor, run_id)


def federated_status(store: ResultsStore, run_id: str) -> str | None:
    row = store.connection.execute(
        "SELECT status FROM federated_runs WHERE run_id=?", (run_id,)
    ).fetchone()
    return None if row is None else row[0]


def federated_rounds(store: ResultsStore, run_id: str | None = None) -> pd.DataFrame:
    """Every round of `run_id` (of every federated run without one), in order."""
    where, args = ("WHERE run_id=?", (run_id,)) if run_id else ("", ())
    return pd.read_sql_query(
        f"SELECT * FROM federated_rounds {where} ORDER BY run_id, round",
        store.connection,
        params=args,
    )


def federated_clients(store: ResultsStore, run_id: str) -> pd.DataFrame:
    return pd.read_sql_query(
        "SELECT * FROM federated_clients WHERE run_id=? ORDER BY round, client",
        store.connection,
        params=(run_id,),
    )


def federated_runs(store: ResultsStore) -> pd.DataFrame:
    return pd.read_sql_query(
        "SELECT run_id, status, error, config_json, partition_json, created_at, finished_at "
        "FROM federated_runs ORDER BY created_at",
        store.connection,
    )


class _named:
    """SQLite errors raised as a StoreError naming the database file."""

    def __init__(self, store: ResultsStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _: object) -> None:
        if isinstance(error, sqlite3.Error) and not isinstance(error, StoreError):
            raise self.store.error_for(error) from error

"""The results database's tables as this release writes them, and what each schema
version added (`store.migrations` brings an older database here)."""

from __future__ import annotations

from sparsebench.store.records import (
    CLIENT_ROUND_COLUMNS,
    EPOCH_COLUMNS,
    ROUND_COLUMNS,
    TEST_COLUMNS,
)

# 1: the first release; 2: runs.derived_from; 3: status `diverged`, table run_locks;
# 4: run ids of settings version 2, the first release's kept in runs.legacy_run_id;
# 5: epochs.execution and the training multiply-adds per sample, executed and dense;
#    runs.checkpoint, where the run's checkpoint lives (absolute);
# 6: test_metrics.auroc, average_precision and positive_class (two-class data);
#    epochs.val_balanced_accuracy;
# 7: table best_val_metrics;
# 8: run ids without the settings a method does not read, every earlier id of a run in
#    table run_aliases;
# 9: tables federated_runs, federated_rounds and federated_clients;
# 10: every run config says its numerics (`settings.run.NUMERICS`): those stored before
#     are numerics 1, which validated on the test split where the data brought no
#     validation split; runs.provenance_json, what produced a run; test_metrics and
#     best_val_metrics params_compact and macs_compact.
SCHEMA_VERSION = 10
# What a config stored before schema 10 computed, in the keys that say so now.
NUMERICS_1 = {"numerics": 1, "validation": "test"}
# Which weights' test metrics are read: the last epoch's, or the best validation epoch's.
SELECTIONS = ("last", "best-val")
STATUSES = ("running", "interrupted", "finished", "failed", "diverged")

# Added to `epochs` after the first schema, with their SQL types.
LATER_EPOCH_COLUMNS = {
    "execution": "TEXT",
    "train_macs_per_sample": "REAL",
    "train_macs_dense_per_sample": "REAL",
    "val_balanced_accuracy": "REAL",
}

# Added to `test_metrics` after the first schema, with their SQL types.
LATER_TEST_COLUMNS = {
    "auroc": "REAL",
    "average_precision": "REAL",
    "positive_class": "TEXT",
    "params_compact": "INTEGER",
    "macs_compact": "INTEGER",
}

# The test metrics `runs_overview` shows, of the weights it selects.
OVERVIEW_METRICS = (
    "accuracy",
    "f1",
    "auroc",
    "average_precision",
    "positive_class",
    "precision",
    "recall",
    "loss",
    "inference_time_per_sample_s",
    "params_effective",
    "macs_effective",
    "confusion_json",
    "params_compact",
    "macs_compact",
)

# The columns of `runs_overview` in the order earlier releases gave them (scripts read
# them by position); `test_balanced_accuracy` follows `test_accuracy`, then any added later.
OVERVIEW_COLUMNS = (
    "run_id",
    "model",
    "dataset",
    "method",
    "scenario",
    "seed",
    "epochs",
    "status",
    "test_accuracy",
    "test_f1",
    "test_auroc",
    "test_average_precision",
    "positive_class",
    "test_precision",
    "test_recall",
    "test_loss",
    "total_train_time_s",
    "total_train_energy_j",
    "inference_time_per_sample_s",
    "sparsity_conv",
    "sparsity_linear",
    "params_effective",
    "macs_effective",
    "derived_from",
    "error",
    "confusion_json",
    "selected_epoch",
    "data_path",
    "data_name",
)

# The columns a database of an earlier schema gains at schema 10, by table.
SCHEMA_10_COLUMNS = {
    "test_metrics": LATER_TEST_COLUMNS,
    "best_val_metrics": LATER_TEST_COLUMNS,
    "federated_rounds": {
        "val_loss": "REAL",
        "val_accuracy": "REAL",
        "val_balanced_accuracy": "REAL",
    },
    "runs": {"provenance_json": "TEXT"},
}

BENCH_COLUMNS = [
    "variant",
    "batch_size",
    "threads",
    "latency_median_ms",
    "latency_p95_ms",
    "throughput_per_s",
    "macs_per_sample",
    "energy_per_inference_j",
    "energy_source",
    "energy_missing_reason",
    "speedup",
    "mac_ratio",
    "efficiency",
]

LAYER_COLUMNS = ["layer", "kind", "units", "pruned_units", "weights", "zero_weights", "sparsity"]

RUNS_COLUMNS = """
    run_id TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    model TEXT, dataset TEXT, method TEXT, scenario TEXT,
    conv_sparsity REAL, linear_sparsity REAL, seed INTEGER, epochs INTEGER,
    status TEXT NOT NULL CHECK (status IN ({})),
    error TEXT,
    device TEXT,
    data_json TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    total_train_time_s REAL, total_train_energy_j REAL,
    sparsity_conv REAL, sparsity_linear REAL,
    derived_from TEXT,
    legacy_run_id TEXT,
    checkpoint TEXT,
    provenance_json TEXT
""".format(", ".join(f"'{status}'" for status in STATUSES))

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs ({RUNS_COLUMNS});
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    {
    ", ".join(
        f"{c} {'TEXT' if c.endswith(('kind', 'source', 'reason', 'execution')) else 'REAL'}"
        for c in EPOCH_COLUMNS[1:]
    )
},
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS test_metrics (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
    {
    ", ".join(
        f"{c} {'TEXT' if c.endswith(('source', 'reason', 'class')) else 'REAL'}"
        for c in TEST_COLUMNS
    )
},
    confusion_json TEXT
);
CREATE TABLE IF NOT EXISTS best_val_metrics (
    run_id TEXT PRIMARY KEY REFERENCES runs(run_id) ON DELETE CASCADE,
    epoch INTEGER,
    {
    ", ".join(
        f"{c} {'TEXT' if c.endswith(('source', 'reason', 'class')) else 'REAL'}"
        for c in TEST_COLUMNS
    )
},
    confusion_json TEXT
);
CREATE TABLE IF NOT EXISTS inference_bench (
    bench_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT, subject TEXT NOT NULL, variant TEXT NOT NULL,
    batch_size INTEGER, threads INTEGER,
    latency_median_ms REAL, latency_p95_ms REAL, throughput_per_s REAL,
    macs_per_sample INTEGER, energy_per_inference_j REAL, energy_source TEXT,
    energy_missing_reason TEXT, speedup REAL, mac_ratio REAL, efficiency REAL,
    max_rel_difference REAL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS layer_sparsity (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    layer TEXT NOT NULL, kind TEXT NOT NULL,
    units INTEGER, pruned_units INTEGER, weights INTEGER, zero_weights INTEGER, sparsity REAL,
    PRIMARY KEY (run_id, layer)
);
CREATE TABLE IF NOT EXISTS run_aliases (
    alias TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS federated_runs (
    run_id TEXT PRIMARY KEY,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    error TEXT,
    partition_json TEXT,
    created_at REAL NOT NULL, finished_at REAL
);
CREATE TABLE IF NOT EXISTS federated_rounds (
    run_id TEXT NOT NULL REFERENCES federated_runs(run_id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    {", ".join(f"{c} {t}" for c, t in ROUND_COLUMNS.items() if c != "round")},
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS federated_clients (
    run_id TEXT NOT NULL REFERENCES federated_runs(run_id) ON DELETE CASCADE,
    round INTEGER NOT NULL,
    client INTEGER NOT NULL,
    {", ".join(f"{c} {t}" for c, t in CLIENT_ROUND_COLUMNS.items() if c != "client")},
    PRIMARY KEY (run_id, round, client)
);
CREATE TABLE IF NOT EXISTS run_locks (
    run_id TEXT PRIMARY KEY,
    host TEXT NOT NULL, pid INTEGER NOT NULL, process_started REAL,
    acquired_at REAL NOT NULL
);
"""

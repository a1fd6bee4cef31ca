import sqlite3

import pandas as pd
import pytest
import torch
from conftest import run_record

from sparsebench.store import ResultsStore, export_tables
from sparsebench.store.checkpoint import (
    Checkpoint,
    CheckpointWarning,
    load_resumable,
    save_checkpoint,
)
from sparsebench.store.records import EpochRecord, RunSummary, TestMetrics


def epoch_row(epoch, energy=None):
    return EpochRecord.from_row(
        {
            "epoch": epoch,
            "train_loss": 1.0 / (epoch + 1),
            "train_accuracy": 0.5,
            "train_f1": 0.4,
            "train_precision": 0.4,
            "train_recall": 0.4,
            "val_loss": 1.0,
            "val_accuracy": 0.5,
            "val_f1": 0.5,
            "val_precision": 0.5,
            "val_recall": 0.5,
            "train_time_s": 2.0,
            "peak_memory_bytes": 1000,
            "memory_kind": "cpu-rss",
            "energy_j": energy,
            "energy_source": None if energy is None else "cpu-rapl",
            "energy_missing_reason": "no RAPL" if energy is None else None,
        }
    )


CONFIG = {
    "model": "resnet18",
    "dataset": "synthetic",
    "method": "pre",
    "scenario": "mixed",
    "conv_sparsity": 0.5,
    "linear_sparsity": 0.8,
    "seed": 0,
    "epochs": 2,
}


def summary(epochs):
    return RunSummary(
        run_id="abc",
        status="finished",
        config=CONFIG,
        device="cpu",
        data=None,
        epochs=epochs,
        test_best_val=None,
        test=TestMetrics(
            **{
                "loss": 0.3,
                "accuracy": 0.9,
                "f1": 0.88,
                "precision": 0.87,
                "recall": 0.89,
                "confusion_matrix": [[9, 1], [1, 9]],
                "inference_time_per_sample_s": 1e-4,
                "inference_energy_j": None,
                "inference_energy_source": None,
                "inference_energy_missing_reason": "no RAPL",
                "params_dense": 100,
                "params_effective": 40,
                "macs_dense": 1000,
                "macs_effective": 400,
            }
        ),
        layers=[
            {
                "layer": "conv1",
                "kind": "conv",
                "units": 4,
                "pruned_units": 2,
                "weights": 36,
                "zero_weights": 18,
                "sparsity": 0.5,
            }
        ],
        sparsity_by_kind={"conv": 0.5},
    )


def test_database_is_in_wal_mode(tmp_path):
    with ResultsStore(tmp_path / "r.db"):
        pass
    connection = sqlite3.connect(tmp_path / "r.db")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_run_from_start_to_finish(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.begin_run(run_record("abc", CONFIG), "cpu", {"samples": {"train": 10}})
        assert store.run_status("abc") == "running"
        rows = [epoch_row(0), epoch_row(1)]
        for row in rows:
            store.record_epoch("abc", row)
        store.finish_run("abc", summary(rows))
        stored = store.run_summary("abc").as_json()
        assert stored["status"] == "finished"
        assert [row["epoch"] for row in stored["epochs"]] == [0, 1]
        assert stored["test"]["confusion_matrix"] == [[9, 1], [1, 9]]
        assert stored["sparsity"]["layers"][0]["pruned_units"] == 2
        overview = store.runs_overview()
        assert overview.loc[0, "test_accuracy"] == 0.9
        assert overview.loc[0, "total_train_time_s"] == 4.0
        # Energy missing in any epoch makes the total missing, never zero.
        assert pd.isna(overview.loc[0, "total_train_energy_j"])


def test_resumed_epochs_replace_what_was_stored(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.begin_run(run_record("abc", CONFIG), "cpu", {})
        for epoch in range(3):
            store.record_epoch("abc", epoch_row(epoch))
        store.replace_epochs("abc", [epoch_row(0, energy=5.0)])
        epochs = store.run_summary("abc").epochs
    assert len(epochs) == 1 and epochs[0].energy_j == 5.0


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.begin_run(run_record("abc", CONFIG), "cpu", {})
        broken = summary([epoch_row(0)])
        del broken.layers[0]["units"]
        with pytest.raises(KeyError):
            store.finish_run("abc", broken)
        assert store.run_status("abc") == "running"
        assert store.run_summary("abc").test is None
        assert store.run_summary("abc").epochs == []


def test_export_to_csv_and_parquet(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.begin_run(run_record("abc", CONFIG), "cpu", {})
        store.finish_run("abc", summary([epoch_row(0), epoch_row(1)]))
        csv_paths = export_tables(store, tmp_path / "csv", "csv")
        export_tables(store, tmp_path / "pq", "parquet")
    assert {p.name for p in csv_paths} >= {"runs.csv", "epochs.csv", "test_metrics.csv"}
    epochs = pd.read_csv(tmp_path / "csv" / "epochs.csv")
    assert list(epochs["epoch"]) == [0, 1]
    runs = pd.read_parquet(tmp_path / "pq" / "overview.parquet")
    assert runs.loc[0, "run_id"] == "abc" and runs.loc[0, "test_accuracy"] == 0.9
    assert not list((tmp_path / "csv").glob(".*tmp"))


def test_a_checkpoint_is_its_runs_under_any_of_its_ids_and_set_aside_otherwise(tmp_path):
    generator = torch.Generator().manual_seed(0).get_state()
    checkpoint = Checkpoint(
        run_id="aaa",
        model={"w": torch.zeros(2)},
        optimizer={"state": {}, "param_groups": [{"params": [0]}]},
        method={"masks": {}, "generator": generator, "step": 0},
        data_generator=generator,
        torch_rng=generator,
        history=[epoch_row(0)],
    )
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(checkpoint, path)
    loaded = load_resumable(path, "aaa")
    assert loaded is not None and loaded.run_id == "aaa" and loaded.history == [epoch_row(0)]
    assert torch.equal(loaded.model["w"], torch.zeros(2))
    earlier = load_resumable(path, "bbb", "aaa")  # an id an earlier release gave the run
    assert earlier is not None and earlier.run_id == "aaa"
    with pytest.warns(CheckpointWarning, match="holds run aaa, not bbb"):
        assert load_resumable(path, "bbb") is None
    assert not path.exists() and (tmp_path / "checkpoint.pt.damaged").is_file()

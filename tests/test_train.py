import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest
import torch

from sparsebench.data.synthetic import make_synthetic
from sparsebench.store import ResultsStore
from sparsebench.store.layout import checkpoint_path
from sparsebench.train import RunConfig, train_run
from sparsebench.train.loop import RunInterrupted
from sparsebench.train.run import run_and_record

# Measurements that differ between any two runs; everything else must match exactly.
MEASURED = {
    "train_time_s",
    "peak_memory_bytes",
    "energy_j",
    "inference_time_per_sample_s",
    "inference_energy_j",
}

EPOCH_METRICS = [
    f"{split}_{m}"
    for split in ("train", "val")
    for m in ("loss", "accuracy", "f1", "precision", "recall")
]


def small_config(**changes) -> RunConfig:
    values = dict(
        model="resnet18",
        width=0.125,
        dataset="synthetic",
        method="in",
        scenario="mixed",
        epochs=3,
        batch_size=32,
        lr=2e-3,
        seed=1,
        device="cpu",
        preset="study",  # two epochs learn more at the study's constant rate
    )
    values.update(changes)
    return RunConfig(**values)


def without_measurements(rows):
    """Records (or their JSON) without what is measured rather than computed."""
    rows = [row if isinstance(row, dict) else asdict(row) for row in rows]
    return [{k: v for k, v in row.items() if k not in MEASURED} for row in rows]


def test_every_metric_is_present_for_every_epoch(tmp_path):
    result = train_run(small_config(epochs=2), make_synthetic(), tmp_path / "c.pt")
    for row in result.epochs:
        for key in [*EPOCH_METRICS, "train_time_s", "peak_memory_bytes"]:
            assert isinstance(getattr(row, key), float | int), key
        assert row.peak_memory_bytes > 10 * 2**20
        assert row.memory_kind == "cpu-rss"
        # Energy is a measurement or missing with its reason, never a silent zero.
        assert (row.energy_j is None) == (row.energy_missing_reason is not None)
    test = result.test
    assert sum(map(sum, test.confusion_matrix)) == 256
    assert 0 < test.inference_time_per_sample_s < 1
    assert test.params_effective < test.params_dense
    assert test.macs_effective < test.macs_dense
    assert result.sparsity_by_kind["linear"] == pytest.approx(0.8, abs=0.01)
    assert result.test.accuracy > 0.5  # four learnable patterns, chance is 0.25


@pytest.mark.parametrize(
    ("model", "method"), [("resnet18", "in"), ("vgg16", "set"), ("resnet18", "post")]
)
def test_resumed_run_ends_with_the_same_metrics(tmp_path, model, method):
    config = small_config(model=model, method=method)
    data = make_synthetic()
    straight = train_run(config, data, tmp_path / "straight.pt")
    with pytest.raises(RunInterrupted):
        train_run(config, data, tmp_path / "resumed.pt", stop_after_epoch=0)
    resumed = train_run(config, data, tmp_path / "resumed.pt")
    assert resumed.resumed_from_epoch == 1
    assert without_measurements(resumed.epochs) == without_measurements(straight.epochs)
    assert without_measurements([resumed.test]) == without_measurements([straight.test])
    assert without_measurements([resumed.test_best_val]) == without_measurements(
        [straight.test_best_val]
    )
    assert resumed.layers == straight.layers


def test_a_run_killed_mid_epoch_resumes_to_the_same_database_rows(tmp_path):
    """SIGKILL in the middle of the second epoch, then `run_and_record` again."""
    config = small_config(epochs=3)
    with ResultsStore(tmp_path / "straight.db") as store:
        run_and_record(config, make_synthetic(), store, tmp_path / "runs-straight")
        expected = store.run_summary(config.run_id()).as_json()

    script = textwrap.dedent(
        f"""
        import os, signal
        from sparsebench.data.synthetic import make_synthetic
        from sparsebench.store import ResultsStore
        from sparsebench.train import RunConfig
        from sparsebench.train.loop import EpochProgress
        from sparsebench.train.run import run_and_record

        class KillMidway(EpochProgress):
            batches = 0
            def advance(self):
                self.batches += 1
                if self.batches == 16 + 8:  # 16 batches an epoch: halfway through epoch 2
                    os.kill(os.getpid(), signal.SIGKILL)

        config = RunConfig(**{config.model_dump()!r})
        with ResultsStore({str(tmp_path / "killed.db")!r}) as store:
            run_and_record(config, make_synthetic(), store, {str(tmp_path / "runs")!r},
                           progress=KillMidway())
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with ResultsStore(tmp_path / "killed.db") as store:
        # stored as running, but its process is gone: shown as interrupted
        assert store.run_status(config.run_id()) == "interrupted"
        assert len(store.run_summary(config.run_id()).epochs) == 1
        summary = run_and_record(config, make_synthetic(), store, tmp_path / "runs")
        assert summary.resumed_from_epoch == 1
        stored = store.run_summary(config.run_id()).as_json()
    assert stored["status"] == "finished"
    assert without_measurements(stored["epochs"]) == without_measurements(expected["epochs"])
    assert without_measurements([stored["test"]]) == without_measurements([expected["test"]])
    assert stored["sparsity"] == expected["sparsity"]
    assert os.path.isfile(checkpoint_path(tmp_path / "runs", config.run_id()))


def test_a_finished_run_is_not_trained_again(tmp_path):
    config = small_config(epochs=1, method="pre")
    with ResultsStore(tmp_path / "r.db") as store:
        first = run_and_record(config, make_synthetic(), store, tmp_path / "runs").as_json()
        second = run_and_record(config, make_synthetic(), store, tmp_path / "runs").as_json()
    assert second["reused"] is True
    assert second["test"]["accuracy"] == first["test"]["accuracy"]


def test_run_id_depends_on_what_is_trained_not_where():
    a = small_config()
    assert a.run_id() == small_config(device="auto").run_id()
    assert a.run_id() != small_config(seed=2).run_id()
    explicit = small_config(scenario=None, conv_sparsity=0.5, linear_sparsity=0.8)
    assert explicit.run_id() == a.run_id() and explicit.scenario == "mixed"
    assert RunConfig(**a.model_dump()).run_id() == a.run_id()  # a stored config round-trips
    dense = small_config(method="dense")
    assert dense.run_id() == small_config(method="dense", scenario="uniform").run_id()
    assert dense.conv_sparsity == 0.0 and dense.scenario is None


def test_a_run_records_what_produced_it(tmp_path):
    """The release, numerics, torch build, CPU kernels and memory layout, stored with the
    run and read back; the kernels as torch reports them in this very process."""
    from sparsebench.train.run import run_and_record

    config = small_config(epochs=1, memory_format="contiguous")
    with ResultsStore(tmp_path / "r.db") as store:
        run_and_record(config, make_synthetic(), store, tmp_path / "runs")
        stored = store.run_summary(config.run_id()).provenance
    assert stored["numerics"] == config.numerics == 2
    assert stored["torch"] == torch.__version__
    assert stored["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert stored["memory_layout"] == "contiguous" and stored["device"] == "cpu"
    assert stored["release"].startswith("0.1.0")

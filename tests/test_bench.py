import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.deploy.bench import bench_subject
from sparsebench.models import build_model
from sparsebench.sparsity.methods import METHODS
from sparsebench.sparsity.report import sparsity_by_kind, sparsity_report
from sparsebench.store import ResultsStore

runner = CliRunner()


def test_bench_of_a_masked_model_reports_and_stores_every_variant(tmp_path):
    db = tmp_path / "r.db"
    result = runner.invoke(
        app,
        [
            "bench",
            "--model",
            "resnet18",
            "--width",
            "0.25",
            "--scenario",
            "uniform",
            "--image-size",
            "32",
            "--batch-sizes",
            "1,8",
            "--threads",
            "1",
            "--repeats",
            "3",
            "--db",
            str(db),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["max_rel_difference"] < 1e-5
    rows = pd.DataFrame(report["rows"])
    assert sorted(set(rows["variant"])) == ["compact", "masked", "onnx-float", "onnx-int8"]
    assert len(rows) == 8 and set(rows["batch_size"]) == {1, 8}
    masked = rows[rows["variant"] == "masked"]
    assert (masked["speedup"] == 1.0).all() and (masked["mac_ratio"] == 1.0).all()
    compact = rows[rows["variant"] == "compact"].iloc[0]
    # Uniform: 80% of filters gone in every conv, so far fewer MACs.
    assert compact["mac_ratio"] > 5
    assert compact["efficiency"] == compact["speedup"] / compact["mac_ratio"]
    assert (rows["latency_p95_ms"] >= rows["latency_median_ms"]).all()
    assert (rows["energy_per_inference_j"].isna() == rows["energy_missing_reason"].notna()).all()
    with ResultsStore(db) as store:
        stored = store.table("inference_bench")
    assert len(stored) == 8 and stored["subject"].iloc[0].startswith("resnet18 x0.25 32px pre")


def test_bench_refuses_bad_lists(tmp_path):
    result = runner.invoke(app, ["bench", "--batch-sizes", "1,x", "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 2 and "--batch-sizes" in result.stderr


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"snip"}))
def test_bench_of_an_untrained_network_measures_it_at_the_methods_final_sparsity(method):
    network, _, label = bench_subject("resnet18", method, "uniform", 0.125, 28)
    by_kind = sparsity_by_kind(sparsity_report(network))
    # uniform: conv, linear; the small dense network is thinner, not pruned
    targets = (0.0, 0.0) if method in ("dense", "small-dense") else (0.8, 0.8)
    assert by_kind["conv"] == pytest.approx(targets[0], abs=0.05), label
    assert by_kind["linear"] == pytest.approx(targets[1], abs=0.05), label


def test_bench_refuses_a_method_that_needs_data_to_choose_its_mask(tmp_path):
    result = runner.invoke(
        app, ["bench", "--method", "snip", "--db", str(tmp_path / "r.db"), "--repeats", "1"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "training data" in result.stderr
    assert "bench a trained snip run by its id" in result.stderr


def test_bench_of_the_small_dense_network_builds_it_at_the_scenarios_width():
    network, _, _ = bench_subject("resnet18", "small-dense", "uniform", 0.125, 28)
    thin = build_model("resnet18", num_classes=10, image_size=28, width=0.025)
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in thin.parameters())

import shutil

import onnx
import pytest
from conftest import cli_json
from typer.testing import CliRunner

from sparsebench.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    summary = cli_json(
        [
            "train",
            "--model",
            "resnet18",
            "--width",
            "0.23",
            "--dataset",
            "synthetic",
            "--method",
            "set",
            "--epochs",
            "2",
            "--lr",
            "0.002",
        ],
        folder,
    )
    return folder, summary["run_id"]


def test_export_float_and_int8_onnx_match_pytorch(trained_run):
    folder, run_id = trained_run
    out = folder / "deploy" / "model.onnx"
    report = cli_json(
        ["export", run_id, "--out", str(out), "--quantize", "int8", "--calibration-samples", "64"],
        folder,
    )
    assert report["max_rel_difference"] < 1e-4
    assert report["test_accuracy_onnx"] == pytest.approx(report["test_accuracy_torch"], abs=1e-3)
    assert report["calibration_samples"] == 64
    masked, compact = report["counts"]["masked"], report["counts"]["compact"]
    assert compact["macs_dense"] < masked["macs_dense"]
    assert compact["params_dense"] < masked["params_dense"]
    assert compact["file_bytes"] < masked["file_bytes"]
    assert compact["params_effective"] <= masked["params_effective"]
    assert abs(report["test_accuracy_int8"] - report["test_accuracy_onnx"]) < 0.1
    assert report["onnx_int8_bytes"] < 0.5 * report["onnx_bytes"]
    quantized = onnx.load(report["onnx_int8"])
    assert any(node.op_type == "QuantizeLinear" for node in quantized.graph.node)
    onnx.checker.check_model(onnx.load(str(out)))
    assert not list(out.parent.glob(".*tmp"))


def test_compact_export_is_smaller_than_masked_export(trained_run):
    folder, run_id = trained_run
    sizes = {}
    for flag in ("--compact", "--no-compact"):
        out = folder / f"m{flag}.onnx"
        sizes[flag] = cli_json(["export", run_id, "--out", str(out), flag], folder)["onnx_bytes"]
    assert sizes["--compact"] < 0.7 * sizes["--no-compact"]


def test_export_of_an_unknown_run_is_refused(trained_run, tmp_path):
    folder, _ = trained_run
    result = runner.invoke(
        app, ["export", "nope", "--out", str(tmp_path / "m.onnx"), "--db", str(folder / "r.db")]
    )
    assert result.exit_code == 2
    assert "run 'nope' is not in" in result.stderr


def test_bench_of_a_trained_run_uses_its_data_and_stores_its_id(trained_run):
    from sparsebench.store import ResultsStore

    folder, run_id = trained_run
    report = cli_json(
        ["bench", run_id, "--batch-sizes", "2", "--threads", "1", "--repeats", "2"], folder
    )
    assert report["run_id"] == run_id and report["max_rel_difference"] < 1e-5
    assert {row["variant"] for row in report["rows"]} == {
        "masked",
        "compact",
        "onnx-float",
        "onnx-int8",
    }
    with ResultsStore(folder / "r.db") as store:
        stored = store.table("inference_bench")
    assert set(stored["run_id"]) == {run_id}


def test_a_run_is_found_by_its_id_and_database_alone(trained_run, tmp_path, monkeypatch):
    folder, run_id = trained_run
    monkeypatch.chdir(tmp_path)  # far from the runs folder: the database says where it is
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", run_id, "--db", str(folder / "r.db"), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.is_file()


def test_a_moved_runs_folder_is_named_and_found_with_runs_dir(tmp_path):
    train = ["train", "--model", "resnet18", "--width", "0.0625", "--dataset", "synthetic"]
    run_id = cli_json([*train, "--method", "pre", "--epochs", "1"], tmp_path)["run_id"]
    shutil.move(tmp_path / "runs", tmp_path / "elsewhere")
    export = ["export", run_id, "--db", str(tmp_path / "r.db"), "--out", str(tmp_path / "m.onnx")]
    lost = runner.invoke(app, export)
    assert lost.exit_code == 2
    expected = (
        f"error: {tmp_path.resolve() / 'runs' / run_id / 'checkpoint.pt'}: checkpoint of run "
        f"{run_id} does not exist (where {tmp_path / 'r.db'} says it is); if its folder "
        "moved, give --runs-dir FOLDER"
    )
    assert lost.stderr.strip() == expected
    found = runner.invoke(app, [*export, "--runs-dir", str(tmp_path / "elsewhere")])
    assert found.exit_code == 0, found.stderr

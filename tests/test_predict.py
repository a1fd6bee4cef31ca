"""`sparsebench predict`: new image files classified as the run's own test evaluation
classifies them, with the compact model or an exported ONNX one."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_json, shared_path
from PIL import Image
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.dataset import BatchLoader
from sparsebench.deploy.load import load_run
from sparsebench.errors import InputError

runner = CliRunner()


def write_class_images(folder: Path, count: int, seed: int) -> None:
    """Two classes a camera could tell apart: bright on the left, or on the right;
    RGB, 40x30 (not square, not the model's size), with noise."""
    generator = np.random.default_rng(seed)
    for label, side in (("left", 0), ("right", 1)):
        (folder / label).mkdir(parents=True)
        for k in range(count):
            pixels = generator.integers(0, 90, (30, 40, 3), dtype=np.uint8)
            pixels[:, side * 20 : side * 20 + 20] += 150
            Image.fromarray(pixels, "RGB").save(folder / label / f"{label}_{k:02d}.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    for split, count, seed in (("train", 24, 0), ("val", 4, 1), ("test", 8, 2)):
        write_class_images(folder / "data" / split, count, seed)
    run = cli_json(
        [
            "train",
            "--model",
            "resnet18",
            "--width",
            "0.125",
            "--dataset",
            "folder",
            "--data-path",
            str(folder / "data"),
            "--image-size",
            "32",
            "--method",
            "pre",
            "--epochs",
            "2",
            "--lr",
            "0.003",
        ],
        folder,
    )
    return folder, run["run_id"]


def evaluated_classes(folder: Path, run_id: str) -> list[int]:
    """What the run's test evaluation says of each test image, in the loader's order."""
    run = load_run(run_id, folder / "r.db")
    data = run.dataset()
    loader = BatchLoader(data.splits["test"], data.mean, data.std, 64, torch.device("cpu"))
    with torch.inference_mode():
        return [int(c) for x, _ in loader for c in run.model(x).argmax(1)]


def held_out_images(folder: Path) -> list[Path]:
    test = folder / "data" / "test"
    return [path for label in ("left", "right") for path in sorted((test / label).glob("*"))]


def predict(folder: Path, run_id: str, *args: str):
    return runner.invoke(app, ["predict", run_id, *args, "--db", str(folder / "r.db")])


def test_a_folder_is_classified_as_the_run_tested_it(trained):
    folder, run_id = trained
    result = predict(folder, run_id, "--folder", str(folder / "data" / "test"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = {row["path"]: row for row in json.loads(result.stdout)}
    expected = evaluated_classes(folder, run_id)
    assert [rows[str(path)]["class_index"] for path in held_out_images(folder)] == expected
    row = rows[str(held_out_images(folder)[0])]
    assert row["class"] == ["left", "right"][row["class_index"]]
    assert len(row["top_k"]) == 2  # two classes: top 3 is top 2
    assert sum(t["probability"] for t in row["top_k"]) == pytest.approx(1.0, abs=1e-5)
    assert row["top_k"][0]["probability"] == row["probability"]


def test_an_onnx_model_classifies_the_same(trained, tmp_path):
    folder, run_id = trained
    model = tmp_path / "model.onnx"
    exported = runner.invoke(
        app,
        ["export", run_id, "--db", str(folder / "r.db"), "--out", str(model)]
        + ["--quantize", "int8", "--calibration-samples", "16"],
    )
    assert exported.exit_code == 0, exported.stderr
    paths = [str(path) for path in held_out_images(folder)]
    result = predict(folder, run_id, *paths, "--onnx", str(model), "--out", str(tmp_path / "p.csv"))
    assert result.exit_code == 0, result.stderr
    with open(tmp_path / "p.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert [row["path"] for row in rows] == paths
    assert [int(row["class_index"]) for row in rows] == evaluated_classes(folder, run_id)
    assert f"gives the same class for {len(paths)} of {len(paths)} images (100.0%)" in (
        result.stderr
    )
    # int8 may disagree now and then: how often is reported
    int8 = predict(folder, run_id, *paths, "--onnx", str(tmp_path / "model.int8.onnx"))
    assert int8.exit_code == 0, int8.stderr
    assert re.search(rf"gives the same class for \d+ of {len(paths)} images", int8.stderr)


def test_an_image_that_does_not_decode_gets_its_own_row_and_the_rest_go_on(trained, tmp_path):
    folder, run_id = trained
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = held_out_images(folder)[0]
    result = predict(folder, run_id, str(good), str(broken))
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["class"] in ("left", "right") and rows[0]["error"] == ""
    assert rows[1]["class"] == "" and "image cannot be decoded" in rows[1]["error"]
    assert f"error: {broken}: image cannot be decoded" in result.stderr
    assert "1 of 2 images could not be read" in result.stderr


def test_without_images_or_with_a_bad_option_one_line(trained):
    folder, run_id = trained
    nothing = predict(folder, run_id)
    assert nothing.exit_code == 2
    assert nothing.stderr.strip() == "error: no images: name image files or give --folder DIR"
    wrong = predict(folder, run_id, "--folder", str(folder / "data"), "--format", "xml")
    assert wrong.exit_code == 2 and "--format: expected csv or json" in wrong.stderr


@pytest.mark.slow
def test_real_images_are_classified_as_the_run_tested_them(tmp_path):
    """Magnetic-tile images (VisA layout, its 2cls_highshot split): every test image's
    class from `predict --folder` is the run's test evaluation's."""
    root = shared_path("magnetic_tile_visa")
    train = ["train", "--model", "resnet18", "--width", "0.125", "--dataset", "visa"]
    train += ["--data-path", str(root), "--split", "csv:2cls_highshot", "--image-size", "32"]
    run_id = cli_json([*train, "--method", "pre", "--epochs", "1"], tmp_path)["run_id"]
    folder = root / "magnetic_tile" / "Data" / "Images"
    result = predict(tmp_path, run_id, "--folder", str(folder), "--format", "json")
    assert result.exit_code == 0, result.stderr
    predicted = {row["path"]: row["class_index"] for row in json.loads(result.stdout)}
    with open(root / "split_csv" / "2cls_highshot.csv", newline="") as table:
        tested = [
            str(root / row["image"]) for row in csv.DictReader(table) if row["split"] == "test"
        ]
    assert [predicted[path] for path in tested] == evaluated_classes(tmp_path, run_id)


def test_preprocessing_is_read_from_the_data_sets_spec(monkeypatch):
    """A new image is made as the run's training images were: data stored as arrays is
    decoded straight at the model's size, decoded image sets at their decode size; a
    data set this process does not know is refused rather than guessed."""
    from sparsebench.data import registry
    from sparsebench.data.options import DEFAULT_IMAGE_SIZE
    from sparsebench.deploy.load import TrainedRun
    from sparsebench.deploy.predict import Preprocessing

    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    for name, arrays in (("my-arrays", True), ("my-images", False)):
        registry.register_dataset(name, path_optional=True, arrays=arrays)(lambda p, o: None)
    data = {"image_shape": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3, "classes": ["a"]}

    def decode_size(dataset: str) -> int:
        run = TrainedRun("r", torch.nn.Identity(), {"dataset": dataset}, data)
        return Preprocessing.of_run(run).decode_size

    assert decode_size("my-arrays") == 32 and decode_size("bloodmnist") == 32
    assert decode_size("my-images") == DEFAULT_IMAGE_SIZE == 64
    with pytest.raises(InputError, match="unknown data set 'gone'"):
        decode_size("gone")

"""Broken files, hostile input and faults, as a user meets them: each ends in one clear
line (exit code 2, no traceback) and leaves nothing half-written or silently wrong.
Every test builds its own broken input or fault."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import sqlite3
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data import DataOptions, load_dataset
from sparsebench.data.images import decode_images, to_8bit
from sparsebench.errors import DataWarning, InputError
from sparsebench.store import ResultsStore
from sparsebench.store.layout import checkpoint_path
from sparsebench.train import RunConfig
from sparsebench.train.recorder import run_record

runner = CliRunner()

TINY_RUN = [
    "--model",
    "resnet18",
    "--width",
    "0.125",
    "--dataset",
    "synthetic",
    "--method",
    "pre",
    "--batch-size",
    "64",
    "--lr",
    "0.002",
    "--device",
    "cpu",
]


def invoke(args: list[str], folder: Path, *extra: str):
    return runner.invoke(
        app,
        [*args, "--db", str(folder / "r.db"), "--runs-dir", str(folder / "runs"), *extra],
    )


def assert_one_line(result, *needles: str, code: int = 2) -> str:
    """The command failed with `code`, at most three lines on stderr, no traceback, and
    the last line says every needle."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, lines
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_args(epochs: int) -> list[str]:
    return ["train", *TINY_RUN, "--epochs", str(epochs)]


def tiny_config(epochs: int) -> RunConfig:
    return RunConfig(
        model="resnet18",
        width=0.125,
        dataset="synthetic",
        method="pre",
        batch_size=64,
        lr=0.002,
        device="cpu",
        epochs=epochs,
    )


def stored(folder: Path, run_id: str) -> dict:
    with ResultsStore(folder / "r.db", read_only=True) as store:
        summary = store.run_summary(run_id)
    assert summary is not None
    return summary.as_json()


def outcome(summary: dict) -> tuple:
    """What a run computed, without its timings."""
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    epochs = [tuple(row[key] for key in keys) for row in summary["epochs"]]
    return epochs, summary["test"]["accuracy"], summary["test"]["loss"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """A 3-epoch tiny run trained without trouble, to compare recoveries with."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    result = invoke(train_args(3), folder, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# 1. Every image mode to 8 bits, never silently clipped.


def grey_ramp() -> np.ndarray:
    return np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)


def test_16_bit_grey_png_decodes_to_its_8_bit_content(tmp_path):
    eight = grey_ramp()
    Image.fromarray(eight, mode="L").save(tmp_path / "eight.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    decoded = decode_images(
        [tmp_path / "eight.png", tmp_path / "sixteen.png"], 16, tmp_path / "cache"
    )
    assert torch.equal(decoded[1, 0], torch.from_numpy(eight))
    assert torch.equal(decoded[0], decoded[1])


def test_16_bit_values_scale_from_the_full_range_and_round():
    values = np.array([[0, 128, 129, 1000, 32768, 65535]], dtype=np.uint16)
    # v * 255 / 65535: 0.498 -> 0, 0.502 -> 1, 3.891 -> 4, 127.5 -> 128, 255
    expected = [[0, 0, 1, 4, 128, 255]]
    assert np.asarray(to_8bit(Image.fromarray(values), 1)).tolist() == expected


def test_32_bit_integer_and_float_images_follow_the_documented_rule(tmp_path):
    sixteen = Image.fromarray(grey_ramp().astype(np.int32) * 257)
    assert sixteen.mode == "I"
    assert np.array_equal(np.asarray(to_8bit(sixteen, 1)), grey_ramp())
    unit = Image.fromarray(grey_ramp().astype(np.float32) / 255)
    assert unit.mode == "F"
    assert np.array_equal(np.asarray(to_8bit(unit, 1)), grey_ramp())
    rgb = np.asarray(to_8bit(unit, 3))
    assert rgb.shape == (16, 16, 3) and np.array_equal(rgb[..., 2], grey_ramp())
    with pytest.raises(ValueError, match="only 16-bit data"):
        to_8bit(Image.fromarray(np.full((4, 4), 70000, dtype=np.int32)), 1)
    with pytest.raises(ValueError, match=r"only values in \[0, 1\]"):
        to_8bit(Image.fromarray(np.full((4, 4), 3.5, dtype=np.float32)), 1)
    with pytest.raises(ValueError, match="only values"):
        to_8bit(Image.fromarray(np.full((4, 4), np.nan, dtype=np.float32)), 1)


def test_a_float_image_out_of_range_stops_train_in_one_line(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 6, "b": 6})
    Image.fromarray(np.full((8, 8), 300.0, dtype=np.float32)).save(root / "a" / "f.tif")
    result = invoke(["train", *folder_run(root)], tmp_path)
    assert_one_line(result, "f.tif", "only values in [0, 1]")
    assert not (tmp_path / "r.db").exists()


def class_tree(root: Path, counts: dict[str, int]) -> Path:
    """Class folders of plain grey images, each image of its own shade (no file is
    another's twin, which the loader would report)."""
    shade = 0
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.new("L", (8, 8), shade % 256).save(root / name / f"{index}.png")
            shade += 7
    return root


def folder_run(root: Path, *extra: str) -> list[str]:
    return [
        "--model",
        "resnet18",
        "--width",
        "0.125",
        "--dataset",
        "folder",
        "--data-path",
        str(root),
        "--image-size",
        "32",
        "--epochs",
        "1",
        *extra,
    ]


# 2. Damaged checkpoints.


def interrupted_run(folder: Path, epochs: int, stop_after: int) -> Path:
    """A run stopped after epoch `stop_after` (0-based) as a killed one would be."""
    from sparsebench.data.synthetic import make_synthetic
    from sparsebench.train.loop import RunInterrupted
    from sparsebench.train.run import run_and_record

    config = tiny_config(epochs)
    with ResultsStore(folder / "r.db") as store, pytest.raises(RunInterrupted):
        run_and_record(
            config, make_synthetic(), store, folder / "runs", stop_after_epoch=stop_after
        )
    return checkpoint_path(folder / "runs", config.run_id())


def test_a_truncated_checkpoint_resumes_from_the_previous_one(tmp_path, uninterrupted):
    checkpoint = interrupted_run(tmp_path, 3, stop_after=1)
    previous = checkpoint.with_name("checkpoint.prev.pt")
    assert previous.is_file()
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    result = invoke(train_args(3), tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "checkpoint.pt: damaged checkpoint" in warning[0]
    assert "resuming from checkpoint.prev.pt after epoch 1" in warning[0]
    assert checkpoint.with_name("checkpoint.pt.damaged").is_file()
    summary = json.loads(result.stdout)
    assert summary["status"] == "finished"
    assert outcome(summary) == outcome(uninterrupted)


def test_damaged_checkpoints_restart_the_run_and_say_so(tmp_path, uninterrupted):
    checkpoint = interrupted_run(tmp_path, 3, stop_after=1)
    checkpoint.write_bytes(b"garbage")
    checkpoint.with_name("checkpoint.prev.pt").write_bytes(b"")
    result = invoke(train_args(3), tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert "training the run again from the start" in result.stderr
    assert outcome(json.loads(result.stdout)) == outcome(uninterrupted)


def crafted(state: dict, damage: str) -> dict:
    """A checkpoint of the right run and format, with one field that resuming reads
    missing or holding the wrong kind of value."""
    state = dict(state)
    if damage == "no-data-generator":
        del state["data_generator"]
    elif damage == "float-masks":
        masks = {name: keep.float() for name, keep in state["method"]["masks"].items()}
        state["method"] = {**state["method"], "masks": masks}
    elif damage == "history-gap":
        state["history"] = [{**state["history"][0], "epoch": 5}]
    elif damage == "optimizer-list":
        state["optimizer"] = []
    return state


@pytest.mark.parametrize(
    "damage", ["no-data-generator", "float-masks", "history-gap", "optimizer-list"]
)
def test_a_checkpoint_is_checked_whole_before_it_is_used(tmp_path, damage):
    checkpoint = interrupted_run(tmp_path, 2, stop_after=0)
    state = torch.load(checkpoint, weights_only=True)
    torch.save(crafted(state, damage), checkpoint)
    result = invoke(train_args(2), tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert "not a whole sparsebench checkpoint" in result.stderr
    assert "training the run again from the start" in result.stderr
    assert json.loads(result.stdout)["resumed_from_epoch"] == 0


def test_a_checkpoint_that_does_not_fit_the_network_is_named_in_one_line(tmp_path):
    checkpoint = interrupted_run(tmp_path, 2, stop_after=0)
    state = torch.load(checkpoint, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)
    torch.save(state, checkpoint)
    assert_one_line(invoke(train_args(2), tmp_path), str(checkpoint), "does not fit")


class RunsCode:
    """Unpickling this would create a file: a checkpoint must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_hostile_checkpoint_is_never_unpickled(tmp_path):
    checkpoint = interrupted_run(tmp_path, 2, stop_after=0)
    marker = tmp_path / "code-ran"
    torch.save({"model": RunsCode(marker)}, checkpoint)
    result = invoke(train_args(2), tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "holds Python objects beyond tensors" in result.stderr
    assert not marker.exists()


def finished_run(folder: Path) -> str:
    result = invoke(train_args(1), folder, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["run_id"]


@pytest.mark.parametrize("damage", ["truncated", "foreign", "newer"])
def test_export_and_bench_name_a_damaged_checkpoint(tmp_path, damage):
    run_id = finished_run(tmp_path)
    checkpoint = checkpoint_path(tmp_path / "runs", run_id)
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
        expected = "damaged checkpoint"
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, checkpoint)
        expected = "not a sparsebench checkpoint"
    else:
        state = torch.load(checkpoint, weights_only=True)
        torch.save({**state, "version": 99}, checkpoint)
        expected = "checkpoint format 99"
    for command in (["export", run_id, "--out", str(tmp_path / "m.onnx")], ["bench", run_id]):
        result = invoke(command, tmp_path)
        assert_one_line(result, str(checkpoint), expected)
    assert not (tmp_path / "m.onnx").exists()


# 3. Damaged results databases.


@pytest.mark.parametrize("kind", ["garbage", "malformed", "empty", "missing", "foreign"])
def test_a_bad_results_database_is_named_and_left_as_it_is(tmp_path, kind):
    db = tmp_path / "r.db"
    if kind == "garbage":
        db.write_bytes(os.urandom(4096))
    elif kind == "malformed":
        finished_run(tmp_path)
        data = bytearray(db.read_bytes())
        data[100:4096] = os.urandom(3996)  # the schema page
        db.write_bytes(bytes(data))
    elif kind == "empty":
        db.write_bytes(b"")
    elif kind == "foreign":
        with sqlite3.connect(db) as connection:
            connection.execute("CREATE TABLE invoices (id INTEGER)")
    before = digest(db) if db.exists() else None
    commands = [
        ["runs"],
        ["tables", "--out", str(tmp_path / "tables")],
        ["export", "0123456789abcdef", "--out", str(tmp_path / "m.onnx")],
        ["bench", "0123456789abcdef"],
    ]
    for command in commands:
        result = runner.invoke(app, [*command, "--db", str(db)])
        assert_one_line(result, str(db))
    result = runner.invoke(app, ["report", "--db", str(db), "--out", str(tmp_path / "rep")])
    assert_one_line(result, str(db))
    if kind != "missing":  # train writes: it refuses what is not a sparsebench database
        if kind != "empty":
            assert_one_line(invoke(train_args(1), tmp_path), str(db))
        assert digest(db) == before or kind == "empty"
    else:
        assert not db.exists()
    assert not (tmp_path / "tables").exists() and not (tmp_path / "rep").exists()


def test_read_only_commands_never_write_into_an_empty_file(tmp_path):
    db = tmp_path / "r.db"
    db.write_bytes(b"")
    assert_one_line(runner.invoke(app, ["runs", "--db", str(db)]), "empty file")
    assert db.read_bytes() == b""


def test_a_database_of_the_first_release_is_migrated_with_a_line(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as connection:  # schema 1: no derived_from, four statuses
        connection.executescript(
            """CREATE TABLE runs (run_id TEXT PRIMARY KEY, config_json TEXT NOT NULL,
                   model TEXT, dataset TEXT, method TEXT, scenario TEXT,
                   conv_sparsity REAL, linear_sparsity REAL, seed INTEGER, epochs INTEGER,
                   status TEXT NOT NULL CHECK (status IN
                       ('running', 'interrupted', 'finished', 'failed')),
                   error TEXT, device TEXT, data_json TEXT,
                   created_at REAL NOT NULL, started_at REAL, finished_at REAL,
                   total_train_time_s REAL, total_train_energy_j REAL,
                   sparsity_conv REAL, sparsity_linear REAL);
               CREATE TABLE epochs (run_id TEXT NOT NULL REFERENCES runs(run_id)
                   ON DELETE CASCADE, epoch INTEGER NOT NULL, train_loss REAL,
                   PRIMARY KEY (run_id, epoch));
               INSERT INTO runs (run_id, config_json, model, status, created_at)
                   VALUES ('abc', '{}', 'vgg16', 'failed', 1.0);
               INSERT INTO epochs VALUES ('abc', 0, 0.5);
               PRAGMA user_version = 1;"""
        )
    result = runner.invoke(app, ["runs", "--db", str(db), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert "migrated from results database schema 1 to 10" in result.stderr
    assert json.loads(result.stdout)[0]["run_id"] == "abc"
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 1
        connection.execute("UPDATE runs SET status = 'diverged'")  # the new CHECK admits it


# 4. A full disk.


def test_a_full_disk_at_a_checkpoint_leaves_the_run_resumable(tmp_path, monkeypatch, uninterrupted):
    import sparsebench.store.checkpoint as checkpoints

    real_save = torch.save
    calls = {"n": 0}

    def save_then_fill_up(state, handle):
        calls["n"] += "history" in state  # the epoch's checkpoint, not the best-val one
        if calls["n"] == 2 and "history" in state:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(state, handle)

    monkeypatch.setattr(checkpoints.torch, "save", save_then_fill_up)
    result = invoke(train_args(3), tmp_path)
    line = assert_one_line(result, "no space left", "checkpoint.pt", "is interrupted")
    assert "resumes it" in line
    run_id = tiny_config(3).run_id()
    summary = stored(tmp_path, run_id)
    assert summary["status"] == "interrupted" and len(summary["epochs"]) == 1
    assert not list((tmp_path / "runs" / run_id).glob(".*.tmp"))
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    result = invoke(train_args(3), tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert outcome(json.loads(result.stdout)) == outcome(uninterrupted)


def test_a_full_database_leaves_it_consistent_and_the_run_resumable(
    tmp_path, monkeypatch, uninterrupted
):
    real_insert = ResultsStore._insert_epoch

    def insert_on_a_full_disk(self, cursor, run_id, row):
        real_insert(self, cursor, run_id, row)
        if row.epoch == 1:  # what SQLite raises when a page cannot be added
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ResultsStore, "_insert_epoch", insert_on_a_full_disk)
    result = invoke(train_args(3), tmp_path)
    assert_one_line(result, str(tmp_path / "r.db"), "disk is full", "is interrupted")
    run_id = tiny_config(3).run_id()
    with sqlite3.connect(tmp_path / "r.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    summary = stored(tmp_path, run_id)
    assert summary["status"] == "interrupted"  # its process is gone, whatever it stored
    assert [row["epoch"] for row in summary["epochs"]] == [0]
    monkeypatch.setattr(ResultsStore, "_insert_epoch", real_insert)
    result = invoke(train_args(3), tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert outcome(json.loads(result.stdout)) == outcome(uninterrupted)


# 5. Paths outside the data set.


def coco(root: Path, file_names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, name in enumerate(file_names):
        images.append({"id": index, "file_name": name})
        annotations.append({"id": index, "image_id": index, "category_id": index % 2})
    categories = [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(document))
    return root


@pytest.mark.parametrize("entry", ["../secret.png", "ABSOLUTE", "../nothing-here.png"])
def test_coco_entries_outside_the_root_are_refused_without_saying_if_they_exist(tmp_path, entry):
    Image.new("L", (8, 8)).save(tmp_path / "secret.png")
    entry = str(tmp_path / "secret.png") if entry == "ABSOLUTE" else entry
    root = tmp_path / "data"
    class_tree(root / "images", {"a": 4, "b": 4})
    names = [f"images/{c}/{i}.png" for c in "ab" for i in range(4)]
    coco(root, [*names, entry])
    options = DataOptions(cache_dir=tmp_path / "cache")
    with pytest.raises(InputError) as error:
        load_dataset("mvtec3d-objects", root, options)
    message = str(error.value)
    assert "images[8] (id 8)" in message and "lies outside the data set's folder" in message
    assert "does not exist" not in message
    if entry != "../nothing-here.png":
        allowed = DataOptions(cache_dir=tmp_path / "cache", allow_external_paths=True)
        assert load_dataset("mvtec3d-objects", root, allowed).summary()["samples"]["train"] > 0


def test_csv_rows_and_links_leading_out_of_the_root_are_refused(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "secret.png")
    root = class_tree(tmp_path / "data", {"a": 4, "b": 4})
    split = tmp_path / "split.csv"
    split.write_text("split,image,label\ntrain,a/0.png,a\ntest,../secret.png,b\n")
    options = DataOptions(split=f"csv:{split}", cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match=r"split.csv:3: '../secret.png' lies outside"):
        load_dataset("folder", root, options)
    (root / "b" / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(InputError, match=r"link.png: a link to a file outside"):
        load_dataset("folder", root, DataOptions(cache_dir=tmp_path / "cache"))
    result = invoke(["train", *folder_run(root)], tmp_path)
    assert_one_line(result, "link.png", "--allow-external-paths")
    result = invoke(["train", *folder_run(root, "--allow-external-paths")], tmp_path)
    assert result.exit_code == 0, result.stderr


# 6. Resource bombs.


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_an_image_bomb_is_refused_from_its_header(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 5, "b": 5})
    (root / "a" / "bomb.png").write_bytes(png_claiming(200_000, 200_000))
    assert (root / "a" / "bomb.png").stat().st_size < 200
    result = invoke(["train", *folder_run(root)], tmp_path)
    assert_one_line(result, "bomb.png", "200000 x 200000", "--max-image-pixels")


def test_the_pixel_limit_can_be_raised(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 5, "b": 5})
    Image.new("L", (100, 100)).save(root / "a" / "large.png")
    result = invoke(["train", *folder_run(root, "--max-image-pixels", "5000")], tmp_path)
    assert_one_line(result, "large.png", "100 x 100", "limit of 5,000")
    result = invoke(["train", *folder_run(root, "--max-image-pixels", "20000")], tmp_path)
    assert result.exit_code == 0, result.stderr


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def medmnist_arrays(count: int = 8) -> dict[str, np.ndarray]:
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((count, 8, 8), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.arange(count, dtype=np.uint8).reshape(-1, 1) % 2
    return arrays


def test_an_npz_header_claiming_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as archive:  # a valid zip whose header lies
        for key, array in medmnist_arrays().items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array)
            data = member.getvalue()
            if key == "train_images":
                honest = b"'shape': (8, 8, 8), }" + b" " * 9
                data = data.replace(honest, b"'shape': (8000000000, 8, 8), }")
            archive.writestr(f"{key}.npy", data)
    result = invoke(
        ["train", "--dataset", "bloodmnist", "--data-path", str(path), "--epochs", "1"], tmp_path
    )
    assert_one_line(result, "forged.npz", "train_images", "damaged or forged")


def test_an_npz_larger_than_free_memory_is_refused_before_loading(tmp_path, monkeypatch):
    import sparsebench.data.npz as npz_module

    path = npz(tmp_path / "big.npz", **medmnist_arrays(64))
    free = type("Memory", (), {"available": 10_000})()
    monkeypatch.setattr(npz_module.psutil, "virtual_memory", lambda: free)
    monkeypatch.setattr(np, "load", pytest.fail)  # nothing may be loaded
    result = invoke(
        ["train", "--dataset", "medmnist", "--data-path", str(path), "--epochs", "1"], tmp_path
    )
    assert_one_line(result, "big.npz", "need 12.2 KiB of memory", "9.8 KiB")


def test_a_pickled_npz_is_refused_without_unpickling(tmp_path):
    arrays = medmnist_arrays()
    arrays["train_labels"] = np.array([RunsCode(tmp_path / "ran")] * 8, dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)
    result = invoke(
        ["train", "--dataset", "medmnist", "--data-path", str(path), "--epochs", "1"], tmp_path
    )
    assert_one_line(result, "pickled.npz", "holds Python objects")
    assert not (tmp_path / "ran").exists()


# 7. Malformed annotation files.


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 0, "name": "a"}]},
            "images[0].file_name: Field required",
        ),
        (
            {"images": [], "annotations": [], "categories": [{"id": 0}]},
            "categories[0].name: Field required",
        ),
        (
            {"images": [5], "annotations": [], "categories": [{"id": 0, "name": "a"}]},
            "images[0]: Input should be a valid dictionary",
        ),
        (
            {
                "images": [{"id": 1, "file_name": 7}],
                "annotations": [],
                "categories": [{"id": 0, "name": "a"}],
            },
            "images[0].file_name: Input should be a valid string",
        ),
        (
            {"images": [], "annotations": {"id": 1}, "categories": [{"id": 0, "name": "a"}]},
            "annotations: Input should be a valid list",
        ),
        (
            {
                "images": [],
                "annotations": [{"id": 1, "image_id": 1}],
                "categories": [{"id": 0, "name": "a"}],
            },
            "annotations[0].category_id: Field required",
        ),
        (
            {"images": [], "annotations": [], "categories": [{"id": 0, "name": "a"}] * 2},
            "categories[1]: id 0 repeats",
        ),
        ([1, 2], "expected a COCO object, got a list"),
    ],
)
def test_malformed_coco_entries_are_named(tmp_path, document, message):
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    result = invoke(
        ["train", "--dataset", "mvtec3d-objects", "--data-path", str(tmp_path)], tmp_path
    )
    assert_one_line(result, "annotations.json", message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,label\na/0.png,a\n", "missing column(s) split"),
        ("split,image\ntrain,a/0.png,extra\n", "split.csv:2: more fields than the header"),
        ("split,image\ntrain\n", "split.csv:2: fewer fields than the header"),
        (b"\xff\xfe\x00\x01binary", "not a UTF-8 text CSV file"),
        ("split,image\ntrain,a\0.png\n", "split.csv:2: 'a\\x00.png' is not a file name"),
    ],
)
def test_malformed_split_csvs_are_named(tmp_path, text, message):
    root = class_tree(tmp_path / "data", {"a": 2, "b": 2})
    split = tmp_path / "split.csv"
    split.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = invoke(["train", *folder_run(root, "--split", f"csv:{split}")], tmp_path)
    assert_one_line(result, "split.csv", message)


def test_a_visa_csv_without_labels_is_named(tmp_path):
    root = tmp_path / "visa"
    class_tree(root / "obj" / "Data" / "Images", {"Normal": 4, "Anomaly": 4})
    (root / "split_csv").mkdir()
    (root / "split_csv" / "1cls.csv").write_text("object,split,image\nobj,train,x.png\n")
    result = invoke(
        ["train", "--dataset", "visa", "--data-path", str(root), "--split", "csv:1cls"], tmp_path
    )
    assert_one_line(result, "1cls.csv", "missing column(s) label")


# 8. Text from the data is printed as it is.


def test_class_names_are_printed_verbatim_never_as_markup(tmp_path):
    root = class_tree(tmp_path / "da[red]ta", {"[bold red]x[red]": 6, "esc\x1b[31mred": 6})
    result = invoke(["train", *folder_run(root), "--width", "0.125"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "[bold red]x[red]" in result.stdout  # the class table
    assert "esc\\x1b[31mred" in result.stdout and "\x1b[31m" not in result.output
    assert "da[red]ta" in result.stdout


# 9. Diverged training.


def test_a_diverging_run_stops_and_is_stored_as_diverged(tmp_path):
    args = ["train", *TINY_RUN, "--epochs", "3", "--lr", "1e30"]  # the last --lr counts
    result = invoke(args, tmp_path)
    line = assert_one_line(result, "diverged (stored as diverged)", "try a lower --lr")
    assert "1e+30" in line
    listed = runner.invoke(app, ["runs", "--db", str(tmp_path / "r.db"), "--format", "json"])
    run = json.loads(listed.stdout)[0]
    assert run["status"] == "diverged" and "loss became nan" in run["error"]
    again = invoke(args, tmp_path)
    assert_one_line(again, "diverged before", "--force")


def test_a_sweep_records_a_diverged_run_and_goes_on(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "models: [resnet18]\ndatasets: [{dataset: synthetic}]\nmethods: [dense, pre]\n"
        "training: {width: 0.125, epochs: 1, batch_size: 64, lr: 1.0e+30, device: cpu}\n"
    )
    result = invoke(["sweep", str(config), "--workers", "1", "--json"], tmp_path)
    assert result.exit_code == 1, result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["diverged"]) == 2 and not summary["failed"]
    again = invoke(["sweep", str(config), "--workers", "1", "--json"], tmp_path)
    assert json.loads(again.stdout)["counts"]["skip"] == 2  # diverged runs are not retrained


# 10. Numbers out of range.


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["train", *TINY_RUN, "--seed", "-1"], "--seed"),
        (["train", *TINY_RUN, "--seed", str(2**70)], "--seed"),
        (["train", *TINY_RUN, "--epochs", str(10**30)], "--epochs"),
        (["train", *TINY_RUN, "--epochs", "many"], "--epochs"),
        (["train", *TINY_RUN, "--batch-size", "0"], "--batch-size"),
        (["train", *TINY_RUN, "--lr", "inf"], "--lr"),
        (["train", *TINY_RUN, "--lr", "nan"], "--lr"),
        (["train", *TINY_RUN, "--lr", "1e31"], "--lr"),
        (["train", *TINY_RUN, "--width", "1e308"], "--width"),
        (["train", *TINY_RUN, "--image-size", str(10**12)], "--image-size"),
        (["train", *TINY_RUN, "--subset-size", str(10**18)], "--subset-size"),
        (["train", *TINY_RUN, "--max-image-pixels", "0"], "--max-image-pixels"),
        (["sweep", "configs/quick.yaml", "--workers", "0"], "--workers"),
        (["sweep", "configs/quick.yaml", "--threads-per-run", str(10**20)], "--threads-per-run"),
        (["sweep", "configs/quick.yaml", "--cpus-per-run", "nan"], "--cpus-per-run"),
        (["bench", "--repeats", "0"], "--repeats"),
        (["bench", "--batch-sizes", str(10**20)], "--batch-sizes"),
        (["bench", "--width", "-1"], "--width"),
        (["export", "abc", "--out", "m.onnx", "--calibration-samples", "-5"], "--calibration"),
    ],
)
def test_numbers_out_of_range_stop_with_one_line(tmp_path, args, flag):
    result = invoke(args, tmp_path)
    assert_one_line(result, flag)
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "runs").exists()


# 11. Two processes, one run.


def test_a_run_another_live_process_trains_is_refused(tmp_path):
    config = tiny_config(1)
    with ResultsStore(tmp_path / "r.db") as store:  # this test's process holds the run
        store.begin_run(run_record(config), "cpu", {})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsebench.cli",
            *train_args(1),
            "--db",
            str(tmp_path / "r.db"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert f"run {config.run_id()} is being trained by process {os.getpid()}" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_claim_left_by_a_killed_process_does_not_block(tmp_path):
    config = tiny_config(1)
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    import psutil

    started = psutil.Process(gone.pid).create_time()
    gone.wait()
    with ResultsStore(tmp_path / "r.db") as store:
        store.begin_run(run_record(config), "cpu", {})
        store.connection.execute(
            "UPDATE run_locks SET pid = ?, process_started = ?", (gone.pid, started)
        )
        assert store.run_status(config.run_id()) == "interrupted"
    result = invoke(train_args(1), tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "finished"


# 12. Classes too small for the split.


def test_a_class_with_one_image_is_reported_in_one_warning(tmp_path):
    root = class_tree(tmp_path / "data", {"common": 20, "rare": 1})
    with pytest.warns(DataWarning) as caught:
        load_dataset("folder", root, DataOptions(cache_dir=tmp_path / "cache"))
    messages = [str(warning.message) for warning in caught]
    assert messages == [
        f"{root}: class 'rare' has 1 image(s), none in val or test (train 1, val 0, test 0): "
        "it is never validated and never tested"
    ]
    result = invoke(["train", *folder_run(root)], tmp_path)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "class 'rare'" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ")


# Beyond the list: outputs that would replace what is not ours.


def test_a_report_never_replaces_a_file_or_a_folder_that_is_not_a_report(tmp_path):
    finished_run(tmp_path)
    db = str(tmp_path / "r.db")
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    single = tmp_path / "single.txt"
    single.write_text("keep me")
    result = runner.invoke(app, ["report", "--db", db, "--out", str(mine)])
    assert_one_line(result, "not an earlier sparsebench report")
    result = runner.invoke(app, ["report", "--db", db, "--out", str(single)])
    assert_one_line(result, "a file, not a folder")
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert single.read_text() == "keep me"
    report = tmp_path / "report"
    for _ in range(2):  # an earlier report is replaced whole
        assert runner.invoke(app, ["report", "--db", db, "--out", str(report)]).exit_code == 0
    assert (report / "index.html").is_file()


def test_generated_data_takes_no_path(tmp_path):
    result = invoke([*train_args(1), "--data-path", "/etc/passwd"], tmp_path)
    assert_one_line(result, "'synthetic' is generated", "/etc/passwd")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train_labels": np.full((8, 1), 0.5)}, "train_labels[0] = 0.5 (float64) is not a class"),
        ({"val_labels": np.array([["a"]] * 8)}, "val_labels[0] = 'a' (<U1) is not a class index"),
        ({"test_images": np.zeros((8, 0, 0), np.uint8)}, "test_images has shape (8, 0, 0, 1)"),
    ],
)
def test_npz_arrays_of_the_wrong_kind_are_named(tmp_path, change, message):
    path = npz(tmp_path / "odd.npz", **{**medmnist_arrays(), **change})
    result = invoke(
        ["train", "--dataset", "medmnist", "--data-path", str(path), "--epochs", "1"], tmp_path
    )
    assert_one_line(result, "odd.npz", message)


def _epochs_stored(db: Path, run_id: str) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            query = "SELECT COUNT(*) FROM epochs WHERE run_id = ?"
            return connection.execute(query, (run_id,)).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_two_terminals_training_one_run(tmp_path, uninterrupted):
    """A second `train` of a run another live process trains is refused naming it; once
    that process is killed, the same command takes the run over and finishes it."""
    import signal
    import time

    command = [sys.executable, "-m", "sparsebench.cli", *train_args(3)]
    command += ["--db", str(tmp_path / "r.db"), "--runs-dir", str(tmp_path / "runs")]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_id = tiny_config(3).run_id()
    deadline = time.monotonic() + 120
    # Mid-run, and out of the database: its first epoch's row is committed, so it is
    # training the second (stopped inside a write, it would hold the database locked).
    while _epochs_stored(tmp_path / "r.db", run_id) < 1:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # alive but paused: it cannot finish meanwhile
    second = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 2
    assert f"is being trained by process {first.pid}" in second.stderr.splitlines()[-1]
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = subprocess.run(command + ["--json"], capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert outcome(json.loads(third.stdout)) == outcome(uninterrupted)


def test_a_sweep_worker_on_a_full_disk_leaves_its_run_interrupted(tmp_path, monkeypatch):
    import sparsebench.store.checkpoint as checkpoints
    from sparsebench.sweep.worker import RunTask, execute_task

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    task = RunTask(action="train", config=tiny_config(1).model_dump(), runs_dir=str(tmp_path))
    result = execute_task(task)
    assert result["ok"] is False and result["status"] == "interrupted"
    assert "No space left on device" in result["error"]
    # the first file the run writes names itself: its best validation epoch's weights
    assert "checkpoint.best-val.pt" in result["error"]

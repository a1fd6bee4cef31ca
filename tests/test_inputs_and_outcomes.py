"""Every image shape a loader can hand a model either trains or is refused in one line
before anything is written; and however a run stops, `train` and `sweep` store it the
same way (`sparsebench.train.outcome`)."""

from __future__ import annotations

import errno
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.synthetic import make_synthetic
from sparsebench.errors import InputError
from sparsebench.models import build_model, model_names
from sparsebench.store import ResultsStore
from sparsebench.store.db import StoreError
from sparsebench.sweep.plan import expand_grid, plan_sweep
from sparsebench.sweep.runner import run_sweep
from sparsebench.sweep.settings import SweepConfig
from sparsebench.sweep.worker import execute_task
from sparsebench.train import RunConfig
from sparsebench.train.loop import RunDiverged, RunInterrupted
from sparsebench.train.outcome import ending_of
from sparsebench.train.run import run_and_record

# The edges of the accepted range, odd sizes that halve unevenly through VGG's pools and
# ResNet's strides, and the sizes the loaders decode to by default.
SIZES = (28, 29, 31, 45, 64, 97, 224)


@pytest.mark.parametrize("model", model_names())
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_takes_every_size_and_channel_count_it_accepts(model, channels):
    for size in SIZES:
        network = build_model(
            model, num_classes=3, in_channels=channels, image_size=size, width=0.0625
        )
        logits = network(torch.rand(2, channels, size, size))
        assert logits.shape == (2, 3), (model, size)
        logits.sum().backward()  # and trains: every parameter gets a gradient
        assert all(p.grad is not None for p in network.parameters()), (model, size)


def npz_of(path: Path, shape: tuple[int, ...]) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 24), ("val", 8), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).reshape(-1, 1)
    np.savez(path, **arrays)
    return path


def train_args(data: Path, folder: Path, model: str, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        model,
        "--dataset",
        "bloodmnist",
        "--data-path",
        str(data),
        "--epochs",
        "1",
        "--width",
        "0.0625",
        "--db",
        str(folder / "r.db"),
        "--runs-dir",
        str(folder / "runs"),
        *extra,
    ]


@pytest.mark.parametrize("model", ["resnet18", "vgg16"])
@pytest.mark.parametrize(
    ("shape", "said"),
    [
        ((28, 40, 3), "images are 28x40 pixels, not square"),
        ((16, 16, 3), "images are 16x16 pixels"),
        ((240, 240), "images are 240x240 pixels"),
        ((28, 28, 4), "expected (N, H, W) or (N, H, W, 3)"),
    ],
    ids=["non-square", "small", "large", "four-channels"],
)
def test_an_image_shape_a_model_cannot_take_is_refused_before_anything_is_written(
    tmp_path, model, shape, said
):
    data = npz_of(tmp_path / "shapes.npz", shape)
    result = CliRunner().invoke(app, train_args(data, tmp_path, model))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and "shapes.npz" in lines[0], lines
    if "pixels" in said:  # the model and what would work
        assert model in lines[0] and "--image-size" in lines[0]
    assert not (tmp_path / "r.db").exists() and not (tmp_path / "runs").exists()


def test_image_size_resizes_data_a_model_could_not_take_and_it_trains(tmp_path):
    data = npz_of(tmp_path / "wide.npz", (28, 40, 3))
    args = train_args(data, tmp_path, "vgg16", "--image-size", "32", "--json")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with ResultsStore(tmp_path / "r.db") as store:
        assert store.runs_overview().status.tolist() == ["finished"]


ENDINGS = [
    (RunDiverged(0, 3, float("nan"), 0.1), "diverged"),
    (KeyboardInterrupt(), "interrupted"),
    (RunInterrupted(0), "interrupted"),
    (OSError(errno.ENOSPC, "No space left on device"), "interrupted"),
    (PermissionError(errno.EACCES, "Permission denied"), "interrupted"),
    (StoreError("r.db: database is locked"), "interrupted"),
    (InputError("x.png: image cannot be decoded"), "refused"),
    (RuntimeError("a bug"), "failed"),
]


@pytest.mark.parametrize(("error", "status"), ENDINGS, ids=[s for _, s in ENDINGS])
def test_each_error_ends_a_run_one_way(error, status):
    assert ending_of(error).status == status


CONFIG = {
    "model": "vgg16",
    "width": 0.0625,
    "dataset": "synthetic",
    "epochs": 1,
    "batch_size": 32,
    "device": "cpu",
}


class InProcess:
    """An executor that runs each task here and now, so a test can patch the training."""

    slots, description = 1, "in process"

    def submit(self, task) -> Future:
        future: Future = Future()
        future.set_result(execute_task(task))
        return future

    def restart(self) -> None: ...

    def close(self, cancel: bool = False) -> None: ...


def stored_under_train(error: BaseException, folder: Path, monkeypatch) -> str | None:
    def stop(*args, **kwargs):
        raise error

    monkeypatch.setattr("sparsebench.train.run.train_run", stop)
    with ResultsStore(folder / "train.db") as store:
        with pytest.raises(type(error)):
            run_and_record(RunConfig(**CONFIG), make_synthetic(), store, folder / "runs")
        return store.run_status(RunConfig(**CONFIG).run_id())


def stored_under_sweep(error: BaseException, folder: Path, monkeypatch) -> str | None:
    def stop(*args, **kwargs):
        raise error

    monkeypatch.setattr("sparsebench.train.loop.train_run", stop)
    sweep = SweepConfig(
        name="one",
        models=[CONFIG["model"]],
        datasets=[{"dataset": "synthetic"}],
        methods=["dense"],
        seeds=[0],
        training={k: v for k, v in CONFIG.items() if k not in ("model", "dataset")},
    )
    with ResultsStore(folder / "sweep.db") as store:
        planned = plan_sweep(expand_grid(sweep), store, folder / "runs")
        run_sweep(planned, store, folder / "runs", InProcess())
        return store.run_status(planned[0].run_id)


@pytest.mark.parametrize(
    ("error", "status"),
    [e for e in ENDINGS if not isinstance(e[0], KeyboardInterrupt)],
    ids=[s for e, s in ENDINGS if not isinstance(e, KeyboardInterrupt)],
)
def test_train_and_sweep_store_the_same_ending(tmp_path, monkeypatch, error, status):
    expected = None if status == "refused" else status  # refused: no row at all
    assert stored_under_train(error, tmp_path, monkeypatch) == expected
    assert stored_under_sweep(error, tmp_path, monkeypatch) == expected


@pytest.mark.parametrize(("model", "warned"), [("resnet18", True), ("vgg16", False)])
def test_a_run_of_a_handful_of_steps_says_so_before_training(tmp_path, model, warned):
    """Two trivially separable classes, 2 optimiser steps in all: ResNet's batch-norm
    statistics cannot settle (VGG16 here has no batch norm)."""
    from PIL import Image

    for name, shade in (("dark", 10), ("light", 245)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(16):
            Image.new("L", (28, 28), shade).save(tmp_path / "data" / name / f"{index}.png")
    args = [
        "train",
        "--model",
        model,
        "--dataset",
        "folder",
        "--data-path",
        str(tmp_path / "data"),
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--width",
        "0.0625",
        "--db",
        str(tmp_path / "r.db"),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if "optimiser steps in all" in line]
    assert bool(warning) is warned
    if warned:
        assert "2 optimiser steps in all (2 epoch(s) of 1 batch(es) of 64)" in warning[0]
        assert "--batch-size" in warning[0] and "--epochs" in warning[0]


def test_how_many_steps_batch_norm_needs_follows_its_momentum():
    """(1 - m)**N keeps 12% of the starting statistics: N = 20 at PyTorch's momentum 0.1,
    211 at the 0.01 of torchvision's MobileNetV3 and EfficientNet; none without batch norm."""
    from sparsebench.models import build_model
    from sparsebench.train.build import settling_steps

    assert abs(0.9**20 - 0.12) < 0.005 and abs(0.99**211 - 0.12) < 0.005
    resnet = build_model("resnet18", num_classes=4, image_size=32)
    mobile = build_model("mobilenet_v3_small", num_classes=4, image_size=32)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    assert [settling_steps(m) for m in (resnet, mobile, plain)] == [20, 211, 0]

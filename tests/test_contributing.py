"""CONTRIBUTING.md's recipes work when followed literally: a method added the way the
guide says is trained by `sparsebench train`, checks its own options, and shows in a
sweep and the report under its display name; the guide's data set, copied from it, trains
with its own setting, predicts, and is probed by a sweep; the guide's executor, copied
from it, sweeps to the rows of the local one."""

from __future__ import annotations

import csv
import io
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_sweep import stored_rows
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data import registry
from sparsebench.sparsity.methods import METHODS
from sparsebench.sweep import executors

runner = CliRunner()

# The guide's RigL example, shrunk: one file, a class registered by `register_method`,
# parts overridden, an options model of its own.
TOY_METHOD = '''
from pydantic import Field

from sparsebench.sparsity.methods import AllocationOptions, register_method
from sparsebench.sparsity.schedules import EveryEpoch, Schedule
from sparsebench.sparsity.scorers import Random, Scorer
from sparsebench.sparsity.static import Static


class ToyOptions(AllocationOptions):
    swap: float = Field(0.5, ge=0, le=1, description="of alive units, after each epoch")


@register_method
class Toy(Static):
    """Static's random start, then half the alive units swapped at random each epoch."""

    name, display_name, colour, marker = "toy", "Toy swap", "#17becf", "h"
    Options = ToyOptions

    def schedule(self) -> Schedule:
        return EveryEpoch(self.options.swap)

    def drop_scorer(self) -> Scorer:
        return Random()
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    (tmp_path / "toy_method.py").write_text(textwrap.dedent(TOY_METHOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(METHODS)
    __import__("toy_method")  # step 1 of the guide: importing the module registers it
    yield
    METHODS.clear()
    METHODS.update(before)
    sys.modules.pop("toy_method", None)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_method_added_as_the_guide_says_trains_sweeps_and_reports(toy_method, tmp_path):
    db = str(tmp_path / "r.db")
    base = ["--model", "vgg16", "--width", "0.0625", "--dataset", "synthetic", "--epochs", "2"]
    trained = runner.invoke(
        app,
        [
            "train",
            *base,
            "--method",
            "toy",
            "--db",
            db,
            "--runs-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
    )
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["config"]["method"] == "toy" and summary["status"] == "finished"
    assert summary["sparsity"]["by_kind"]["conv"] == pytest.approx(0.5, abs=0.05)
    # its options are checked by its own model
    refused = runner.invoke(app, ["train", *base, "--method", "toy", "--method-option", "swap=2"])
    assert refused.exit_code == 2 and "method_options (toy): swap" in refused.stderr
    # a sweep lists it, and the report names it by its display name
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "models: [vgg16]\ndatasets: [{dataset: synthetic}]\nmethods: [dense, toy]\n"
        "scenarios: [mixed]\ntraining: {width: 0.0625, epochs: 2}\n"
    )
    planned = runner.invoke(app, ["sweep", str(sweep), "--db", db, "--dry-run", "--json"])
    assert planned.exit_code == 0, planned.stderr
    assert {run["method"] for run in json.loads(planned.stdout)["runs"]} == {"dense", "toy"}
    report = runner.invoke(
        app, ["report", "--db", db, "--out", str(tmp_path / "report"), "--no-svg"]
    )
    assert report.exit_code == 0, report.stderr
    assert "Toy swap" in (tmp_path / "report" / "index.html").read_text()


def _guide_example(section: str) -> str:
    """The Python block of CONTRIBUTING.md's section `section`, as a reader copies it."""
    guide = (Path(__file__).parents[1] / "CONTRIBUTING.md").read_text()
    text = guide.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def image_list(tmp_path, monkeypatch):
    """The guide's data set, copied from the guide into a module and imported; its data:
    three classes of 10 images, two of them telling apart by brightness."""
    (tmp_path / "image_list.py").write_text(_guide_example("Adding a data set"))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(registry._DATASETS)
    __import__("image_list")
    root = tmp_path / "data"
    lines = []
    for index in range(30):
        label = ("dark", "light", "grey")[index % 3]
        value = {"dark": 20, "light": 230, "grey": 128}[label]
        Image.fromarray(np.full((28, 28), value, dtype=np.uint8)).save(root_file(root, index))
        lines.append(f"img/{index}.png {label}")
    (root / "index.txt").write_text("\n".join(lines) + "\n")
    yield root
    registry._DATASETS.clear()
    registry._DATASETS.update(before)
    sys.modules.pop("image_list", None)


def root_file(root: Path, index: int) -> Path:
    path = root / "img" / f"{index}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_data_set_added_as_the_guide_says_trains_with_its_own_setting(image_list, tmp_path):
    db, runs = str(tmp_path / "r.db"), str(tmp_path / "runs")
    base = ["--model", "vgg16", "--width", "0.0625", "--epochs", "1", "--db", db]
    data = ["--dataset", "image-list", "--data-path", str(image_list), "--image-size", "28"]
    trained = runner.invoke(
        app,
        ["train", *base, *data, "--data-option", "drop_class=grey", "--runs-dir", runs, "--json"],
    )
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["config"]["data_options"] == {"drop_class": "grey"}
    assert summary["data"]["classes"] == ["dark", "light"]
    # a predicted image goes through the data set's spec (a decoded set, not arrays)
    predicted = runner.invoke(
        app, ["predict", summary["run_id"], str(image_list / "img" / "1.png"), "--db", db]
    )
    assert predicted.exit_code == 0, predicted.stderr
    row = next(csv.DictReader(io.StringIO(predicted.stdout)))
    assert {entry.split(":")[0] for entry in row["top_k"].split(";")} == {"dark", "light"}
    # its setting is checked by its model, and refused for another data set
    unknown = runner.invoke(app, ["train", *base, *data, "--data-option", "drop=grey"])
    assert unknown.exit_code == 2
    assert "drop is not a setting of data set 'image-list'" in unknown.stderr
    elsewhere = ["--dataset", "synthetic", "--data-option", "drop_class=grey"]
    refused = runner.invoke(app, ["train", *base, *elsewhere])
    assert "drop_class is not a setting of data set 'synthetic'" in refused.stderr
    # a sweep takes it under data_options, and probes it before training anything
    (image_list / "index.txt").write_text("img/0.png\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "models: [vgg16]\nmethods: [dense]\n"
        f"datasets: [{{dataset: image-list, data_path: {image_list}, "
        "data_options: {drop_class: grey}}]\n"
    )
    probed = runner.invoke(app, ["sweep", str(sweep), "--db", db, "--dry-run"])
    assert probed.exit_code == 2
    assert f"{image_list / 'index.txt'}:1: expected FILE CLASS, got 'img/0.png'" in probed.stderr


SMALL_SWEEP = """
name: small
models: [vgg16]
datasets: [{dataset: synthetic}]
methods: [dense, pre]
scenarios: [mixed]
training: {width: 0.0625, epochs: 2, batch_size: 32, device: cpu}
"""


@pytest.fixture
def serial_executor(tmp_path, monkeypatch):
    """The guide's executor, copied from the guide into a module and imported."""
    (tmp_path / "serial_executor.py").write_text(_guide_example("Adding an executor"))
    monkeypatch.syspath_prepend(str(tmp_path))
    before, threads = dict(executors.EXECUTORS), torch.get_num_threads()
    __import__("serial_executor")
    yield
    executors.EXECUTORS.clear()
    executors.EXECUTORS.update(before)
    sys.modules.pop("serial_executor", None)
    torch.set_num_threads(threads)  # its runs set this process's threads


def test_an_executor_added_as_the_guide_says_runs_a_sweep_as_the_local_one(
    serial_executor, tmp_path
):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SMALL_SWEEP)

    def swept(folder: str, *executor: str) -> Path:
        db = tmp_path / folder / "r.db"
        where = ["--db", str(db), "--runs-dir", str(tmp_path / folder / "runs")]
        result = runner.invoke(app, ["sweep", str(sweep), *where, "--json", *executor])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["finished"] == 2
        return db

    serial = swept("serial", "--executor", "serial", "--executor-option", "threads=1")
    local = swept("local", "--workers", "1", "--threads-per-run", "1")
    assert stored_rows(serial) == stored_rows(local)
    # its settings are checked by its model; the sweep's flags it does not declare refused
    for flags, said in (
        (["--executor-option", "threads=0"], "--threads: Input should be greater than"),
        (["--workers", "2"], "--workers is not a setting of executor 'serial'"),
    ):
        refused = runner.invoke(app, ["sweep", str(sweep), "--executor", "serial", *flags])
        assert refused.exit_code == 2 and said in refused.stderr, refused.stderr


def test_a_strategy_added_as_the_guide_says_aggregates_by_the_median(tmp_path, monkeypatch):
    from test_federated_run import federate

    from sparsebench.federated import strategy

    (tmp_path / "fed_median.py").write_text(_guide_example("Adding a federated strategy"))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(strategy.STRATEGIES)
    replies = []
    try:
        __import__("fed_median")
        median = strategy.STRATEGIES["fedmedian"]
        monkeypatch.setattr(median, "aggregate", _recording(median.aggregate, replies))
        server, _, _ = federate(tmp_path, strategy="fedmedian", rounds=1, clients_per_round=3)
    finally:
        strategy.STRATEGIES.clear()
        strategy.STRATEGIES.update(before)
        sys.modules.pop("fed_median", None)
    (states,) = replies
    assert len(states) == 3
    for name, tensor in server.model.state_dict().items():
        stacked = torch.stack([state[name] for state in states])
        expected = (
            stacked.median(dim=0).values if tensor.is_floating_point() else stacked.max(0).values
        )
        assert torch.equal(tensor, expected), name


def _recording(aggregate, replies):
    """`aggregate`, keeping a copy of the states each call receives."""

    def recorded(self, states, examples, held=None):
        replies.append([{k: v.clone() for k, v in state.items()} for state in states])
        return aggregate(self, states, examples, held)

    return recorded

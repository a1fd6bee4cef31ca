"""CONTRIBUTING.md's recipes work when followed literally: a method added the way the
guide says is trained by `sparsebench train`, checks its own options, and shows in a
sweep and the report under its display name."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.sparsity.methods import METHODS

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

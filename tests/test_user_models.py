"""A network of one's own, named on the command line as `package.module:factory` from a
file outside the project: trained by any method, exported compact (checked against the
masked network) and in int8; one that torch.fx cannot trace is refused in one line when
it is compacted; a factory that is missing or fails is named."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from test_compact_training import assert_same_computation, run
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.synthetic import make_synthetic
from sparsebench.models import registry

runner = CliRunner()

USER_NETWORK = """
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    '''A residual block around a depthwise conv.'''

    def __init__(self, channels):
        super().__init__()
        self.expand = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(2 * channels)
        self.depthwise = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1, groups=2 * channels)
        self.project = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.bn_project = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = self.depthwise(F.relu(self.bn_expand(self.expand(x))))
        return x + self.bn_project(self.project(F.relu(y)))


class Damped(nn.Module):
    '''Halves its input in training only: a module whose mode changes what it computes.'''

    def forward(self, x):
        return 0.5 * x if self.training else x


class Net(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.left = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.right = nn.Conv2d(in_channels, 8, 1)
        self.blocks = nn.Sequential(Block(16), Block(16))
        self.damped = Damped()
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(torch.cat([self.left(x), self.right(x)], dim=1))
        x = self.damped(self.blocks(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Branchy(Net):
    def forward(self, x):
        if x.mean() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return super().forward(x)


def build(num_classes, in_channels=3):
    return Net(num_classes, in_channels)


def build_branchy(num_classes, in_channels=3):
    return Branchy(num_classes, in_channels)


def broken(num_classes):
    raise RuntimeError("no weights here")
"""


@pytest.fixture
def user_network(tmp_path, monkeypatch):
    """`usernet.py` in the working folder, as a user keeps it beside their data."""
    (tmp_path / "usernet.py").write_text(textwrap.dedent(USER_NETWORK))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = dict(registry._REGISTRY)
    yield tmp_path
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    sys.modules.pop("usernet", None)


def train(folder, model: str, *extra: str):
    args = ["train", "--model", model, "--dataset", "synthetic", "--epochs", "2"]
    args += ["--method", "pre", "--scenario", "uniform", "--batch-size", "32"]
    args += ["--db", str(folder / "r.db"), "--runs-dir", str(folder / "runs"), "--json", *extra]
    return runner.invoke(app, args)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_network_of_ones_own_trains_prunes_and_exports_compact(user_network):
    trained = train(user_network, "usernet:build")
    assert trained.exit_code == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["config"]["model"] == "usernet:build"
    assert summary["sparsity"]["by_kind"]["conv"] == pytest.approx(0.8, abs=0.05)
    exported = runner.invoke(
        app,
        [
            "export",
            summary["run_id"],
            "--db",
            str(user_network / "r.db"),
            "--out",
            str(user_network / "net.onnx"),
            "--quantize",
            "int8",
            "--calibration-samples",
            "32",
            "--json",
        ],
    )
    assert exported.exit_code == 0, exported.stderr
    result = json.loads(exported.stdout)
    # Compaction checked the compact network against the masked one before export.
    assert result["counts"]["compact"]["macs_dense"] < result["counts"]["masked"]["macs_dense"]
    assert result["test_accuracy_onnx"] == pytest.approx(result["test_accuracy_torch"], abs=0.02)
    assert (user_network / "net.int8.onnx").is_file()


@pytest.mark.kernels
@pytest.mark.usefixtures("float64")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_network_of_ones_own_trains_compact_as_it_trains_masked(user_network):
    """Its residual blocks, concatenation and depthwise convs sliced to the channels the
    masks keep, each block computing only its own filters, through SET's regrowth, and
    its module that behaves by its mode doing so in training and validation: the
    computation masked training does."""
    data = make_synthetic(seed=5, samples=(128, 32, 32))
    settings = {"model": "usernet:build", "method": "set", "scenario": "mixed", "width": 1.0}
    masked = run(settings, "masked", data, user_network)
    compact = run(settings, "compact", data, user_network)
    assert_same_computation(masked, compact)
    last = compact[0]["epochs"][-1]
    assert last["train_macs_per_sample"] < 0.7 * last["train_macs_dense_per_sample"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_network_torch_fx_cannot_trace_trains_and_is_refused_compaction(user_network):
    trained = train(user_network, "usernet:build_branchy")
    assert trained.exit_code == 0, trained.stderr
    run_id = json.loads(trained.stdout)["run_id"]
    db = str(user_network / "r.db")
    refused = runner.invoke(app, ["export", run_id, "--db", db, "--out", "x.onnx"])
    assert refused.exit_code == 2
    line = refused.stderr.strip()
    assert "Branchy cannot be traced by torch.fx" in line and "\n" not in line


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("usernet:missing", "usernet has no callable 'missing'"),
        ("nosuchmodule:build", "cannot import nosuchmodule"),
        ("usernet:broken", "its factory failed (RuntimeError: no weights here)"),
        ("resnet:", "unknown model 'resnet:'"),
    ],
)
def test_a_factory_that_cannot_be_used_is_named_in_one_line(user_network, model, said):
    result = train(user_network, model)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and said in errors[0], result.stderr
    if (user_network / "r.db").exists():  # a refused run leaves no row
        runs = runner.invoke(app, ["runs", "--db", str(user_network / "r.db"), "--format", "json"])
        assert json.loads(runs.stdout) == []

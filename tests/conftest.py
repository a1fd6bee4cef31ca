from __future__ import annotations

import json
import os
from pathlib import Path

# The suite runs on as many workers as the machine has cores (pytest-xdist), each on one
# torch thread, and so does every process a test starts: two threads per worker would
# fight over the cores, and results compared across processes share one thread count.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest
import torch
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.sparsity.methods import scenario_label
from sparsebench.store.records import RunRecord

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BLOODMNIST_LIKE = SHARED_DATA / "bloodmnist_like" / "bloodmnist_like_28.npz"


@pytest.fixture
def bloodmnist_like() -> Path:
    if not BLOODMNIST_LIKE.is_file():
        pytest.skip(f"real data not available: {BLOODMNIST_LIKE} is absent (see shared/data)")
    return BLOODMNIST_LIKE


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into its own cache, never the user's ~/.cache/sparsebench."""
    monkeypatch.setenv("SPARSEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


def shared_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (see shared/data)")
    return path


def cli_json(args: list[str], folder: Path) -> dict:
    """`sparsebench ARGS` with its database and runs in `folder` and `--json`; it must
    succeed, and its JSON is returned."""
    result = CliRunner().invoke(
        app,
        [*args, "--db", str(folder / "r.db"), "--runs-dir", str(folder / "runs"), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def float64():
    """Train in float64 on one thread. Floats computed by another CPU's kernels (AVX2,
    AVX-512, NEON) differ in their last bits, and training amplifies that: in float32 two
    kernels end three epochs with test accuracies 0.15 apart and with other masks. In
    float64 the same runs agree to 1e-14 (tests/fixtures/study_methods.json records the
    spread measured), so a test can compare what a method computes tightly on any CPU."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def run_record(run_id: str, config: dict) -> RunRecord:
    """How the store files a run of a test's own settings, under the test's own id."""
    return RunRecord(
        run_id=run_id,
        config=config,
        model=config["model"],
        dataset=config["dataset"],
        method=config["method"],
        scenario=scenario_label(
            config["method"], config["scenario"], config["conv_sparsity"], config["linear_sparsity"]
        ),
        conv_sparsity=config["conv_sparsity"],
        linear_sparsity=config["linear_sparsity"],
        seed=config["seed"],
        epochs=config["epochs"],
    )

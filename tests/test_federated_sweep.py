"""A sweep's `federated:` block: its federations, its refusals, and a sweep run."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.errors import InputError
from sparsebench.sweep.settings import load_sweep_config

SWEEP = {
    "name": "federated",
    "models": ["resnet18"],
    "datasets": [{"dataset": "synthetic"}],
    "methods": ["pre"],
    "scenarios": ["uniform"],
    "training": {"width": 0.125, "epochs": 1, "lr": 0.001, "device": "cpu"},
    "federated": {"clients": 3, "clients_per_round": 2, "rounds": 1, "partition": "iid"},
}


def write(tmp_path, **changes):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return path


def test_partitions_and_alphas_make_one_federation_each(tmp_path):
    block = {"clients": 10, "partition": ["dirichlet", "iid"], "alpha": [0.1, 0.5]}
    federations = load_sweep_config(write(tmp_path, federated=block)).federated.federations()
    # IID reads no alpha: one federation, not one per alpha.
    assert [(f.partition, f.alpha) for f in federations] == [
        ("dirichlet", 0.1),
        ("dirichlet", 0.5),
        ("iid", 0.5),
    ]
    assert all(f.clients == 10 for f in federations)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"federated": {"alpha": [0.1, -1.0]}}, "federated: alpha must be a positive number"),
        ({"federated": {"rounds": 0}}, "federated: .*rounds"),
        ({"methods": ["gmp"]}, "'gmp' does not train federated yet"),
    ],
)
def test_a_bad_federated_block_is_one_line_naming_the_file(tmp_path, changes, message):
    with pytest.raises(InputError, match=f"sweep.yaml: .*{message}"):
        load_sweep_config(write(tmp_path, **changes))


def test_a_federated_sweep_trains_each_run_once(tmp_path):
    path = write(tmp_path)
    args = ["sweep", str(path), "--db", str(tmp_path / "r.db"), "--runs-dir", str(tmp_path)]
    args.append("--json")
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1]) == {
        "config": str(path),
        "federated": 1,
        "skipped": 0,
    }
    again = CliRunner().invoke(app, args)
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == 1

"""Federated runs: rounds stored with the bytes their messages take, resumed after a kill
to the same end, a failing client left out of its round, post pruning the final model.

Most tests pass messages in process (`loopback`: the same Flower contents, the same
client code, no Ray); one runs `sparsebench federate` on Flower's simulation engine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import cli_json
from flwr.app import RecordDict
from torch import nn
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.registry import load_dataset
from sparsebench.errors import InputError
from sparsebench.federated.apps import CLIENT_QUERIES, client_round
from sparsebench.federated.client import federated_trainer
from sparsebench.federated.payload import content_bytes, message_content, message_parts
from sparsebench.federated.server import FederatedServer, Reply, sample_clients
from sparsebench.federated.structure import shared_structure
from sparsebench.settings.federated import federated_run
from sparsebench.settings.run import RunConfig
from sparsebench.store.federated import federated_clients, federated_rounds, federated_runs
from sparsebench.store.results import open_results
from sparsebench.train.build import build_run

RUN = {
    "model": "resnet18",
    "width": 0.125,
    "dataset": "synthetic",
    "epochs": 1,
    "lr": 1e-3,
    "batch_size": 32,
    "device": "cpu",
}
FEDERATION = {"clients": 4, "clients_per_round": 2, "rounds": 2, "alpha": 0.5}


def loopback(fail: set[tuple[int, int]] = frozenset(), stop_at_round: int | None = None):
    """A `Send` calling the client code in this process, one Flower state per client;
    `fail`: (round, client) pairs that fail; `stop_at_round`: interrupt that round."""
    states: dict[int, RecordDict] = {}

    def send(kind: str, messages: dict) -> dict[int, Reply]:
        replies = {}
        for client, (arrays, config) in messages.items():
            if kind == "train" and config["round"] == stop_at_round:
                raise KeyboardInterrupt
            content = message_content(arrays, {**config, "client": client})
            state = states.setdefault(client, RecordDict())
            if kind == "train" and (config["round"], client) in fail:
                replies[client] = Reply({}, {}, 0, content_bytes(content), "disk full")
                continue
            handler = client_round if kind == "train" else CLIENT_QUERIES[kind]
            reply = handler(content, state)
            back, numbers = message_parts(reply)
            replies[client] = Reply(back, numbers, content_bytes(reply), content_bytes(content))
        return replies

    return send


def federate(tmp_path, method="dense", scenario=None, send=None, run=RUN, **federation):
    fed = federated_run(
        {**run, "method": method, "scenario": scenario}, {**FEDERATION, **federation}
    )
    with open_results(tmp_path / "fl.db") as store:
        server = FederatedServer(fed, load_dataset("synthetic"), store, tmp_path / "runs")
        server.run(send or loopback())
        rounds = federated_rounds(store, fed.run_id())
        clients = federated_clients(store, fed.run_id())
    return server, rounds, clients


def test_every_round_is_stored_with_the_bytes_its_messages_take(tmp_path):
    dense, dense_rounds, _ = federate(tmp_path / "dense")
    pre, pre_rounds, pre_clients = federate(tmp_path / "pre", method="pre", scenario="uniform")
    assert list(pre_rounds["round"]) == [0, 1, 2]
    assert pre_rounds["test_accuracy"].between(0, 1).all()
    assert (pre_rounds["clients_sampled"].iloc[1:] == 2).all()
    # A dense update carries every float32 of the state; pre's only the entries of the
    # compact network. Each message is those bytes plus each array's framing (numpy's
    # 128-byte header, its name, protobuf's fields).
    dense_floats = sum(
        t.numel() for t in dense.model.state_dict().values() if t.is_floating_point()
    )
    structure = pre.structure
    kept_floats = sum(
        int(structure[name].sum()) if name in structure else t.numel()
        for name, t in pre.model.state_dict().items()
        if t.is_floating_point()
    )
    for rows, floats in ((dense_rounds, dense_floats), (pre_clients, kept_floats)):
        per_message = rows["bytes_up"].iloc[-1] / (2 if rows is dense_rounds else 1)
        assert 4 * floats < per_message < 4 * floats + 300 * len(pre.model.state_dict())
    ratio = pre_rounds["bytes_up"].iloc[1:].mean() / dense_rounds["bytes_up"].iloc[1:].mean()
    assert ratio <= 0.35
    # The set-up round carries the masks (a bit per unit) to every client.
    assert pre_rounds["bytes_down"].iloc[0] > dense_rounds["bytes_down"].iloc[0]


def test_snip_federated_masks_as_snip_on_all_the_clients_images_together(tmp_path):
    # One client holding every training image, scoring all of them: the mask the server
    # adds up from the client's sums is the mask SNIP draws on the pooled images. VGG16
    # has no batch norm and 512 images make whole batches of 32, so the order the client
    # holds its images in changes only the last bits of the sums.
    run = {**RUN, "model": "vgg16", "method_options": {"batches": 16}}
    server, rounds, _ = federate(
        tmp_path,
        **{"method": "snip", "scenario": "mixed"},
        clients=1,
        clients_per_round=1,
        rounds=1,
        partition="iid",
        run=run,
    )
    pooled = build_run(
        RunConfig(**{**run, "method": "snip", "scenario": "mixed"}),
        server.data,
        torch.device("cpu"),
    )
    magnitude = build_run(
        RunConfig(**{**RUN, "model": "vgg16", "method": "pre", "scenario": "mixed"}),
        server.data,
        torch.device("cpu"),
    )
    federated = server.trainer.method.masks.masks
    same = differ = total = 0
    for name, mask in pooled.method.masks.masks.items():
        assert int(federated[name].keep.sum()) == int(mask.keep.sum())
        same += int((federated[name].keep & mask.keep).sum())
        differ += int((magnitude.method.masks.masks[name].keep & mask.keep).sum())
        total += int(mask.keep.sum())
    assert same >= 0.99 * total
    assert differ < 0.9 * total  # a mask by another criterion would not pass
    # Round 0 carries the scoring: the initial weights down and every conv and linear
    # weight's summed gradient up, in float32.
    weights = sum(
        m.weight.numel() for m in server.model.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    )
    assert rounds["bytes_up"].iloc[0] > 4 * weights
    assert rounds["bytes_down"].iloc[0] > 4 * weights


def test_the_shared_structure_leaves_out_pruned_filters_and_the_columns_that_read_them():
    config = RunConfig(**{**RUN, "model": "vgg16", "method": "pre", "scenario": "mixed"})
    data = load_dataset("synthetic")
    trainer = build_run(config, data, torch.device("cpu"))
    structure = shared_structure(trainer.model, trainer.method.masks, (3, 28, 28))
    convs = [name for name, m in trainer.model.named_modules() if isinstance(m, nn.Conv2d)]
    first, second = convs[0], convs[1]
    keep = trainer.method.masks.masks[first].keep
    keep_next = trainer.method.masks.masks[second].keep
    assert 0 < int(keep.sum()) < len(keep)
    held = structure[f"{first}.weight"]
    assert held[keep].all() and not held[~keep].any()
    held_next = structure[f"{second}.weight"]
    expected = keep_next.view(-1, 1) & keep.view(1, -1)
    assert torch.equal(held_next.any(dim=(2, 3)), expected)
    assert torch.equal(held_next.all(dim=(2, 3)), expected)


@pytest.mark.parametrize("method", ["pre", "set", "snip"])
def test_a_run_killed_in_a_round_resumes_and_ends_where_an_uninterrupted_run_ends(tmp_path, method):
    # set: round 2 changes the masks, the killed round 3 is the first under the new ones.
    settings = {"method": method, "scenario": "mixed", "rounds": 4, "mask_every": 2}
    whole, whole_rounds, _ = federate(tmp_path / "whole", **settings)
    with pytest.raises(KeyboardInterrupt):
        federate(tmp_path / "cut", **settings, send=loopback(stop_at_round=3))
    with open_results(tmp_path / "cut" / "fl.db") as store:
        assert federated_runs(store)["status"].tolist() == ["interrupted"]
        assert federated_rounds(store)["round"].tolist() == [0, 1, 2]
    resumed, resumed_rounds, _ = federate(tmp_path / "cut", **settings)
    assert resumed_rounds["round"].tolist() == [0, 1, 2, 3, 4]
    # (What goes down differs: a resumed run sends the current masks in its set-up.)
    for column in ("test_accuracy", "test_loss", "bytes_up", "mask_round"):
        assert resumed_rounds[column].tolist() == whole_rounds[column].tolist()
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize("method", ["in", "set", "rigl"])
def test_dynamic_masks_are_readjusted_by_the_clients_and_aggregated_by_the_server(tmp_path, method):
    fed = federated_run({**RUN, "method": method, "scenario": "mixed"}, FEDERATION)
    initial = federated_trainer(fed.run, load_dataset("synthetic")).method.masks.state_dict()
    before = {name: int(keep.sum()) for name, keep in initial.items()}
    server, rounds, _ = federate(tmp_path, method=method, scenario="mixed", rounds=3, mask_every=2)
    assert rounds["mask_round"].tolist() == [0, 0, 1, 0]
    assert server.revision == 1
    after = server.masks
    # Every layer keeps its budget of units; some units changed.
    assert {name: int(keep.sum()) for name, keep in after.items()} == before
    assert any(not torch.equal(after[name], initial[name]) for name in after)
    # Clients sent their own masks in the mask round: more bytes than the shared structure.
    up = rounds.set_index("round")["bytes_up"]
    assert up[2] > up[1] and up[2] > up[3]
    # The global model's pruned units are exactly zero.
    for mask in server.trainer.method.masks:
        for param, gate in mask.gated():
            assert not bool((param * (1 - gate)).any())


def test_a_client_failing_mid_round_is_stored_and_the_round_goes_on(tmp_path):
    failing, answering = sample_clients(0, 1, 4, 2)
    _, rounds, clients = federate(tmp_path, send=loopback(fail={(1, failing)}))
    assert rounds.set_index("round").loc[1, "clients_failed"] == 1
    stored = clients[clients["round"] == 1].set_index("client")
    assert stored.loc[failing, "error"] == "disk full" and pd.isna(stored.loc[failing, "examples"])
    assert stored.loc[answering, "examples"] > 0 and pd.isna(stored.loc[answering, "error"])
    assert rounds["round"].tolist() == [0, 1, 2]


def test_a_round_where_every_client_fails_fails_the_run_with_each_error(tmp_path):
    every = {(1, client) for client in range(4)}
    with pytest.raises(RuntimeError, match="round 1: every client failed .*disk full"):
        federate(tmp_path, send=loopback(fail=every))
    with open_results(tmp_path / "fl.db") as store:
        run = federated_runs(store).iloc[0]
    assert run["status"] == "failed" and "disk full" in run["error"]


def test_post_prunes_the_final_global_model_only(tmp_path):
    server, rounds, _ = federate(tmp_path, method="post", scenario="uniform")
    dense_like = rounds.iloc[:-1]
    assert dense_like["bytes_up"].iloc[1] > 0
    masks = server.trainer.method.masks
    assert len(masks)
    conv_keep = [mask.keep for mask in masks if mask.layer.kind == "conv"]
    pruned = 1 - sum(int(k.sum()) for k in conv_keep) / sum(k.numel() for k in conv_keep)
    assert pruned == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize(
    ("federation", "message"),
    [
        ({"alpha": 0.0}, "alpha must be a positive number"),
        ({"clients_per_round": 9}, "clients_per_round 9 is more than the 4 clients"),
    ],
)
def test_bad_federation_settings_are_one_line(federation, message):
    with pytest.raises(InputError, match=message):
        federated_run({**RUN}, {**FEDERATION, **federation})


@pytest.mark.parametrize("method", ["gmp", "lth", "small-dense"])
def test_a_method_that_prunes_while_it_trains_is_refused_by_name(method):
    with pytest.raises(InputError, match=f"method '{method}' does not train federated: it "):
        federated_run({**RUN, "method": method}, FEDERATION)


def test_each_method_declares_how_it_federates():
    from sparsebench.sparsity.methods import METHODS

    assert {name: method.federation() for name, method in METHODS.items()} == {
        "dense": "dense",
        "post": "dense",  # derived from dense: prunes the final global model
        "pre": "fixed-mask",
        "static": "fixed-mask",
        "snip": "client-scored",
        "in": "dynamic",
        "set": "dynamic",
        "rigl": "dynamic",
        "gmp": None,
        "lth": None,
        "small-dense": None,
    }


def test_a_method_of_ones_own_that_draws_a_mask_federates_with_it_fixed():
    from sparsebench.sparsity.methods import PruningMethod

    class Mine(PruningMethod):
        name, display_name, colour = "mine", "Mine", "#000000"

    assert Mine.federation() == "fixed-mask"
    assert Mine.round_schedule(Mine.Options(), every=3) is None


def test_more_clients_than_images_is_refused_before_anything_is_written(tmp_path):
    fed = federated_run(RUN, {"clients": 1000, "clients_per_round": 2})
    with open_results(tmp_path / "fl.db") as store:
        with pytest.raises(InputError, match="1000 clients but 512 training images"):
            FederatedServer(fed, load_dataset("synthetic"), store, tmp_path / "runs")
        assert federated_runs(store).empty


def test_federate_runs_on_flowers_simulation_engine(tmp_path):
    result = cli_json(
        [
            "federate",
            *[f"--{key.replace('_', '-')}={value}" for key, value in RUN.items()],
            "--method=snip",
            "--scenario=uniform",
            "--clients=3",
            "--clients-per-round=2",
            "--rounds=1",
            "--parallel=1",
        ],
        tmp_path,
    )
    rounds = result["rounds"]
    assert [row["round"] for row in rounds] == [0, 1]
    assert rounds[1]["clients_failed"] == 0 and rounds[1]["bytes_up"] > 0
    # SNIP's scoring went through Flower: each of the 3 clients sent a float32 sum per
    # conv and linear weight.
    model = build_run(RunConfig(**RUN), load_dataset("synthetic"), torch.device("cpu")).model
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert rounds[0]["bytes_up"] > 3 * 4 * weights
    assert json.dumps(result)


def test_fedprox_clients_stay_near_the_global_model(tmp_path):
    initial = build_run(RunConfig(**RUN), load_dataset("synthetic"), torch.device("cpu")).model

    def moved(server: FederatedServer) -> float:
        start = initial.state_dict()
        return sum(
            float((tensor - start[name]).pow(2).sum())
            for name, tensor in server.model.state_dict().items()
            if tensor.is_floating_point() and "running" not in name
        )

    fedavg, _, _ = federate(tmp_path / "avg", rounds=1)
    fedprox, _, _ = federate(tmp_path / "prox", rounds=1, strategy="fedprox", proximal_mu=100.0)
    assert moved(fedprox) < 0.5 * moved(fedavg)


@pytest.mark.slow
def test_federate_killed_mid_round_resumes_to_the_uninterrupted_end(tmp_path):
    """The process killed (SIGKILL) while a round trains; the same command resumes."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    args = [
        str(Path(sys.executable).parent / "sparsebench"), "federate",
        *[f"--{key.replace('_', '-')}={value}" for key, value in RUN.items()],
        "--method=pre", "--scenario=mixed", "--clients=4", "--clients-per-round=2",
        "--rounds=4", "--json",
    ]  # fmt: skip

    def command(folder):
        return [*args, "--db", str(folder / "r.db"), "--runs-dir", str(folder / "runs")]

    whole = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, check=True)
    (tmp_path / "cut").mkdir()
    killed = subprocess.Popen(command(tmp_path / "cut"), start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            with sqlite3.connect(tmp_path / "cut" / "r.db") as connection:
                done = connection.execute("SELECT count(*) FROM federated_rounds").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 3:  # rounds 0 to 2 stored: round 3 is training
            break
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    resumed = subprocess.run(command(tmp_path / "cut"), capture_output=True, text=True, check=True)
    expected = json.loads(whole.stdout)["rounds"]
    got = json.loads(resumed.stdout)["rounds"]
    assert [row["round"] for row in got] == [0, 1, 2, 3, 4]
    for column in ("test_accuracy", "test_loss", "bytes_up"):
        assert [row[column] for row in got] == [row[column] for row in expected]


def test_a_database_of_the_release_before_federation_gains_its_tables(tmp_path):
    import sqlite3

    db = tmp_path / "r.db"
    open_results(db).close()
    with sqlite3.connect(db) as connection:
        for table in ("federated_clients", "federated_rounds", "federated_runs"):
            connection.execute(f"DROP TABLE {table}")
        connection.execute("PRAGMA user_version=8")
    with pytest.warns(UserWarning, match="migrated from results database schema 8 to 10"):
        store = open_results(db)
    with store:
        assert federated_runs(store).empty and federated_rounds(store).empty


def test_the_report_draws_federated_runs_alone_or_beside_trained_ones(tmp_path):
    from sparsebench.report.build import build_report

    federate(tmp_path, method="pre", scenario="uniform")
    report = build_report(tmp_path / "fl.db", tmp_path / "report", svg=False)
    rows = pd.read_csv(tmp_path / "report" / "federated_rounds.csv")
    assert rows["round"].tolist() == [0, 1, 2]
    # Megabytes uploaded, cumulative from the set-up, as the figure's x-axis.
    assert rows["mb_uploaded"].tolist() == pytest.approx(rows["bytes_up"].cumsum() / 1e6)
    assert (tmp_path / "report" / "figures" / "federated_accuracy.png").stat().st_size > 0
    page = report.index.read_text()
    assert "Federated runs" in page and "MB to dense's final validation accuracy" in page
    summary = pd.read_csv(tmp_path / "report" / "federated_summary.csv")
    assert summary["final_accuracy"].tolist() == pytest.approx([rows["test_accuracy"].iloc[-1]])
    # the server validates every round; the best round is chosen on validation
    assert rows.val_accuracy.notna().all()
    best = rows.loc[rows.val_accuracy.idxmax()]
    assert summary["best_val_round"].tolist() == [best["round"]]
    assert summary["accuracy_at_best_val"].tolist() == pytest.approx([best.test_accuracy])
    # Beside a trained run, the federated section joins the study's report.
    trained = [f"--{key.replace('_', '-')}={value}" for key, value in RUN.items()]
    result = CliRunner().invoke(
        app, ["train", *trained, "--db", str(tmp_path / "fl.db"), "--runs-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.stderr
    page = build_report(tmp_path / "fl.db", tmp_path / "report", svg=False).index.read_text()
    assert "Federated runs" in page and "Table 1" in page


def test_each_stored_round_is_told_as_it_is_stored(tmp_path):
    told = []
    fed = federated_run(RUN, FEDERATION)
    with open_results(tmp_path / "fl.db") as store:
        server = FederatedServer(
            fed, load_dataset("synthetic"), store, tmp_path / "runs", on_round=told.append
        )
        server.run(loopback())
        stored = federated_rounds(store, fed.run_id())
    assert [row.round for row in told] == [1, 2]
    assert [row.test_accuracy for row in told] == stored["test_accuracy"].iloc[1:].tolist()


def test_a_second_federate_of_a_run_another_process_trains_gets_one_line(tmp_path):
    import subprocess
    import sys

    from sparsebench.store.federated import begin_federated_run

    fed = federated_run({**RUN, "method": "dense"}, FEDERATION)
    with open_results(tmp_path / "fl.db") as store:  # this test's process holds the run
        assert begin_federated_run(store, fed.run_id(), {}, {})
    flags = {**RUN, **FEDERATION, "method": "dense", "parallel": 1}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsebench.cli",
            "federate",
            *[f"--{key.replace('_', '-')}={value}" for key, value in flags.items()],
            f"--db={tmp_path / 'fl.db'}",
            f"--runs-dir={tmp_path / 'runs'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: run {fed.run_id()} is being trained by process {os.getpid()}"
        + last.split(f"process {os.getpid()}")[1]
    )
    assert "wait for it to end, or stop it" in last
    with open_results(tmp_path / "fl.db", read_only=True) as store:
        assert federated_rounds(store, fed.run_id()).empty


def test_a_federated_run_stopped_by_a_full_disk_is_interrupted_not_failed(tmp_path):
    def full_disk(kind, messages):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        federate(tmp_path, send=full_disk)
    with open_results(tmp_path / "fl.db", read_only=True) as store:
        (row,) = federated_runs(store).itertuples()
    assert row.status == "interrupted" and "No space left on device" in row.error


def test_a_strategy_of_ones_own_aggregates_and_an_unknown_one_is_refused(tmp_path):
    from sparsebench.federated.strategy import STRATEGIES, FedAvg, register_strategy

    seen = []

    @register_strategy
    class FirstClient(FedAvg):
        """Takes the first client's state whole: what the server keeps is checkable."""

        name = "first-client"

        def aggregate(self, states, examples, held=None):
            seen.append([{k: v.clone() for k, v in state.items()} for state in states])
            return states[0]

    try:
        server, rounds, _ = federate(tmp_path, strategy="first-client", rounds=1)
    finally:
        del STRATEGIES["first-client"]
    (states,) = seen
    assert len(states) == FEDERATION["clients_per_round"]
    for name, tensor in server.model.state_dict().items():
        assert torch.equal(tensor, states[0][name]), name
    with pytest.raises(InputError, match="strategy: unknown strategy 'first-client' \\(choose"):
        federate(tmp_path / "again", strategy="first-client", rounds=1)

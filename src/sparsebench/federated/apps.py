"""The Flower apps of a federated run: a ClientApp that trains one client's round, a
ServerApp that drives `FederatedServer`, and the simulation engine that runs both on one
machine (clients in parallel as the cores allow, one core each).

Every message is a Flower message; its bytes are those of its content serialised as it
travels (`payload.content_bytes`). A node keeps the run's settings and the shared masks
in its Flower context after the set-up (round 0), so a round's message carries only the
weights, the client it is for and the round.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparsebench.data.dataset import ImageDataset
from sparsebench.data.registry import load_dataset
from sparsebench.federated.client import (
    client_dataset,
    client_trainer,
    round_seed,
    score_client,
    train_client,
)
from sparsebench.federated.partition import Partition, partition_clients
from sparsebench.federated.payload import (
    content_bytes,
    decode,
    encode,
    message_content,
    message_parts,
)
from sparsebench.federated.server import MASK_PREFIX, FederatedServer, Reply, masks_from_arrays
from sparsebench.federated.strategy import strategy_for
from sparsebench.federated.structure import shared_structure
from sparsebench.settings.federated import FederatedRun
from sparsebench.store.records import RoundRecord
from sparsebench.train.build import prepare_dataset

SETTINGS_KEY = "sparsebench"
MASKS_KEY = "sparsebench-masks"
NODE_WAIT_S = 120.0


@functools.lru_cache(maxsize=2)
def _client_data(settings_json: str) -> tuple[ImageDataset, Partition]:
    """The data set and how it is dealt, once per process and run."""
    fed = FederatedRun.model_validate_json(settings_json)
    run, settings = fed.run, fed.federated
    data = prepare_dataset(run, load_dataset(run.dataset, run.data_path, run.loader_options()))
    partition = partition_clients(
        data.splits["train"].labels,
        settings.clients,
        settings.partition,
        seed=run.seed,
        alpha=settings.alpha,
        classes_per_client=settings.classes_per_client,
        class_names=data.class_names,
    )
    return data, partition


def client_set_up(content, state) -> object:  # noqa: ANN001 (Flower's RecordDicts)
    """Keep the run's settings and masks in the node's state; check the data loads."""
    from flwr.app import ArrayRecord, ConfigRecord

    arrays, config = message_parts(content)
    settings_json = str(config["settings"])
    _client_data(settings_json)
    state[SETTINGS_KEY] = ConfigRecord({"settings": settings_json})
    state[MASKS_KEY] = ArrayRecord({name: _array(value) for name, value in arrays.items()})
    return message_content({}, {"ready": 1})


def client_score(content, state) -> object:  # noqa: ANN001
    """Score the initial weights in `content` on the client's own images (SNIP's
    gradients, summed); the reply carries the sums and how many images they saw."""
    arrays, config = message_parts(content)
    settings_json = str(config["settings"])
    fed = FederatedRun.model_validate_json(settings_json)
    data, partition = _client_data(settings_json)
    own = client_dataset(data, partition.indices[int(config["client"])])
    sums, examples = score_client(fed.run, own, arrays)
    gradients = {name: gradient.numpy() for name, gradient in sums.by_module.items()}
    return message_content(gradients, {"examples": examples})


def client_round(content, state) -> object:  # noqa: ANN001
    """Train one client's round on the weights in `content`; the reply's content. A
    message carrying masks replaces the node's; in a mask round (`mask_amount` > 0) the
    client readjusts its mask after its first step (the method's own drop and grow) and
    sends its weights with that mask."""
    from flwr.app import ArrayRecord

    arrays, config = message_parts(content)
    settings_json = str(state[SETTINGS_KEY]["settings"])
    fed = FederatedRun.model_validate_json(settings_json)
    data, partition = _client_data(settings_json)
    client, round_number = int(config["client"]), int(config["round"])
    if any(name.startswith(MASK_PREFIX) for name in arrays):
        masks_sent = {k: v for k, v in arrays.items() if k.startswith(MASK_PREFIX)}
        state[MASKS_KEY] = ArrayRecord({name: _array(value) for name, value in masks_sent.items()})
    own = client_dataset(data, partition.indices[client])
    seed = round_seed(fed.run.seed, round_number, client)
    trainer = client_trainer(fed.run, own, seed)
    shared = {name: array.numpy() for name, array in state[MASKS_KEY].items()}
    trainer.use_masks(masks_from_arrays(shared, trainer.masks.state_dict()))
    input_shape = (data.channels, data.image_size, data.image_size)
    structure = shared_structure(trainer.model, trainer.masks, input_shape)
    encoding = fed.federated.encoding(bool(len(trainer.masks)))
    template = trainer.model.state_dict()
    trainer.load_state_dict({"model": decode(arrays, template, structure, encoding)})
    amount = float(config.get("mask_amount", 0.0))
    if amount:
        trainer.change_masks_after_next_step(amount)
    trainer.penalty = strategy_for(fed.federated).client_penalty(trainer)
    update = train_client(trainer, fed.run, own, seed)
    if amount:
        structure = shared_structure(trainer.model, trainer.masks, input_shape)
        encoding = "bitmask"
    numbers = {
        "examples": update.examples,
        "train_loss": update.train_loss,
        "train_accuracy": update.train_accuracy,
        "received_accuracy": update.received_accuracy,
        "train_time_s": update.train_time_s,
        "train_macs_per_sample": update.train_macs_per_sample,
    }
    return message_content(encode(update.state, structure, encoding), numbers)


# The handlers of a node's queries (messages before round 1), by the kind the server sends.
CLIENT_QUERIES = {"score": client_score, "setup": client_set_up}


def _array(value: np.ndarray):  # noqa: ANN202
    from flwr.app import Array

    return Array(value)


def make_client_app():  # noqa: ANN201
    from flwr.app import Context, Message
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.query()
    def set_up(message: Message, context: Context) -> Message:
        kind = str(message.content["config"].get("kind", "setup"))
        answer = CLIENT_QUERIES[kind](message.content, context.state)
        return Message(answer, reply_to=message)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        failing = os.environ.get("SPARSEBENCH_FAIL_CLIENT")  # fault injection for tests
        config = message.content["config"]
        if failing and f"{config['round']}:{config['client']}" == failing:
            raise RuntimeError(f"client {config['client']} failed on purpose (a test)")
        return Message(client_round(message.content, context.state), reply_to=message)

    return app


def grid_sender(grid, timeout_s: float):  # noqa: ANN001, ANN201
    """The server's `Send` over a Flower grid: client k goes to the k-th node (by node id,
    modulo the nodes there are)."""
    from flwr.app import Message, MessageType

    deadline = time.monotonic() + NODE_WAIT_S
    while not list(grid.get_node_ids()) and time.monotonic() < deadline:
        time.sleep(0.2)
    nodes = sorted(grid.get_node_ids())
    if not nodes:
        raise RuntimeError(f"no Flower node connected within {NODE_WAIT_S:.0f} s")

    def send(kind: str, messages: dict) -> dict[int, Reply]:
        message_type = MessageType.TRAIN if kind == "train" else MessageType.QUERY
        outgoing, down = [], {}
        for client, (arrays, config) in messages.items():
            query = {"kind": kind} if message_type == MessageType.QUERY else {}
            content = message_content(arrays, {**config, **query, "client": client})
            node = nodes[client % len(nodes)]
            outgoing.append(Message(content, dst_node_id=node, message_type=message_type))
            down[client] = content_bytes(content)
        received = list(grid.send_and_receive(outgoing, timeout=timeout_s))
        # Sending gives each message its id, which its reply names.
        sent = {m.metadata.message_id: c for m, c in zip(outgoing, messages, strict=True)}
        replies: dict[int, Reply] = {}
        for reply in received:
            client = sent[reply.metadata.reply_to_message_id]
            if reply.has_error():
                replies[client] = Reply({}, {}, 0, down[client], _one_line(reply.error.reason))
                continue
            arrays, config = message_parts(reply.content)
            replies[client] = Reply(arrays, config, content_bytes(reply.content), down[client])
        for client in messages:
            if client not in replies:
                replies[client] = Reply({}, {}, 0, down[client], f"no reply within {timeout_s:g} s")
        return replies

    return send


def _one_line(reason: str) -> str:
    """The client's own error message out of the traceback Flower forwards."""
    found = re.findall(r"Message: ([^\n'\"<>]+)", reason)
    if found:
        return found[-1].strip()
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    return lines[-1] if lines else reason


def make_server_app(  # noqa: ANN201
    fed: FederatedRun,
    dataset: ImageDataset,
    db: Path,
    runs_dir: Path,
    on_round: Callable[[RoundRecord], None] | None = None,
):
    """A ServerApp running `fed` on `dataset`, its rounds written to `db`."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    from sparsebench.store.results import open_results

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        # SQLite connections belong to the thread that opened them: the server's own.
        with open_results(db) as store:
            server = FederatedServer(fed, dataset, store, runs_dir, on_round)
            server.run(grid_sender(grid, fed.federated.round_timeout_s))

    return app


def simulate(
    fed: FederatedRun,
    dataset: ImageDataset,
    db: Path,
    runs_dir: Path,
    parallel: int | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> None:
    """Run `fed` in Flower's simulation engine: one virtual node per client, `parallel`
    clients training at once (default: one per core), one core each; `on_round` is told
    each round as it is stored."""
    from flwr.simulation import run_simulation

    # Flower warns that this Python entry point is deprecated in favour of `flwr run`
    # (which needs an app bundle; SuperLink deployment uses the same apps), and Ray of a
    # future default: neither is the user's to act on.
    logging.getLogger("flwr").setLevel(logging.ERROR)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    cores = parallel or os.cpu_count() or 1
    run_simulation(
        make_server_app(fed, dataset, db, runs_dir, on_round),
        make_client_app(),
        num_supernodes=fed.federated.clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": cores, "include_dashboard": False},
        },
    )

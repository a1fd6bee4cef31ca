"""The server's side of a federated run, apart from how messages travel.

The server holds the global model. Before round 1 it decides the shared mask and sends
it once, with the run's settings, to every node (round 0, the set-up): a fixed-mask
method draws it on the server's initial model, as `sparsebench train` would before its
first step; SNIP scores it on the clients' statistics, each client summing the gradients
of the initial model on its own images and the server adding the sums (round 0 counts
the bytes of that exchange too). Each round it samples clients (seeded by the run's seed
and the round), sends each the global weights, averages the updates of those that
answered (FedAvg, weighted by examples), tests the result on the held-out test split,
writes the round to the database and then its state file. A run killed at any point
resumes from the round of its state file and ends where an uninterrupted run ends.

Nodes are workers: a message names the client (a share of the data) its node trains,
so any node can train any client, as the simulation engine's virtual nodes do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparsebench.confusion import balanced_accuracy
from sparsebench.data.dataset import BatchLoader, ImageDataset
from sparsebench.federated.aggregate import federated_average
from sparsebench.federated.client import client_config, dense_twin, federated_trainer
from sparsebench.federated.partition import Partition, partition_clients
from sparsebench.federated.payload import decode, encode, held_entries
from sparsebench.federated.strategy import strategy_for
from sparsebench.federated.structure import shared_structure
from sparsebench.files import written_whole
from sparsebench.settings.federated import FederatedRun
from sparsebench.sparsity.snip import GradientSums
from sparsebench.store.db import ResultsStore
from sparsebench.store.records import ClientRoundRecord, RoundRecord
from sparsebench.train.build import prepare_dataset
from sparsebench.train.evaluation import evaluate
from sparsebench.train.recorder import FederatedRecorder
from sparsebench.train.trainer import SparseTrainer


@dataclass
class Reply:
    """A client's answer: its arrays and numbers, or why it failed; and the bytes of the
    message each way."""

    arrays: dict[str, np.ndarray]
    config: dict[str, int | float | str]
    bytes_up: int
    bytes_down: int
    error: str | None = None


# Send each client (by number) the arrays and config of its message, of a kind ("score",
# "setup" or "train"), and return each client's reply.
Send = Callable[
    [str, dict[int, tuple[dict[str, np.ndarray], dict[str, int | float | str]]]],
    dict[int, Reply],
]


MASK_PREFIX = "mask:"


def mask_arrays(masks: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The shared masks, one bit per unit, as the set-up message carries them."""
    return {
        f"{MASK_PREFIX}{name}": np.packbits(keep.cpu().numpy().ravel())
        for name, keep in masks.items()
    }


def masks_from_arrays(
    arrays: dict[str, np.ndarray], like: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The masks `mask_arrays` packed, shaped as the client's own method's masks."""
    return {
        name: torch.from_numpy(
            np.unpackbits(arrays[f"{MASK_PREFIX}{name}"], count=keep.numel()).astype(bool)
        ).view(keep.shape)
        for name, keep in like.items()
    }


def sample_clients(seed: int, round_number: int, clients: int, per_round: int) -> list[int]:
    """The clients of a round, drawn by the run's seed and the round alone."""
    chosen = np.random.default_rng([seed, round_number]).choice(clients, per_round, replace=False)
    return sorted(int(client) for client in chosen)


class FederatedServer:
    """The global model of one federated run, and its rounds."""

    def __init__(
        self,
        fed: FederatedRun,
        dataset: ImageDataset,
        store: ResultsStore,
        runs_dir: Path,
        on_round: Callable[[RoundRecord], None] | None = None,
    ) -> None:
        """`on_round` is told each round as it is stored (a progress display)."""
        self.fed, self.store = fed, store
        self.recorder = FederatedRecorder(store, fed.run_id())
        self.on_round = on_round
        self.run_id = fed.run_id()
        self.data = prepare_dataset(fed.run, dataset)
        settings = fed.federated
        self.partition: Partition = partition_clients(
            self.data.splits["train"].labels,
            settings.clients,
            settings.partition,
            seed=fed.run.seed,
            alpha=settings.alpha,
            classes_per_client=settings.classes_per_client,
            class_names=self.data.class_names,
        )
        self.input_shape = (self.data.channels, self.data.image_size, self.data.image_size)
        self.strategy = strategy_for(fed.federated)  # an unknown name refused here, early
        # The masks change in a dynamic run's mask rounds: each change is a revision, and
        # a client is sent the masks when the revision it last received is older.
        self.revision, self.known = 0, dict[int, int]()
        # Until its clients have scored it, a SNIP run's global model is its dense twin:
        # the same seed, the same initial weights, no mask yet.
        self.scores: GradientSums | None = None
        initial = dense_twin(fed.run) if fed.scored_on_clients else fed.run
        self._use(federated_trainer(initial, self.data))
        self.prunes_at_end = client_config(fed.run).method != fed.run.method
        self.state_path = Path(runs_dir) / self.run_id / "federated.pt"
        self.test, self.val = (
            BatchLoader(
                self.data.splits[split],
                self.data.mean,
                self.data.std,
                fed.run.eval_batch_size,
                torch.device("cpu"),
            )
            for split in ("test", "val")
        )

    # The run's life.

    def run(self, send: Send) -> None:
        """Claim the run, set up the nodes, then train every round not done yet; the run
        ends finished, or as `train.outcome` says for the error that stopped it (then
        raised again)."""
        self.recorder.begin(
            self.fed.model_dump(mode="json"),
            {"class_counts": self.partition.class_counts, "warnings": self.partition.warnings},
        )
        try:
            done = self.resume()
            scoring = self.score(send) if done == 0 and self.fed.scored_on_clients else {}
            self.set_up(send, record=done == 0, scoring=scoring)
            for round_number in range(done + 1, self.fed.federated.rounds + 1):
                self.train_round(round_number, send)
        except (Exception, KeyboardInterrupt) as error:
            self.recorder.end(error)  # the one policy of every run (`train.outcome`)
            raise
        self.recorder.finish()

    def _use(self, trainer: SparseTrainer) -> None:
        self.trainer, self.model = trainer, trainer.model
        self._masks_changed()
        self.encoding = self.fed.federated.encoding(bool(self.masks))

    def _masks_changed(self) -> None:
        self.masks = self.trainer.masks.state_dict()
        self.structure = shared_structure(self.model, self.trainer.masks, self.input_shape)

    def resume(self) -> int:
        """The last round whose state is saved (0: none), its global model loaded."""
        if not self.state_path.exists():
            self.recorder.resumed_after(0)
            return 0
        state = torch.load(self.state_path, weights_only=True)
        if "scores" in state:
            self.scores = GradientSums(state["scores"])
            self._use(federated_trainer(self.fed.run, self.data, self.scores))
        self.trainer.use_masks(state["masks"], state["model"])
        self.revision = int(state["revision"])
        self._masks_changed()
        done = int(state["round"])
        self.recorder.resumed_after(done)
        return done

    def score(self, send: Send) -> dict[int, Reply]:
        """SNIP on the clients: every client sums the gradients of the initial weights on
        its own images; the server adds the sums, weighted by the images each saw, and
        masks the network by them. The clients' replies (a client that failed is left
        out; all failing stops the run)."""
        settings = {"settings": self.fed.model_dump_json()}
        weights = encode(self.model.state_dict(), {}, "dense")
        clients = range(self.fed.federated.clients)
        replies = send("score", {client: (weights, settings) for client in clients})
        answered = [reply for _, reply in sorted(replies.items()) if reply.error is None]
        if not answered:
            raise RuntimeError(f"no client could score the initial model ({_errors(replies)})")
        sums = [{name: torch.tensor(a) for name, a in reply.arrays.items()} for reply in answered]
        examples = [int(reply.config["examples"]) for reply in answered]
        self.scores = GradientSums(federated_average(sums, examples))
        self._use(federated_trainer(self.fed.run, self.data, self.scores))
        return replies

    def set_up(self, send: Send, record: bool, scoring: dict[int, Reply]) -> None:
        """Round 0: the settings and the shared masks to every node; the initial model
        tested. `scoring`: the replies of the clients that scored the mask (SNIP), whose
        bytes round 0 counts too."""
        started = time.perf_counter()
        settings = {"settings": self.fed.model_dump_json()}
        clients = range(self.fed.federated.clients)
        replies = send("setup", {client: (mask_arrays(self.masks), settings) for client in clients})
        self.known = {client: self.revision for client in clients}
        failed = {client: reply.error for client, reply in replies.items() if reply.error}
        if failed:
            client, error = next(iter(failed.items()))
            raise RuntimeError(f"client {client} could not set up: {error}")
        if record:
            metrics = self.evaluate()
            self.recorder.round(
                RoundRecord(
                    round=0,
                    **metrics,
                    bytes_up=sum(r.bytes_up for r in [*replies.values(), *scoring.values()]),
                    bytes_down=sum(r.bytes_down for r in [*replies.values(), *scoring.values()]),
                    clients_sampled=len(replies),
                    clients_failed=sum(reply.error is not None for reply in scoring.values()),
                    client_time_s=0.0,
                    round_time_s=time.perf_counter() - started,
                    train_macs_per_sample=None,
                ),
                [],
            )

    def train_round(self, round_number: int, send: Send) -> None:
        started = time.perf_counter()
        amount = self.fed.mask_amount(round_number)
        state = self.model.state_dict()
        arrays = encode(state, self.structure, self.encoding)
        settings = self.fed.federated
        chosen = sample_clients(
            self.fed.run.seed, round_number, settings.clients, settings.per_round
        )
        messages = {}
        for client in chosen:
            stale = self.known.get(client) != self.revision
            sent = {**arrays, **mask_arrays(self.masks)} if stale else arrays
            messages[client] = (sent, {"round": round_number, "mask_amount": amount or 0.0})
        replies = send("train", messages)
        answered = {client: reply for client, reply in replies.items() if reply.error is None}
        if not answered:
            raise RuntimeError(f"round {round_number}: every client failed ({_errors(replies)})")
        self.known.update({client: self.revision for client in answered})
        self._aggregate([answered[client] for client in sorted(answered)], state, amount)
        if round_number == settings.rounds and self.prunes_at_end:
            self.trainer.prune_now()  # post: the final global model pruned
        metrics = self.evaluate()
        record = self._round_record(round_number, replies, metrics, time.perf_counter() - started)
        clients = [_client_record(client, reply) for client, reply in sorted(replies.items())]
        self.recorder.round(record, clients)
        self.save(round_number)
        if self.on_round is not None:
            self.on_round(record)

    def _aggregate(
        self, replies: list[Reply], template: dict[str, torch.Tensor], amount: float | None
    ) -> None:
        """FedAvg of the replies; in a mask round each client sent its own mask, every
        entry is averaged over the clients holding it, and each layer keeps its budget of
        units, those of largest magnitude in the average (FedDST's server step)."""
        encoding = "bitmask" if amount else self.encoding
        updates = [decode(reply.arrays, template, self.structure, encoding) for reply in replies]
        examples = [int(reply.config["examples"]) for reply in replies]
        held = None
        if amount:
            held = [held_entries(r.arrays, template, self.structure, encoding) for r in replies]
        self.trainer.load_state_dict({"model": self.strategy.aggregate(updates, examples, held)})
        if amount:
            self.trainer.keep_strongest()
            self.revision += 1
            self._masks_changed()

    def _round_record(
        self, round_number: int, replies: dict[int, Reply], metrics: dict, elapsed: float
    ) -> RoundRecord:
        answered = [reply for reply in replies.values() if reply.error is None]
        macs = [float(reply.config["train_macs_per_sample"]) for reply in answered]
        return RoundRecord(
            round=round_number,
            **metrics,
            bytes_up=sum(reply.bytes_up for reply in replies.values()),
            bytes_down=sum(reply.bytes_down for reply in replies.values()),
            clients_sampled=len(replies),
            clients_failed=len(replies) - len(answered),
            client_time_s=max(float(reply.config["train_time_s"]) for reply in answered),
            round_time_s=elapsed,
            train_macs_per_sample=sum(macs) / len(macs),
            mask_round=int(bool(self.fed.mask_amount(round_number))),
        )

    def evaluate(self) -> dict[str, float]:
        """The global model (masked as the run's masks say) on the test split, and on the
        validation split, which the best round is chosen by."""
        measured = {}
        for split, loader in (("test", self.test), ("val", self.val)):
            accumulator = evaluate(self.trainer.eval_network(), loader, self.data.num_classes)
            metrics = accumulator.result()
            measured |= {
                f"{split}_loss": metrics.loss,
                f"{split}_accuracy": metrics.accuracy,
                f"{split}_balanced_accuracy": balanced_accuracy(accumulator.confusion.tolist()),
            }
        return measured

    def save(self, round_number: int) -> None:
        with written_whole(self.state_path) as temporary:
            torch.save(
                {
                    "round": round_number,
                    "model": self.model.state_dict(),
                    "masks": self.masks,
                    "revision": self.revision,
                    **({"scores": self.scores.by_module} if self.scores else {}),
                },
                temporary,
            )


def _errors(replies: dict[int, Reply]) -> str:
    """Each client's error, in one line."""
    return "; ".join(f"client {c}: {r.error}" for c, r in sorted(replies.items()))


def _client_record(client: int, reply: Reply) -> ClientRoundRecord:
    if reply.error is not None:
        return ClientRoundRecord(
            client, None, reply.bytes_up, reply.bytes_down, None, None, None, reply.error
        )
    return ClientRoundRecord(
        client=client,
        examples=int(reply.config["examples"]),
        bytes_up=reply.bytes_up,
        bytes_down=reply.bytes_down,
        train_time_s=float(reply.config["train_time_s"]),
        train_loss=float(reply.config["train_loss"]),
        received_accuracy=float(reply.config["received_accuracy"]),
    )

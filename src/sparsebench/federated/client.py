"""One client's round: local training of the global model on the client's own images.

A client trains through the training engine (`SparseTrainer`), so it trains the compact
network of the shared mask, as `sparsebench train` does. Each round starts afresh from
the global weights and masks the server sent: a new optimiser (FedAvg's clients keep no
state between rounds) and batches shuffled by a seed made of the run's seed, the round
and the client, so a round trained again after an interruption computes the same update.

Images are normalised with the statistics of the whole training split, as a federation
agrees on one preprocessing before it trains; every client and the server use the same.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from sparsebench.data.dataset import BatchLoader, ImageDataset, Split
from sparsebench.federated.payload import decode
from sparsebench.settings.run import MAX_SEED, RunConfig
from sparsebench.sparsity.methods import METHODS, SparsityWarning, baseline_name
from sparsebench.sparsity.snip import GradientSums, gradient_sums
from sparsebench.train.build import build_run
from sparsebench.train.compact import TRAINING_PASSES
from sparsebench.train.evaluation import evaluate
from sparsebench.train.metrics import MetricAccumulator
from sparsebench.train.trainer import SparseTrainer


@dataclass
class ClientUpdate:
    """What a client's round produced: its weights and how it trained."""

    state: dict[str, torch.Tensor]
    examples: int
    train_loss: float
    train_accuracy: float
    # The global model the client received, on the client's own images, before training.
    received_accuracy: float
    train_time_s: float
    train_macs_per_sample: float


def client_config(run: RunConfig) -> RunConfig:
    """What every client trains: the run itself, or dense for a method that trains as
    the baseline does and prunes only after it (`post`: the server prunes the final
    global model)."""
    if not METHODS[run.method].derivable_from_baseline(run.method_settings):
        return run
    return dense_twin(run)


def dense_twin(run: RunConfig) -> RunConfig:
    """`run` trained dense: the same seed, so the same initial weights, and no mask."""
    settings = run.model_dump(exclude={"scenario", "conv_sparsity", "linear_sparsity"})
    return RunConfig(**{**settings, "method": baseline_name(), "method_options": {}})


def round_seed(seed: int, round_number: int, client: int) -> int:
    """The seed of one client's training in one round."""
    return (seed * 1_000_003 + round_number * 10_007 + client) % MAX_SEED


def client_dataset(dataset: ImageDataset, indices: torch.Tensor) -> ImageDataset:
    """The client's share of the training split, normalised as the whole split is."""
    train = dataset.splits["train"]
    own = Split(train.images[indices], train.labels[indices])
    client = ImageDataset(dataset.name, {"train": own}, dataset.class_names, dataset.source)
    client.mean, client.std = dataset.mean, dataset.std
    return client


def federated_trainer(
    run: RunConfig, data: ImageDataset, scoring: GradientSums | None = None
) -> SparseTrainer:
    """A trainer of `run` whose masks change only when the server's mask rounds say
    (its method's own schedule, and the warnings about it, do not apply); `scoring`:
    the clients' summed gradients, for a method that scores before its first mask."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparsityWarning)
        trainer = build_run(run, data, torch.device("cpu"), scoring)
    trainer.hold_masks()
    # A client's local epochs are a slice of training, not all of it: it trains at the
    # run's base rate (a schedule over rounds would be the server's to set).
    trainer.learning_rate = None
    return trainer


def client_trainer(run: RunConfig, data: ImageDataset, seed: int) -> SparseTrainer:
    """The client's trainer, before the shared masks and the global weights are loaded."""
    return federated_trainer(client_config(run).model_copy(update={"seed": seed}), data)


def score_client(
    run: RunConfig, data: ImageDataset, weights: dict[str, np.ndarray]
) -> tuple[GradientSums, int]:
    """SNIP's scoring on one client: the gradients of the global `weights` (as a dense
    payload carries them), summed over the method's `batches` first batches of the
    client's own images (in the order it holds them), and how many images those batches
    held."""
    trainer = federated_trainer(dense_twin(run), data)
    template = trainer.model.state_dict()
    trainer.load_state_dict({"model": decode(weights, template, {}, "dense")})
    own = data.splits["train"]
    count = run.method_settings.batches  # type: ignore[attr-defined]
    batches = BatchLoader(own, data.mean, data.std, run.batch_size, torch.device("cpu"))
    return gradient_sums(trainer.model, batches, count), min(len(own), count * run.batch_size)


def train_client(
    trainer: SparseTrainer, run: RunConfig, data: ImageDataset, seed: int
) -> ClientUpdate:
    """Train the trainer's weights (the global model) for the run's local epochs on the
    client's `data`."""
    own = data.splits["train"]
    device = torch.device("cpu")
    received = evaluate(
        trainer.eval_network(),
        BatchLoader(own, data.mean, data.std, run.eval_batch_size, device),
        data.num_classes,
    ).result()
    loader = BatchLoader(
        own,
        data.mean,
        data.std,
        run.batch_size,
        device,
        shuffle=True,
        seed=seed,
        augment=run.augment,
    )
    sample_shape = tuple(own.images.shape[1:])
    accumulator = MetricAccumulator(data.num_classes, device)
    macs, steps = 0, 0
    started = time.perf_counter()
    for epoch in range(run.epochs):
        trainer.train()
        accumulator = MetricAccumulator(data.num_classes, device)
        for images, labels in loader:
            taken = trainer.step(images, labels)
            accumulator.add(taken.logits, labels, taken.loss)
            macs += trainer.macs_per_sample(taken.network, sample_shape)
            steps += 1
        trainer.end_epoch(epoch)
    trainer.finish()
    elapsed = time.perf_counter() - started
    trained = accumulator.result()
    return ClientUpdate(
        state={name: value.detach().clone() for name, value in trainer.model.state_dict().items()},
        examples=len(own),
        train_loss=trained.loss,
        train_accuracy=trained.accuracy,
        received_accuracy=received.accuracy,
        train_time_s=elapsed,
        train_macs_per_sample=TRAINING_PASSES * macs / max(steps, 1),
    )

"""A network evaluated: its metrics on a split, and a finished run's test metrics."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.data.dataset import BatchLoader, ImageDataset
from sparsebench.errors import InputError
from sparsebench.measure.counting import count_model
from sparsebench.measure.energy import EnergyMeter
from sparsebench.ranking import positive_index
from sparsebench.settings.run import RunConfig
from sparsebench.store.checkpoint import (
    load_checkpoint,
)
from sparsebench.store.records import TestMetrics
from sparsebench.train.metrics import MetricAccumulator
from sparsebench.train.trainer import SparseTrainer


def eval_loader(
    dataset: ImageDataset, split: str, config: RunConfig, device: torch.device
) -> BatchLoader:
    return BatchLoader(
        dataset.splits[split], dataset.mean, dataset.std, config.eval_batch_size, device
    )


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: BatchLoader, num_classes: int, positive: int | None = None
) -> MetricAccumulator:
    model.eval()
    accumulator = MetricAccumulator(num_classes, loader.device, positive)
    for images, labels in loader:
        logits = model(images)
        accumulator.add(logits, labels, F.cross_entropy(logits, labels))
    return accumulator


def test_model(
    trainer: SparseTrainer,
    checkpoint_path: Path | None,
    dataset: ImageDataset,
    config: RunConfig,
    device: torch.device,
    energy: EnergyMeter,
) -> TestMetrics:
    """Test metrics, confusion matrix, inference time per sample, and the inference
    energy of loading the trained weights from disk and classifying the test split
    (without a checkpoint: of classifying it with the network as it is)."""
    loader = eval_loader(dataset, "test", config, device)
    energy.begin()
    state = None if checkpoint_path is None else load_checkpoint(checkpoint_path)
    if state is not None:
        trainer.load_state_dict({"model": state.model})
    network = trainer.eval_network()
    positive = positive_class_of(dataset, config)
    synchronise(device)
    started = time.perf_counter()
    accumulator = evaluate(network, loader, dataset.num_classes, positive)
    synchronise(device)
    elapsed = time.perf_counter() - started
    reading = energy.end()
    metrics = accumulator.result()
    shape = tuple(dataset.splits["test"].images.shape[1:])
    counts = count_model(trainer.model, shape)
    # The network compact execution tests is the one it trained: its own size.
    compact = count_model(network, shape) if trainer.execution_name == "compact" else None
    return TestMetrics(
        **metrics.as_dict(),
        confusion_matrix=accumulator.confusion.cpu().tolist(),
        **accumulator.ranking(),
        positive_class=None if positive is None else dataset.class_names[positive],
        inference_time_per_sample_s=elapsed / max(len(dataset.splits["test"]), 1),
        inference_energy_j=reading.joules,
        inference_energy_source=reading.source,
        inference_energy_missing_reason=reading.missing_reason,
        **counts.as_dict(),
        params_compact=None if compact is None else compact.params_dense,
        macs_compact=None if compact is None else compact.macs_dense,
    )


def positive_class_of(dataset: ImageDataset, config: RunConfig) -> int | None:
    """The index of two-class data's positive class (see `sparsebench.ranking`)."""
    counts = torch.bincount(dataset.splits["train"].labels, minlength=dataset.num_classes)
    try:
        return positive_index(dataset.class_names, counts.tolist(), config.positive_class)
    except InputError as error:
        raise InputError(f"{dataset.name} ({dataset.source or 'in memory'}): {error}") from None


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

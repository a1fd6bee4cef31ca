"""The training loop: trains one configured run, measures every epoch, checkpoints, resumes.

It knows nothing of the results database: each finished epoch is handed to `on_epoch`,
and the run's result is returned, so the caller (the CLI, a sweep's driver) writes it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsebench.confusion import balanced_accuracy
from sparsebench.data.dataset import BatchLoader, ImageDataset
from sparsebench.errors import InputError
from sparsebench.measure.counting import count_model
from sparsebench.measure.energy import EnergyMeter
from sparsebench.measure.memory import PeakMemory
from sparsebench.measure.provenance import provenance
from sparsebench.models import build_model
from sparsebench.models.pretrained import load_pretrained, read_state_dict, source_digest
from sparsebench.models.registry import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from sparsebench.ranking import positive_index
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.methods import METHODS, make_method
from sparsebench.sparsity.report import sparsity_by_kind, sparsity_report
from sparsebench.sparsity.scenarios import SparsityTargets
from sparsebench.sparsity.snip import GradientSums
from sparsebench.store.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_resumable,
    save_checkpoint,
)
from sparsebench.store.records import EpochRecord, RunSummary, TestMetrics
from sparsebench.train.compact import TRAINING_PASSES
from sparsebench.train.metrics import MetricAccumulator
from sparsebench.train.schedule import PlannedRate
from sparsebench.train.selection import BestValidation, best_val_path
from sparsebench.train.trainer import NonFiniteLoss, SparseTrainer


class EpochProgress:
    """What the loop tells a progress display; the default shows nothing."""

    def start_epoch(self, epoch: int, total_epochs: int, batches: int) -> None: ...

    def advance(self) -> None: ...

    def end_epoch(self, row: EpochRecord) -> None: ...


# The devices with a fused Adam kernel in torch 2.13.0.
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return device


def build_run(
    config: RunConfig,
    dataset: ImageDataset,
    device: torch.device,
    scoring: GradientSums | None = None,
) -> SparseTrainer:
    """The trainer of the seeded model, its optimiser and its pruning method, before
    training. `scoring`: gradients summed elsewhere (a federated server's clients), which
    a method that scores before its first mask (SNIP) takes in place of the training
    batches."""
    targets = SparsityTargets(config.conv_sparsity or 0.0, config.linear_sparsity or 0.0)
    model = seeded_model(config, dataset, targets).to(device)
    optimizer = make_optimizer(model, config, device)
    method = make_method(
        config.method,
        targets,
        include=config.include,
        exclude=config.exclude,
        seed=config.seed,
        options=config.method_options,
        conv_granularity=config.conv_granularity,
        linear_granularity=config.linear_granularity,
    )
    train = dataset.splits["train"]
    # In training order but unshuffled, for a method that scores on a few batches (SNIP).
    batches = BatchLoader(train, dataset.mean, dataset.std, config.batch_size, device)
    return SparseTrainer(
        model,
        optimizer,
        method,
        epochs=config.total_epochs,
        steps_per_epoch=len(batches),
        compact=config.execution == "compact",
        batches=scoring or batches,
        input_shape=(dataset.channels, dataset.image_size, dataset.image_size),
        memory_format=config.memory_format,
        learning_rate=planned_rate(config, len(batches)),
    )


def seeded_model(config: RunConfig, dataset: ImageDataset, targets: SparsityTargets) -> nn.Module:
    """The run's network before training, on the CPU: drawn from the run's seed, at the
    width its method trains (a thinner one for `small-dense`), from `init_from` if set."""
    shape = (dataset.num_classes, dataset.channels, dataset.image_size, dataset.image_size)
    width = METHODS[config.method].network_width(config.model, config.width, targets, shape)
    torch.manual_seed(config.seed)
    model = build_model(
        config.model,
        num_classes=dataset.num_classes,
        in_channels=dataset.channels,
        image_size=dataset.image_size,
        width=width,
    )
    if config.init_from is not None:
        start_from(model, config)
    return model


def planned_rate(config: RunConfig, steps_per_epoch: int) -> PlannedRate:
    """The rate at each step: the run's schedule, where its method places the step."""
    return PlannedRate(
        config.lr,
        config.schedule,
        config.warmup,
        partial(
            METHODS[config.method].schedule_point,
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
            options=config.method_settings,
        ),
    )


def make_optimizer(
    model: nn.Module, config: RunConfig, device: torch.device
) -> torch.optim.Optimizer:
    """The run's optimiser over `model`'s weights. Adam's and AdamW's update run in one
    kernel per weight where PyTorch has one: the same arithmetic, in less time
    (benchmarks/optimizer_step.py, BENCHMARKS.md)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    # AdamW as Adam with decoupled decay (what torch's AdamW is): one optimiser class, whose
    # groups a compact network's optimiser is rebuilt from (`train.compact`).
    return torch.optim.Adam(
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        decoupled_weight_decay=config.optimizer == "adamw",
        fused=device.type in FUSED_ADAM_DEVICES,
    )


def start_from(model: nn.Module, config: RunConfig) -> None:
    """Load the run's starting weights, refusing a file that changed since the run's
    settings were made (its id names that content)."""
    assert config.init_from is not None
    if source_digest(config.init_from) != config.init_digest:
        raise InputError(
            f"{config.init_from}: --init-from file changed since run {config.run_id()} "
            "was set up (its id names the file's content); start a new run"
        )
    load_pretrained(model, read_state_dict(Path(config.init_from)), config.init_from)


def check_trainable(config: RunConfig, dataset: ImageDataset) -> None:
    """Refuse images the model cannot take, in one line naming the data, the model and
    what would work, before anything is built or written. Models take square images of
    MIN_IMAGE_SIZE to MAX_IMAGE_SIZE pixels a side, with 1 or 3 channels; `--image-size`
    resizes any data to that (bilinear, antialiased) and `--in-channels` converts."""
    channels, height, width = dataset.splits["train"].images.shape[1:]
    where = f"{dataset.name} ({dataset.source or 'in memory'})"
    takes = (
        f"{config.model} takes square images of {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels a side"
    )
    if config.image_size is None and height != width:
        raise InputError(
            f"{where}: images are {height}x{width} pixels, not square; {takes}: "
            f"--image-size N resizes them to NxN"
        )
    if config.image_size is None and not MIN_IMAGE_SIZE <= width <= MAX_IMAGE_SIZE:
        raise InputError(
            f"{where}: images are {height}x{width} pixels; {takes}: --image-size N "
            f"({MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}) resizes them"
        )
    if config.in_channels is None and channels not in (1, 3):
        raise InputError(
            f"{where}: images have {channels} channels; {config.model} takes 1 or 3: "
            "--in-channels 1 or 3 converts them"
        )
    positive_class_of(dataset, config)


class TrainingWarning(UserWarning):
    """Settings that will train, but not into a network worth evaluating."""


# Batch norm's running statistics move a `momentum` share of the way to each batch's:
# after N steps (1 - momentum)**N of their initial value is left. At PyTorch's default
# 0.1 that is 12% after 20 steps; torchvision's MobileNetV3 and EfficientNet use 0.01,
# which leaves as much only after 211. The weights they describe move all the while.
SETTLED = 0.12


def settling_steps(model: nn.Module) -> int:
    """Optimiser steps until the slowest batch norm's running statistics keep no more
    than `SETTLED` of their initial value (0 without batch norm)."""
    momenta = [
        module.momentum
        for module in model.modules()
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.momentum
    ]
    if not momenta:
        return 0
    return round(math.log(SETTLED) / math.log(1 - min(momenta)))


def warn_if_few_steps(model: nn.Module, config: RunConfig, steps_per_epoch: int) -> None:
    """With too few optimiser steps, batch-norm statistics never settle: train accuracy
    can reach 1.0 while the evaluated network (which uses those statistics) is no better
    than chance. Say so before training, and what to change."""
    steps, needed = steps_per_epoch * config.total_epochs, settling_steps(model)
    if steps >= needed:
        return
    warnings.warn(
        f"this run takes {steps} optimiser steps in all ({config.total_epochs} epoch(s) of "
        f"{steps_per_epoch} batch(es) of {config.batch_size}): {config.model}'s batch-norm "
        f"statistics need about {needed} to settle, and until then validation and test "
        "metrics say little; use a smaller --batch-size or more --epochs",
        TrainingWarning,
        stacklevel=2,
    )


def warn_if_trained_masked(trainer: SparseTrainer, config: RunConfig) -> None:
    """Compact execution asked for a network it cannot slice: the run trains masked, the
    same computation without the saving. Say so rather than let the times mislead."""
    reason = trainer.execution.masked_because
    if reason is None or METHODS[config.method].baseline:
        return
    warnings.warn(
        f"compact execution cannot slice {config.model} ({reason}): this run trains "
        "masked (the same result, without compact training's saving)",
        TrainingWarning,
        stacklevel=2,
    )


def prepare_dataset(config: RunConfig, dataset: ImageDataset) -> ImageDataset:
    image_size = config.image_size or dataset.image_size
    in_channels = config.in_channels or dataset.channels
    if image_size == dataset.image_size and in_channels == dataset.channels:
        return dataset
    return dataset.adapted(image_size, in_channels)


def train_run(
    config: RunConfig,
    dataset: ImageDataset,
    checkpoint_path: Path,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_resume: Callable[[list[EpochRecord]], None] | None = None,
    progress: EpochProgress | None = None,
    stop_after_epoch: int | None = None,
    earlier_ids: tuple[str, ...] = (),
) -> RunSummary:
    """Train `config` on `dataset`, resuming from `checkpoint_path` if it holds this run.

    `on_resume` receives the epochs already done when a run resumes; `on_epoch` each
    epoch as it finishes (after its checkpoint is on disk). `stop_after_epoch` ends the
    process's work early, as an interruption would (for tests of resumption).
    `earlier_ids`: ids earlier releases gave the run, which its checkpoint may hold.
    """
    progress = progress or EpochProgress()
    device = resolve_device(config.device)
    check_trainable(config, dataset)
    dataset = prepare_dataset(config, dataset)
    run_id = config.run_id()
    trainer = build_run(config, dataset, device)
    train_loader = _train_loader(dataset, config, device)
    warn_if_few_steps(trainer.model, config, len(train_loader))
    warn_if_trained_masked(trainer, config)
    val_loader = _eval_loader(dataset, "val", config, device)
    history: list[EpochRecord] = []
    best = BestValidation(best_val_path(checkpoint_path), run_id)
    state = load_resumable(checkpoint_path, run_id, *config.earlier_run_ids(), *earlier_ids)
    if state is not None:
        history = _resume(trainer, train_loader, state, checkpoint_path, run_id)
        best = BestValidation.resumed(best.path, run_id)
        if on_resume is not None:
            on_resume(history)
    start_epoch = len(history)

    memory = PeakMemory(device)
    energy = EnergyMeter(device)
    for epoch in range(start_epoch, config.total_epochs):
        progress.start_epoch(epoch, config.total_epochs, len(train_loader))
        row = _train_epoch(
            trainer, train_loader, dataset, memory, energy, progress, epoch, config.lr
        )
        record = _end_epoch(trainer, epoch, row, val_loader, dataset, best)
        history.append(record)
        save_checkpoint(
            checkpoint_state(config, trainer, train_loader.generator.get_state(), history),
            checkpoint_path,
        )
        progress.end_epoch(record)
        if on_epoch is not None:
            on_epoch(record)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            raise RunInterrupted(epoch)

    return finish_training(
        config, trainer, checkpoint_path, dataset, device, energy, history, start_epoch, best
    )


def _resume(
    trainer: SparseTrainer,
    loader: BatchLoader,
    state: Checkpoint,
    path: Path,
    run_id: str,
) -> list[EpochRecord]:
    """Put the trainer, the batch order and the random streams where the checkpoint left
    them; the epochs done so far."""
    device = loader.device
    try:
        trainer.load_state_dict(state.trainer_state)
        if state.steps is None:  # a checkpoint of an earlier release: whole epochs of steps
            trainer.steps = len(state.history) * len(loader)
        loader.generator.set_state(state.data_generator)
        torch.set_rng_state(state.torch_rng)
        if device.type == "cuda" and state.cuda_rng is not None:
            torch.cuda.set_rng_state(state.cuda_rng, device)
    except (RuntimeError, KeyError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise CheckpointError(
            f"{path}: holds run {run_id} but does not fit its network "
            f"({first}); delete it to train the run from the start"
        ) from None
    return list(state.history)


def _end_epoch(
    trainer: SparseTrainer,
    epoch: int,
    trained: dict[str, Any],
    val_loader: BatchLoader,
    dataset: ImageDataset,
    best: BestValidation,
) -> EpochRecord:
    """Validate the network as this epoch trained it, before the method changes its
    masks (units regrown now are untrained until the next epoch); then end the epoch."""
    val = evaluate(trainer.eval_network(), val_loader, dataset.num_classes)
    record = EpochRecord(
        epoch=epoch,
        **trained,
        **val.result().as_dict("val_"),
        val_balanced_accuracy=balanced_accuracy(val.confusion.cpu().tolist()),
    )
    best.consider(epoch, record.val_accuracy, trainer.full_model(), trainer.method)
    trainer.end_epoch(epoch)
    return record


def checkpoint_state(
    config: RunConfig,
    trainer: SparseTrainer,
    data_generator_state: torch.Tensor,
    history: list[EpochRecord],
) -> Checkpoint:
    """Everything a run needs to go on exactly where it stopped."""
    device = next(trainer.model.parameters()).device
    return Checkpoint(
        run_id=config.run_id(),
        config=config.model_dump(),
        **trainer.state_dict(),
        data_generator=data_generator_state,
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        history=history,
    )


def finish_training(
    config: RunConfig,
    trainer: SparseTrainer,
    checkpoint_path: Path,
    dataset: ImageDataset,
    device: torch.device,
    energy: EnergyMeter,
    history: list[EpochRecord],
    start_epoch: int,
    best: BestValidation | None = None,
) -> RunSummary:
    """End the method's training, test the checkpointed network and the best validation
    epoch's (see `selection`), report the trained network's sparsity."""
    trainer.finish()
    test = test_model(trainer, checkpoint_path, dataset, config, device, energy)
    layers = sparsity_report(trainer.model)
    last = len(history) - 1
    kept = None if best is None else best.weights_to_test(trainer.method.masks, last)
    if kept is None:
        test_best_val = replace(test, epoch=last)
    else:
        trainer.load_state_dict({"model": kept["model"], "method": kept["method"]})
        tested = test_model(trainer, None, dataset, config, device, energy)
        test_best_val = replace(tested, epoch=kept["epoch"])
    return RunSummary(
        run_id=config.run_id(),
        status="finished",
        config=config.model_dump(),
        device=str(device),
        data=dataset.summary(),
        epochs=history,
        test=test,
        layers=[layer.as_dict() for layer in layers],
        sparsity_by_kind=sparsity_by_kind(layers),
        test_best_val=test_best_val,
        resumed_from_epoch=start_epoch,
        mask_updates_every=trainer.method.updates_every,
        provenance=provenance(config.numerics, trainer.execution.layout, device),
    )


class RunInterrupted(RuntimeError):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"stopped after epoch {epoch}")
        self.epoch = epoch


class RunDiverged(InputError):
    """The training loss became NaN or infinite: the run stops there, its finished
    epochs are kept, and it is stored as `diverged`."""

    def __init__(self, epoch: int, step: int | None, loss: float, lr: float) -> None:
        where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
        super().__init__(
            f"the training loss became {loss} at {where}; try a lower --lr (this run: {lr:g})"
        )
        self.epoch = epoch


def _train_epoch(
    trainer: SparseTrainer,
    loader: BatchLoader,
    dataset: ImageDataset,
    memory: PeakMemory,
    energy: EnergyMeter,
    progress: EpochProgress,
    epoch: int,
    lr: float,
) -> dict[str, Any]:
    trainer.train()
    sample_shape = tuple(dataset.splits["train"].images.shape[1:])
    # On the CPU the trainer checks each step's loss before the optimiser uses it; on a
    # GPU that would cost a synchronisation per step, so the epoch's summed loss (which
    # any NaN or infinity poisons) is checked when the epoch ends.
    accumulator = MetricAccumulator(dataset.num_classes, loader.device)
    macs, steps = 0, 0
    memory.reset()
    energy.begin()
    started = time.perf_counter()
    for step, (images, labels) in enumerate(loader):
        try:
            taken = trainer.step(images, labels)
        except NonFiniteLoss as error:
            raise RunDiverged(epoch, step, error.loss, lr) from None
        accumulator.add(taken.logits, labels, taken.loss)
        macs += trainer.macs_per_sample(taken.network, sample_shape)
        steps += 1
        progress.advance()
    _synchronise(loader.device)
    elapsed = time.perf_counter() - started
    reading = energy.end()
    if not torch.isfinite(accumulator.loss_sum):
        raise RunDiverged(epoch, None, float(accumulator.loss_sum), lr)
    dense_macs = trainer.macs_per_sample(trainer.model, sample_shape)
    return {
        **accumulator.result().as_dict("train_"),
        "train_time_s": elapsed,
        "peak_memory_bytes": memory.peak_bytes(),
        "memory_kind": memory.kind,
        **reading.as_dict(),
        "execution": trainer.execution_name,
        "train_macs_per_sample": TRAINING_PASSES * macs / max(steps, 1),
        "train_macs_dense_per_sample": TRAINING_PASSES * dense_macs,
    }


def _train_loader(dataset: ImageDataset, config: RunConfig, device: torch.device) -> BatchLoader:
    """The training batches: shuffled by the run's seed, augmented as it says."""
    return BatchLoader(
        dataset.splits["train"],
        dataset.mean,
        dataset.std,
        config.batch_size,
        device,
        shuffle=True,
        seed=config.seed,
        augment=config.augment,
    )


def _eval_loader(
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
    loader = _eval_loader(dataset, "test", config, device)
    energy.begin()
    state = None if checkpoint_path is None else load_checkpoint(checkpoint_path)
    if state is not None:
        trainer.load_state_dict({"model": state.model})
    network = trainer.eval_network()
    positive = positive_class_of(dataset, config)
    _synchronise(device)
    started = time.perf_counter()
    accumulator = evaluate(network, loader, dataset.num_classes, positive)
    _synchronise(device)
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


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

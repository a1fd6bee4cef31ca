"""The training loop: trains one configured run, measures every epoch, checkpoints, resumes.

It knows nothing of the results database: each finished epoch is handed to `on_epoch`,
and the run's result is returned, so the caller (the CLI, a sweep's driver) writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sparsebench.confusion import balanced_accuracy
from sparsebench.data.dataset import BatchLoader, ImageDataset
from sparsebench.errors import InputError
from sparsebench.measure.energy import EnergyMeter
from sparsebench.measure.memory import PeakMemory
from sparsebench.measure.provenance import provenance
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.report import sparsity_by_kind, sparsity_report
from sparsebench.store.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_resumable,
    save_checkpoint,
)
from sparsebench.store.records import EpochRecord, RunSummary
from sparsebench.train.build import (
    build_run,
    check_trainable,
    prepare_dataset,
    resolve_device,
    warn_if_few_steps,
    warn_if_trained_masked,
)
from sparsebench.train.compact import TRAINING_PASSES
from sparsebench.train.evaluation import eval_loader, evaluate, synchronise, test_model
from sparsebench.train.metrics import MetricAccumulator
from sparsebench.train.selection import BestValidation, best_val_path
from sparsebench.train.trainer import NonFiniteLoss, SparseTrainer


class EpochProgress:
    """What the loop tells a progress display; the default shows nothing."""

    def start_epoch(self, epoch: int, total_epochs: int, batches: int) -> None: ...

    def advance(self) -> None: ...

    def end_epoch(self, row: EpochRecord) -> None: ...


# The devices with a fused Adam kernel in torch 2.13.0.
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
    val_loader = eval_loader(dataset, "val", config, device)
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
    synchronise(loader.device)
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

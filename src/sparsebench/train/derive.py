"""A `post` run derived from its dense run instead of trained again.

Post-training trains exactly as dense does (same seed, same batches, no masks) and
prunes after its last epoch, so the dense run's final checkpoint holds the weights and
the history that training `post` would produce; only the pruning and the test remain,
and the retraining epochs where it retrains (fine-tuning, learning-rate rewinding: their
first epochs are dense's, on the same schedule).
"""

from __future__ import annotations

from pathlib import Path

import torch

from sparsebench.data.dataset import ImageDataset
from sparsebench.errors import InputError
from sparsebench.measure.energy import EnergyMeter
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.methods import METHODS
from sparsebench.store.checkpoint import load_checkpoint, save_checkpoint
from sparsebench.store.records import RunSummary
from sparsebench.train.build import build_run, prepare_dataset, resolve_device
from sparsebench.train.loop import checkpoint_state, finish_training, train_run


def derivable_from(config: RunConfig, dense: RunConfig) -> bool:
    """Whether `config` trains exactly as `dense`, the baseline, does and only prunes
    after it (`post` without fine-tuning)."""
    method = METHODS[config.method]
    if not METHODS[dense.method].baseline or not method.derivable_from_baseline(
        config.method_settings
    ):
        return False
    pruning = {"method", "method_options", "scenario", "conv_sparsity", "linear_sparsity"}
    where = {"device", "execution", "memory_format"}
    return config.model_dump(exclude=pruning | where) == dense.model_dump(exclude=pruning | where)


def derive_post_run(
    config: RunConfig,
    dense: RunConfig,
    dataset: ImageDataset,
    dense_checkpoint: Path,
    checkpoint_path: Path,
) -> RunSummary:
    """Prune `dense`'s final weights as `config` says, checkpoint them as `config`'s run
    (so it can be exported and benchmarked like a trained one), and test them."""
    if not derivable_from(config, dense):
        raise InputError(
            f"run {config.run_id()} ({config.method}) cannot be derived from run "
            f"{dense.run_id()} ({dense.method}): their training differs"
        )
    state = load_checkpoint(dense_checkpoint)
    if state is None:
        raise InputError(f"{dense_checkpoint}: no checkpoint of dense run {dense.run_id()}")
    state.require_run(dense_checkpoint, dense.run_id(), *dense.earlier_run_ids())
    if len(state.history) != dense.total_epochs:
        raise InputError(
            f"{dense_checkpoint}: dense run {dense.run_id()} has trained "
            f"{len(state.history)} of {dense.total_epochs} epochs"
        )
    device = resolve_device(config.device)
    dataset = prepare_dataset(config, dataset)
    trainer = build_run(config, dataset, device)
    trainer.load_state_dict(
        {key: value for key, value in state.trainer_state.items() if key != "method"}
    )
    trainer.end_epoch(config.epochs - 1)  # post prunes after its last dense epoch
    history = list(state.history)
    torch.set_rng_state(state.torch_rng)  # where dense's random stream was (dropout)
    save_checkpoint(
        checkpoint_state(config, trainer, state.data_generator, history), checkpoint_path
    )
    if config.total_epochs > len(history):  # retraining: the run goes on from here
        return train_run(config, dataset, checkpoint_path)
    return finish_training(
        config, trainer, checkpoint_path, dataset, device, EnergyMeter(device), history, 0
    )

"""A run built from its settings: the device, the seeded network (pretrained where
asked), its optimiser and learning-rate plan, the method, and the `SparseTrainer` that
holds them; the checks and warnings a run gets before it trains."""

from __future__ import annotations

import math
import warnings
from functools import partial
from pathlib import Path

import torch
from torch import nn

from sparsebench.data.dataset import BatchLoader, ImageDataset
from sparsebench.errors import InputError
from sparsebench.models import build_model
from sparsebench.models.pretrained import load_pretrained, read_state_dict, source_digest
from sparsebench.models.registry import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from sparsebench.settings.run import RunConfig
from sparsebench.sparsity.methods import METHODS, make_method
from sparsebench.sparsity.scenarios import SparsityTargets
from sparsebench.sparsity.snip import GradientSums
from sparsebench.train.evaluation import positive_class_of
from sparsebench.train.schedule import PlannedRate
from sparsebench.train.trainer import SparseTrainer

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

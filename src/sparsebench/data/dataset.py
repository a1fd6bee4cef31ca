"""Splits held in memory as uint8 NCHW tensors, and the batches made from them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from sparsebench.data.augment import Augment, augment_batch

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Images as a contiguous uint8 (N, C, H, W) tensor and integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass
class ImageDataset:
    """A data set's three splits, its class names and where it came from."""

    name: str
    splits: dict[str, Split]
    class_names: list[str]
    source: str = ""
    mean: torch.Tensor = field(init=False)
    std: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.mean, self.std = channel_statistics(self.splits["train"].images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.splits["train"].images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.splits["train"].images.shape[-1])

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Samples per class in each split, by class name."""
        counts = {}
        for split_name, split in self.splits.items():
            per_class = torch.bincount(split.labels, minlength=self.num_classes).tolist()
            counts[split_name] = dict(zip(self.class_names, per_class, strict=True))
        return counts

    def summary(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "classes": self.class_names,
            "image_shape": list(self.splits["train"].images.shape[1:]),
            "samples": {name: len(split) for name, split in self.splits.items()},
            "class_counts": self.class_counts(),
            # what a model trained on this data expects its inputs normalised with
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    def adapted(self, image_size: int, in_channels: int) -> ImageDataset:
        """The same data resized to `image_size` and with `in_channels` channels (grey
        images are repeated to RGB; RGB images are converted to luminance)."""
        splits = {
            name: Split(adapt_images(split.images, image_size, in_channels), split.labels)
            for name, split in self.splits.items()
        }
        return ImageDataset(self.name, splits, self.class_names, self.source)


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale, in chunks."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for chunk in images.split(4096):
        pixels = chunk.to(torch.float64).div_(255).transpose(0, 1).flatten(1)
        total += pixels.sum(dim=1)
        squares += pixels.square().sum(dim=1)
        count += pixels.shape[1]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float(), std.clamp_min(1e-3).float()


def adapt_images(images: torch.Tensor, image_size: int, in_channels: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) with `in_channels` channels (grey repeated to RGB, RGB
    to luminance) at image_size x image_size."""
    channels = images.shape[1]
    if channels != in_channels:
        if in_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * luma).sum(dim=1, keepdim=True).round().to(torch.uint8)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        resized = []
        for chunk in images.split(1024):
            out = F.interpolate(
                chunk.float(), size=(image_size, image_size), mode="bilinear", antialias=True
            )
            resized.append(out.round_().clamp_(0, 255).to(torch.uint8))
        images = torch.cat(resized)
    return images.contiguous()


class BatchLoader:
    """Batches from an in-memory split: normalised float32, contiguous NCHW, on `device`.

    Contiguity matters: torch 2.13.0's oneDNN backward crashes on a channels-last view
    with an odd batch size (shared/repro/onednn_batch61_segfault.py). The shuffling
    generator is part of a checkpoint, so a resumed run sees the same batches.
    """

    def __init__(
        self,
        split: Split,
        mean: torch.Tensor,
        std: torch.Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool = False,
        seed: int = 0,
        augment: Augment = "none",
    ) -> None:
        self.device = device
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.scale = (1.0 / (255.0 * std)).to(device).view(1, -1, 1, 1)
        self.offset = (mean / std).to(device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for start in range(0, n, self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images.index_select(0, index).to(torch.get_default_dtype())
            x = images.mul_(self.scale).sub_(self.offset).contiguous()
            yield augment_batch(x, self.augment, self.generator), self.labels.index_select(0, index)

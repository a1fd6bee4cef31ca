"""A generated data set for tests and smoke runs: each class is a distinct spatial
pattern plus noise, so a small network learns it in an epoch or two."""

from __future__ import annotations

import math

import torch

from sparsebench.data.dataset import ImageDataset, Split


def make_synthetic(
    num_classes: int = 4,
    image_size: int = 28,
    channels: int = 3,
    samples: tuple[int, int, int] = (512, 128, 256),
    noise: float = 0.35,
    seed: int = 0,
) -> ImageDataset:
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, image_size, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    patterns = []
    for k in range(num_classes):
        angle = math.pi * k / num_classes
        wave = torch.sin(2 * math.pi * 3 * (xx * math.cos(angle) + yy * math.sin(angle)))
        patterns.append(wave.expand(channels, -1, -1) * 0.5 + 0.5)
    templates = torch.stack(patterns)
    splits = {}
    for name, count in zip(("train", "val", "test"), samples, strict=True):
        labels = torch.arange(count) % num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        noisy = templates[labels] + noise * torch.randn(
            (count, channels, image_size, image_size), generator=generator, dtype=torch.float64
        )
        images = noisy.clamp(0, 1).mul(255).round().to(torch.uint8).contiguous()
        splits[name] = Split(images, labels)
    names = [f"pattern{k}" for k in range(num_classes)]
    return ImageDataset("synthetic", splits, names, source="generated")

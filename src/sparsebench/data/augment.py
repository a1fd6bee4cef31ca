"""Augmentation of training batches, on the device the batch is on, drawn from the
loader's generator (part of a checkpoint, so a resumed run sees the same batches).

- `flip`: a random half of the images mirrored left to right (the release before
  numerics 2 had only this, as `augment: true`);
- `standard`: flips, and every image shifted by up to an eighth of its side with the
  border reflected (the pad-and-crop of the CIFAR recipes, He et al. 2016). Both keep a
  defect's appearance, in grey and in colour images; neither changes a class.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Augment = Literal["none", "flip", "standard"]
AUGMENTS: tuple[Augment, ...] = ("none", "flip", "standard")


def augment_batch(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """`x` (N, C, H, W), normalised, augmented as `augment` says; contiguous."""
    if augment == "none":
        return x
    flipped = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x).contiguous()
    if augment == "standard":
        x = random_shift(x, max(1, x.shape[-1] // 8), generator)
    return x


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own offset of -pad to pad pixels in each direction, the
    border filled by reflection: two gathers over the padded batch, no per-image loop."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    rows = offsets[0].view(n, 1) + torch.arange(h, device=x.device)
    x = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
    cols = offsets[1].view(n, 1) + torch.arange(w, device=x.device)
    return x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w)).contiguous()

"""VGG16 (configuration D, no batch norm) with torchvision's layer names."""

from __future__ import annotations

import torch
from torch import nn

from sparsebench.models.registry import register_model, scaled

# Output channels of each conv; "M" is a 2x2 max pool.
VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M"]
VGG16_CFG += [512, 512, 512, "M", 512, 512, 512, "M"]


def initialise_vgg(model: nn.Module) -> None:
    """torchvision's VGG initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            init_vgg_weight(m, m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_vgg_weight(
    module: nn.Module, weight: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """Draw `weight` as torchvision draws this layer's weight; used again for regrown units."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
    else:
        nn.init.normal_(weight, 0, 0.01, generator=generator)


class VGG(nn.Module):
    """torchvision's VGG, with two changes for small inputs and CPU-sized experiments.

    A max pool that would shrink the feature map below 1x1 becomes an `nn.Identity` (so
    `features.N` keeps torchvision's numbering), and the adaptive pool's output is
    min(7, final feature size): at 224x224 the head is torchvision's 7x7, at 28x28 it is
    1x1 instead of copying one pixel 49 times into a 25088-wide first linear layer.
    """

    def __init__(
        self,
        cfg: list[int | str],
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: float,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for item in cfg:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                    size //= 2
                else:
                    layers.append(nn.Identity())
            else:
                out = scaled(int(item), width)
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(True)]
                channels = out
        self.features = nn.Sequential(*layers)
        pooled = min(7, size)
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        hidden = scaled(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pooled * pooled, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        initialise_vgg(self)

    init_weight = staticmethod(init_vgg_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


@register_model("vgg16", "VGG16 (configuration D), torchvision layer names", "VGG16")
def vgg16(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> VGG:
    return VGG(VGG16_CFG, num_classes, in_channels, image_size, width)

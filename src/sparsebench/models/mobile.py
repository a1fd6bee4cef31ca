"""The edge networks: MobileNetV2, MobileNetV3 (small, large) and EfficientNet-B0, with
torchvision's parameter names, so that `--init-from` takes its state dicts.

Each is the published architecture at width 1 (its parameter count is torchvision's).
`width` scales every channel count as torchvision's `width_mult` does (rounded to a
multiple of 8). Below 96 pixels a side, the stem convolution keeps stride 1 (as the
ResNets' small-image stem does): five halvings would leave a 28x28 image one pixel
before the last stage. The parameters are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from sparsebench.models.registry import register_model

SMALL_STEM_BELOW = 96


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: the nearest multiple of `divisor`, at least
    `divisor`, and never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_norm_activation(
    in_channels: int,
    out_channels: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    norm: Callable[[int], nn.Module] = nn.BatchNorm2d,
    activation: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias), batch norm, activation: torchvision's `Conv2dNormActivation`,
    whose parameter names (`0.weight`, `1.weight`, ...) these keep."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False
        ),
        norm(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True) if activation is not nn.Identity else activation())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gates from the globally pooled map (torchvision's `SqueezeExcitation`)."""

    def __init__(
        self,
        channels: int,
        squeezed: int,
        activation: type[nn.Module] = nn.ReLU,
        gate: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.activation = activation()
        self.scale_activation = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(scale) * x


def _stem_stride(image_size: int) -> int:
    return 1 if image_size < SMALL_STEM_BELOW else 2


def _initialise(model: nn.Module, linear_std: float | None) -> None:
    """torchvision's initialisation of these networks (`linear_std` None: the uniform
    range of EfficientNet's classifier)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is None:
                bound = 1.0 / m.out_features**0.5
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)


# MobileNetV2 (Sandler et al. 2018).


class InvertedResidualV2(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_norm_activation(inp, hidden, 1, activation=nn.ReLU6))
        layers += [
            conv_norm_activation(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expansion, output channels, blocks, stride of the first)
MOBILENET_V2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float) -> None:
        super().__init__()
        channels = make_divisible(32 * width)
        last = make_divisible(1280 * max(1.0, width))
        stem = conv_norm_activation(
            in_channels, channels, 3, _stem_stride(image_size), activation=nn.ReLU6
        )
        features: list[nn.Module] = [stem]
        for expansion, out, blocks, stride in MOBILENET_V2_STAGES:
            out = make_divisible(out * width)
            for index in range(blocks):
                features.append(
                    InvertedResidualV2(channels, out, stride if index == 0 else 1, expansion)
                )
                channels = out
        features.append(conv_norm_activation(channels, last, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        _initialise(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# MobileNetV3 (Howard et al. 2019).


@dataclass(frozen=True)
class BlockV3:
    inp: int
    kernel: int
    expanded: int
    out: int
    squeeze: bool
    hardswish: bool
    stride: int


class InvertedResidualV3(nn.Module):
    def __init__(self, spec: BlockV3, width: float, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        inp, out = make_divisible(spec.inp * width), make_divisible(spec.out * width)
        expanded = make_divisible(spec.expanded * width)
        self.use_res_connect = spec.stride == 1 and inp == out
        activation = nn.Hardswish if spec.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != inp:
            layers.append(conv_norm_activation(inp, expanded, 1, norm=norm, activation=activation))
        layers.append(
            conv_norm_activation(
                expanded,
                expanded,
                spec.kernel,
                spec.stride,
                groups=expanded,
                norm=norm,
                activation=activation,
            )
        )
        if spec.squeeze:
            squeezed = make_divisible(expanded // 4)
            layers.append(SqueezeExcitation(expanded, squeezed, nn.ReLU, nn.Hardsigmoid))
        layers.append(conv_norm_activation(expanded, out, 1, norm=norm, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


MOBILENET_V3_LARGE = [
    BlockV3(16, 3, 16, 16, False, False, 1),
    BlockV3(16, 3, 64, 24, False, False, 2),
    BlockV3(24, 3, 72, 24, False, False, 1),
    BlockV3(24, 5, 72, 40, True, False, 2),
    BlockV3(40, 5, 120, 40, True, False, 1),
    BlockV3(40, 5, 120, 40, True, False, 1),
    BlockV3(40, 3, 240, 80, False, True, 2),
    BlockV3(80, 3, 200, 80, False, True, 1),
    BlockV3(80, 3, 184, 80, False, True, 1),
    BlockV3(80, 3, 184, 80, False, True, 1),
    BlockV3(80, 3, 480, 112, True, True, 1),
    BlockV3(112, 3, 672, 112, True, True, 1),
    BlockV3(112, 5, 672, 160, True, True, 2),
    BlockV3(160, 5, 960, 160, True, True, 1),
    BlockV3(160, 5, 960, 160, True, True, 1),
]
MOBILENET_V3_SMALL = [
    BlockV3(16, 3, 16, 16, True, False, 2),
    BlockV3(16, 3, 72, 24, False, False, 2),
    BlockV3(24, 3, 88, 24, False, False, 1),
    BlockV3(24, 5, 96, 40, True, True, 2),
    BlockV3(40, 5, 240, 40, True, True, 1),
    BlockV3(40, 5, 240, 40, True, True, 1),
    BlockV3(40, 5, 120, 48, True, True, 1),
    BlockV3(48, 5, 144, 48, True, True, 1),
    BlockV3(48, 5, 288, 96, True, True, 2),
    BlockV3(96, 5, 576, 96, True, True, 1),
    BlockV3(96, 5, 576, 96, True, True, 1),
]


class MobileNetV3(nn.Module):
    def __init__(
        self,
        blocks: list[BlockV3],
        last_channel: int,
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: float,
    ) -> None:
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        first = make_divisible(blocks[0].inp * width)
        features: list[nn.Module] = [
            conv_norm_activation(
                in_channels, first, 3, _stem_stride(image_size), norm=norm, activation=nn.Hardswish
            )
        ]
        features += [InvertedResidualV3(spec, width, norm) for spec in blocks]
        last_in = make_divisible(blocks[-1].out * width)
        features.append(
            conv_norm_activation(last_in, 6 * last_in, 1, norm=norm, activation=nn.Hardswish)
        )
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = make_divisible(last_channel * width)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_in, last),
            nn.Hardswish(inplace=True),
            nn.Dropout(0.2, inplace=True),
            nn.Linear(last, num_classes),
        )
        _initialise(self, linear_std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# EfficientNet-B0 (Tan and Le 2019).


class MBConv(nn.Module):
    def __init__(
        self, inp: int, out: int, kernel: int, stride: int, expansion: int, norm: Callable
    ) -> None:
        super().__init__()
        expanded = make_divisible(inp * expansion)
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expanded != inp:
            layers.append(conv_norm_activation(inp, expanded, 1, norm=norm, activation=nn.SiLU))
        layers += [
            conv_norm_activation(
                expanded, expanded, kernel, stride, expanded, norm=norm, activation=nn.SiLU
            ),
            SqueezeExcitation(expanded, max(1, inp // 4), nn.SiLU, nn.Sigmoid),
            conv_norm_activation(expanded, out, 1, norm=norm, activation=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Stochastic depth (torchvision drops whole residual branches while training) is
        # left out: it changes no parameter, and sparse training's runs stay seeded alike.
        return x + self.block(x) if self.use_res_connect else self.block(x)


# (expansion, kernel, stride, input channels, output channels, blocks)
EFFICIENTNET_B0_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]


class EfficientNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float) -> None:
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=1e-3)
        first = make_divisible(32 * width)
        features: list[nn.Module] = [
            conv_norm_activation(
                in_channels, first, 3, _stem_stride(image_size), norm=norm, activation=nn.SiLU
            )
        ]
        for expansion, kernel, stride, inp, out, blocks in EFFICIENTNET_B0_STAGES:
            inp, out = make_divisible(inp * width), make_divisible(out * width)
            stage = [
                MBConv(
                    inp if i == 0 else out, out, kernel, stride if i == 0 else 1, expansion, norm
                )
                for i in range(blocks)
            ]
            features.append(nn.Sequential(*stage))
        last = 4 * make_divisible(320 * width)
        features.append(conv_norm_activation(out, last, 1, norm=norm, activation=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(last, num_classes))
        _initialise(self, linear_std=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@register_model("mobilenet_v2", "MobileNetV2, torchvision layer names", "MobileNetV2")
def mobilenet_v2(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> MobileNetV2:
    return MobileNetV2(num_classes, in_channels, image_size, width)


@register_model("mobilenet_v3_small", "MobileNetV3 small, torchvision layer names", "MobileNetV3-S")
def mobilenet_v3_small(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> MobileNetV3:
    return MobileNetV3(MOBILENET_V3_SMALL, 1024, num_classes, in_channels, image_size, width)


@register_model("mobilenet_v3_large", "MobileNetV3 large, torchvision layer names", "MobileNetV3-L")
def mobilenet_v3_large(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> MobileNetV3:
    return MobileNetV3(MOBILENET_V3_LARGE, 1280, num_classes, in_channels, image_size, width)


@register_model("efficientnet_b0", "EfficientNet-B0, torchvision layer names", "EfficientNet-B0")
def efficientnet_b0(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> EfficientNet:
    return EfficientNet(num_classes, in_channels, image_size, width)

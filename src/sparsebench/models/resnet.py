"""ResNet-18, -34 and -50 with torchvision's layer names (so `--init-from` takes its state
dicts)."""

from __future__ import annotations

import torch
from torch import nn

from sparsebench.models.registry import register_model, scaled

# Below this input size the ImageNet stem (7x7 stride 2 + max pool) would leave layer4
# with a 1x1 map at 28x28; the small-image stem (3x3 stride 1, no pool) keeps detail.
SMALL_STEM_BELOW = 96


def shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Sequential | None:
    """The projection a block's input takes to its output's shape (torchvision's
    `downsample`), where the two differ."""
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = shortcut(inplanes, planes, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride is on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(inplanes, outplanes, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(
        self,
        blocks: list[int],
        num_classes: int,
        in_channels: int,
        image_size: int,
        width: float,
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock,
    ) -> None:
        super().__init__()
        stem = scaled(64, width)
        if image_size < SMALL_STEM_BELOW:
            self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.block = block
        inplanes = stem
        stages = []
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            planes = scaled(planes, width)
            stride = 1 if index == 0 else 2
            layer: list[nn.Module] = []
            for b in range(count):
                layer.append(block(inplanes, planes, stride if b == 0 else 1))
                inplanes = planes * block.expansion
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        initialise_resnet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def initialise_resnet(model: nn.Module) -> None:
    """torchvision's ResNet initialisation (the linear layer keeps PyTorch's default)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_model(
    "resnet18", "ResNet18, torchvision layer names; small-image stem below 96 px", "ResNet18"
)
def resnet18(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> ResNet:
    return ResNet([2, 2, 2, 2], num_classes, in_channels, image_size, width)


@register_model(
    "resnet34", "ResNet34, torchvision layer names; small-image stem below 96 px", "ResNet34"
)
def resnet34(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> ResNet:
    return ResNet([3, 4, 6, 3], num_classes, in_channels, image_size, width)


@register_model(
    "resnet50",
    "ResNet50 (bottlenecks, v1.5), torchvision layer names; small-image stem below 96 px",
    "ResNet50",
)
def resnet50(
    num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> ResNet:
    return ResNet([3, 4, 6, 3], num_classes, in_channels, image_size, width, Bottleneck)

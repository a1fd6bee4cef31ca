"""Model registry: a name maps to a factory, so a user's own network can be trained and
pruned by name like the built-in ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from sparsebench.errors import InputError

ModelFactory = Callable[..., nn.Module]

# The image sizes every registered model is built and tested for (square, pixels a side).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 28, 224


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: ModelFactory
    description: str = ""
    display_name: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, description: str = "", display_name: str = ""
) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory `f(num_classes, in_channels, image_size, width) -> nn.Module`.

    Any module built from Conv2d, BatchNorm2d and Linear layers can then be trained and
    pruned with `--model name`; see `sparsebench.sparsity.layers` for how prunable layers
    and their batch norms are found.
    """

    def decorate(factory: ModelFactory) -> ModelFactory:
        _REGISTRY[name] = ModelSpec(name, factory, description, display_name or name)
        return factory

    return decorate


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def model_display_name(name: str) -> str:
    """How figures and tables name a model; an unknown name as it is."""
    return _REGISTRY[name].display_name if name in _REGISTRY else name


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    width: float = 1.0,
) -> nn.Module:
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r} (choose from {', '.join(model_names())})")
    if in_channels not in (1, 3):
        raise InputError(f"in_channels must be 1 or 3, got {in_channels}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise InputError(
            f"image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, got {image_size}"
        )
    if not 0 < width <= 4:
        raise InputError(f"width must be in (0, 4], got {width}")
    if num_classes < 2:
        raise InputError(f"num_classes must be at least 2, got {num_classes}")
    return _REGISTRY[name].factory(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width
    )


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at a width multiplier; never below one."""
    return max(1, int(round(channels * width)))

"""Model registry: a name maps to a factory, so a user's own network can be trained and
pruned by name like the built-in ones: registered from Python (`register_model`), or
named on the command line as `package.module:factory`."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def model_spec(name: str) -> ModelSpec:
    """The model registered as `name`, or the factory `name` points to as
    `package.module:factory` (a callable taking the number of classes and returning an
    nn.Module; imported from the working folder too). Each problem is one InputError."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, colon, attribute = name.partition(":")
    if not colon or not module_name or not attribute:
        raise InputError(
            f"unknown model {name!r} (choose from {', '.join(model_names())}, or give your "
            "own as package.module:factory)"
        )
    factory = getattr(_import(module_name, name), attribute, None)
    if not callable(factory):
        raise InputError(f"model {name!r}: {module_name} has no callable {attribute!r}")
    spec = ModelSpec(name, _called_as_registered(factory, name), f"{name}, a factory of yours")
    _REGISTRY[name] = spec
    return spec


def _import(module_name: str, name: str) -> object:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.append(str(Path.cwd()))  # a file beside the command, as python -m finds
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"model {name!r}: cannot import {module_name} ({error})") from None
    except Exception as error:  # its own code failed while importing
        raise InputError(
            f"model {name!r}: importing {module_name} failed ({type(error).__name__}: {error})"
        ) from None


def _called_as_registered(factory: Callable[..., object], name: str) -> ModelFactory:
    """`factory` called as registered factories are: it is given the number of classes,
    and the input channels, image size and width where it takes them; a setting it does
    not take must be its default."""
    taken = set(inspect.signature(factory).parameters)

    def build(num_classes: int, in_channels: int, image_size: int, width: float) -> nn.Module:
        given = {"in_channels": in_channels, "image_size": image_size, "width": width}
        for key, default in (("in_channels", 3), ("width", 1.0)):
            if key not in taken and given[key] != default:
                raise InputError(
                    f"model {name!r}: its factory takes no {key}, and this run needs "
                    f"{key} {given[key]} (its factory builds {key} {default})"
                )
        try:
            model = factory(num_classes, **{k: v for k, v in given.items() if k in taken})
        except Exception as error:
            raise InputError(
                f"model {name!r}: its factory failed ({type(error).__name__}: {error})"
            ) from None
        if not isinstance(model, nn.Module):
            raise InputError(
                f"model {name!r}: its factory returned {type(model).__name__}, not an nn.Module"
            )
        return model

    return build


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    width: float = 1.0,
) -> nn.Module:
    spec = model_spec(name)
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
    return spec.factory(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width
    )


def scaled(channels: int, width: float) -> int:
    """Channels of a layer at a width multiplier; never below one."""
    return max(1, int(round(channels * width)))

"""Data sets by name, behind `--dataset NAME [--data-path P]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sparsebench.data.dataset import ImageDataset
from sparsebench.data.medmnist import MEDMNIST_CLASSES, load_medmnist_npz
from sparsebench.data.synthetic import make_synthetic
from sparsebench.errors import InputError

Loader = Callable[[Path | None], ImageDataset]

_LOADERS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def decorate(loader: Loader) -> Loader:
        _LOADERS[name] = loader
        return loader

    return decorate


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def needs_path(name: str) -> bool:
    return name != "synthetic"


def load_dataset(name: str, data_path: str | Path | None = None) -> ImageDataset:
    if name not in _LOADERS:
        raise InputError(f"unknown data set {name!r} (choose from {', '.join(dataset_names())})")
    path = Path(data_path) if data_path is not None else None
    if needs_path(name):
        if path is None:
            raise InputError(f"data set {name!r} needs --data-path")
        if not path.exists():
            raise InputError(f"{path}: data path does not exist")
    return _LOADERS[name](path)


def _medmnist_loader(name: str) -> Loader:
    def load(path: Path | None) -> ImageDataset:
        assert path is not None
        return load_medmnist_npz(path, name)

    return load


for _name in [*MEDMNIST_CLASSES, "medmnist"]:
    register_dataset(_name)(_medmnist_loader(_name))


@register_dataset("synthetic")
def _synthetic(path: Path | None) -> ImageDataset:
    return make_synthetic()

"""Data sets by name, behind `--dataset NAME [--data-path P]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from sparsebench.data.coco import load_mvtec3d_objects, probe_mvtec3d
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.download import MEDMNIST_MD5, MEDMNIST_SIZES, download_medmnist
from sparsebench.data.elpv import load_elpv, probe_elpv
from sparsebench.data.folder import load_image_folder, probe_image_folder
from sparsebench.data.medmnist import (
    MEDMNIST_CLASSES,
    MEDMNIST_DISPLAY_NAMES,
    load_medmnist_npz,
    probe_medmnist_npz,
)
from sparsebench.data.options import CocoOptions, DataOptions, ElpvOptions, VisaOptions
from sparsebench.data.synthetic import make_synthetic
from sparsebench.data.visa import load_visa, probe_visa
from sparsebench.errors import InputError

Loader = Callable[[Path | None, DataOptions], ImageDataset]
# Checks, without decoding an image, that a data set's files are there and its index
# (npz headers, annotation file, split CSV, class folders) reads.
Probe = Callable[[Path | None, DataOptions], None]

_LOADERS: dict[str, Loader] = {}
_PROBES: dict[str, Probe] = {}
_DISPLAY_NAMES: dict[str, str] = {}
_OPTIONS: dict[str, type[BaseModel]] = {}
# Data sets that need no --data-path: generated, or shipped by a package.
_PATH_OPTIONAL = {"synthetic", "elpv"}


def register_dataset(
    name: str,
    path_optional: bool = False,
    probe: Probe | None = None,
    display_name: str = "",
    options: type[BaseModel] | None = None,
) -> Callable[[Loader], Loader]:
    """Register `loader(path, options) -> ImageDataset` under `name`, and optionally
    `probe(path, options)`, the quick check a sweep makes before training anything, the
    name figures and tables show, and the loader's own options model (one of
    `data.options.LOADER_OPTIONS`): its settings are refused for every other data set."""

    def decorate(loader: Loader) -> Loader:
        _LOADERS[name] = loader
        _DISPLAY_NAMES[name] = display_name or name
        if options is not None:
            _OPTIONS[name] = options
        if path_optional:
            _PATH_OPTIONAL.add(name)
        if probe is not None:
            _PROBES[name] = probe
        return loader

    return decorate


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def dataset_options(name: str) -> type[BaseModel] | None:
    """The options model of a data set's own settings, if its loader has one."""
    return _OPTIONS.get(name)


def dataset_display_name(name: str) -> str:
    """How figures and tables name a data set; an unknown name as it is."""
    return _DISPLAY_NAMES.get(name, name)


def load_dataset(
    name: str, data_path: str | Path | None = None, options: DataOptions | None = None
) -> ImageDataset:
    """Load a data set by name; every problem with the input is an InputError."""
    options = options or DataOptions()
    path = _data_path(name, data_path, options)
    return _LOADERS[name](path, options)


def probe_dataset(
    name: str, data_path: str | Path | None = None, options: DataOptions | None = None
) -> None:
    """Check that a data set is there and its index reads, decoding no image: what a
    sweep does for each of its data sets before it trains anything."""
    options = options or DataOptions()
    path = _data_path(name, data_path, options)
    if name in _PROBES:
        _PROBES[name](path, options)


def _data_path(name: str, data_path: str | Path | None, options: DataOptions) -> Path | None:
    if name not in _LOADERS:
        raise InputError(f"unknown data set {name!r} (choose from {', '.join(dataset_names())})")
    path = Path(data_path) if data_path is not None else None
    downloadable = name in MEDMNIST_MD5 and options.download
    if path is None and name not in _PATH_OPTIONAL and not downloadable:
        hint = " (or --download)" if name in MEDMNIST_MD5 else ""
        raise InputError(f"data set {name!r} needs --data-path{hint}")
    if path is not None and not path.exists():
        raise InputError(f"{path}: data path does not exist")
    return path


def _medmnist_loader(name: str) -> Loader:
    def load(path: Path | None, options: DataOptions) -> ImageDataset:
        if path is None:
            size = options.image_size if options.image_size in MEDMNIST_SIZES else 28
            path = download_medmnist(name, size, options.cache_dir)
        return load_medmnist_npz(path, name)

    return load


def _probe_medmnist(path: Path | None, options: DataOptions) -> None:
    if path is not None:  # None: downloaded, and checked by its MD5
        probe_medmnist_npz(path)


for _name in [*MEDMNIST_CLASSES, "medmnist"]:
    display = MEDMNIST_DISPLAY_NAMES.get(_name, "MedMNIST")
    register_dataset(_name, probe=_probe_medmnist, display_name=display)(_medmnist_loader(_name))


def _no_path(path: Path | None, options: DataOptions) -> None:
    if path is not None:
        raise InputError(f"data set 'synthetic' is generated: it reads no data path ({path})")


@register_dataset("synthetic", path_optional=True, probe=_no_path, display_name="synthetic")
def _synthetic(path: Path | None, options: DataOptions) -> ImageDataset:
    _no_path(path, options)
    return make_synthetic(seed=options.seed)


@register_dataset(
    "mvtec3d-objects",
    probe=lambda path, options: probe_mvtec3d(path, options),
    display_name="MVTec 3D objects",
    options=CocoOptions,
)
def _mvtec3d(path: Path | None, options: DataOptions) -> ImageDataset:
    assert path is not None
    return load_mvtec3d_objects("mvtec3d-objects", path, options)


@register_dataset(
    "visa",
    probe=lambda path, options: probe_visa(path, options),
    display_name="VisA",
    options=VisaOptions,
)
def _visa(path: Path | None, options: DataOptions) -> ImageDataset:
    assert path is not None
    return load_visa("visa", path, options)


@register_dataset(
    "folder",
    probe=lambda path, options: probe_image_folder(path, options),
    display_name="image folder",
)
def _folder(path: Path | None, options: DataOptions) -> ImageDataset:
    assert path is not None
    return load_image_folder("folder", path, options)


@register_dataset(
    "elpv",
    path_optional=True,
    probe=lambda path, options: probe_elpv(path),
    display_name="ELPV",
    options=ElpvOptions,
)
def _elpv(path: Path | None, options: DataOptions) -> ImageDataset:
    return load_elpv("elpv", path, options)

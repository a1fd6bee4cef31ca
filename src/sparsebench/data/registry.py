"""Data sets by name, behind `--dataset NAME [--data-path P]`: one spec per data set,
as models have theirs, and everything else (the CLI, sweeps, the report, `predict` and
`serve`) asks the spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparsebench.data.coco import CocoOptions, load_mvtec3d_objects, probe_mvtec3d
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.download import MEDMNIST_MD5, MEDMNIST_SIZES, download_medmnist
from sparsebench.data.elpv import ElpvOptions, load_elpv, probe_elpv
from sparsebench.data.folder import load_image_folder, probe_image_folder
from sparsebench.data.medmnist import (
    MEDMNIST_CLASSES,
    MEDMNIST_DISPLAY_NAMES,
    load_medmnist_npz,
    probe_medmnist_npz,
)
from sparsebench.data.options import DataOptions, LoaderOptions
from sparsebench.data.synthetic import make_synthetic
from sparsebench.data.visa import VisaOptions, load_visa, probe_visa
from sparsebench.errors import InputError

Loader = Callable[[Path | None, DataOptions], ImageDataset]
# Checks, without decoding an image, that a data set's files are there and its index
# (npz headers, annotation file, split CSV, class folders) reads.
Probe = Callable[[Path | None, DataOptions], None]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: how it loads and is checked, how it is named, and how its
    images are made (which `predict` and `serve` repeat for a new image)."""

    name: str
    loader: Loader
    probe: Probe | None = None  # None: nothing to check before loading
    display_name: str = ""  # the layout's name; a run's data_name names the data itself
    options: type[LoaderOptions] | None = None  # its loader's own settings
    path_optional: bool = False  # generated, or shipped by a package
    # Images stored as arrays (npz) or generated: a new image file is decoded straight
    # at the model's input size (decoded image sets are stored at their decode size).
    arrays: bool = False
    downloadable: bool = False  # `--download` fetches the published file


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    path_optional: bool = False,
    probe: Probe | None = None,
    display_name: str = "",
    options: type[LoaderOptions] | None = None,
    arrays: bool = False,
    downloadable: bool = False,
) -> Callable[[Loader], Loader]:
    """Register `loader(path, options) -> ImageDataset` under `name` (see `DatasetSpec`
    for the rest). `options`, the loader's own settings, are given under `data_options:`
    and refused for every other data set."""

    def decorate(loader: Loader) -> Loader:
        _DATASETS[name] = DatasetSpec(
            name,
            loader,
            probe,
            display_name or name,
            options,
            path_optional,
            arrays,
            downloadable,
        )
        return loader

    return decorate


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The registered data set `name`; an InputError naming the choices otherwise."""
    if name not in _DATASETS:
        raise InputError(f"unknown data set {name!r} (choose from {', '.join(dataset_names())})")
    return _DATASETS[name]


def dataset_options(name: str) -> type[LoaderOptions] | None:
    """The options model of a data set's own settings, if its loader has one."""
    spec = _DATASETS.get(name)
    return None if spec is None else spec.options


def loader_options_models() -> list[type[LoaderOptions]]:
    """The own options of every registered loader, each once, in registration order."""
    return list(dict.fromkeys(spec.options for spec in _DATASETS.values() if spec.options))


def dataset_display_name(name: str) -> str:
    """How figures and tables name a data set's layout; an unknown name as it is."""
    spec = _DATASETS.get(name)
    return name if spec is None else spec.display_name


def data_label(dataset: str, data_path: str | None, data_name: str | None) -> str:
    """The data's own name: the one its run was given (`--data-name`, `data_name:`), else
    its file's or folder's name (`neu_det`, `bloodmnist_like_28`), else, for data read
    from no path (a download, a package), its loader's display name. The loader names the
    layout it was read in, never the data: NEU steel defects read in the MVTec 3D layout
    are not MVTec 3D."""
    if isinstance(data_name, str) and data_name:
        return data_name
    if isinstance(data_path, str) and data_path:
        path = Path(data_path)
        return path.stem if path.suffix else path.name
    return dataset_display_name(dataset)


def load_dataset(
    name: str, data_path: str | Path | None = None, options: DataOptions | None = None
) -> ImageDataset:
    """Load a data set by name; every problem with the input is an InputError."""
    options = options or DataOptions()
    path = _data_path(name, data_path, options)
    return dataset_spec(name).loader(path, options)


def probe_dataset(
    name: str, data_path: str | Path | None = None, options: DataOptions | None = None
) -> None:
    """Check that a data set is there and its index reads, decoding no image: what a
    sweep does for each of its data sets before it trains anything."""
    options = options or DataOptions()
    path = _data_path(name, data_path, options)
    probe = dataset_spec(name).probe
    if probe is not None:
        probe(path, options)


def _data_path(name: str, data_path: str | Path | None, options: DataOptions) -> Path | None:
    spec = dataset_spec(name)
    path = Path(data_path) if data_path is not None else None
    if path is None and not spec.path_optional and not (spec.downloadable and options.download):
        hint = " (or --download)" if spec.downloadable else ""
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
    register_dataset(
        _name,
        probe=_probe_medmnist,
        display_name=MEDMNIST_DISPLAY_NAMES.get(_name, "MedMNIST"),
        arrays=True,
        downloadable=_name in MEDMNIST_MD5,
    )(_medmnist_loader(_name))


def _no_path(path: Path | None, options: DataOptions) -> None:
    if path is not None:
        raise InputError(f"data set 'synthetic' is generated: it reads no data path ({path})")


@register_dataset(
    "synthetic", path_optional=True, probe=_no_path, display_name="synthetic", arrays=True
)
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

"""ELPV: electroluminescence images of solar cells (Buerhop-Lutz et al., Deitsch et al.),
shipped by the `elpv-dataset` package, so it works offline. Images CC BY-NC-SA 4.0."""

from __future__ import annotations

from importlib import util
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from sparsebench.data.assemble import build_image_dataset, data_file
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.options import DataOptions, LoaderOptions
from sparsebench.errors import InputError

BINARY_CLASSES = ["functional", "defective"]
# Experts' defect probabilities are 0, 1/3, 2/3 and 1.
FOUR_CLASSES = ["p=0", "p=1/3", "p=2/3", "p=1"]


class ElpvOptions(LoaderOptions):
    elpv_classes: Literal[2, 4] = Field(2, description="ELPV: 2 (defect >= 0.5) or 4 classes")


def elpv_labels_file(path: Path | None) -> Path:
    if path is not None:
        return path / "labels.csv" if path.is_dir() else path
    spec = util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        raise InputError(
            "data set 'elpv' needs the elpv-dataset package: pip install 'sparsebench[demo]'"
        )
    return Path(spec.origin).parent / "data" / "labels.csv"


def probe_elpv(path: Path | None) -> None:
    labels_file = elpv_labels_file(path)
    if not labels_file.is_file():
        raise InputError(f"{labels_file}: ELPV labels file does not exist")


def load_elpv(name: str, path: Path | None, options: DataOptions) -> ImageDataset:
    """Binary (defect probability >= 0.5) or 4-class (`elpv_classes=4`), with the study's
    stratified 70/20/10 split since the data brings none."""
    probe_elpv(path)
    labels_file = elpv_labels_file(path)
    try:
        table = np.genfromtxt(labels_file, dtype=["U64", "f8", "U8"], names=["path", "p", "type"])
    except ValueError as error:
        raise InputError(f"{labels_file}: not an ELPV labels file ({error})") from None
    probabilities = np.atleast_1d(table["p"])
    paths = [
        data_file(
            labels_file.parent, str(entry), f"{labels_file}:{line}", options.allow_external_paths
        )
        for line, entry in enumerate(np.atleast_1d(table["path"]), start=1)
    ]
    if options.own(ElpvOptions).elpv_classes == 2:
        labels, classes = (probabilities >= 0.5).astype(int).tolist(), BINARY_CLASSES
    else:
        labels, classes = np.rint(probabilities * 3).astype(int).tolist(), FOUR_CLASSES
    return build_image_dataset(name, str(labels_file), paths, labels, classes, options)

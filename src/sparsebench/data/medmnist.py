"""MedMNIST 2D npz files: `{train,val,test}_images` (N, H, W) or (N, H, W, 3) uint8 and
`{train,val,test}_labels` (N, 1), with the file's own split."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from sparsebench.data.dataset import SPLITS, ImageDataset, Split
from sparsebench.data.npz import check_npz_arrays
from sparsebench.data.splits import warn_thin_classes
from sparsebench.errors import InputError

REQUIRED_KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))

# Class names of the MedMNIST 2D sets with one label per image (multi-label ChestMNIST
# is not a classification set in this sense).
MEDMNIST_CLASSES: dict[str, list[str]] = {
    "bloodmnist": [
        "basophil",
        "eosinophil",
        "erythroblast",
        "immature granulocytes",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ],
    "pathmnist": [
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ],
    "dermamnist": [
        "actinic keratoses and intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesions",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevi",
        "vascular lesions",
    ],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "breastmnist": ["malignant", "normal, benign"],
    "tissuemnist": [
        "Collecting Duct, Connecting Tubule",
        "Distal Convoluted Tubule",
        "Glomerular endothelial cells",
        "Interstitial endothelial cells",
        "Leukocytes",
        "Podocytes",
        "Proximal Tubule Segments",
        "Thick Ascending Limb",
    ],
    "organamnist": [
        "bladder",
        "femur-left",
        "femur-right",
        "heart",
        "kidney-left",
        "kidney-right",
        "liver",
        "lung-left",
        "lung-right",
        "pancreas",
        "spleen",
    ],
}
MEDMNIST_DISPLAY_NAMES = {
    "bloodmnist": "BloodMNIST",
    "pathmnist": "PathMNIST",
    "dermamnist": "DermaMNIST",
    "octmnist": "OCTMNIST",
    "pneumoniamnist": "PneumoniaMNIST",
    "retinamnist": "RetinaMNIST",
    "breastmnist": "BreastMNIST",
    "tissuemnist": "TissueMNIST",
    "organamnist": "OrganAMNIST",
    "organcmnist": "OrganCMNIST",
    "organsmnist": "OrganSMNIST",
}
MEDMNIST_CLASSES["organcmnist"] = MEDMNIST_CLASSES["organamnist"]
MEDMNIST_CLASSES["organsmnist"] = MEDMNIST_CLASSES["organamnist"]


def probe_medmnist_npz(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: expected a MedMNIST npz file")
    check_npz_arrays(path, REQUIRED_KEYS)


def load_medmnist_npz(path: str | Path, name: str = "medmnist") -> ImageDataset:
    """Read a MedMNIST 2D npz. For a known set (`bloodmnist`, ...) the labels are checked
    against its class list; for `medmnist` the classes are 0..max(label)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    check_npz_arrays(path, REQUIRED_KEYS)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"{path}: not a readable npz file ({error})") from None
    with archive:
        raw = {}
        for split in SPLITS:
            try:
                raw[split] = (archive[f"{split}_images"], archive[f"{split}_labels"])
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
                raise InputError(f"{path}: {split} arrays cannot be read ({error})") from None
    splits = {split: _split(path, split, *raw[split]) for split in SPLITS}
    _check_channels(path, splits)
    top = max(int(s.labels.max()) for s in splits.values() if len(s))
    class_names = MEDMNIST_CLASSES.get(name, [str(i) for i in range(top + 1)])
    for split_name, split in splits.items():
        if len(split) == 0:
            raise InputError(f"{path}: split {split_name!r} has no samples")
        bad = (split.labels < 0) | (split.labels >= len(class_names))
        if bad.any():
            index = int(bad.nonzero()[0, 0])
            raise InputError(
                f"{path}: {split_name}_labels[{index}] = {int(split.labels[index])} is out of "
                f"range for {len(class_names)} classes"
            )
    warn_thin_classes(
        str(path), class_names, {name: split.labels for name, split in splits.items()}, False
    )
    return ImageDataset(name, splits, class_names, source=str(path))


def _split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> Split:
    if images.dtype != np.uint8:
        raise InputError(f"{path}: {split}_images has dtype {images.dtype}, expected uint8")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape[1:3]:
        raise InputError(
            f"{path}: {split}_images has shape {images.shape}, expected (N, H, W) or (N, H, W, 3)"
        )
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        flat = labels.reshape(-1)
        integral = np.zeros(flat.shape, dtype=bool)
        if labels.dtype.kind == "f":
            integral = np.isfinite(flat) & (flat == np.round(flat))
        if not integral.all():
            index = int(np.argmin(integral))
            raise InputError(
                f"{path}: {split}_labels[{index}] = {flat[index].item()!r} ({labels.dtype}) is "
                "not a class index: expected integers"
            )
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise InputError(
            f"{path}: {split}_labels has shape {labels.shape}: multi-label files are not supported"
        )
    labels = labels.reshape(-1)
    if len(labels) != len(images):
        raise InputError(
            f"{path}: {split}_images has {len(images)} images but {split}_labels has "
            f"{len(labels)} labels"
        )
    # NHWC -> NCHW, copied to contiguous memory (a permuted view crashes oneDNN, see
    # shared/repro/onednn_batch61_segfault.py).
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return Split(tensor.contiguous(), torch.from_numpy(labels.astype(np.int64)))


def _check_channels(path: Path, splits: dict[str, Split]) -> None:
    shapes = {name: tuple(split.images.shape[1:]) for name, split in splits.items()}
    if len(set(shapes.values())) != 1:
        raise InputError(f"{path}: splits have different image shapes {shapes}")

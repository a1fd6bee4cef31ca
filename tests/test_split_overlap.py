"""No image is in two splits, for every loader and layout: validation is never the test
split unless asked for by name (`validation: test`, the study's arrangement).

Every generated image is unique noise (seeded by its number), so an image found in two
splits is the same file twice; the real sets in ../shared/data are checked the same way.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from sparsebench.data import DataOptions, load_dataset
from sparsebench.data.dataset import ImageDataset
from sparsebench.errors import DataWarning

SIZE = 28  # the loaders decode to this size, so no two noise images can meet


def noise_image(path: Path, number: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(number).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    Image.fromarray(pixels, "L").save(path)
    return path.name


def assert_disjoint(data: ImageDataset, twins: int = 0) -> None:
    """Every split non-empty, and no image (by its bytes) in two of them, except as many
    as the data holds `twins` (pairs of identical files)."""
    seen: dict[bytes, str] = {}
    shared = 0
    for split in ("train", "val", "test"):
        images = data.splits[split].images
        assert len(images) > 0, split
        for image in images:
            key = image.numpy().tobytes()
            shared += key in seen and seen[key] != split
            seen.setdefault(key, split)
    assert shared <= twins, f"{shared} image(s) in two splits"


def identical_files(root: Path) -> int:
    """Pairs of image files under `root` with the same pixels, read apart from the loaders."""
    counts: dict[bytes, int] = {}
    for path in root.rglob("*"):
        if path.suffix.lower() in (".jpg", ".png") and "Masks" not in path.parts:
            key = Image.open(path).tobytes()
            counts[key] = counts.get(key, 0) + 1
    return sum(count - 1 for count in counts.values())


def flat_folder(root: Path) -> Path:
    for number in range(40):
        noise_image(root / ("ok" if number % 2 else "crack") / f"{number}.png", number)
    return root


def train_test_folders(root: Path) -> Path:
    for number in range(40):
        split = "test" if number % 5 == 0 else "train"
        noise_image(root / split / ("ok" if number % 2 else "crack") / f"{number}.png", number)
    return root


def folder_with_csv(root: Path) -> tuple[Path, str]:
    flat_folder(root)
    table = root.parent / "split.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "image"])
        for number in range(40):
            name = "ok" if number % 2 else "crack"
            writer.writerow(["test" if number % 4 == 0 else "train", f"{name}/{number}.png"])
    return root, f"csv:{table}"


def visa_tree(root: Path) -> Path:
    rows = []
    for number in range(40):
        label = "anomaly" if number % 3 == 0 else "normal"
        folder = root / "pcb1" / "Data" / "Images" / label.capitalize()
        noise_image(folder / f"{number}.JPG", number)
        split = "test" if number % 4 == 0 else "train"
        rows.append(["pcb1", split, label, f"pcb1/Data/Images/{label.capitalize()}/{number}.JPG"])
    (root / "split_csv").mkdir(parents=True)
    with open(root / "split_csv" / "2cls_highshot.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows([[*row, ""] for row in rows])
    return root


def coco_tree(root: Path) -> Path:
    images, annotations = [], []
    for number in range(40):
        noise_image(root / "img" / f"{number}.png", number)
        images.append({"id": number, "file_name": f"img/{number}.png"})
        annotations.append(
            {"id": number, "image_id": number, "category_id": 1 + number % 3, "area": 4}
        )
    categories = [{"id": k, "name": name} for k, name in enumerate(("a", "b", "c"), start=1)]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(document))
    return root


def medmnist_file(path: Path) -> Path:
    arrays = {}
    start = 0
    for split, count in (("train", 30), ("val", 6), ("test", 8)):
        numbers = range(start, start + count)
        arrays[f"{split}_images"] = np.stack(
            [np.random.default_rng(n).integers(0, 256, (SIZE, SIZE), np.uint8) for n in numbers]
        )
        arrays[f"{split}_labels"] = (np.arange(count) % 2).astype(np.uint8).reshape(-1, 1)
        start += count
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


LAYOUTS = {
    "folder": lambda tmp: ("folder", flat_folder(tmp / "d"), "paper"),
    "folder with train and test folders": lambda tmp: (
        "folder",
        train_test_folders(tmp / "d"),
        "paper",
    ),
    "folder with a split CSV": lambda tmp: ("folder", *folder_with_csv(tmp / "d")),
    "visa, the study's 80/20": lambda tmp: ("visa", visa_tree(tmp / "v"), "paper"),
    "visa, a split CSV": lambda tmp: ("visa", visa_tree(tmp / "v"), "csv:2cls_highshot"),
    "coco (mvtec3d-objects)": lambda tmp: ("mvtec3d-objects", coco_tree(tmp / "c"), "paper"),
    "medmnist npz": lambda tmp: ("bloodmnist", medmnist_file(tmp / "m" / "b.npz"), "paper"),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_no_image_is_in_two_splits(tmp_path, layout):
    dataset, path, split = LAYOUTS[layout](tmp_path)
    data = load_dataset(dataset, path, DataOptions(image_size=SIZE, split=split))
    assert_disjoint(data)
    total = sum(len(data.splits[name]) for name in ("train", "val", "test"))
    assert total == (44 if dataset == "bloodmnist" else 40)  # every image in one split


def test_the_held_out_share_is_taken_from_each_class_of_training(tmp_path):
    """The CSV gives 30 training images (10 cracks, 20 good); a fifth of each is held out."""
    root, split = folder_with_csv(tmp_path / "d")
    data = load_dataset("folder", root, DataOptions(image_size=SIZE, split=split, val_share=0.2))
    assert data.class_counts()["val"] == {"crack": 2, "ok": 4}
    assert data.class_counts()["train"] == {"crack": 8, "ok": 16}
    again = load_dataset("folder", root, DataOptions(image_size=SIZE, split=split, val_share=0.2))
    assert torch.equal(again.splits["val"].images, data.splits["val"].images)
    other = load_dataset(
        "folder", root, DataOptions(image_size=SIZE, split=split, val_share=0.2, seed=1)
    )
    assert not torch.equal(other.splits["val"].images, data.splits["val"].images)


def test_the_studys_arrangement_only_by_name_and_with_a_warning(tmp_path):
    root = visa_tree(tmp_path / "v")
    with pytest.warns(DataWarning, match="validation is the test split"):
        data = load_dataset("visa", root, DataOptions(image_size=SIZE, validation="test"))
    assert torch.equal(data.splits["val"].images, data.splits["test"].images)


@pytest.mark.parametrize(
    "dataset, parts, split",
    [
        ("mvtec3d-objects", ("neu_det",), "paper"),
        ("folder", ("neu_det", "images"), "paper"),
        ("visa", ("magnetic_tile_visa",), "paper"),
        ("visa", ("magnetic_tile_visa",), "csv:2cls_highshot"),
        ("visa", ("magnetic_tile_visa",), "csv:1cls"),
    ],
)
def test_no_image_of_the_real_sets_is_in_two_splits(dataset, parts, split):
    """NEU holds one picture twice (patches_101 and patches_105): the loader says so when
    the two land in different splits, and no other image is in two."""
    root = shared_path(*parts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(dataset, root, DataOptions(image_size=32, split=split))
    twins = identical_files(root)
    assert_disjoint(data, twins)
    named = [str(w.message) for w in caught if "identical files" in str(w.message)]
    assert len(named) <= twins


def test_an_image_in_two_splits_is_named(tmp_path):
    root = flat_folder(tmp_path / "d")
    for number in range(8):  # the same picture under two names, in every class folder
        noise_image(root / "crack" / f"copy{number}.png", 1000)
    with pytest.warns(DataWarning, match=r"in two splits as identical files: copy\d\.png"):
        load_dataset("folder", root, DataOptions(image_size=SIZE))

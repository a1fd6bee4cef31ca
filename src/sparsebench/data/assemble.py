"""From labelled image files to an ImageDataset: decode (cached), split, subset."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from sparsebench.data.dataset import SPLITS, ImageDataset, Split
from sparsebench.data.images import decode_images
from sparsebench.data.options import DataOptions
from sparsebench.data.splits import stratified_split, stratified_subset
from sparsebench.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}

# The study's split for data that brings none (its MVTec 3D protocol).
PAPER_FRACTIONS = {"train": 0.7, "test": 0.2, "val": 0.1}


def build_image_dataset(
    name: str,
    source: str,
    paths: list[Path],
    labels: list[int],
    class_names: list[str],
    options: DataOptions,
    assigned: dict[str, list[int]] | None = None,
    fractions: dict[str, float] | None = None,
) -> ImageDataset:
    """Decode `paths` and split them: by `assigned` (split name -> indices) when the data
    or a CSV brings a split, else stratified by `fractions` (seeded). A split named in
    `fractions` with value 0 is the test split again ("validation combined with test")."""
    if not paths:
        raise InputError(f"{source}: no images found")
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    for index, class_name in enumerate(class_names):
        if not (label_tensor == index).any():
            raise InputError(f"{source}: class {class_name!r} has no images")
    if options.subset_size is not None:
        keep = stratified_subset(label_tensor, options.subset_size, options.seed).tolist()
        paths, label_tensor = [paths[i] for i in keep], label_tensor[keep]
        if assigned is not None:
            position = {old: new for new, old in enumerate(keep)}
            assigned = {
                split: [position[i] for i in indices if i in position]
                for split, indices in assigned.items()
            }
    if assigned is None:
        fractions = fractions or PAPER_FRACTIONS
        drawn = stratified_split(
            label_tensor, {k: v for k, v in fractions.items() if v > 0}, options.seed
        )
        assigned = {split: drawn[split].tolist() for split in drawn}
    if "val" not in assigned and assigned.get("test"):
        assigned["val"] = assigned["test"]  # validation combined with test, as the study did
    for split in ("train", "test", "val"):  # val is checked last: it may stand for test
        if not assigned.get(split):
            raise InputError(f"{source}: split {split!r} has no samples")
    images = decode_images(paths, options.decode_size, options.cache_dir)
    splits = {
        split: Split(images[assigned[split]].contiguous(), label_tensor[assigned[split]])
        for split in SPLITS
    }
    return ImageDataset(name, splits, class_names, source=source)


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def read_split_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a split CSV (VisA's `object,split,label,image,mask`, or any CSV with at
    least `split` and `image` columns), each with its line number under `line`."""
    if not path.is_file():
        raise InputError(f"{path}: split CSV does not exist")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        missing = {"split", "image"} - fields
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = []
        for line, row in enumerate(reader, start=2):
            split = (row.get("split") or "").strip().lower()
            if split not in ("train", "val", "test"):
                raise InputError(
                    f"{path}:{line}: split {row.get('split')!r} is not train, val or test"
                )
            rows.append(
                {
                    **{k: (v or "").strip() for k, v in row.items()},
                    "split": split,
                    "line": str(line),
                }
            )
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


def resolve_row_image(csv_path: Path, root: Path, row: dict[str, str]) -> Path:
    image = root / row["image"]
    if not image.is_file():
        raise InputError(
            f"{csv_path}:{row['line']}: image {row['image']!r} does not exist under {root}"
        )
    return image

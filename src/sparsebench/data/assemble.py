"""From labelled image files to an ImageDataset: decode (cached), split, subset."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import torch

from sparsebench.data.dataset import SPLITS, ImageDataset, Split
from sparsebench.data.images import decode_images
from sparsebench.data.options import DataOptions
from sparsebench.data.splits import (
    held_out,
    stratified_split,
    stratified_subset,
    warn_shared_images,
    warn_thin_classes,
)
from sparsebench.errors import DataWarning, InputError

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
    or a CSV brings a split, else stratified by `fractions` (seeded). Where neither
    brings a validation split, one is held out of training (`with_validation`)."""
    if not paths:
        raise InputError(f"{source}: no images found")
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    for index, class_name in enumerate(class_names):
        if not (label_tensor == index).any():
            raise InputError(f"{source}: class {class_name!r} has no images")
    if options.subset_size is not None:
        paths, label_tensor, assigned = _subset(paths, label_tensor, assigned, options)
    if assigned is None:
        fractions = fractions or PAPER_FRACTIONS
        drawn = stratified_split(
            label_tensor, {k: v for k, v in fractions.items() if v > 0}, options.seed
        )
        assigned = {split: drawn[split].tolist() for split in drawn}
    for split in ("train", "test", "val"):
        if split == "val":
            assigned = with_validation(source, label_tensor, assigned, options)
        if not assigned.get(split):
            raise InputError(f"{source}: split {split!r} has no samples")
    val_is_test = assigned["val"] is assigned["test"]
    warn_thin_classes(
        source,
        class_names,
        {split: label_tensor[indices] for split, indices in assigned.items()},
        val_is_test,
    )
    images = decode_images(paths, options.decode_size, options.cache_dir, options.max_image_pixels)
    warn_shared_images(source, paths, assigned, images)
    splits = {
        split: Split(images[assigned[split]].contiguous(), label_tensor[assigned[split]])
        for split in SPLITS
    }
    return ImageDataset(name, splits, class_names, source=source)


def _subset(
    paths: list[Path],
    labels: torch.Tensor,
    assigned: dict[str, list[int]] | None,
    options: DataOptions,
) -> tuple[list[Path], torch.Tensor, dict[str, list[int]] | None]:
    """The stratified `subset_size` of the images, their split re-indexed."""
    assert options.subset_size is not None
    keep = stratified_subset(labels, options.subset_size, options.seed).tolist()
    if assigned is not None:
        position = {old: new for new, old in enumerate(keep)}
        assigned = {
            split: [position[i] for i in indices if i in position]
            for split, indices in assigned.items()
        }
    return [paths[i] for i in keep], labels[keep], assigned


def with_validation(
    source: str, labels: torch.Tensor, assigned: dict[str, list[int]], options: DataOptions
) -> dict[str, list[int]]:
    """`assigned` with a validation split. Where the data brings none, `val_share` of
    each class's training images are held out for it (seeded by the run's seed, so the
    split is paired across a cell's runs), or, asked for by name (`validation: test`),
    the test split stands in for it as in the study, and a warning says what that costs."""
    if assigned.get("val"):
        return assigned
    if options.validation == "test":
        warnings.warn(
            f"{source}: validation is the test split (validation: test, the study's "
            "arrangement): model selection, early stopping and validation curves see the "
            "test set",
            DataWarning,
            stacklevel=3,
        )
        return {**assigned, "val": assigned["test"]}
    train = torch.tensor(assigned["train"], dtype=torch.int64)
    val = torch.zeros(len(train), dtype=torch.bool)
    val[held_out(labels[train], options.val_share, options.seed)] = True
    return {**assigned, "train": train[~val].tolist(), "val": train[val].tolist()}


def data_file(root: Path, entry: str, where: str, allow_external: bool = False) -> Path:
    """The file an annotation or CSV entry names, relative to `root`.

    An entry that resolves outside `root` (an absolute path, `..`, or a link out of the
    folder) is refused before anything is read or checked, so a hostile annotation file
    learns nothing of the machine; `allow_external` lets a user whose own annotations
    use absolute paths read them.
    """
    if "\0" in entry:
        raise InputError(f"{where}: {entry!r} is not a file name (it holds a NUL byte)")
    candidate = root / entry
    if not allow_external and not _inside(candidate, root):
        raise InputError(
            f"{where}: {entry!r} lies outside the data set's folder {root} (refused; "
            "--allow-external-paths or `allow_external_paths: true` reads it)"
        )
    if not candidate.is_file():
        raise InputError(f"{where}: image {entry!r} does not exist under {root}")
    return candidate


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def list_images(folder: Path, root: Path, allow_external: bool = False) -> list[Path]:
    """Image files under `folder` (a class folder of the data set at `root`); a link
    that leads out of `root` is refused like an annotation entry that does."""
    images = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not allow_external:
        for image in images:
            if not _inside(image, root):
                raise InputError(
                    f"{image}: a link to a file outside the data set's folder {root} "
                    "(refused; --allow-external-paths reads it)"
                )
    return images


def read_split_csv(
    path: Path, required: tuple[str, ...] = ("split", "image")
) -> list[dict[str, str]]:
    """Rows of a split CSV (VisA's `object,split,label,image,mask`, or any CSV with at
    least `split` and `image` columns), each with its line number under `line`."""
    if not path.is_file():
        raise InputError(f"{path}: split CSV does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return _csv_rows(path, csv.DictReader(handle), required)
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text CSV file ({error.reason})") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from None


def _csv_rows(
    path: Path, reader: csv.DictReader, required: tuple[str, ...]
) -> list[dict[str, str]]:
    fields = set(reader.fieldnames or [])
    missing = set(required) - fields
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(sorted(missing))} (its header: "
            f"{', '.join(reader.fieldnames or []) or 'none'})"
        )
    rows = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise InputError(f"{path}:{line}: more fields than the header names")
        if any(row[name] is None for name in required):
            raise InputError(f"{path}:{line}: fewer fields than the header names")
        split = row["split"].strip().lower()
        if split not in ("train", "val", "test"):
            raise InputError(f"{path}:{line}: split {row['split']!r} is not train, val or test")
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


def resolve_row_image(
    csv_path: Path, root: Path, row: dict[str, str], allow_external: bool = False
) -> Path:
    return data_file(root, row["image"], f"{csv_path}:{row['line']}", allow_external)

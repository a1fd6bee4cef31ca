"""Image-folder trees: one folder per class, optionally inside train/val/test folders."""

from __future__ import annotations

from pathlib import Path

from sparsebench.data.assemble import (
    build_image_dataset,
    list_images,
    read_split_csv,
    resolve_row_image,
)
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.options import DataOptions
from sparsebench.errors import InputError

SPLIT_FOLDERS = ("train", "val", "test")


def load_image_folder(name: str, root: Path, options: DataOptions) -> ImageDataset:
    """`root/<class>/**/*.jpg`, or `root/{train,val,test}/<class>/...` with its own split.

    `--split paper` draws the study's stratified 70/20/10 split where the tree has none;
    `--split csv:FILE` takes the split from a CSV with `split`, `image` (relative to
    `root`) and optionally `label` (a class name; else the image's class folder).
    """
    if not root.is_dir():
        raise InputError(f"{root}: expected a folder of class folders")
    if options.split.startswith("csv:"):
        return _from_csv(name, root, Path(options.split[4:]), options)
    if options.split != "paper":
        raise InputError(f"--split {options.split!r}: expected paper or csv:FILE for {name}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return _from_split_folders(name, root, options)
    classes = _class_folders(root)
    paths, labels = [], []
    for index, folder in enumerate(classes):
        images = list_images(folder, root, options.allow_external_paths)
        if not images:
            raise InputError(f"{folder}: class {folder.name!r} has no images")
        paths += images
        labels += [index] * len(images)
    return build_image_dataset(name, str(root), paths, labels, [c.name for c in classes], options)


def probe_image_folder(root: Path | None, options: DataOptions) -> None:
    assert root is not None
    if not root.is_dir():
        raise InputError(f"{root}: expected a folder of class folders")
    if options.split.startswith("csv:"):
        read_split_csv(Path(options.split[4:]))
    elif (root / "train").is_dir() and (root / "test").is_dir():
        for split in SPLIT_FOLDERS:
            if (root / split).is_dir():
                _class_folders(root / split)
    else:
        _class_folders(root)


def _class_folders(root: Path) -> list[Path]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(f"{root}: expected at least two class folders, found {len(classes)}")
    return classes


def _from_split_folders(name: str, root: Path, options: DataOptions) -> ImageDataset:
    present = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    class_names = sorted({c.name for s in present for c in _class_folders(root / s)})
    paths, labels, assigned = [], [], {}
    for split in present:
        indices = []
        for folder in _class_folders(root / split):
            for image in list_images(folder, root, options.allow_external_paths):
                indices.append(len(paths))
                paths.append(image)
                labels.append(class_names.index(folder.name))
        assigned[split] = indices
    return build_image_dataset(name, str(root), paths, labels, class_names, options, assigned)


def _from_csv(name: str, root: Path, csv_path: Path, options: DataOptions) -> ImageDataset:
    rows = read_split_csv(csv_path)
    paths = [resolve_row_image(csv_path, root, row, options.allow_external_paths) for row in rows]
    names = [row.get("label") or path.parent.name for row, path in zip(rows, paths, strict=True)]
    class_names = sorted(set(names))
    assigned: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        assigned.setdefault(row["split"], []).append(index)
    labels = [class_names.index(n) for n in names]
    return build_image_dataset(name, str(csv_path), paths, labels, class_names, options, assigned)

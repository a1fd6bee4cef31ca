"""VisA: `<object>/Data/Images/{Normal,Anomaly}/*` and `split_csv/*.csv`; binary labels."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sparsebench.data.assemble import (
    build_image_dataset,
    list_images,
    read_split_csv,
    resolve_row_image,
)
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.options import DataOptions, LoaderOptions
from sparsebench.errors import InputError

CLASSES = ["normal", "anomaly"]
# The study's VisA protocol: 80% train, 20% test (its validation was the test split;
# sparsebench holds validation out of training unless `validation: test` is asked for).
VISA_PAPER_FRACTIONS = {"train": 0.8, "test": 0.2}
OFFICIAL_SPLITS = ("1cls", "2cls_highshot", "2cls_fewshot")


class VisaOptions(LoaderOptions):
    visa_objects: tuple[str, ...] | None = Field(None, description="VisA objects (default: all)")


def visa_objects(root: Path, wanted: tuple[str, ...] | None) -> list[str]:
    found = sorted(p.name for p in root.iterdir() if (p / "Data" / "Images").is_dir())
    if not found:
        raise InputError(f"{root}: no VisA objects (expected <object>/Data/Images/Normal)")
    if wanted:
        unknown = [o for o in wanted if o not in found]
        if unknown:
            raise InputError(
                f"--visa-objects: {', '.join(unknown)} not in {root} (found {', '.join(found)})"
            )
        return list(wanted)
    return found


def probe_visa(root: Path | None, options: DataOptions) -> None:
    assert root is not None
    if not root.is_dir():
        raise InputError(f"{root}: expected the VisA root folder")
    visa_objects(root, options.own(VisaOptions).visa_objects)
    if options.split.startswith("csv:"):
        read_split_csv(_split_csv(root, options.split), ("split", "label", "image"))


def _split_csv(root: Path, split: str) -> Path:
    which = split[4:]
    return root / "split_csv" / f"{which}.csv" if which in OFFICIAL_SPLITS else Path(which)


def load_visa(name: str, root: Path, options: DataOptions) -> ImageDataset:
    if not root.is_dir():
        raise InputError(f"{root}: expected the VisA root folder")
    objects = visa_objects(root, options.own(VisaOptions).visa_objects)
    if options.split == "paper":
        paths, labels = [], []
        for obj in objects:
            for label, folder in enumerate(("Normal", "Anomaly")):
                images = list_images(
                    root / obj / "Data" / "Images" / folder, root, options.allow_external_paths
                )
                paths += images
                labels += [label] * len(images)
        return build_image_dataset(
            name, str(root), paths, labels, CLASSES, options, fractions=VISA_PAPER_FRACTIONS
        )
    if not options.split.startswith("csv:"):
        raise InputError(
            f"--split {options.split!r}: expected paper, csv:1cls, csv:2cls_highshot or csv:FILE"
        )
    csv_path = _split_csv(root, options.split)
    rows = [
        row
        for row in read_split_csv(csv_path, ("split", "label", "image"))
        if row.get("object", objects[0]) in objects
    ]
    if not rows:
        raise InputError(f"{csv_path}: no rows for object(s) {', '.join(objects)}")
    paths, labels, assigned = [], [], {}
    for row in rows:
        label = row["label"].lower()
        if label not in CLASSES:
            raise InputError(
                f"{csv_path}:{row['line']}: label {row.get('label')!r} is not normal or anomaly"
            )
        assigned.setdefault(row["split"], []).append(len(paths))
        paths.append(resolve_row_image(csv_path, root, row, options.allow_external_paths))
        labels.append(CLASSES.index(label))
    return build_image_dataset(name, str(csv_path), paths, labels, CLASSES, options, assigned)

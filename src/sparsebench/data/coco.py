"""MVTec 3D object classification: COCO annotations (one label per image) or a folder tree."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from sparsebench.data.assemble import build_image_dataset, data_file
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.folder import load_image_folder, probe_image_folder
from sparsebench.data.options import DataOptions, LoaderOptions
from sparsebench.errors import InputError, validation_message

LABEL_RULES = ("first", "majority", "largest-area")


class CocoOptions(LoaderOptions):
    """MVTec 3D objects (COCO annotations)."""

    label_rule: Literal["first", "majority", "largest-area"] = Field(
        "first", description="COCO: the label of an image with several annotations"
    )


def load_mvtec3d_objects(name: str, path: Path, options: DataOptions) -> ImageDataset:
    """A COCO json file, a folder holding one (`annotations.json` or a single `*.json`),
    or an image-folder tree (class = folder)."""
    json_file = _find_json(path)
    if json_file is None:
        return load_image_folder(name, path, options)
    return load_coco(name, json_file, options)


def probe_mvtec3d(path: Path | None, options: DataOptions) -> None:
    assert path is not None
    json_file = _find_json(path)
    if json_file is None:
        probe_image_folder(path, options)
    else:
        read_coco(json_file)


def _find_json(path: Path) -> Path | None:
    if path.is_file():
        return path
    if (path / "annotations.json").is_file():
        return path / "annotations.json"
    candidates = sorted(path.glob("*.json"))
    return candidates[0] if len(candidates) == 1 else None


def image_label(annotations: list[CocoAnnotation], rule: str) -> int:
    """The category of an image with several annotations.

    `first` (default): the category of its first annotation (lowest annotation id), the
    object an MVTec 3D export lists for the image; extra boxes are secondary findings.
    `majority`: the category with most boxes (ties: larger total area, then lower id).
    `largest-area`: the category covering the most area (ties: lower id).
    """
    if rule == "first":
        return min(annotations, key=lambda a: a.id).category_id
    counts = Counter(a.category_id for a in annotations)
    areas: Counter = Counter()
    for a in annotations:
        areas[a.category_id] += a.area
    if rule == "majority":
        return max(counts, key=lambda c: (counts[c], areas[c], -c))
    if rule == "largest-area":
        return max(areas, key=lambda c: (areas[c], -c))
    raise InputError(f"label rule {rule!r}: expected one of {', '.join(LABEL_RULES)}")


class CocoImage(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: StrictInt | StrictStr
    file_name: StrictStr = Field(min_length=1)


class CocoCategory(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: StrictInt
    name: StrictStr = Field(min_length=1)


class CocoAnnotation(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: StrictInt = 0
    image_id: StrictInt | StrictStr
    category_id: StrictInt
    area: float = 0.0


class CocoDocument(BaseModel):
    """The parts of a COCO file that image classification reads; other keys are kept
    out of the way, and every entry is checked before any image is touched."""

    model_config = ConfigDict(extra="allow")
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory] = Field(min_length=1)


def read_coco(json_file: Path) -> CocoDocument:
    """The file's entries, or one line naming the first bad entry and what is wrong."""
    try:
        raw = json.loads(json_file.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        reason = error.strerror if isinstance(error, OSError) else str(error) or "nested too deep"
        raise InputError(f"{json_file}: not a readable COCO json file ({reason})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{json_file}: expected a COCO object, got a {type(raw).__name__}")
    try:
        document = CocoDocument.model_validate(raw)
    except ValidationError as error:
        raise InputError(validation_message(error, str(json_file))) from None
    for kind, entries in (("categories", document.categories), ("images", document.images)):
        seen: set = set()
        for index, entry in enumerate(entries):
            if entry.id in seen:
                raise InputError(f"{json_file}: {kind}[{index}]: id {entry.id!r} repeats")
            seen.add(entry.id)
    return document


def load_coco(name: str, json_file: Path, options: DataOptions) -> ImageDataset:
    document = read_coco(json_file)
    categories = sorted(document.categories, key=lambda c: c.id)
    class_names = [c.name for c in categories]
    index_of = {c.id: i for i, c in enumerate(categories)}
    by_image: dict[int | str, list[CocoAnnotation]] = defaultdict(list)
    for position, annotation in enumerate(document.annotations):
        if annotation.category_id not in index_of:
            raise InputError(
                f"{json_file}: annotations[{position}]: unknown category_id "
                f"{annotation.category_id!r}"
            )
        by_image[annotation.image_id].append(annotation)
    paths, labels = [], []
    for position, image in enumerate(document.images):
        annotations = by_image.get(image.id)
        if not annotations:
            continue  # an image without a label is not a classification sample
        where = f"{json_file}: images[{position}] (id {image.id!r})"
        paths.append(
            data_file(json_file.parent, image.file_name, where, options.allow_external_paths)
        )
        labels.append(index_of[image_label(annotations, options.own(CocoOptions).label_rule)])
    return build_image_dataset(name, str(json_file), paths, labels, class_names, options)

"""MVTec 3D object classification: COCO annotations (one label per image) or a folder tree."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from sparsebench.data.assemble import build_image_dataset
from sparsebench.data.dataset import ImageDataset
from sparsebench.data.folder import load_image_folder
from sparsebench.data.options import DataOptions
from sparsebench.errors import InputError

LABEL_RULES = ("first", "majority", "largest-area")


def load_mvtec3d_objects(name: str, path: Path, options: DataOptions) -> ImageDataset:
    """A COCO json file, a folder holding one (`annotations.json` or a single `*.json`),
    or an image-folder tree (class = folder)."""
    json_file = _find_json(path)
    if json_file is None:
        return load_image_folder(name, path, options)
    return load_coco(name, json_file, options)


def _find_json(path: Path) -> Path | None:
    if path.is_file():
        return path
    if (path / "annotations.json").is_file():
        return path / "annotations.json"
    candidates = sorted(path.glob("*.json"))
    return candidates[0] if len(candidates) == 1 else None


def image_label(annotations: list[dict], rule: str) -> int:
    """The category of an image with several annotations.

    `first` (default): the category of its first annotation (lowest annotation id), the
    object an MVTec 3D export lists for the image; extra boxes are secondary findings.
    `majority`: the category with most boxes (ties: larger total area, then lower id).
    `largest-area`: the category covering the most area (ties: lower id).
    """
    if rule == "first":
        return min(annotations, key=lambda a: a.get("id", 0))["category_id"]
    counts = Counter(a["category_id"] for a in annotations)
    areas: Counter = Counter()
    for a in annotations:
        areas[a["category_id"]] += float(a.get("area", 0.0))
    if rule == "majority":
        return max(counts, key=lambda c: (counts[c], areas[c], -c))
    if rule == "largest-area":
        return max(areas, key=lambda c: (areas[c], -c))
    raise InputError(f"label rule {rule!r}: expected one of {', '.join(LABEL_RULES)}")


def load_coco(name: str, json_file: Path, options: DataOptions) -> ImageDataset:
    try:
        document = json.loads(json_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{json_file}: not a readable COCO json file ({error})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise InputError(f"{json_file}: missing list {key!r}")
    categories = sorted(document["categories"], key=lambda c: c["id"])
    class_names = [c["name"] for c in categories]
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in document["annotations"]:
        if annotation.get("category_id") not in index_of:
            raise InputError(
                f"{json_file}: annotation {annotation.get('id')} has unknown category "
                f"{annotation.get('category_id')!r}"
            )
        by_image[annotation["image_id"]].append(annotation)
    paths, labels = [], []
    for image in document["images"]:
        annotations = by_image.get(image["id"])
        if not annotations:
            continue  # an image without a label is not a classification sample
        file = json_file.parent / image["file_name"]
        if not file.is_file():
            raise InputError(
                f"{json_file}: image {image['file_name']!r} (id {image['id']}) does not exist"
            )
        paths.append(file)
        labels.append(index_of[image_label(annotations, options.label_rule)])
    return build_image_dataset(name, str(json_file), paths, labels, class_names, options)

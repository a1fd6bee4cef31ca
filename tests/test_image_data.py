import csv
import json
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from sparsebench.data import DataOptions, load_dataset
from sparsebench.data import images as images_module
from sparsebench.data.coco import CocoAnnotation, CocoOptions, image_label
from sparsebench.data.elpv import ElpvOptions
from sparsebench.data.splits import stratified_split, stratified_subset
from sparsebench.data.visa import VisaOptions
from sparsebench.errors import DataWarning, InputError


def write_image(path, value, size=(20, 16), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0]) if mode == "L" else (size[1], size[0], 3), value, np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


def class_tree(root, counts, mode="L"):
    for index, (name, count) in enumerate(counts.items()):
        for k in range(count):
            write_image(root / name / f"{name}_{k}.png", 40 * index + k, mode=mode)
    return root


def test_stratified_split_by_hand():
    labels = torch.tensor([0] * 10 + [1] * 20)
    parts = stratified_split(labels, {"train": 0.7, "test": 0.2, "val": 0.1}, seed=0)
    counts = {name: Counter(labels[idx].tolist()) for name, idx in parts.items()}
    assert counts == {"train": {0: 7, 1: 14}, "test": {0: 2, 1: 4}, "val": {0: 1, 1: 2}}
    assert sorted(torch.cat(list(parts.values())).tolist()) == list(range(30))
    again = stratified_split(labels, {"train": 0.7, "test": 0.2, "val": 0.1}, seed=0)
    assert all(torch.equal(parts[k], again[k]) for k in parts)
    other = stratified_split(labels, {"train": 0.7, "test": 0.2, "val": 0.1}, seed=1)
    assert not torch.equal(parts["train"], other["train"])
    subset = stratified_subset(labels, 6, seed=0)
    assert Counter(labels[subset].tolist()) == {0: 2, 1: 4}


def test_folder_tree_paper_split_and_grey_images(tmp_path):
    root = class_tree(tmp_path / "data", {"bad": 10, "good": 20})
    data = load_dataset("folder", root, DataOptions(image_size=28))
    assert data.class_names == ["bad", "good"]
    assert data.channels == 1 and data.image_size == 28
    assert data.class_counts() == {
        "train": {"bad": 7, "good": 14},
        "val": {"bad": 1, "good": 2},
        "test": {"bad": 2, "good": 4},
    }
    first = data.splits["train"].images
    assert first.dtype == torch.uint8 and first.is_contiguous()


def test_rgb_images_give_three_channels(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 10, "b": 10}, mode="RGB")
    assert load_dataset("folder", root, DataOptions(image_size=32)).channels == 3


def test_train_val_test_folders_are_the_split(tmp_path):
    for split, count in (("train", 4), ("val", 2), ("test", 3)):
        class_tree(tmp_path / "data" / split, {"cat": count, "dog": count})
    data = load_dataset("folder", tmp_path / "data", DataOptions(image_size=28))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "val": 4, "test": 6}


def test_csv_split_for_a_folder(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 4, "b": 4})
    split_file = tmp_path / "split.csv"
    with open(split_file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "image"])
        for name in ("a", "b"):
            for k in range(4):
                writer.writerow(["train" if k < 3 else "test", f"{name}/{name}_{k}.png"])
    data = load_dataset("folder", root, DataOptions(image_size=28, split=f"csv:{split_file}"))
    # the CSV brings no validation split: one of each class's three training images
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 4, "val": 2, "test": 2}


def test_decoded_images_are_cached_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    root = class_tree(tmp_path / "data", {"a": 10, "b": 10})
    options = DataOptions(image_size=28, cache_dir=tmp_path / "cache")
    first = load_dataset("folder", root, options)
    calls = []
    real = images_module._decode_all
    monkeypatch.setattr(images_module, "_decode_all", lambda *a: calls.append(a) or real(*a))
    second = load_dataset("folder", root, options)
    assert calls == []
    assert torch.equal(first.splits["train"].images, second.splits["train"].images)
    write_image(root / "a" / "a_0.png", 255)
    load_dataset("folder", root, options)
    assert len(calls) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_coco_label_rules():
    annotations = [
        {"id": 7, "category_id": 3, "area": 10},
        {"id": 8, "category_id": 1, "area": 50},
        {"id": 9, "category_id": 1, "area": 5},
        {"id": 10, "category_id": 3, "area": 30},
        {"id": 11, "category_id": 2, "area": 100},
    ]
    annotations = [CocoAnnotation(image_id=1, **entry) for entry in annotations]
    assert image_label(annotations, "first") == 3
    assert image_label(annotations, "majority") == 1  # 2 boxes each for 1 and 3; 55 > 40 area
    assert image_label(annotations, "largest-area") == 2


def write_coco(root, images, annotations, categories):
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(document))
    return root


def test_coco_dataset_with_a_multi_label_image(tmp_path):
    root = tmp_path / "coco"
    images, annotations = [], []
    for i in range(20):
        write_image(root / "img" / f"{i}.png", i * 10)
        images.append({"id": i, "file_name": f"img/{i}.png"})
        annotations.append({"id": i, "image_id": i, "category_id": 1 + i % 2, "area": 4})
    annotations.append({"id": 100, "image_id": 0, "category_id": 2, "area": 99})
    write_coco(root, images, annotations, [{"id": 1, "name": "bolt"}, {"id": 2, "name": "nut"}])
    data = load_dataset("mvtec3d-objects", root, DataOptions(image_size=28))
    totals = Counter()
    for counts in data.class_counts().values():
        totals.update(counts)
    assert totals == {"bolt": 10, "nut": 10}  # image 0 keeps its first annotation's class
    majority = load_dataset(
        "mvtec3d-objects",
        root,
        DataOptions(image_size=28, loader_options=CocoOptions(label_rule="largest-area")),
    )
    totals = Counter()
    for counts in majority.class_counts().values():
        totals.update(counts)
    assert totals == {"bolt": 9, "nut": 11}


def test_visa_layout_with_csv_and_paper_splits(tmp_path):
    root = tmp_path / "visa"
    rows = []
    for obj in ("pcb1", "candle"):
        for k in range(10):
            label = "Anomaly" if k < 3 else "Normal"
            write_image(root / obj / "Data" / "Images" / label / f"{k}.JPG", k * 20, mode="RGB")
            rows.append(
                [
                    obj,
                    "train" if k % 2 else "test",
                    label.lower(),
                    f"{obj}/Data/Images/{label}/{k}.JPG",
                    "",
                ]
            )
    (root / "split_csv").mkdir()
    with open(root / "split_csv" / "2cls_highshot.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    data = load_dataset(
        "visa",
        root,
        DataOptions(
            image_size=28,
            split="csv:2cls_highshot",
            loader_options=VisaOptions(visa_objects=("pcb1",)),
        ),
    )
    assert data.class_names == ["normal", "anomaly"]
    assert len(data.splits["train"]) + len(data.splits["val"]) == 5
    assert len(data.splits["test"]) == 5 and len(data.splits["val"]) >= 1
    asked = DataOptions(
        image_size=28,
        split="csv:2cls_highshot",
        validation="test",
        loader_options=VisaOptions(visa_objects=("pcb1",)),
    )
    with pytest.warns(DataWarning, match="model selection.*see the test set"):
        study = load_dataset("visa", root, asked)
    assert len(study.splits["train"]) == 5
    assert torch.equal(study.splits["val"].images, study.splits["test"].images)
    paper = load_dataset("visa", root, DataOptions(image_size=28))
    assert len(paper.splits["train"]) + len(paper.splits["val"]) == 16
    assert len(paper.splits["test"]) == 4
    with pytest.raises(InputError, match="--visa-objects: capsules not in"):
        load_dataset(
            "visa",
            root,
            DataOptions(image_size=28, loader_options=VisaOptions(visa_objects=("capsules",))),
        )


# One test per kind of bad input; each names the file or row and what is wrong.


def test_an_image_that_does_not_decode(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 10, "b": 10})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"broken\.png: image cannot be decoded"):
        load_dataset("folder", root, DataOptions(image_size=28, cache_dir=tmp_path / "c"))
    assert not list((tmp_path / "c").rglob("*.pt"))


def test_a_csv_row_pointing_at_no_file(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 2, "b": 2})
    split_file = tmp_path / "split.csv"
    split_file.write_text("split,image\ntrain,a/a_0.png\ntest,a/missing.png\n")
    with pytest.raises(InputError, match=r"split\.csv:3: image 'a/missing.png' does not exist"):
        load_dataset("folder", root, DataOptions(split=f"csv:{split_file}"))


def test_a_class_with_no_images(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 2, "b": 2})
    (root / "empty").mkdir()
    with pytest.raises(InputError, match="class 'empty' has no images"):
        load_dataset("folder", root, DataOptions())


def test_a_split_with_no_samples(tmp_path):
    root = class_tree(tmp_path / "data", {"a": 2, "b": 2})
    split_file = tmp_path / "split.csv"
    split_file.write_text("split,image\ntrain,a/a_0.png\ntrain,b/b_0.png\n")
    with pytest.raises(InputError, match="split 'test' has no samples"):
        load_dataset("folder", root, DataOptions(split=f"csv:{split_file}"))


def test_a_coco_file_that_is_not_json(tmp_path):
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(InputError, match="annotations.json: not a readable COCO json"):
        load_dataset("mvtec3d-objects", tmp_path, DataOptions())


def test_a_coco_image_that_does_not_exist(tmp_path):
    write_coco(
        tmp_path,
        [{"id": 1, "file_name": "nowhere.png"}],
        [{"id": 1, "image_id": 1, "category_id": 1}],
        [{"id": 1, "name": "x"}],
    )
    missing = r"images\[0\] \(id 1\): image 'nowhere.png' does not exist"
    with pytest.raises(InputError, match=missing):
        load_dataset("mvtec3d-objects", tmp_path, DataOptions())


def test_a_visa_csv_with_a_bad_label(tmp_path):
    write_image(tmp_path / "obj" / "Data" / "Images" / "Normal" / "0.JPG", 1)
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\nobj,train,broken,obj/Data/Images/Normal/0.JPG,\n"
    )
    with pytest.raises(InputError, match=r"1cls\.csv:2: label 'broken' is not normal or anomaly"):
        load_dataset("visa", tmp_path, DataOptions(split="csv:1cls"))


# The real files in ../shared/data (their README gives these counts).


def total_counts(data):
    totals = Counter()
    for counts in data.class_counts().values():
        totals.update(counts)
    return totals


def neu_counts(data):
    # Validation is its own split here, so every image is counted once.
    return total_counts(data)


def test_real_neu_folder_has_six_balanced_classes():
    data = load_dataset("folder", shared_path("neu_det", "images"), DataOptions(image_size=32))
    assert neu_counts(data) == {
        name: 300
        for name in (
            "crazing",
            "inclusion",
            "patches",
            "pitted_surface",
            "rolled-in_scale",
            "scratches",
        )
    }


def test_real_neu_coco_labels_match_the_folders():
    data = load_dataset("mvtec3d-objects", shared_path("neu_det"), DataOptions(image_size=32))
    assert set(neu_counts(data).values()) == {300}
    assert len(data.splits["train"]) == 1260 and len(data.splits["val"]) == 180


def test_real_magnetic_tile_visa_counts_and_official_csv():
    root = shared_path("magnetic_tile_visa")
    paper = load_dataset("visa", root, DataOptions(image_size=32))
    counts = Counter()
    for split in ("train", "val", "test"):
        counts.update(paper.class_counts()[split])
    assert counts == {"normal": 952, "anomaly": 392}
    # the study's 80/20, with a tenth of training held out for validation
    assert len(paper.splits["test"]) == 268 and len(paper.splits["val"]) == 107
    one_class = load_dataset("visa", root, DataOptions(image_size=32, split="csv:1cls"))
    assert one_class.class_counts()["train"] == {"normal": 770, "anomaly": 0}
    assert one_class.class_counts()["val"] == {"normal": 86, "anomaly": 0}


def test_official_visa_split_files_parse():
    from sparsebench.data.assemble import read_split_csv

    rows = read_split_csv(shared_path("visa_split_csv", "1cls.csv"))
    assert len(rows) == 10821
    assert {row["object"] for row in rows} >= {"candle", "pcb1", "macaroni1", "fryum"}
    assert {row["label"] for row in rows} == {"normal", "anomaly"}


def test_elpv_from_its_package():
    pytest.importorskip("elpv_dataset", reason="elpv-dataset (the demo extra) is not installed")
    data = load_dataset("elpv", None, DataOptions(image_size=32))
    assert sum(total_counts(data).values()) == 2624
    four = load_dataset(
        "elpv", None, DataOptions(image_size=32, loader_options=ElpvOptions(elpv_classes=4))
    )
    assert four.class_names == ["p=0", "p=1/3", "p=2/3", "p=1"]

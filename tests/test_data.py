import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sparsebench.data import BatchLoader, load_dataset
from sparsebench.data.medmnist import load_medmnist_npz
from sparsebench.errors import InputError


def write_npz(path, grey=False, counts=(30, 10, 12), classes=2, size=28, **override):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        shape = (n, size, size) if grey else (n, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % classes).astype(np.uint8).reshape(-1, 1)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_grey_binary_medmnist_file_loads_as_nchw(tmp_path):
    path = write_npz(tmp_path / "pneumonia_like.npz", grey=True)
    data = load_dataset("medmnist", path)
    train = data.splits["train"]
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous()
    assert data.class_names == ["0", "1"]
    assert data.class_counts()["train"] == {"0": 15, "1": 15}


def test_rgb_file_is_transposed_from_nhwc(tmp_path):
    path = write_npz(tmp_path / "rgb.npz")
    raw = np.load(path)["train_images"]
    data = load_medmnist_npz(path)
    assert torch.equal(data.splits["train"].images[3, 2], torch.from_numpy(raw[3, :, :, 2]))


def test_extra_keys_are_ignored(tmp_path):
    path = write_npz(tmp_path / "extra.npz", train_names=np.array(["a", "b"]))
    assert load_medmnist_npz(path).num_classes == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"val_labels": None}, "missing key"),
        ({"test_labels": np.zeros((5, 1), np.uint8)}, "12 images but test_labels has 5"),
        ({"train_labels": np.full((30, 1), 9, np.uint8)}, "out of range for 8 classes"),
        ({"val_images": np.zeros((10, 28, 28, 3), np.float32)}, "dtype float32"),
        ({"train_labels": np.zeros((30, 3), np.uint8)}, "multi-label"),
    ],
)
def test_bad_npz_contents_name_the_file_and_the_problem(tmp_path, override, message):
    path = write_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(InputError, match=message) as error:
        load_dataset("bloodmnist", path)
    assert str(path) in str(error.value)


def test_truncated_and_non_npz_files_are_refused(tmp_path):
    good = write_npz(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(InputError, match="truncated.npz"):
        load_dataset("medmnist", truncated)
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    with pytest.raises(InputError, match="notes.npz"):
        load_dataset("medmnist", text)


def test_unknown_data_set_and_missing_path_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_dataset("bloodmnist", tmp_path / "absent.npz")


def test_batches_are_normalised_contiguous_and_cover_every_sample(tmp_path):
    data = load_medmnist_npz(write_npz(tmp_path / "d.npz"))
    train = data.splits["train"]
    loader = BatchLoader(train, data.mean, data.std, 7, torch.device("cpu"), shuffle=True)
    seen = []
    for x, y in loader:
        assert x.is_contiguous() and x.dtype == torch.float32
        seen.append(y)
    assert len(seen) == 5 and sorted(torch.cat(seen).tolist()) == sorted(train.labels.tolist())
    x, _ = next(iter(BatchLoader(train, data.mean, data.std, 30, torch.device("cpu"))))
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_adapting_size_and_channels(tmp_path):
    data = load_medmnist_npz(write_npz(tmp_path / "g.npz", grey=True))
    adapted = data.adapted(32, 3)
    images = adapted.splits["train"].images
    assert images.shape == (30, 3, 32, 32) and images.is_contiguous()
    assert torch.equal(images[:, 0], images[:, 2])


def test_odd_batches_from_an_nhwc_file_train_in_a_child_process(tmp_path):
    """Regression: torch 2.13.0's oneDNN backward segfaults on channels-last views with a
    batch of 61 (shared/repro/onednn_batch61_segfault.py). Our batches are contiguous."""
    path = write_npz(tmp_path / "odd.npz", counts=(61 * 3, 10, 10), classes=8)
    script = textwrap.dedent(
        f"""
        import torch, torch.nn.functional as F
        from sparsebench.data import BatchLoader
        from sparsebench.data.medmnist import load_medmnist_npz
        from sparsebench.models import build_model
        data = load_medmnist_npz({str(path)!r})
        model = build_model("resnet18", num_classes=8, image_size=28, width=0.125)
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        split = data.splits["train"]
        for _ in range(6):
            for x, y in BatchLoader(split, data.mean, data.std, 61, torch.device("cpu"), True):
                opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
        print("trained")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained" in result.stdout


def test_real_bloodmnist_style_file_has_the_documented_split(bloodmnist_like):
    data = load_dataset("bloodmnist", bloodmnist_like)
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": 11965,
        "val": 1708,
        "test": 3419,
    }
    assert data.num_classes == 8 and data.channels == 3 and data.image_size == 28


def test_flip_augmentation_mirrors_some_samples_and_is_off_by_default(tmp_path):
    data = load_medmnist_npz(write_npz(tmp_path / "f.npz", counts=(64, 10, 10)))
    split = data.splits["train"]
    plain, _ = next(iter(BatchLoader(split, data.mean, data.std, 64, torch.device("cpu"))))
    flipped, _ = next(
        iter(BatchLoader(split, data.mean, data.std, 64, torch.device("cpu"), augment="flip"))
    )
    mirrored = [bool(torch.equal(flipped[i], plain[i].flip(-1))) for i in range(64)]
    unchanged = [bool(torch.equal(flipped[i], plain[i])) for i in range(64)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 15 < sum(mirrored) < 49
    assert flipped.is_contiguous()


def test_standard_augmentation_shifts_each_image_with_a_reflected_border(tmp_path):
    """Every augmented image is its original, maybe mirrored, moved by at most an eighth
    of its side (3 pixels at 28) in each direction, the border filled by reflection:
    checked against every such candidate made by hand."""
    data = load_medmnist_npz(write_npz(tmp_path / "s.npz", counts=(32, 10, 10)))
    split = data.splits["train"]
    device = torch.device("cpu")
    plain, _ = next(iter(BatchLoader(split, data.mean, data.std, 32, device)))
    loader = BatchLoader(split, data.mean, data.std, 32, device, augment="standard", seed=3)
    shifted, _ = next(iter(loader))
    assert shifted.shape == plain.shape and shifted.is_contiguous()
    moves = []
    for image, original in zip(shifted, plain, strict=True):
        found = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(-3, 4)
            for dx in range(-3, 4)
            if torch.equal(image, _moved(original.flip(-1) if flip else original, dy, dx))
        ]
        assert found, "an image that is no shift of its original"
        moves.append(found[0])
    assert len({move[1:] for move in moves}) > 5  # the offsets differ from image to image
    again, _ = next(
        iter(BatchLoader(split, data.mean, data.std, 32, device, augment="standard", seed=3))
    )
    assert torch.equal(again, shifted)  # the loader's generator decides, as for a resumed run


def _moved(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`image` shifted by (dy, dx), its border reflected, written out index by index."""
    size = image.shape[-1]

    def reflect(i: int) -> int:
        return -i if i < 0 else 2 * (size - 1) - i if i >= size else i

    rows = [reflect(r + dy) for r in range(size)]
    cols = [reflect(c + dx) for c in range(size)]
    return image[:, rows][:, :, cols]

"""Classifying new images with a finished run: its compact network (or an exported ONNX
model), fed exactly as its training data was (decoded size, channels, resizing and the
normalisation of its training split, all stored with the run)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from sparsebench.data.assemble import IMAGE_SUFFIXES
from sparsebench.data.dataset import adapt_images
from sparsebench.data.images import decode_image
from sparsebench.data.registry import dataset_spec
from sparsebench.data.settings import data_options_of
from sparsebench.deploy.load import TrainedRun
from sparsebench.errors import InputError


@dataclass(frozen=True)
class Preprocessing:
    """How a run's training images were made, so a new image is made the same way."""

    decode_size: int
    channels: int
    image_size: int
    mean: torch.Tensor
    std: torch.Tensor
    classes: list[str]
    max_pixels: int

    @classmethod
    def of_run(cls, run: TrainedRun) -> Preprocessing:
        config, data = run.config, run.data
        channels, image_size, _ = data["image_shape"]
        if "mean" in data:
            mean, std = data["mean"], data["std"]
        else:
            warnings.warn(
                f"run {run.run_id} was stored before runs kept their normalisation: "
                "reading its training data for it",
                stacklevel=2,
            )
            dataset = run.dataset()
            mean, std = dataset.mean.tolist(), dataset.std.tolist()
        options = data_options_of(config)
        arrays = dataset_spec(config["dataset"]).arrays
        return cls(
            decode_size=image_size if arrays else options.decode_size,
            channels=channels,
            image_size=image_size,
            mean=torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
            std=torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
            classes=list(data["classes"]),
            max_pixels=options.max_image_pixels,
        )

    def decode(self, source: Path | BinaryIO, name: str | None = None) -> np.ndarray:
        """(C, H, W) uint8 at the decoded size, before the run's own adaptation; `source`
        a file, or the bytes of an upload (named `name` in errors)."""
        pixels = decode_image(source, self.decode_size, self.channels, self.max_pixels, name)
        return pixels.transpose(2, 0, 1)

    def batch(self, images: list[np.ndarray]) -> torch.Tensor:
        """Decoded images as the network's normalised float input."""
        stacked = adapt_images(
            torch.from_numpy(np.stack(images)), self.image_size, self.channels
        ).float()
        return ((stacked / 255.0 - self.mean) / self.std).contiguous()


def image_paths(images: Sequence[Path], folder: Path | None) -> list[Path]:
    """The files named, then every image file under `folder` (sorted)."""
    paths = list(images)
    if folder is not None:
        if not folder.is_dir():
            raise InputError(f"{folder}: --folder is not a folder")
        paths += sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    if not paths:
        raise InputError("no images: name image files or give --folder DIR")
    return paths


def torch_classifier(run: TrainedRun) -> Callable[[torch.Tensor], torch.Tensor]:
    """The run's compact network (the masked one where it cannot be compacted)."""
    from sparsebench.channels import UngroupableNetwork
    from sparsebench.deploy.compact import compact_model

    try:
        network = compact_model(run.model, run.input_shape)
    except UngroupableNetwork:
        network = run.model.eval()

    @torch.inference_mode()
    def logits(batch: torch.Tensor) -> torch.Tensor:
        return network(batch)

    return logits


def onnx_classifier(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    from sparsebench.deploy.export import onnx_session

    if not path.is_file():
        raise InputError(f"{path}: --onnx model does not exist")
    try:
        session = onnx_session(path)
    except Exception as error:  # onnxruntime raises its own types for a bad file
        raise InputError(f"{path}: not an ONNX model ONNX Runtime can load ({error})") from None
    name = session.get_inputs()[0].name

    def logits(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: batch.numpy()})[0])

    return logits


def predict(
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    classify: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 64,
    top_k: int = 3,
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per image, in order: its class, class index, probability and the top
    `top_k` classes; an image that cannot be decoded gets a row with its error. With a
    `reference` classifier, each row also holds the class it gives the same input
    (`reference_class_index`): an ONNX model's agreement, without decoding twice."""
    top_k = min(top_k, len(preprocessing.classes))
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        decoded: list[np.ndarray] = []
        rows: list[dict[str, Any]] = []
        for path in chunk:
            try:
                decoded.append(preprocessing.decode(path))
                rows.append({"path": str(path), "error": None})
            except InputError as error:
                rows.append({"path": str(path), "error": str(error)})
        if decoded:
            batch = preprocessing.batch(decoded)
            probabilities = torch.softmax(classify(batch).float(), dim=1)
            best = probabilities.topk(top_k, dim=1)
            agreed = None if reference is None else reference(batch).argmax(dim=1).tolist()
            good = iter(range(len(decoded)))
            for row in rows:
                if row["error"] is not None:
                    continue
                i = next(good)
                indices, values = best.indices[i].tolist(), best.values[i].tolist()
                row.update(
                    {
                        "class": preprocessing.classes[indices[0]],
                        "class_index": indices[0],
                        "probability": values[0],
                        "top_k": [
                            {"class": preprocessing.classes[k], "probability": p}
                            for k, p in zip(indices, values, strict=True)
                        ],
                    }
                )
                if agreed is not None:
                    row["reference_class_index"] = agreed[i]
        yield from rows

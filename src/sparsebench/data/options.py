"""Options every loader understands; a loader ignores those that do not apply to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparsebench.data.images import DEFAULT_MAX_IMAGE_PIXELS

# Decoded image sets are stored at this size unless --image-size says otherwise: small
# enough for CPU runs on an edge box, large enough for the defects in the shared data.
DEFAULT_IMAGE_SIZE = 64


@dataclass(frozen=True)
class DataOptions:
    image_size: int | None = None
    split: str = "paper"
    seed: int = 0
    subset_size: int | None = None
    visa_objects: tuple[str, ...] | None = None
    label_rule: str = "first"
    elpv_classes: int = 2
    cache_dir: Path | None = None
    download: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    allow_external_paths: bool = False

    @property
    def decode_size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE

    @classmethod
    def from_run_config(
        cls, config: Mapping[str, Any], cache_dir: Path | None = None, download: bool = False
    ) -> DataOptions:
        """The options a run's config (its fields, as stored) asks of its data set."""
        objects = config.get("visa_objects")
        return cls(
            image_size=config.get("image_size"),
            split=config.get("split", "paper"),
            seed=config.get("seed", 0),
            subset_size=config.get("subset_size"),
            visa_objects=tuple(objects) if objects else None,
            label_rule=config.get("label_rule", "first"),
            elpv_classes=config.get("elpv_classes", 2),
            cache_dir=cache_dir,
            download=download,
            max_image_pixels=config.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
            allow_external_paths=config.get("allow_external_paths", False),
        )

"""Options every loader understands; a loader ignores those that do not apply to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    @property
    def decode_size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE

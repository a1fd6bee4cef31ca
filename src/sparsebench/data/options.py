"""What a loader reads: the settings every loader understands (`LoaderSettings`), the
base of a loader's own options (`LoaderOptions`, each declared in its loader's module),
and `DataOptions`, what a loader is handed. How a run gives them is `data.settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sparsebench.data.images import DEFAULT_MAX_IMAGE_PIXELS

# Decoded image sets are stored at this size unless --image-size says otherwise: small
# enough for CPU runs on an edge box, large enough for the defects in the shared data.
DEFAULT_IMAGE_SIZE = 64


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoaderOptions(_Settings):
    """A loader's own settings: a data set registered with a subclass of this reads them
    from `data_options:` (`--data-option KEY=VALUE`); every other data set refuses them."""


class LoaderSettings(_Settings):
    """What every loader reads."""

    image_size: int | None = Field(None, ge=28, le=224, description="default: the data's size")
    split: str = Field("paper", description="paper, csv:1cls, csv:2cls_highshot or csv:FILE")
    validation: Literal["held-out", "test"] = Field(
        "held-out",
        description="data that brings no validation split: held-out carves --val-share of "
        "training out for it (stratified, seeded); test validates on the test split, as the "
        "study did, so that model selection sees the test set",
    )
    val_share: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="share of each class's training images held out for validation where "
        "the data brings no validation split",
    )
    subset_size: int | None = Field(
        None, ge=1, le=10**9, description="stratified subset of the data"
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_IMAGE_PIXELS,
        ge=1,
        le=10**12,
        description="largest image (width x height) decoded; a header claiming more is refused",
    )
    allow_external_paths: bool = Field(
        False, description="read annotation and CSV entries that lie outside the data's root"
    )

    @field_validator("split")
    @classmethod
    def _split(cls, value: str) -> str:
        if value != "paper" and not (value.startswith("csv:") and len(value) > 4):
            raise ValueError(f"expected paper or csv:NAME_OR_FILE, got {value!r}")
        return value


Own = TypeVar("Own", bound=LoaderOptions)


class DataOptions(LoaderSettings):
    """What a loader is handed: the settings every loader reads, its own, and how this
    process gets the data."""

    loader_options: LoaderOptions | None = Field(None, description="the loader's own settings")
    seed: int = Field(0, description="seed of the subset and split draws")
    cache_dir: Path | None = Field(None, description="decoded-image cache")
    download: bool = Field(False, description="MedMNIST: fetch the published file")

    @property
    def decode_size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE

    def own(self, options: type[Own]) -> Own:
        """The loader's own settings as its options model, its defaults when none given."""
        if isinstance(self.loader_options, options):
            return self.loader_options
        return options()

"""The data settings of a run, each declared once: the CLI flags, the YAML keys of a run
config and of a sweep's data-set entries, and the errors when a value is wrong all come
from these models. Settings every loader reads are in `LoaderSettings`; a loader's own
settings are in its options model (named when the loader is registered), and setting
one for a data set whose loader does not read it is refused rather than ignored."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sparsebench.data.images import DEFAULT_MAX_IMAGE_PIXELS

# Decoded image sets are stored at this size unless --image-size says otherwise: small
# enough for CPU runs on an edge box, large enough for the defects in the shared data.
DEFAULT_IMAGE_SIZE = 64


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CocoOptions(_Settings):
    """MVTec 3D objects (COCO annotations)."""

    label_rule: Literal["first", "majority", "largest-area"] = Field(
        "first", description="COCO: the label of an image with several annotations"
    )


class VisaOptions(_Settings):
    visa_objects: list[str] | None = Field(None, description="VisA objects (default: all)")


class ElpvOptions(_Settings):
    elpv_classes: Literal[2, 4] = Field(2, description="ELPV: 2 (defect >= 0.5) or 4 classes")


# Every loader's own options model; a new loader with options of its own adds it here.
LOADER_OPTIONS: tuple[type[BaseModel], ...] = (CocoOptions, VisaOptions, ElpvOptions)


class LoaderSettings(CocoOptions, VisaOptions, ElpvOptions):
    """What a loader reads: the settings every loader understands and each loader's own."""

    image_size: int | None = Field(None, ge=28, le=224, description="default: the data's size")
    split: str = Field("paper", description="paper, csv:1cls, csv:2cls_highshot or csv:FILE")
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


class DataSettings(LoaderSettings):
    """A run's data: a sweep's entry under `datasets:` sets exactly these."""

    dataset: str = Field(description="data set name, e.g. bloodmnist (see README, Data)")
    data_path: str | None = Field(None, description="file or folder of the data set")
    data_name: str | None = Field(
        None,
        min_length=1,
        max_length=80,
        description="the data's own name in figures and tables (default: the file's or "
        "folder's name, e.g. neu_det; the loader's name is its layout)",
    )
    positive_class: str | None = Field(
        None,
        min_length=1,
        max_length=80,
        description="two-class data: the class AUROC and average precision take as positive "
        "(default: the one named as a defect, such as anomaly, else the rarer in training)",
    )
    in_channels: Literal[1, 3] | None = Field(None, description="default: the data's channels")
    augment: bool = Field(False, description="random horizontal flips (the study used none)")

    @model_validator(mode="after")
    def _options_of_its_loader(self) -> DataSettings:
        from sparsebench.data.registry import dataset_options

        check_loader_options(self.dataset, dataset_options(self.dataset), self.model_dump())
        return self


def check_loader_options(
    dataset: str, own: type[BaseModel] | None, values: Mapping[str, Any]
) -> None:
    """Refuse a loader's own setting given (not at its default) for a data set whose
    loader does not read it: `elpv_classes: 4` on bloodmnist would otherwise do nothing."""
    for options in LOADER_OPTIONS:
        if options is own:
            continue
        for name, field in options.model_fields.items():
            if name in values and values[name] != field.get_default():
                raise ValueError(f"{name} is not a setting of data set {dataset!r}")


class DataOptions(LoaderSettings):
    """What a loader is handed: its settings, and how this process gets the data."""

    seed: int = Field(0, description="seed of the subset and split draws")
    cache_dir: Path | None = Field(None, description="decoded-image cache")
    download: bool = Field(False, description="MedMNIST: fetch the published file")

    @property
    def decode_size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE

    @classmethod
    def from_run_config(
        cls, config: Mapping[str, Any], cache_dir: Path | None = None, download: bool = False
    ) -> DataOptions:
        """The options a run's config (its fields, as stored by any release) asks of its
        data set; a setting the release did not have keeps its default."""
        settings = {
            name: config[name]
            for name in LoaderSettings.model_fields
            if config.get(name) is not None
        }
        return cls(**settings, seed=config.get("seed", 0), cache_dir=cache_dir, download=download)

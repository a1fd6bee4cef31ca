"""The data settings of a run, each declared once: the CLI flags, the YAML keys of a run
config and of a sweep's data-set entries, and the errors when a value is wrong all come
from these models. A loader's own settings are given under `data_options:` and checked
by the options model its data set was registered with; one given for a data set whose
loader does not read it is refused rather than ignored."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sparsebench.data.augment import Augment
from sparsebench.data.options import DataOptions, LoaderSettings
from sparsebench.data.registry import dataset_options
from sparsebench.errors import InputError, validation_message

# The loaders' own settings that earlier releases took as run settings of their own
# (`label_rule: majority` beside `dataset:`): still accepted there, and still hashed
# there by run ids, so that stored runs keep theirs. Defaults as those releases had them.
FLAT_LOADER_SETTINGS = {"label_rule": "first", "visa_objects": None, "elpv_classes": 2}


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
    augment: Augment = Field(
        "standard",
        description="training images: standard (random flips and shifts of up to an eighth "
        "of the side), flip (random horizontal flips) or none (the study's)",
    )
    data_options: dict[str, Any] = Field(
        default_factory=dict, description="the data set's own settings (its loader's), KEY: VALUE"
    )

    @field_validator("augment", mode="before")
    @classmethod
    def _released_augment(cls, value: Any) -> Any:
        """An earlier release's `augment: true` was flips alone; `false`, none."""
        return {True: "flip", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="before")
    @classmethod
    def _flat_loader_settings(cls, values: Any) -> Any:
        """An earlier release's `label_rule: majority` is `data_options: {label_rule:
        majority}`; one left at its default for a data set that does not read it (as a
        stored config holds every setting) is dropped."""
        if not isinstance(values, dict) or not FLAT_LOADER_SETTINGS.keys() & values.keys():
            return values
        values = dict(values)
        given = dict(values.get("data_options") or {})
        own = dataset_options(str(values.get("dataset")))
        for key in FLAT_LOADER_SETTINGS.keys() & values.keys():
            value = values.pop(key)
            if own is None or key not in own.model_fields:
                if value in (None, FLAT_LOADER_SETTINGS[key], []):
                    continue
                raise ValueError(f"{key} is not a setting of data set {values.get('dataset')!r}")
            if key in given and given[key] != value:
                raise ValueError(
                    f"{key} is given twice, as {value!r} and as data_options {key}: "
                    f"{given[key]!r}; give it once"
                )
            given[key] = value
        values["data_options"] = given
        return values

    @model_validator(mode="after")
    def _options_of_its_loader(self) -> DataSettings:
        """Checked by the loader's options model, and kept as the values that differ from
        its defaults: the same run has one id however its options are written."""
        own = dataset_options(self.dataset)
        for key in self.data_options:
            if own is None or key not in own.model_fields:
                raise ValueError(f"{key} is not a setting of data set {self.dataset!r}")
        if own is not None:
            try:
                options = own(**self.data_options)
            except ValidationError as error:
                raise ValueError(validation_message(error)) from None
            kept = options.model_dump(mode="json", exclude_defaults=True)
            object.__setattr__(self, "data_options", kept)
        return self


def data_options_of(
    config: Mapping[str, Any], cache_dir: Path | None = None, download: bool = False
) -> DataOptions:
    """What a run's loader is handed, from the run's config as stored by any release (a
    setting the release did not have keeps its default)."""
    try:
        settings = DataSettings(
            **{key: value for key, value in config.items() if key in _DATA_KEYS}
        )
    except ValidationError as error:
        raise InputError(validation_message(error, "stored run config")) from None
    own = dataset_options(settings.dataset)
    common = {name: getattr(settings, name) for name in LoaderSettings.model_fields}
    return DataOptions(
        **common,
        loader_options=own(**settings.data_options) if own is not None else None,
        seed=config.get("seed", 0),
        cache_dir=cache_dir,
        download=download,
    )


_DATA_KEYS = frozenset({*DataSettings.model_fields, *FLAT_LOADER_SETTINGS})

"""The configuration of one training run, validated by pydantic; its hash is the run id."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from sparsebench.data.options import DataOptions
from sparsebench.data.settings import FLAT_LOADER_SETTINGS, DataSettings, data_options_of
from sparsebench.models.pretrained import source_digest
from sparsebench.sparsity.methods import (
    MAX_EPOCHS,
    METHODS,
    MOVED_SETTINGS,
    MethodOptions,
    baseline_name,
    scenario_label,
    validate_options,
    with_moved_settings,
)
from sparsebench.sparsity.scenarios import SCENARIOS

# Fields that say where results go, what runs them (a device; an execution, the same
# computation at another cost), what input is trusted, what the data or its defect class
# is called, not what is trained: they are left out of the run id so the same run is
# found again from another place or device, and a stored run keeps its id when such a
# field is added.
# How a run's learning rate moves over training (`train.schedule` computes it) and the
# memory layout it trains in (`train.memory_format` applies it).
Schedule = Literal["constant", "cosine", "step"]
MemoryFormat = Literal["auto", "contiguous", "channels_last"]
MEMORY_FORMATS: tuple[str, ...] = get_args(MemoryFormat)

NOT_IN_RUN_ID = frozenset(
    {
        "device",
        "execution",
        "memory_format",
        "max_image_pixels",
        "allow_external_paths",
        "init_from",
        "preset",  # what it sets is hashed, as the settings it set
        "data_name",
        "positive_class",
    }
)
# A run id hashes the settings version and the settings that differ from their
# defaults, so a setting added later (with a default that keeps what runs computed)
# leaves every stored id unchanged. Version 1, the first release, hashed every setting
# below with its value, defaults included; changing a default bumps the version.
SETTINGS_VERSION = 2
# What training computes, raised by a release that changes it for the same settings (a
# split, a recipe's default, the arithmetic): part of every new run id, so a result
# stored under one numerics is never found again, resumed or pooled as another's.
# 1: every release up to 0.1 (validation was the test split where the data brings no
#    validation split); the results database marks its runs so when it migrates.
# 2: validation held out of training where the data brings none.
NUMERICS = 2
# The defaults a setting had under an earlier numerics: a run of that numerics hashes
# what differs from these, so its id is the one it was stored under.
EARLIER_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {
        "validation": "test",
        "augment": "none",
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup": 0.0,
    }
}
# Presets: the values a run takes for the settings it leaves unset. `recommended` is the
# fields' own defaults (a recipe that trains these networks about as well as the
# literature does); `study` is the study's protocol, for sweeps that reproduce it.
PRESETS: dict[str, dict[str, Any]] = {
    "recommended": {},
    "study": {
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup": 0.0,
        "augment": "none",
        "width": 1.0,
        "epochs": 50,
        "batch_size": 64,
    },
}
FIRST_RELEASE_SETTINGS = (
    "model",
    "width",
    "image_size",
    "in_channels",
    "dataset",
    "data_path",
    "split",
    "subset_size",
    "visa_objects",
    "label_rule",
    "elpv_classes",
    "augment",
    "method",
    "scenario",
    "conv_sparsity",
    "linear_sparsity",
    "swap_fraction",
    "fine_tune_epochs",
    "allocation",
    "include",
    "exclude",
    "epochs",
    "batch_size",
    "eval_batch_size",
    "lr",
    "weight_decay",
    "seed",
)
# What the first release hashed for a moved setting a method does not declare.
FIRST_RELEASE_DEFAULTS = {"swap_fraction": 0.2, "fine_tune_epochs": 0, "allocation": "er"}
MAX_SEED = 2**32 - 1  # numpy's and most tools' seed range; torch's is wider
MAX_BATCH = 65_536


class RunConfig(DataSettings):
    """Everything that decides a run's result. Defaults are the study's protocol. The
    data settings are declared in `DataSettings`, the method's own in its options model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        "resnet18",
        description="vgg16, resnet18 (the study's), resnet34, resnet50, mobilenet_v2, "
        "mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0, or a registered model",
    )
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier; 1 is the real model")
    init_from: str | None = Field(
        None,
        description="start from these weights: a torchvision-format state dict file, or "
        "run:RUN_ID (another run's final weights)",
    )
    init_digest: str | None = Field(
        None,
        description="the content hash of init_from's file (set from it)",
        json_schema_extra={"flag": False},  # computed, never typed
    )

    method: str = Field(baseline_name(), description="pruning method (see README, The methods)")
    scenario: str | None = Field(
        None, description="uniform (0.8, 0.8), mixed (0.5, 0.8), linear-only (0, 0.8)"
    )
    conv_sparsity: float | None = Field(
        None, description="fraction of conv units removed (instead of a scenario)"
    )
    linear_sparsity: float | None = Field(
        None, description="fraction of linear units removed (instead of a scenario)"
    )
    # The moved settings (see `MOVED_SETTINGS`): given here, they join the method's
    # options where it declares them and are None once validated.
    swap_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="in, set: share of alive units swapped at an update (default 0.2; "
        "the method option swap_fraction)",
    )
    fine_tune_epochs: int | None = Field(
        None,
        ge=0,
        le=MAX_EPOCHS,
        description="post: epochs of training after pruning (default 0; the method option "
        "fine_tune_epochs)",
    )
    allocation: Literal["er", "erk"] | None = Field(
        None,
        description="set, static, rigl: spread of the target over layers (default er; the "
        "method option allocation)",
    )
    conv_granularity: Literal["filter", "weight"] = Field(
        "filter", description="a conv's unit: a whole filter (the study) or a single weight"
    )
    linear_granularity: Literal["weight", "neuron"] = Field(
        "weight", description="a linear layer's unit: a single weight (the study) or a neuron"
    )
    include: list[str] | None = Field(
        None, description="prune only layers matching, e.g. 'layer4.*'"
    )
    exclude: list[str] | None = Field(None, description="never prune layers matching, e.g. fc")
    method_options: dict[str, Any] = Field(
        default_factory=dict, description="the method's own settings, KEY: VALUE"
    )

    preset: Literal["recommended", "study"] = Field(
        "recommended",
        description="values for the training settings left unset: recommended (AdamW 1e-3, "
        "weight decay 0.05, cosine with warm-up, standard augmentation) or study (the "
        "study's constant Adam 1e-4, no augmentation, width 1, 50 epochs, batch 64)",
    )
    epochs: int = Field(50, ge=1, le=MAX_EPOCHS, description="training epochs (study: 50)")
    batch_size: int = Field(64, ge=1, le=MAX_BATCH, description="batch size (study: 64)")
    eval_batch_size: int = Field(256, ge=1, le=MAX_BATCH, description="batch size of evaluation")
    optimizer: Literal["adamw", "adam", "sgd"] = Field(
        "adamw",
        description="adamw (decoupled weight decay), adam (the study's; weight decay as an L2 "
        "term) or sgd (momentum 0.9, Nesterov)",
    )
    # Above 1e30 Adam's step (lr over its bias correction) no longer fits a float32.
    lr: float = Field(
        1e-3, gt=0, le=1e30, allow_inf_nan=False, description="base learning rate (study: 1e-4)"
    )
    weight_decay: float = Field(
        0.05, ge=0, allow_inf_nan=False, description="weight decay (study: 0)"
    )
    schedule: Schedule = Field(
        "cosine",
        description="learning rate over training: cosine (to zero), step (a tenth from half-way, "
        "a hundredth from three quarters) or constant (the study's)",
    )
    warmup: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="share of training's steps over which the learning rate rises linearly",
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed")
    numerics: int = Field(
        NUMERICS,
        ge=1,
        le=NUMERICS,
        description="what training computes (raised by a release that changes it)",
        json_schema_extra={"flag": False},  # set by the release, never typed
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    execution: Literal["compact", "masked"] = Field(
        "compact",
        description="compact: train the smaller network the masks leave (the same "
        "computation, less work); masked: every pruned unit kept in place, as the study did",
    )
    memory_format: MemoryFormat = Field(
        "auto",
        description="the layout convolutions train in: channels_last (NHWC, faster on "
        "CPUs), contiguous (NCHW), or auto (channels_last for float32 on the CPU, where "
        "every convolution of the network can train so)",
    )

    @model_validator(mode="before")
    @classmethod
    def _unset_values(cls, values: Any) -> Any:
        """A run of an earlier numerics takes that numerics' defaults for what it leaves
        unset (its config reads as it trained); a run of today's, its preset's."""
        if isinstance(values, dict):
            numerics = values.get("numerics", NUMERICS)
            preset = values.get("preset", "recommended")
            unset = EARLIER_DEFAULTS.get(numerics, {})
            if preset in PRESETS and numerics == NUMERICS:
                unset = PRESETS[preset]
            values = {**unset, **values}
        return values

    @model_validator(mode="after")
    def _init_digest(self) -> RunConfig:
        """A start's identity is its content (the run id hashes it), not where the file
        lies; a stored config keeps the digest it was trained with."""
        if self.init_from is None:
            object.__setattr__(self, "init_digest", None)
        elif self.init_digest is None:
            object.__setattr__(self, "init_digest", source_digest(self.init_from))
        return self

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown method {value!r} (choose from {', '.join(METHODS)})")
        return value

    @model_validator(mode="after")
    def _method_options(self) -> RunConfig:
        """Checked by the method's own options model, and kept as the values that differ
        from its defaults: the same run has one id however its options are written. The
        moved settings join them where the method declares them."""
        method = METHODS[self.method]
        moved = {key: getattr(self, key) for key in MOVED_SETTINGS}
        given = with_moved_settings(method, self.method_options, moved)
        options = validate_options(method, given)
        object.__setattr__(self, "method_options", options.model_dump(exclude_defaults=True))
        for key in MOVED_SETTINGS:
            object.__setattr__(self, key, None)
        return self

    @property
    def method_settings(self) -> MethodOptions:
        """The method's options, defaults included."""
        return validate_options(METHODS[self.method], self.method_options)

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, value: str | None) -> str | None:
        if value is not None and value not in SCENARIOS:
            raise ValueError(f"unknown scenario {value!r} (choose from {', '.join(SCENARIOS)})")
        return value

    @field_validator("conv_sparsity", "linear_sparsity")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {value}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @model_validator(mode="after")
    def _resolve_sparsity(self) -> RunConfig:
        """Turn the scenario into explicit sparsities. A dense run has none, so that it is
        one run whatever scenario a sweep names. Without either, a pruning method uses the
        study's `mixed` scenario."""
        explicit = self.conv_sparsity is not None or self.linear_sparsity is not None
        if METHODS[self.method].baseline:
            values = {"scenario": None, "conv_sparsity": 0.0, "linear_sparsity": 0.0}
        elif explicit:
            conv, linear = self.conv_sparsity or 0.0, self.linear_sparsity or 0.0
            named = [n for n, t in SCENARIOS.items() if (t.conv, t.linear) == (conv, linear)]
            if self.scenario is not None and self.scenario not in named:
                raise ValueError(
                    f"scenario {self.scenario!r} contradicts conv_sparsity={conv:g}, "
                    f"linear_sparsity={linear:g}: give one or the other"
                )
            # Sparsities that equal a scenario's are that scenario: one run, one id.
            values = {
                "scenario": named[0] if named else None,
                "conv_sparsity": conv,
                "linear_sparsity": linear,
            }
        else:
            scenario = self.scenario or "mixed"
            targets = SCENARIOS[scenario]
            values = {
                "scenario": scenario,
                "conv_sparsity": targets.conv,
                "linear_sparsity": targets.linear,
            }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        return self

    def loader_options(self, cache_dir: Path | None = None, download: bool = False) -> DataOptions:
        """What this run's loader is handed."""
        return data_options_of(self.model_dump(), cache_dir, download)

    @property
    def total_epochs(self) -> int:
        return METHODS[self.method].epochs_trained(self.epochs, self.method_settings)

    @property
    def scenario_label(self) -> str:
        assert self.conv_sparsity is not None and self.linear_sparsity is not None
        return scenario_label(self.method, self.scenario, self.conv_sparsity, self.linear_sparsity)

    def run_id(self) -> str:
        """A short hash of what decides the result (ShrinkBench's idea): the settings
        version and every setting that differs from its default. The same config always
        maps to the same run, so finished work is found again, and a setting added later
        does not change the id of a run that leaves it at its default."""
        defaults = self._hashed_defaults()
        identity = {
            key: value
            for key, value in self.model_dump(exclude=set(NOT_IN_RUN_ID)).items()
            if key not in defaults or value != defaults[key]
        }
        # A moved setting (a method's or a loader's) is hashed where it was a run setting,
        # so that runs keep their ids; one the method does not declare is no longer hashed.
        if self.numerics == 1 and "augment" in identity:
            identity["augment"] = identity["augment"] == "flip"  # hashed as the bool it was
        for nested, moved in (
            ("method_options", MOVED_SETTINGS),
            ("data_options", FLAT_LOADER_SETTINGS),
        ):
            options = dict(identity.pop(nested, {}))
            identity.update({key: options.pop(key) for key in moved if key in options})
            if options:
                identity[nested] = options
        return _digest({"settings_version": SETTINGS_VERSION, **identity})

    def _hashed_defaults(self) -> dict[str, Any]:
        """What a setting is left out of the id at: its default under the run's
        numerics. Numerics 1 is left out, so the ids stored before it existed stand."""
        fields = type(self).model_fields
        defaults = {key: fields[key].get_default(call_default_factory=True) for key in fields}
        return {**defaults, **EARLIER_DEFAULTS.get(self.numerics, {}), "numerics": 1}

    def earlier_run_ids(self) -> tuple[str, ...]:
        """The ids earlier releases gave this same computation (its checkpoint folder
        may be named by one); none for a run of a later numerics, which no earlier
        release trained."""
        return (self.first_release_run_id(),) if self.numerics == 1 else ()

    def first_release_run_id(self) -> str:
        """The id the first release gave this run (every setting hashed, defaults
        included), by which its databases, checkpoint folders and users know it."""
        settings = self.model_dump(include=set(FIRST_RELEASE_SETTINGS))
        settings["augment"] = settings["augment"] == "flip"  # the first release's bool
        for key, default in FIRST_RELEASE_DEFAULTS.items():
            settings[key] = self.method_options.get(key, default)
        for key, default in FLAT_LOADER_SETTINGS.items():
            settings[key] = self.data_options.get(key, default)
        return _digest(settings)


def _digest(identity: dict) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_run_id(config: dict) -> str | None:
    """The current id of a run stored with `config` by any release; None if the stored
    config is not a valid run config."""
    try:
        return RunConfig(**config).run_id()
    except ValueError:
        return None

"""A sweep's settings: the grid of runs a YAML file asks for, validated with errors that
name the file and key, and each of its runs' settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from sparsebench.data.settings import DataSettings
from sparsebench.errors import InputError, validation_message
from sparsebench.settings.federated import FederatedSettings, federated_methods
from sparsebench.settings.reading import read_yaml
from sparsebench.settings.run import MAX_SEED, RunConfig
from sparsebench.sparsity.methods import METHODS
from sparsebench.sparsity.scenarios import SCENARIOS, SparsityTargets

# A sweep's data-set entry sets a run's data settings; its grid lists set these; its
# `training` section sets every other run setting, for all of its runs.
GRID_FIELDS = frozenset({"model", "method", "scenario", "seed", "conv_sparsity", "linear_sparsity"})
DATA_FIELDS = tuple(DataSettings.model_fields)
TRAINING_FIELDS = tuple(
    name for name in RunConfig.model_fields if name not in GRID_FIELDS and name not in DATA_FIELDS
)


def _subset_model(name: str, fields: tuple[str, ...]) -> type[BaseModel]:
    """A model with some of RunConfig's fields (same types and defaults), so a sweep's
    `training` section is checked key by key and never drifts from what a run accepts."""
    return create_model(
        name,
        __config__=ConfigDict(extra="forbid", frozen=True),
        **{
            field: (RunConfig.model_fields[field].annotation, RunConfig.model_fields[field])
            for field in fields
        },
    )


TrainingSpec = _subset_model("TrainingSpec", TRAINING_FIELDS)


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def _distinct(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError(f"seeds repeat: {values}")
    return values


class DataEntry(DataSettings):
    """A sweep's data set, with the training settings that differ for it (a small set
    needs more epochs than a large one): `training:` under the entry overrides the
    sweep's `training:` for its runs, and `seeds:` the sweep's seeds (a large set that
    the machine can afford only once)."""

    training: TrainingSpec = Field(default_factory=TrainingSpec)  # type: ignore[valid-type]
    seeds: list[Seed] | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _name_is_data_name(cls, values: Any) -> Any:
        """`name:` in a data entry is its `data_name` (the sweep's own `name:` is the
        sweep's)."""
        if isinstance(values, dict) and "name" in values:
            if "data_name" in values:
                raise ValueError("give the data's name once: `name` or `data_name`")
            values = {**values, "data_name": values["name"]}
            del values["name"]
        return values

    _distinct_seeds = field_validator("seeds")(lambda cls, values: values and _distinct(values))


Fraction = Annotated[float, Field(ge=0, lt=1)]


class SparsityGrid(BaseModel):
    """Sparsity as a grid axis: `conv` and `linear` lists give every pair of the two,
    `both` gives each value for conv and linear alike. Pairs equal to a named scenario
    are that scenario's runs (one run, one id)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conv: list[Fraction] | None = Field(None, min_length=1)
    linear: list[Fraction] | None = Field(None, min_length=1)
    both: list[Fraction] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> SparsityGrid:
        if self.both is not None and (self.conv is not None or self.linear is not None):
            raise ValueError("give `both`, or `conv` and `linear`, not all three")
        if self.both is None and (self.conv is None or self.linear is None):
            raise ValueError("give `both`, or `conv` and `linear` together")
        return self

    def targets(self) -> list[SparsityTargets]:
        if self.both is not None:
            pairs = [(value, value) for value in self.both]
        else:
            assert self.conv is not None and self.linear is not None
            pairs = [(conv, linear) for conv in self.conv for linear in self.linear]
        return [SparsityTargets(conv, linear) for conv, linear in dict.fromkeys(pairs)]


class FederatedSweep(BaseModel):
    """A sweep's `federated:` block: every run of the grid trained federated (`sparsebench
    federate`) once per partition listed, a Dirichlet partition once per alpha listed;
    the other keys are `federate`'s settings (clients, rounds, clients_per_round,
    strategy, payload, mask_every, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    partition: list[str] = Field(default_factory=lambda: ["dirichlet"], min_length=1)
    alpha: list[float] = Field(default_factory=lambda: [0.5], min_length=1)

    @field_validator("partition", "alpha", mode="before")
    @classmethod
    def _one_or_a_list(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]

    @model_validator(mode="after")
    def _valid(self) -> FederatedSweep:
        self.federations()
        return self

    def federations(self) -> list[FederatedSettings]:
        """Every federation of the block, each validated."""
        default_alpha = FederatedSettings.model_fields["alpha"].default
        chosen = []
        for partition in self.partition:
            alphas = self.alpha if partition == "dirichlet" else [default_alpha]
            for alpha in alphas:
                values = {**(self.model_extra or {}), "partition": partition, "alpha": alpha}
                try:
                    settings = FederatedSettings(**values)
                except ValidationError as error:
                    raise ValueError(validation_message(error).replace("\n", " ")) from None
                if settings not in chosen:
                    chosen.append(settings)
        return chosen


class SweepConfig(BaseModel):
    """A grid of runs: every model x data set x method x scenario x seed, with shared
    training settings. A dense run ignores the scenarios (it is one run per model, data
    set and seed); `post` is derived from that dense run when both are in the grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "sweep"
    models: list[str] = Field(min_length=1)
    datasets: list[DataEntry] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    scenarios: list[str] = Field(default_factory=lambda: ["mixed"], min_length=1)
    sparsities: SparsityGrid | None = None
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    training: TrainingSpec = Field(default_factory=TrainingSpec)  # type: ignore[valid-type]
    # Training settings that differ for a model (VGG16, without batch normalisation,
    # needs more epochs than ResNet18): over `training`, under a data set's own.
    model_training: dict[str, TrainingSpec] = Field(default_factory=dict)  # type: ignore[valid-type]
    federated: FederatedSweep | None = None

    @model_validator(mode="after")
    def _model_training_of_its_models(self) -> SweepConfig:
        strangers = [name for name in self.model_training if name not in self.models]
        if strangers:
            raise ValueError(
                f"model_training: {strangers[0]!r} is not one of the sweep's models "
                f"({', '.join(self.models)})"
            )
        return self

    @model_validator(mode="after")
    def _federated_methods(self) -> SweepConfig:
        if self.federated is not None:
            refused = [m for m in self.methods if m not in federated_methods()]
            if refused:
                raise ValueError(
                    f"methods: {refused[0]!r} does not train federated yet (federated: "
                    f"{', '.join(federated_methods())})"
                )
        return self

    @field_validator("models")
    @classmethod
    def _known_models(cls, values: list[str]) -> list[str]:
        from sparsebench.models.registry import model_spec

        for value in values:
            try:
                model_spec(value)  # a registered model, or package.module:factory
            except InputError as error:
                raise ValueError(str(error)) from None
        return _all_known(values, values, "model")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, values: list[str]) -> list[str]:
        return _all_known(values, list(METHODS), "method")

    @field_validator("scenarios")
    @classmethod
    def _known_scenarios(cls, values: list[str]) -> list[str]:
        return _all_known(values, list(SCENARIOS), "scenario")

    _distinct_seeds = field_validator("seeds")(lambda cls, values: _distinct(values))

    def seeds_of(self, dataset_index: int) -> list[int]:
        """The seeds a data set's runs take: its own, else the sweep's."""
        return self.datasets[dataset_index].seeds or self.seeds

    def points(self) -> list[str | SparsityTargets]:
        """The grid's sparsity axis: the named scenarios, then the sparsity pairs. With
        `sparsities` and no `scenarios`, the pairs alone (not the default `mixed` too)."""
        named = self.scenarios
        if self.sparsities is not None and "scenarios" not in self.model_fields_set:
            named = []
        return [*named, *(self.sparsities.targets() if self.sparsities else [])]

    def run_config(
        self,
        model: str,
        dataset_index: int,
        method: str,
        point: str | SparsityTargets | None,
        seed: int,
    ) -> RunConfig:
        """One run of the grid; `point` a scenario name or sparsity targets."""
        if isinstance(point, SparsityTargets):
            where: dict[str, Any] = {
                "conv_sparsity": point.conv,
                "linear_sparsity": point.linear,
            }
        else:
            where = {"scenario": point}
        entry = self.datasets[dataset_index]
        data = entry.model_dump(exclude_unset=True, exclude={"training", "seeds"})
        own = self.model_training.get(model)
        training = {
            **self.training.model_dump(exclude_unset=True),
            **(own.model_dump(exclude_unset=True) if own is not None else {}),
            **entry.training.model_dump(exclude_unset=True),
        }
        # A sweep's method options are keyed by method: `method_options: {rigl: {...}}`.
        training["method_options"] = training.get("method_options", {}).get(method, {})
        try:
            return RunConfig(model=model, method=method, seed=seed, **where, **data, **training)
        except ValidationError as error:
            loc = error.errors()[0]["loc"]
            section = f"datasets[{dataset_index}]" if loc and loc[0] in DATA_FIELDS else "training"
            raise InputError(validation_message(error, section=section)) from None


def _all_known(values: list[str], known: list[str], what: str) -> list[str]:
    unknown = [value for value in values if value not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown[0]!r} (choose from {', '.join(known)})")
    if len(set(values)) != len(values):
        raise ValueError(f"{what}s repeat: {values}")
    return values


def load_sweep_config(path: str | Path) -> SweepConfig:
    """A sweep from YAML; every problem names the file and the key."""
    try:
        sweep = SweepConfig(**read_yaml(path))
    except ValidationError as error:
        raise InputError(validation_message(error, str(path))) from None
    except TypeError as error:
        raise InputError(f"{path}: {error}") from None
    options = sweep.training.model_dump(exclude_unset=True).get("method_options", {})
    strangers = [name for name in options if name not in sweep.methods]
    if strangers:
        raise InputError(
            f"{path}: training.method_options: {strangers[0]!r} is not one of the sweep's "
            f"methods ({', '.join(sweep.methods)}); options are keyed by method"
        )
    try:
        for index in range(len(sweep.datasets)):
            sweep.run_config(sweep.models[0], index, sweep.methods[0], sweep.points()[0], 0)
        for method in sweep.methods:
            sweep.run_config(sweep.models[0], 0, method, sweep.points()[0], 0)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    return sweep

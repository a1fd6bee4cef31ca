"""Command-line options made from the run settings themselves (`RunConfig`'s fields):
each setting is declared once, with its type, range, default and help, and becomes
`--the-setting` here, a key in YAML configs and sweeps, and a line when it is wrong."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
import yaml
from pydantic.fields import FieldInfo

from sparsebench.data.options import LoaderSettings
from sparsebench.data.registry import loader_options_models
from sparsebench.data.settings import DataSettings
from sparsebench.errors import InputError
from sparsebench.settings.run import RunConfig

# Settings whose command-line form is not the field's own: a mapping, given as pairs.
PAIRS = {
    "method_options": (
        "method_option",
        "the method's own setting KEY=VALUE (repeatable), e.g. update_every=50",
        "Run settings",
    ),
    "data_options": (
        "data_option",
        "the data set's own setting KEY=VALUE (repeatable), e.g. label_rule=majority",
        "A data set's own settings",
    ),
}
_PAIR_FLAGS = {pair[0]: setting for setting, pair in PAIRS.items()}
LOADER_PANEL = "A data set's own settings"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """`int | None` -> int; a Literal keeps its values."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else str
    return annotation


def _help(field: FieldInfo, base: Any) -> str:
    text = field.description or ""
    if typing.get_origin(base) is Literal:
        text += f" ({', '.join(str(value) for value in typing.get_args(base))})"
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if default not in (None, [], {}):
        text += f" (default {default})"
    return text.strip()


def _settings_in_help_order() -> list[str]:
    """Data settings first (the data set and its path leading), then the rest: pydantic
    lists inherited fields base classes first."""
    own = [*DataSettings.__annotations__, *LoaderSettings.__annotations__]
    rest = [name for name in RunConfig.model_fields if name not in own]
    return [name for name in [*own, *rest] if _is_flag(RunConfig.model_fields[name])]


def _loader_flags() -> dict[str, FieldInfo]:
    """Each registered loader's own settings as flags of their own (`--label-rule`),
    where the name is free; any of them is also `--data-option KEY=VALUE`."""
    flags: dict[str, FieldInfo] = {}
    for options in loader_options_models():
        for name, field in options.model_fields.items():
            if name not in RunConfig.model_fields and name not in _PAIR_FLAGS:
                flags.setdefault(name, field)
    return flags


def _is_flag(field: FieldInfo) -> bool:
    """A setting the user gives (a computed one, such as a file's digest, is not)."""
    extra = field.json_schema_extra
    return not (isinstance(extra, dict) and extra.get("flag") is False)


def _option(name: str, field: FieldInfo, panel: str) -> Any:
    """The annotation of `name`'s option: None by default, so that a config file's value
    stands unless the flag is given."""
    base = _base_type(field.annotation)
    help_text = _help(field, base)
    if base is bool:
        negative = f"--no-{name.replace('_', '-')}"
        option = typer.Option(f"{flag(name)}/{negative}", help=help_text, rich_help_panel=panel)
        return Annotated[bool | None, option]
    if typing.get_origin(base) in (list, tuple):
        option = typer.Option(flag(name), help=help_text + " (repeatable)", rich_help_panel=panel)
        return Annotated[list[str] | None, option]
    if typing.get_origin(base) is Literal:
        values = typing.get_args(base)
        base = int if all(isinstance(value, int) for value in values) else str
    return Annotated[base | None, typer.Option(flag(name), help=help_text, rich_help_panel=panel)]


def run_settings_as_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` (taking its own options and `**settings`) one option per run
    setting; it receives the settings given, ready for `load_run_config`."""
    hints = typing.get_type_hints(command, include_extras=True)
    own = [
        parameter.replace(annotation=hints[parameter.name])
        for parameter in inspect.signature(command).parameters.values()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    settings = []
    for name in _settings_in_help_order():
        if name in PAIRS:
            name, help_text, panel = PAIRS[name]
            option = typer.Option(flag(name), help=help_text, rich_help_panel=panel)
            annotation: Any = Annotated[list[str] | None, option]
        else:
            panel = "Data settings" if name in DataSettings.model_fields else "Run settings"
            annotation = _option(name, RunConfig.model_fields[name], panel)
        settings.append(_keyword(name, annotation))
    loader_flags = _loader_flags()
    settings += [
        _keyword(name, _option(name, field, LOADER_PANEL)) for name, field in loader_flags.items()
    ]

    @functools.wraps(command, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
    def with_settings(**values: Any) -> None:
        given = {name: values.pop(name) for name in [p.name for p in settings]}
        loader_given = {name: given.pop(name) for name in loader_flags}
        command(**values, **settings_given(given, loader_given))

    with_settings.__signature__ = inspect.Signature(
        [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in own] + settings
    )
    return with_settings


def _keyword(name: str, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def settings_given(
    values: dict[str, Any], loader_values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The options given on the command line as run settings: lists split at commas
    (`--visa-objects a,b`), `--method-option KEY=VALUE` pairs as a mapping, a loader's
    own flags joining `--data-option`'s pairs."""
    given = {
        _PAIR_FLAGS[name]: parse_pairs(values.pop(name), flag(name))
        for name in list(values)
        if name in _PAIR_FLAGS and values[name]
    }
    given.update(_split_lists(values))
    loader_given = _split_lists(loader_values or {})
    if loader_given:
        given["data_options"] = {**given.get("data_options", {}), **loader_given}
    return given


def _split_lists(values: dict[str, Any]) -> dict[str, Any]:
    """The options given (not None), each list's items split at commas."""
    return {
        name: [part.strip() for item in value for part in item.split(",") if part.strip()]
        if isinstance(value, list)
        else value
        for name, value in values.items()
        if value is not None and value != []
    }


def parse_pairs(pairs: list[str], option: str = "--method-option") -> dict[str, Any]:
    """`KEY=VALUE` pairs, each value read as YAML (`50` a number, `cosine` a word)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option}: expected KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"{option} {key}: cannot read value {value!r}") from None
    return options

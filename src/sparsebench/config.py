"""Typed configs: a run's config (defined beside the training loop that consumes it),
loading one from YAML with errors that name the file and key, and the scenario presets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sparsebench.errors import InputError
from sparsebench.sparsity.scenarios import SCENARIOS, SparsityTargets
from sparsebench.train.config import RunConfig

__all__ = ["SCENARIOS", "RunConfig", "SparsityTargets", "load_run_config", "validation_message"]


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def validation_message(error: ValidationError, where: str = "", flags: bool = False) -> str:
    """The first problem of a pydantic error as one line naming the key (or the flag)."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if flags and key:
        key = "--" + key.replace("_", "-")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    prefix = f"{where}: " if where else ""
    return f"{prefix}{key}: {message}" if key else f"{prefix}{message}"


def load_run_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """A run config from a YAML file, with `overrides` (those not None) on top."""
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return RunConfig(**values)
    except ValidationError as error:
        where = str(path) if path is not None else ""
        raise InputError(validation_message(error, where, flags=path is None)) from None

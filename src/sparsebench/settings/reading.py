"""Settings read from YAML files, with errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sparsebench.errors import InputError, validation_message
from sparsebench.settings.run import RunConfig


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a YAML text file (not UTF-8)") from None
    except OSError as error:
        raise InputError(f"{path}: config file cannot be read ({error.strerror})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def load_run_config(path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """A run config from a YAML file, with `overrides` (those not None) on top."""
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return RunConfig(**values)
    except ValidationError as error:
        where = str(path) if path is not None else ""
        raise InputError(validation_message(error, where, flags=path is None)) from None

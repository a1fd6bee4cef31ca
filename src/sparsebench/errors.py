"""Errors and warnings a user can act on: bad values, bad files. The CLI prints each as
one line (errors exit with code 2)."""

from __future__ import annotations

from pydantic import ValidationError


class InputError(ValueError):
    """A value, file or field given by the user is wrong; the message says which and why."""


class DataWarning(UserWarning):
    """Data that loads but deserves a look (a class too small for its split)."""


def validation_message(
    error: ValidationError, where: str = "", flags: bool = False, section: str = ""
) -> str:
    """The first problem of a pydantic error as one line naming the key (or the flag);
    `section` is the path of the validated mapping inside a larger file."""
    first = error.errors()[0]
    parts = [*([section] if section else []), *first["loc"]]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)
    key = key.removeprefix(".")
    if flags and key:
        key = "--" + key.replace("_", "-")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    prefix = f"{where}: " if where else ""
    return f"{prefix}{key}: {message}" if key else f"{prefix}{message}"

"""The Typer app every command registers on, its consoles, and the one place where a
failure becomes one line on stderr and an exit code.

Exit codes: 0 done; 1 a sweep or demo finished with failed or diverged runs, or an
unexpected internal error; 2 bad input, a damaged file, a full disk or a diverged run;
130 interrupted (Ctrl-C), resumable.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import sys
import unicodedata
import warnings
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_errors

from sparsebench.errors import InputError

out = Console()
if not out.is_terminal:
    out = Console(width=200)  # piped tables stay whole; a terminal gets its own width
err = Console(stderr=True)

TRACEBACK_VARIABLE = "SPARSEBENCH_TRACEBACK"


def printable(text: object) -> str:
    """`text` with control characters shown as escapes: a folder or class name from the
    data can neither move the cursor nor recolour the terminal."""
    return "".join(
        f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" and c != "\t" else c
        for c in str(text)
    )


def plain(text: object) -> Text:
    """Text from data (class names, paths) for rich tables: printed as it is, never read
    as markup."""
    return Text(printable(text))


def say(message: str) -> None:
    """One informational line on stderr, verbatim."""
    err.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def show(message: str) -> None:
    """One line of a command's result on stdout, verbatim."""
    out.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    say(f"error: {message}")
    return typer.Exit(code=2)


def check_range(flag: str, value: float, low: float, high: float, above: bool = False) -> None:
    """A number a command takes directly (not a run setting, which pydantic checks):
    within [low, high] (above: low excluded), and never NaN or infinite."""
    inside = (low < value if above else low <= value) and value <= high
    if not (math.isfinite(value) and inside):
        bracket = "(" if above else "["
        raise fail(f"{flag}: expected a number in {bracket}{low:g}, {high:g}], got {value}")


def failure_line(error: BaseException) -> tuple[str, int] | None:
    """The one line and exit code for an error a user can act on; None for a bug."""
    if isinstance(error, InputError):
        return str(error), 2
    if isinstance(error, click_errors.NoArgsIsHelpError):
        return None
    if isinstance(error, click_errors.UsageError):
        command = error.ctx.command_path if error.ctx is not None else "sparsebench"
        return f"{error.format_message()} (see {command} --help)", error.exit_code
    if isinstance(error, click_errors.ClickException):
        return error.format_message(), error.exit_code
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" writing {error.filename}" if error.filename else ""
        return f"no space left on the device{where}; free some space and run it again", 2
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}", 2
    if isinstance(error, sqlite3.DatabaseError):
        return f"results database: {error}", 2
    if isinstance(error, MemoryError):
        return "out of memory: use a smaller --batch-size, --image-size or --width", 2
    return None


# `--help` lists the commands in the order a user meets them, not the order in which
# their modules happen to register them.
COMMAND_ORDER = (
    "demo",
    "train",
    "sweep",
    "federate",
    "runs",
    "report",
    "tables",
    "export",
    "bench",
    "predict",
    "serve",
)


class OneLineErrors(TyperGroup):
    """Every failure of every command ends as one line on stderr (no traceback, no
    usage box), whether the command runs from the shell or from a test's CliRunner."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: position for position, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = self._run(*args, **kwargs)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, *args: Any, **kwargs: Any) -> int:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError as error:
            error.show()
            code = error.exit_code
        except typer.Abort:
            say("aborted")
            code = 130
        except Exception as error:
            line = failure_line(error)
            if line is None:
                if os.environ.get(TRACEBACK_VARIABLE):
                    raise
                first = next((part for part in str(error).splitlines() if part.strip()), "")
                line = (
                    f"unexpected {type(error).__name__}: {first.strip()} (a bug: "
                    f"{TRACEBACK_VARIABLE}=1 shows where; please report it)",
                    1,
                )
            say(f"error: {line[0]}")
            code = line[1]
        return code if isinstance(code, int) else 0


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    say(f"warning: {message}")


app = typer.Typer(
    cls=OneLineErrors,
    help="Train, compare and deploy sparse (pruned) convolutional networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

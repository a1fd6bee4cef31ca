"""How the results database fails: one line naming the file."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import pandas as pd

from sparsebench.errors import InputError

P = ParamSpec("P")
R = TypeVar("R")


class StoreError(InputError):
    """The results database cannot be read or written: the message names the file."""


class StoreFull(StoreError):
    """The disk (or the database's size limit) is full: nothing of the failed write stays."""


def named_errors(method: Callable[P, R]) -> Callable[P, R]:
    """SQLite's errors (and pandas' wrapping of them) raised as one line naming the file."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as error:
            store = args[0]  # the store whose method failed: it names its file
            raise store.error_for(error) from None  # type: ignore[attr-defined]

    return guarded

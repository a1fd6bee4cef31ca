"""What an npz file holds, read from its array headers alone: a damaged, hostile or
oversized file is refused before any array is allocated or anything is unpickled."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from numpy.lib import format as npy_format

from sparsebench.errors import InputError


@dataclass(frozen=True)
class ArrayHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def read_npz_headers(path: Path) -> dict[str, ArrayHeader]:
    """The shape, dtype and size each array of `path` claims, by key."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                info.filename.removesuffix(".npy"): _array_header(path, archive, info)
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"{path}: not a readable npz file ({error})") from None


def _array_header(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> ArrayHeader:
    key = info.filename.removesuffix(".npy")
    try:
        with archive.open(info) as member:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(member)
            else:
                shape, _, dtype = npy_format.read_array_header_2_0(member)
            header_end = member.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as error:
        raise InputError(f"{path}: array {key!r} has a damaged header ({error})") from None
    if dtype.hasobject:
        raise InputError(
            f"{path}: array {key!r} holds Python objects (pickled data), which is never "
            "loaded: save the arrays as plain numbers"
        )
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > info.file_size - header_end:
        raise InputError(
            f"{path}: array {key!r} claims shape {shape} ({_size(nbytes)}) but the file "
            f"holds {_size(max(info.file_size - header_end, 0))} for it: damaged or forged"
        )
    return ArrayHeader(tuple(shape), dtype, nbytes)


def check_npz_arrays(path: Path, keys: Sequence[str]) -> dict[str, ArrayHeader]:
    """The headers of `keys`, checked: every key present, the file not damaged, and the
    arrays fitting in the memory this machine has free."""
    headers = read_npz_headers(path)
    missing = [key for key in keys if key not in headers]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}")
    needed = sum(headers[key].nbytes for key in keys)
    available = psutil.virtual_memory().available
    if needed > available:
        raise InputError(
            f"{path}: its arrays need {_size(needed)} of memory, more than the "
            f"{_size(available)} this machine has free"
        )
    return headers


def _size(nbytes: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")

"""Decoding image files into one uint8 tensor, cached so a second run decodes nothing.

The cache file is keyed by the decoding settings and by every source file's path, size
and modification time, so an edited, added or removed image makes a new cache entry.
It is written to a temporary name and renamed, so an interrupted write leaves no cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from sparsebench.data.progress import quiet_progress
from sparsebench.errors import InputError

CACHE_VERSION = 1
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;grey"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPARSEBENCH_CACHE", Path.home() / ".cache" / "sparsebench"))


def image_channels(paths: Sequence[Path]) -> int:
    """1 if every image is greyscale, else 3 (read from the file headers only)."""
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.mode not in GREY_MODES:
                    return 3
        except (OSError, UnidentifiedImageError) as error:
            raise InputError(f"{path}: image cannot be decoded ({error})") from None
    return 1


def decode_images(
    paths: Sequence[Path], image_size: int, cache_dir: Path | None = None
) -> torch.Tensor:
    """Every image resized to image_size x image_size, as a (N, C, H, W) uint8 tensor:
    one channel if every image is greyscale, else RGB."""
    cache_dir = cache_dir or default_cache_dir()
    cache_file = cache_dir / "images" / f"{_cache_key(paths, image_size)}.pt"
    if cache_file.is_file():
        try:
            cached = torch.load(cache_file, weights_only=True)
            if cached.get("version") == CACHE_VERSION and len(cached["images"]) == len(paths):
                return cached["images"]
        except Exception:  # a damaged cache file is decoded again and replaced
            pass
    images = _decode_all(paths, image_size, image_channels(paths))
    _write_atomically(cache_file, {"version": CACHE_VERSION, "images": images})
    return images


def _decode_all(paths: Sequence[Path], image_size: int, channels: int) -> torch.Tensor:
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), image_size, image_size, channels), dtype=np.uint8)
    with quiet_progress(
        TextColumn("decoding images"), BarColumn(), MofNCompleteColumn()
    ) as progress:
        for index in progress.track(range(len(paths))):
            path = paths[index]
            try:
                with Image.open(path) as image:
                    image = image.convert(mode).resize(
                        (image_size, image_size), Image.Resampling.BILINEAR
                    )
                    pixels = np.asarray(image, dtype=np.uint8)
            except (OSError, UnidentifiedImageError, ValueError) as error:
                raise InputError(f"{path}: image cannot be decoded ({error})") from None
            out[index] = pixels.reshape(image_size, image_size, channels)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2))).contiguous()


def _cache_key(paths: Sequence[Path], image_size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{image_size}".encode())
    for path in paths:
        try:
            stat = Path(path).stat()
        except OSError as error:
            raise InputError(f"{path}: image file cannot be read ({error.strerror})") from None
        digest.update(f"\0{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _write_atomically(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)

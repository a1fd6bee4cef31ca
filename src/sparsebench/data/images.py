"""Decoding image files into one uint8 tensor, cached so a second run decodes nothing.

The cache file is keyed by the decoding settings and by every source file's path, size
and modification time, so an edited, added or removed image makes a new cache entry.
It is written to a temporary name and renamed, so an interrupted write leaves no cache.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

from sparsebench.data.progress import quiet_progress
from sparsebench.errors import InputError
from sparsebench.files import written_whole

CACHE_VERSION = 2  # 2: 16-bit and float images scaled to 8 bits (1 clipped them)
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
# Pixels an image may have before it is decoded (its header says how many): a file of a
# few KB can claim billions. Raised with --max-image-pixels.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPARSEBENCH_CACHE", Path.home() / ".cache" / "sparsebench"))


@contextmanager
def open_image(
    path: Path | BinaryIO, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, name: str | None = None
) -> Iterator[Image.Image]:
    """The image at `path`, its header read and its size checked before any pixel is
    decoded. Pillow's own bomb check is set aside here: `max_pixels` replaces it, so a
    user who raises the limit is not stopped by Pillow's. `path` may be an open binary
    file (an upload), named in errors by `name`."""
    where = name or str(path)
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise InputError(
            f"{where}: image cannot be decoded (not an image format Pillow reads)"
        ) from None
    except (OSError, ValueError) as error:
        raise InputError(f"{where}: image cannot be decoded ({error})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise InputError(
                f"{where}: image header claims {width} x {height} pixels, more than the limit "
                f"of {max_pixels:,} (raise it with --max-image-pixels if the image is real)"
            )
        yield image


def image_channels(paths: Sequence[Path], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> int:
    """1 if every image is greyscale, else 3, read from the file headers only (which
    also checks every image's size before anything is decoded)."""
    channels = 1
    for path in paths:
        with open_image(path, max_pixels) as image:
            if image.mode not in GREY_MODES:
                channels = 3
    return channels


def to_8bit(image: Image.Image, channels: int) -> Image.Image:
    """`image` as 8 bits per channel, `L` (channels 1) or `RGB` (channels 3).

    Pillow's own conversion clips deep images to 255, which turns a 16-bit camera
    image white, so the deep modes are scaled here:
    - 16-bit integer (`I;16*`): v * 255 / 65535, rounded (the type's full range);
    - 32-bit integer (`I`): read as 16-bit data when every value is in 0..65535 (how
      16-bit PNG and TIFF files often decode); other values are refused;
    - 32-bit float (`F`): v * 255, rounded, when every value is in [0, 1]; other values
      (and NaN or infinity) are refused.
    Every other mode (1, L, P, LA, RGB, RGBA, CMYK, YCbCr, ...) converts as Pillow does;
    an alpha channel is dropped.
    """
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        low, high = (float(values.min()), float(values.max())) if values.size else (0, 0)
        if image.mode == "F":
            if not (np.isfinite(values).all() and low >= 0.0 and high <= 1.0):
                raise ValueError(
                    f"32-bit float pixels from {low:g} to {high:g}: only values in [0, 1] "
                    "are read; save it as 8 or 16 bits"
                )
            scale = 255.0
        else:
            if low < 0 or high > 65535:
                raise ValueError(
                    f"32-bit integer pixels from {low:g} to {high:g}: only 16-bit data "
                    "(0..65535) is read; save it as 8 or 16 bits"
                )
            scale = 255.0 / 65535.0
        image = Image.fromarray(np.rint(values * scale).astype(np.uint8), mode="L")
    return image.convert("L" if channels == 1 else "RGB")


def decode_images(
    paths: Sequence[Path],
    image_size: int,
    cache_dir: Path | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
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
    images = _decode_all(paths, image_size, image_channels(paths, max_pixels), max_pixels)
    _write_cache(cache_file, {"version": CACHE_VERSION, "images": images})
    return images


def _decode_all(
    paths: Sequence[Path], image_size: int, channels: int, max_pixels: int
) -> torch.Tensor:
    out = np.empty((len(paths), image_size, image_size, channels), dtype=np.uint8)
    with quiet_progress(
        TextColumn("decoding images"), BarColumn(), MofNCompleteColumn()
    ) as progress:
        for index in progress.track(range(len(paths))):
            out[index] = decode_image(paths[index], image_size, channels, max_pixels)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2))).contiguous()


def decode_image(
    path: Path | BinaryIO,
    image_size: int,
    channels: int,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """One image as 8 bits, `channels` channels, resized to image_size x image_size (H,
    W, C); an InputError naming the file (or `name`) when it cannot be."""
    where = name or str(path)
    with open_image(path, max_pixels, name) as image:
        try:
            image = to_8bit(image, channels).resize(
                (image_size, image_size), Image.Resampling.BILINEAR
            )
            pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError) as error:
            raise InputError(f"{where}: image cannot be decoded ({error})") from None
    return pixels.reshape(image_size, image_size, channels)


def _cache_key(paths: Sequence[Path], image_size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{image_size}".encode())
    for path in paths:
        try:
            stat = Path(path).stat()
        except OSError as error:
            raise InputError(f"{path}: image file cannot be read ({error.strerror})") from None
        digest.update(f"\0{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _write_cache(path: Path, payload: dict) -> None:
    """Write-then-rename; a cache that cannot be written (a full disk, a read-only
    folder) costs the next run a decode, not this run its images."""
    try:
        with written_whole(path) as temporary:
            torch.save(payload, temporary)
    except OSError as error:
        warnings.warn(f"{path}: decoded images not cached ({error.strerror})", stacklevel=2)

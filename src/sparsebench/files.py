"""Files written whole or not at all: the one write-then-rename of the package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_whole(path: Path, previous: Path | None = None) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; when the block ends without
    an error it is renamed over `path` (the old file kept as `previous`, if given),
    otherwise removed. A reader never sees half a file, and a crash leaves the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)

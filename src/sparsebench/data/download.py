"""Downloading MedMNIST files from their published record, checked by MD5.

A download streams into a temporary file beside its destination and is renamed only
once every byte arrived and the MD5 matches the published one, so the cache never holds
a partial or corrupt file.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn

from sparsebench.data.images import default_cache_dir
from sparsebench.data.progress import quiet_progress
from sparsebench.errors import InputError
from sparsebench.files import written_whole

# The MedMNIST v2 record (Zenodo 10519652); the base can be pointed elsewhere (a mirror).
MEDMNIST_BASE_URL = os.environ.get(
    "SPARSEBENCH_MEDMNIST_URL", "https://zenodo.org/records/10519652/files/"
)
MEDMNIST_SIZES = (28, 64, 128, 224)

# Published MD5 of each file (from the medmnist package's INFO, version 3.0).
MEDMNIST_MD5: dict[str, dict[int, str]] = {
    "bloodmnist": {
        28: "7053d0359d879ad8a5505303e11de1dc",
        64: "2b94928a2ae4916078ca51e05b6b800b",
        128: "adace1e0ed228fccda1f39692059dd4c",
        224: "b718ff6835fcbdb22ba9eacccd7b2601",
    },
    "pathmnist": {
        28: "a8b06965200029087d5bd730944a56c1",
        64: "55aa9c1e0525abe5a6b9d8343a507616",
        128: "ac42d08fb904d92c244187169d1fd1d9",
        224: "2c51a510bcdc9cf8ddb2af93af1eadec",
    },
    "dermamnist": {
        28: "0744692d530f8e62ec473284d019b0c7",
        64: "b70a2f5635c6199aeaa28c31d7202e1f",
        128: "2defd784463fa5243564e855ed717de1",
        224: "8974907d8e169bef5f5b96bc506ae45d",
    },
    "octmnist": {
        28: "c68d92d5b585d8d81f7112f81e2d0842",
        64: "e229e9440236b774d9f0dfef9d07bdaf",
        128: "0a97e76651ace45c5d943ee3f65b63ae",
        224: "abc493b6d529d5de7569faaef2773ba3",
    },
    "pneumoniamnist": {
        28: "28209eda62fecd6e6a2d98b1501bb15f",
        64: "8f4eceb4ccffa70c672198ea285246c6",
        128: "05b46931834c231683c68f40c47b2971",
        224: "d6a3c71de1b945ea11211b03746c1fe1",
    },
    "retinamnist": {
        28: "bd4c0672f1bba3e3a89f0e4e876791e4",
        64: "afda852cc34dcda56f86ad2b2457dbcc",
        128: "e48e916a24454daf90583d4e6efb1a18",
        224: "eae7e3b6f3fcbda4ae613ebdcbe35348",
    },
    "breastmnist": {
        28: "750601b1f35ba3300ea97c75c52ff8f6",
        64: "742edef2a1fd1524b2efff4bd7ba9364",
        128: "363e4b3f8d712e9b5de15470a2aaadf1",
        224: "b56378a6eefa9fed602bb16d192d4c8b",
    },
    "tissuemnist": {
        28: "ebe78ee8b05294063de985d821c1c34b",
        64: "123ece2eba09d0aa5d698fda57103344",
        128: "61b955355d7425a89687b06cca3ce0c2",
        224: "b077128c4a949f0a4eb01517f9037b9c",
    },
    "organamnist": {
        28: "68e3f8846a6bd62f0c9bf841c0d9eacc",
        64: "2dcccc29b88e6da5a01161ef20cda288",
        128: "eeae80d0a227a8d099027e1b3cfd3b60",
        224: "50747347e05c87dd3aaf92c49f9f3170",
    },
    "organcmnist": {
        28: "b9ceb9546e10131b32923c5bbeaea2b1",
        64: "3ce34a8724ea6f548e6db4744d03b6a9",
        128: "773c1f009daa3fe5d9a2a201b2a7ed94",
        224: "050f5e875dc056f6768abf94ec9995d1",
    },
    "organsmnist": {
        28: "9ab87b696fb54e2a387ebe992d6ed5f1",
        64: "53a6d115339d874c25e309a994ff46d3",
        128: "ded0c5fa01a95dc4978b956f613e9b8e",
        224: "b354719e553fbbb2513d5533f52a4cb1",
    },
}


def medmnist_file_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def download_medmnist(
    name: str,
    size: int = 28,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """The cached file of MedMNIST set `name` at `size`, downloaded if not yet cached."""
    if name not in MEDMNIST_MD5:
        known = ", ".join(sorted(MEDMNIST_MD5))
        raise InputError(f"--download: no published MedMNIST file for {name!r} (known: {known})")
    if size not in MEDMNIST_SIZES:
        raise InputError(f"--download: MedMNIST sizes are 28, 64, 128 and 224, got {size}")
    file_name = medmnist_file_name(name, size)
    destination = (cache_dir or default_cache_dir()) / "medmnist" / file_name
    if destination.is_file():
        return destination  # only ever renamed into place after its MD5 matched
    url = (base_url or MEDMNIST_BASE_URL) + f"{file_name}?download=1"
    download_file(url, destination, MEDMNIST_MD5[name][size], timeout)
    return destination


def download_file(url: str, destination: Path, md5: str, timeout: float = 60.0) -> None:
    digest = hashlib.md5()
    received = 0
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise InputError(f"{url}: download failed ({reason})") from None
    # kept only once its size and MD5 are checked
    with written_whole(destination) as temporary:
        with response, open(temporary, "wb") as handle:
            expected = int(response.headers.get("Content-Length") or 0) or None
            with quiet_progress(
                TextColumn(destination.name), BarColumn(), DownloadColumn(), TransferSpeedColumn()
            ) as progress:
                task = progress.add_task("download", total=expected)
                while True:
                    try:
                        chunk = response.read(1 << 20)
                    except (OSError, urllib.error.URLError) as error:
                        raise InputError(f"{url}: download broke off ({error})") from None
                    if not chunk:
                        break
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(task, completed=received)
        if expected is not None and received != expected:
            raise InputError(f"{url}: download broke off after {received} of {expected} bytes")
        if digest.hexdigest() != md5:
            raise InputError(
                f"{url}: MD5 {digest.hexdigest()} does not match the published {md5}; "
                "the file was not kept"
            )

"""MedMNIST download against a local HTTP server on 127.0.0.1 serving a generated file."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_data import write_npz

from sparsebench.data import DataOptions, load_dataset
from sparsebench.data import download as download_module
from sparsebench.data.download import download_medmnist
from sparsebench.errors import InputError


class FileServer:
    """Serves `body` for every GET; `truncate_to` sends fewer bytes than it announces."""

    def __init__(self, body: bytes, truncate_to: int | None = None) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                server.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if truncate_to is None else body[:truncate_to])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def npz_bytes(tmp_path):
    return write_npz(tmp_path / "source.npz", classes=8).read_bytes()


def publish(monkeypatch, body: bytes) -> None:
    md5 = hashlib.md5(body).hexdigest()
    monkeypatch.setitem(download_module.MEDMNIST_MD5, "bloodmnist", {28: md5, 64: md5})


def test_download_with_the_right_md5_is_cached_and_loads(tmp_path, monkeypatch, npz_bytes):
    publish(monkeypatch, npz_bytes)
    server = FileServer(npz_bytes)
    try:
        monkeypatch.setattr(download_module, "MEDMNIST_BASE_URL", server.url)
        data = load_dataset(
            "bloodmnist", None, DataOptions(download=True, cache_dir=tmp_path / "c")
        )
        assert len(data.splits["train"]) == 30
        assert server.requests == ["/bloodmnist.npz?download=1"]
        again = download_medmnist("bloodmnist", 28, tmp_path / "c", server.url)
        assert again.read_bytes() == npz_bytes and len(server.requests) == 1  # from the cache
        download_medmnist("bloodmnist", 64, tmp_path / "c", server.url)
        assert server.requests[-1] == "/bloodmnist_64.npz?download=1"
    finally:
        server.close()


def test_a_wrong_md5_keeps_nothing(tmp_path, monkeypatch, npz_bytes):
    monkeypatch.setitem(download_module.MEDMNIST_MD5, "bloodmnist", {28: "0" * 32})
    server = FileServer(npz_bytes)
    try:
        with pytest.raises(InputError, match="does not match the published 0000"):
            download_medmnist("bloodmnist", 28, tmp_path / "c", server.url)
    finally:
        server.close()
    assert list((tmp_path / "c").rglob("*")) == [tmp_path / "c" / "medmnist"]


def test_a_truncated_transfer_keeps_nothing(tmp_path, monkeypatch, npz_bytes):
    publish(monkeypatch, npz_bytes)
    server = FileServer(npz_bytes, truncate_to=len(npz_bytes) // 2)
    try:
        with pytest.raises(InputError, match="broke off"):
            download_medmnist("bloodmnist", 28, tmp_path / "c", server.url)
    finally:
        server.close()
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()]


def test_a_server_that_is_gone(tmp_path, monkeypatch, npz_bytes):
    publish(monkeypatch, npz_bytes)
    server = FileServer(npz_bytes)
    url = server.url
    server.close()
    with pytest.raises(InputError, match="download failed"):
        download_medmnist("bloodmnist", 28, tmp_path / "c", url, timeout=5)
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()]


def test_download_refuses_unknown_sets_and_sizes(tmp_path):
    with pytest.raises(InputError, match="no published MedMNIST file for 'medmnist'"):
        download_medmnist("medmnist", 28, tmp_path)
    with pytest.raises(InputError, match="sizes are 28, 64, 128 and 224, got 32"):
        download_medmnist("bloodmnist", 32, tmp_path)

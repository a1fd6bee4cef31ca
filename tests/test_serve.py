"""`sparsebench serve`: a real server on a free local port, answering real and broken
images, batching concurrent requests, and staying up."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from conftest import cli_json
from PIL import Image
from test_predict import write_class_images
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.deploy.load import load_run
from sparsebench.deploy.predict import Preprocessing, torch_classifier
from sparsebench.deploy.serve import make_app

runner = CliRunner()
LIMIT = 200_000  # bytes: the test's body limit


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    for split, count, seed in (("train", 16, 0), ("val", 4, 1), ("test", 4, 2)):
        write_class_images(folder / "data" / split, count, seed)
    train = ["train", "--model", "resnet18", "--width", "0.125", "--dataset", "folder"]
    train += ["--data-path", str(folder / "data"), "--image-size", "32", "--epochs", "1"]
    run_id = cli_json([*train, "--method", "pre"], folder)["run_id"]
    run = load_run(run_id, folder / "r.db")
    application = make_app(
        run_id,
        torch_classifier(run),
        Preprocessing.of_run(run),
        max_batch=8,
        max_wait_ms=50,
        max_body_bytes=LIMIT,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started
    yield f"http://127.0.0.1:{port}", folder, run_id
    uv.should_exit = True
    thread.join(10)


def test_a_posted_image_gets_its_class_as_the_cli_predicts_it(server):
    url, folder, run_id = server
    image = sorted((folder / "data" / "test" / "left").glob("*.png"))[0]
    answer = httpx.post(f"{url}/predict", content=image.read_bytes())
    assert answer.status_code == 200
    body = answer.json()
    expected = runner.invoke(
        app, ["predict", run_id, str(image), "--db", str(folder / "r.db"), "--format", "json"]
    )
    assert body["class_index"] == json.loads(expected.stdout)[0]["class_index"]
    assert set(body["probabilities"]) == {"left", "right"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    multipart = httpx.post(f"{url}/predict", files={"image": ("x.png", image.read_bytes())})
    assert multipart.status_code == 200 and multipart.json()["class"] == body["class"]


def test_broken_and_oversized_bodies_are_refused_and_the_server_stays_up(server):
    url, _, _ = server
    broken = httpx.post(f"{url}/predict", content=b"not an image")
    assert broken.status_code == 400
    assert "the posted image: image cannot be decoded" in broken.json()["error"]
    empty = httpx.post(f"{url}/predict", content=b"")
    assert empty.status_code == 400
    large = httpx.post(f"{url}/predict", content=b"\0" * (LIMIT + 1))
    assert large.status_code == 413
    # a huge image claimed in a small header is refused before decoding
    bomb = io.BytesIO()
    Image.new("L", (1, 1)).save(bomb, "PNG")
    header = bytearray(bomb.getvalue())
    header[16:24] = (200_000).to_bytes(4, "big") * 2  # IHDR width and height
    header[29:33] = zlib.crc32(bytes(header[12:29])).to_bytes(4, "big")
    claimed = httpx.post(f"{url}/predict", content=bytes(header))
    assert claimed.status_code == 400 and "header claims" in claimed.json()["error"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_concurrent_requests_are_batched_and_counted(server):
    url, folder, _ = server
    images = [p.read_bytes() for p in sorted((folder / "data" / "test").rglob("*.png"))]
    before = httpx.get(f"{url}/metrics").json()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: httpx.post(f"{url}/predict", content=b), images * 2))
    assert all(a.status_code == 200 for a in answers)
    after = httpx.get(f"{url}/metrics").json()
    answered = after["answered"] - before["answered"]
    assert answered == len(images) * 2
    assert after["batches"] - before["batches"] < answered  # some requests shared a batch
    assert after["latency_p50_ms"] > 0 and after["latency_p99_ms"] >= after["latency_p50_ms"]


def test_serve_refuses_a_taken_port_in_one_line(server):
    url, folder, run_id = server
    port = url.rsplit(":", 1)[1]
    result = runner.invoke(app, ["serve", run_id, "--db", str(folder / "r.db"), "--port", port])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: --port {port}: cannot listen on")

"""Serving under load: requests per second and latency percentiles of `sparsebench serve`
for a run's masked model, its compact model and its int8 ONNX model, side by side.

Each variant gets its own server (the same application `serve` runs: batching up to
`--max-batch` requests within `--max-wait-ms`) on a free port of 127.0.0.1, and clients
in threads post the same real PNG files, `--requests` per level of concurrency (1, 4 and
16 clients), after `--warmup` requests. Nothing leaves the machine. Without `--run-id`,
a ResNet18 (width 0.25, 32x32, `pre`, uniform) is trained for one epoch on generated
images first: its accuracy does not matter here, its shape does.

    python benchmarks/serve_load.py [--run-id ID --db results.db] [--requests 400]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from PIL import Image
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.deploy.export import export_run
from sparsebench.deploy.load import load_run
from sparsebench.deploy.predict import Preprocessing, onnx_classifier, torch_classifier
from sparsebench.deploy.serve import make_app

CONCURRENCY = (1, 4, 16)


def train_example(folder: Path) -> tuple[str, Path]:
    db = folder / "results.db"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "resnet18",
            "--width",
            "0.25",
            "--dataset",
            "synthetic",
            "--image-size",
            "32",
            "--method",
            "pre",
            "--scenario",
            "uniform",
            "--epochs",
            "1",
            "--db",
            str(db),
            "--runs-dir",
            str(folder / "runs"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["run_id"], db


def example_images(folder: Path, count: int = 32) -> list[bytes]:
    generator = np.random.default_rng(0)
    images = []
    for index in range(count):
        pixels = generator.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        path = folder / f"image{index}.png"
        Image.fromarray(pixels, "RGB").save(path)
        images.append(path.read_bytes())
    return images


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load(url: str, images: list[bytes], clients: int, requests: int) -> dict[str, float]:
    latencies: list[float] = []

    def client(count: int) -> None:
        with httpx.Client(timeout=60) as session:
            for index in range(count):
                started = time.perf_counter()
                answer = session.post(f"{url}/predict", content=images[index % len(images)])
                answer.raise_for_status()
                latencies.append(time.perf_counter() - started)

    share = [requests // clients + (i < requests % clients) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, share))
    elapsed = time.perf_counter() - started
    values = np.array(latencies) * 1e3
    return {
        "rps": requests / elapsed,
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
    }


def serve_and_measure(application, images: list[bytes], args: argparse.Namespace) -> dict:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        load(url, images, 1, args.warmup)
        results = {c: load(url, images, c, args.requests) for c in CONCURRENCY}
        batch = httpx.get(f"{url}/metrics").json()["mean_batch_size"]
    finally:
        server.should_exit = True
        thread.join(30)
    return {"levels": results, "mean_batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id")
    parser.add_argument("--db", type=Path, default=Path("results.db"))
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="serve-load-"))
    run_id, db = (args.run_id, args.db) if args.run_id else train_example(folder)
    run = load_run(run_id, db)
    preprocessing = Preprocessing.of_run(run)
    exported = export_run(run_id, db, None, folder / "model.onnx", quantize="int8")
    masked = run.model.eval()

    @torch.inference_mode()
    def masked_logits(batch: torch.Tensor) -> torch.Tensor:
        return masked(batch)

    variants = {
        "masked": masked_logits,
        "compact": torch_classifier(run),
        "int8-onnx": onnx_classifier(Path(exported["onnx_int8"])),
    }
    images = example_images(folder)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}; run {run_id} ({run.config['model']} "
        f"width {run.config['width']:g}, {run.config['method']} {run.config['scenario']}, "
        f"input {'x'.join(map(str, run.input_shape))})"
    )
    print(
        f"{args.requests} requests per level after {args.warmup} warm-up; server batches "
        f"up to {args.max_batch} within {args.max_wait_ms:g} ms"
    )
    print(f"  {'model':<10} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    rows = {}
    for name, classify in variants.items():
        application = make_app(
            run_id,
            classify,
            preprocessing,
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
        )
        rows[name] = serve_and_measure(application, images, args)
        for clients, numbers in rows[name]["levels"].items():
            print(
                f"  {name:<10} {clients:>7} {numbers['rps']:>8.1f} {numbers['p50']:>8.2f} "
                f"{numbers['p99']:>8.2f}"
            )
        print(f"  {name:<10} mean batch {rows[name]['mean_batch']:.2f}")
    for clients in CONCURRENCY:
        base = rows["masked"]["levels"][clients]["rps"]
        ratios = ", ".join(
            f"{name} {rows[name]['levels'][clients]['rps'] / base:.2f}x" for name in variants
        )
        print(f"  throughput vs masked at {clients} clients: {ratios}")


if __name__ == "__main__":
    main()

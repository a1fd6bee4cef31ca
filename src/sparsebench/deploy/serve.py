"""A finished run behind HTTP: `POST /predict` an image, get its class as JSON.

Starlette (ASGI) under uvicorn. Requests that arrive together are classified in one
batch: the first waits at most `max_wait_ms` for others, up to `max_batch` images, and
the network runs in a worker thread so the event loop keeps accepting requests. Input
never stops the server: an image that does not decode is a 400, a body over the limit a
413, and a failure inside classification a 500 for the requests of that batch alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sparsebench.deploy.predict import Preprocessing
from sparsebench.errors import InputError

# Latency percentiles are over this many most recent requests.
LATENCY_WINDOW = 10_000


class BodyTooLarge(Exception):
    pass


@dataclass
class ServeMetrics:
    """Counts and latencies since the server started, for `GET /metrics`."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    answered: int = 0
    bad_request: int = 0
    too_large: int = 0
    failed: int = 0
    batches: int = 0
    images_in_batches: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def as_dict(self) -> dict[str, Any]:
        values = np.array(self.latencies) * 1e3 if self.latencies else None
        percentiles = {
            f"latency_p{p}_ms": None if values is None else float(np.percentile(values, p))
            for p in (50, 95, 99)
        }
        return {
            "uptime_s": time.time() - self.started,
            "requests": self.requests,
            "answered": self.answered,
            "bad_request": self.bad_request,
            "too_large": self.too_large,
            "failed": self.failed,
            "batches": self.batches,
            "mean_batch_size": self.images_in_batches / self.batches if self.batches else None,
            **percentiles,
        }


class Batcher:
    """Collects decoded images from concurrent requests and classifies them together."""

    def __init__(
        self,
        classify: Callable[[torch.Tensor], torch.Tensor],
        preprocessing: Preprocessing,
        metrics: ServeMetrics,
        max_batch: int,
        max_wait_ms: float,
    ) -> None:
        self.classify, self.preprocessing, self.metrics = classify, preprocessing, metrics
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1e3
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()

    async def submit(self, image: np.ndarray) -> torch.Tensor:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((image, future))
        return await future

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            await self._classify(batch)

    async def _classify(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        images = [image for image, _ in batch]
        try:
            probabilities = await asyncio.to_thread(self._probabilities, images)
        except Exception as error:  # one bad batch fails its requests, not the server
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.metrics.batches += 1
        self.metrics.images_in_batches += len(batch)
        for row, (_, future) in zip(probabilities, batch, strict=True):
            if not future.done():
                future.set_result(row)

    def _probabilities(self, images: list[np.ndarray]) -> torch.Tensor:
        logits = self.classify(self.preprocessing.batch(images))
        return torch.softmax(logits.float(), dim=1)


def make_app(
    run_id: str,
    classify: Callable[[torch.Tensor], torch.Tensor],
    preprocessing: Preprocessing,
    *,
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    max_body_bytes: int = 20 * 2**20,
    top_k: int = 3,
) -> Starlette:
    metrics = ServeMetrics()
    batcher = Batcher(classify, preprocessing, metrics, max_batch, max_wait_ms)
    classes = preprocessing.classes
    top_k = min(top_k, len(classes))

    async def predict(request: Request) -> JSONResponse:
        started = time.perf_counter()
        metrics.requests += 1
        try:
            payload = await _image_bytes(request, max_body_bytes)
            image = preprocessing.decode(io.BytesIO(payload), name="the posted image")
        except BodyTooLarge:
            metrics.too_large += 1
            return JSONResponse(
                {"error": f"request body over the limit of {max_body_bytes:,} bytes"}, 413
            )
        except InputError as error:
            metrics.bad_request += 1
            return JSONResponse({"error": str(error)}, 400)
        try:
            probabilities = await batcher.submit(image)
        except Exception as error:
            metrics.failed += 1
            return JSONResponse({"error": f"classification failed: {error}"}, 500)
        metrics.answered += 1
        metrics.latencies.append(time.perf_counter() - started)
        return JSONResponse(_answer(probabilities, classes, top_k))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "run_id": run_id, "classes": classes})

    async def show_metrics(request: Request) -> JSONResponse:
        return JSONResponse(metrics.as_dict())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", show_metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _answer(probabilities: torch.Tensor, classes: list[str], top_k: int) -> dict[str, Any]:
    """An image's answer: its class, the `top_k` classes, every class's probability."""
    best = probabilities.topk(top_k)
    indices, values = best.indices.tolist(), best.values.tolist()
    return {
        "class": classes[indices[0]],
        "class_index": indices[0],
        "probability": values[0],
        "top_k": [
            {"class": classes[i], "probability": p} for i, p in zip(indices, values, strict=True)
        ],
        "probabilities": dict(zip(classes, probabilities.tolist(), strict=True)),
    }


async def _image_bytes(request: Request, limit: int) -> bytes:
    """The image in the request: the body itself, or the first file of a multipart form;
    the body is read no further than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=1, max_part_size=limit)
        except Exception as error:
            raise InputError(f"multipart body cannot be read ({error})") from None
        uploads = [value for value in form.values() if hasattr(value, "read")]
        if not uploads:
            raise InputError("multipart body holds no file")
        return await uploads[0].read()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    if not body:
        raise InputError("empty request body: POST the image's bytes, or a multipart form")
    return bytes(body)

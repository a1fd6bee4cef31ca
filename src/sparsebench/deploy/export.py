"""ONNX export of a (compact) model, checked against PyTorch in ONNX Runtime, and int8
static quantisation (QDQ, per-channel) calibrated on training images."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from torch import nn

from sparsebench.data import BatchLoader, ImageDataset
from sparsebench.errors import InputError
from sparsebench.files import written_whole
from sparsebench.measure.counting import count_model, model_file_bytes


def export_onnx(model: nn.Module, sample: torch.Tensor, path: str | Path, opset: int = 17) -> Path:
    """Write `model` as ONNX with a dynamic batch axis; written then renamed."""
    path = Path(path)
    model = model.eval()
    # the TorchScript exporter's deprecation notices are not the user's concern
    with written_whole(path) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample,),
            temporary,
            dynamo=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
        )
    return path


def onnx_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Idle ONNX Runtime threads spin by default, stealing the CPU from whatever runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, images: torch.Tensor) -> np.ndarray:
    return session.run(None, {"images": images.contiguous().numpy()})[0]


@torch.no_grad()
def max_difference(session, model: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """(largest absolute, largest relative to the largest logit) difference between ONNX
    Runtime and PyTorch on `images`."""
    expected = model.eval()(images).numpy()
    got = onnx_logits(session, images)
    absolute = float(np.abs(got - expected).max())
    return absolute, absolute / float(np.abs(expected).max())


class CalibrationBatches(CalibrationDataReader):
    """ONNX Runtime's calibration reader over a list of image batches."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {"images": batch.contiguous().numpy()}


def quantize_int8(
    float_path: str | Path, out_path: str | Path, calibration: list[torch.Tensor]
) -> Path:
    """Static int8 quantisation, QDQ format, per-channel weights, MinMax calibration."""
    if not calibration:
        raise InputError("--calibration-samples must be at least 1")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        temporary = Path(folder) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(temporary),
            CalibrationBatches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        with written_whole(out_path) as staged:
            shutil.copyfile(temporary, staged)
    return out_path


def onnx_accuracy(session, batches) -> float:
    correct = total = 0
    for images, labels in batches:
        predictions = onnx_logits(session, images).argmax(axis=1)
        correct += int((torch.from_numpy(predictions) == labels.cpu()).sum())
        total += len(labels)
    return correct / max(total, 1)


def calibration_batches(data: ImageDataset, samples: int, batch_size: int = 32) -> list:
    """`samples` normalised training images (a seeded shuffle), in batches."""
    loader = BatchLoader(
        data.splits["train"], data.mean, data.std, batch_size, torch.device("cpu"), shuffle=True
    )
    batches, taken = [], 0
    for images, _ in loader:
        batches.append(images[: samples - taken])
        taken += len(batches[-1])
        if taken >= samples:
            break
    return batches


def export_run(
    run_id: str,
    db: str | Path,
    runs_dir: str | Path | None,
    out: str | Path,
    *,
    compact: bool = True,
    quantize: str | None = None,
    calibration_samples: int = 256,
) -> dict:
    """Export a finished run as ONNX (compact unless told not to), check ONNX Runtime
    against PyTorch on a test batch, and optionally add an int8 model; returns what was
    written and measured, test accuracies included."""
    from sparsebench.deploy.compact import compact_model
    from sparsebench.deploy.load import load_run

    if quantize not in (None, "int8"):
        raise InputError(f"--quantize: only int8 is supported, got {quantize!r}")
    run = load_run(run_id, db, runs_dir)
    model = compact_model(run.model, run.input_shape) if compact else run.model
    data = run.dataset()
    cpu = torch.device("cpu")
    test = BatchLoader(data.splits["test"], data.mean, data.std, 256, cpu)
    first_batch = next(iter(test))[0]
    out = Path(out)
    export_onnx(model, first_batch[:2], out)
    session = onnx_session(out)
    absolute, relative = max_difference(session, model, first_batch)
    with torch.no_grad():
        torch_accuracy = sum(int((model(x).argmax(1) == y).sum()) for x, y in test) / len(
            data.splits["test"]
        )
    counts = {}
    for name, network in (("masked", run.model), ("compact", model)):
        numbers = count_model(network, run.input_shape).as_dict()
        counts[name] = {**numbers, "file_bytes": model_file_bytes(network)}
    result = {
        "run_id": run_id,
        "compact": compact,
        "counts": counts,
        "onnx": str(out),
        "onnx_bytes": out.stat().st_size,
        "max_abs_difference": absolute,
        "max_rel_difference": relative,
        "test_accuracy_torch": torch_accuracy,
        "test_accuracy_onnx": onnx_accuracy(session, test),
    }
    if quantize == "int8":
        calibration = calibration_batches(data, calibration_samples)
        taken = sum(len(batch) for batch in calibration)
        int8_path = out.with_name(out.stem + ".int8.onnx")
        quantize_int8(out, int8_path, calibration)
        result.update(
            onnx_int8=str(int8_path),
            onnx_int8_bytes=int8_path.stat().st_size,
            calibration_samples=taken,
            test_accuracy_int8=onnx_accuracy(onnx_session(int8_path), test),
        )
    return result

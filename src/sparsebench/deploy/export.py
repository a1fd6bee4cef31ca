"""ONNX export of a (compact) model, checked against PyTorch in ONNX Runtime, and int8
static quantisation (QDQ, per-channel) calibrated on training images."""

from __future__ import annotations

import os
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

from sparsebench.errors import InputError


def export_onnx(model: nn.Module, sample: torch.Tensor, path: str | Path, opset: int = 17) -> Path:
    """Write `model` as ONNX with a dynamic batch axis; written then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    model = model.eval()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
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
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def onnx_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
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
        staged = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        shutil.copyfile(temporary, staged)
        os.replace(staged, out_path)
    return out_path


def onnx_accuracy(session, batches) -> float:
    correct = total = 0
    for images, labels in batches:
        predictions = onnx_logits(session, images).argmax(axis=1)
        correct += int((torch.from_numpy(predictions) == labels.cpu()).sum())
        total += len(labels)
    return correct / max(total, 1)

"""What a federated client and server send each other: a model's tensors, encoded.

Four encodings of the same state (name -> tensor), each a dict of numpy arrays as they
go into a Flower ArrayRecord, so the bytes counted are those of the serialised message:

- `dense`: every tensor, float32 (what dense FedAvg sends);
- `kept`: of each gated tensor only the entries its mask keeps, in row-major order, no
  mask (both sides hold the same structure, as with a fixed mask shared by all clients);
- `bitmask`: the kept entries and the mask, one bit per entry (a client's own mask);
- `int8`: the kept entries quantised to int8 with one float32 scale per tensor
  (symmetric, round to nearest), and the mask's bits.

`gates` names the tensors that a mask zeroes, with a boolean tensor broadcastable to
each (True: kept); tensors without a gate travel whole, in float32 except under `int8`,
where only gated tensors are quantised (batch-norm statistics and biases stay exact).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

Encoding = Literal["dense", "kept", "bitmask", "int8"]
ENCODINGS: tuple[str, ...] = ("dense", "kept", "bitmask", "int8")


def encode(
    state: dict[str, torch.Tensor], gates: dict[str, torch.Tensor], encoding: Encoding
) -> dict[str, np.ndarray]:
    """`state` as the arrays of one message, under `encoding`."""
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        values = tensor.detach().cpu()
        gate = gates.get(name)
        if encoding == "dense" or gate is None:
            arrays[name] = _float32(values)
            continue
        keep = gate.expand_as(values).cpu().bool()
        kept = values[keep]
        if encoding == "int8":
            scale = float(kept.abs().max()) / 127 if kept.numel() else 0.0
            quantised = (kept / scale).round().clamp(-127, 127) if scale else torch.zeros_like(kept)
            arrays[name] = quantised.to(torch.int8).numpy()
            arrays[f"{name}:scale"] = np.array([scale], dtype=np.float32)
        else:
            arrays[name] = _float32(kept)
        if encoding != "kept":
            arrays[f"{name}:mask"] = np.packbits(keep.flatten().numpy())
    return arrays


def decode(
    arrays: dict[str, np.ndarray],
    template: dict[str, torch.Tensor],
    gates: dict[str, torch.Tensor],
    encoding: Encoding,
) -> dict[str, torch.Tensor]:
    """The state `encode` sent, shaped as `template`; for `kept`, `gates` are the
    structure both sides share; otherwise the mask comes with the message (and `gates`
    are not read)."""
    state: dict[str, torch.Tensor] = {}
    held = held_entries(arrays, template, gates, encoding)
    for name, like in template.items():
        if name not in held:
            state[name] = torch.from_numpy(arrays[name].copy()).to(like.dtype).view(like.shape)
            continue
        keep = held[name]
        values = torch.from_numpy(arrays[name].astype(np.float32))
        if encoding == "int8":
            values = values * float(arrays[f"{name}:scale"][0])
        full = torch.zeros(like.shape, dtype=like.dtype)
        full[keep] = values.to(like.dtype)
        state[name] = full
    return state


def held_entries(
    arrays: dict[str, np.ndarray],
    template: dict[str, torch.Tensor],
    gates: dict[str, torch.Tensor],
    encoding: Encoding,
) -> dict[str, torch.Tensor]:
    """By name of each gated tensor, the entries the message holds: the shared structure
    (`kept`), or the sender's own mask (`bitmask`, `int8`); `dense` holds every entry."""
    if encoding == "dense":
        return {}
    if encoding == "kept":
        return {name: gate.expand_as(template[name]).bool() for name, gate in gates.items()}
    return {
        name: torch.from_numpy(
            np.unpackbits(arrays[f"{name}:mask"], count=like.numel()).astype(bool)
        ).view(like.shape)
        for name, like in template.items()
        if f"{name}:mask" in arrays
    }


def message_content(arrays: dict[str, np.ndarray], config: dict[str, int | float | str]) -> Any:
    """A Flower message's content (a RecordDict) holding `arrays` and `config`."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    return RecordDict(
        {
            "arrays": ArrayRecord({name: Array(array) for name, array in arrays.items()}),
            "config": ConfigRecord(dict(config)),
        }
    )


def message_parts(content: Any) -> tuple[dict[str, np.ndarray], dict[str, int | float | str]]:
    """The arrays and config of a content `message_content` made."""
    arrays = {name: array.numpy() for name, array in content["arrays"].items()}
    return arrays, dict(content["config"])


def content_bytes(content: Any) -> int:
    """Bytes of a Flower message's content, serialised as it travels."""
    from flwr.common import serde

    return serde.recorddict_to_proto(content).ByteSize()


def _float32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.to(torch.float32).contiguous().numpy()

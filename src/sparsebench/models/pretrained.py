"""Starting a run from weights trained elsewhere: a torchvision-format state dict (the
user's own ImageNet file; nothing is downloaded), or another run's final weights.

Every tensor whose name and shape match is loaded. Three differences are adapted, each
said in one line: the classifier for another number of classes stays at its
initialisation (it is replaced), a first convolution for grey images sums the file's
colour filters over their input channels (a grey image is R = G = B), and a tensor of
another shape (a small-image stem, a VGG head over a smaller pooled map) stays at its
initialisation.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

from sparsebench.errors import InputError

# `--init-from run:ID`: another run's final weights (the CLI finds its checkpoint).
RUN_PREFIX = "run:"


def source_digest(source: str | Path) -> str:
    """What identifies a start: its file's content hash (a sweep asks for it once per
    run, so it is remembered while the file's size and time stay the same)."""
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: --init-from file does not exist")
    stat = path.stat()
    return _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved by `torch.save(model.state_dict())`, read without running any
    code the file might carry; a checkpoint holding it under "state_dict" or "model"
    is read too."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"{path}: not a PyTorch state dict ({error})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


@torch.no_grad()
def load_pretrained(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> list[str]:
    """Copy `state` into `model` where it fits; returns the names left at their
    initialisation. Refuses a file that is not this model's (too few names match)."""
    own = model.state_dict()
    shared = [name for name in state if name in own]
    weights = [name for name in own if name.endswith("weight")]
    if len([n for n in shared if n.endswith("weight")]) < len(weights) // 2:
        raise InputError(
            f"{where}: not a state dict of this model ({len(shared)} of {len(own)} "
            "tensor names match; it must use torchvision's layer names)"
        )
    classifier = _classifier_names(model)
    kept: list[str] = []
    loaded = 0
    first_conv = next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))
    for name in shared:
        value, target = state[name], own[name]
        if value.shape == target.shape:
            target.copy_(value.to(target.dtype))
            loaded += name.endswith("weight")
        elif name == f"{first_conv}.weight" and target.shape[1] == 1 and value.shape[1] == 3:
            if value.shape[2:] == target.shape[2:] and value.shape[0] == target.shape[0]:
                target.copy_(value.sum(dim=1, keepdim=True).to(target.dtype))
                loaded += 1
            else:
                kept.append(name)
        else:
            kept.append(name)
    if loaded < len(weights) // 2:
        raise InputError(
            f"{where}: only {loaded} of {len(weights)} weights fit this model's shapes "
            "(a torchvision file holds the full-width model: --width 1)"
        )
    replaced = [name for name in kept if name.rsplit(".", 1)[0] in classifier]
    other = [name for name in kept if name not in replaced]
    if replaced:
        warnings.warn(
            f"{where}: classifier {', '.join(sorted({n.rsplit('.', 1)[0] for n in replaced}))}"
            " replaced for this data's classes (left at its initialisation)",
            stacklevel=2,
        )
    if other:
        warnings.warn(
            f"{where}: {len(other)} tensors of another shape left at their initialisation "
            f"({', '.join(other[:4])}{', ...' if len(other) > 4 else ''})",
            stacklevel=2,
        )
    return kept


def _classifier_names(model: nn.Module) -> set[str]:
    """The output layer (the last Linear): its shape follows the number of classes."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return {linears[-1]} if linears else set()

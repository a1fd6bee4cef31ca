"""How a data set's training images are dealt to federated clients.

Three schemes, each seeded (the same seed deals the same images to the same clients):

- `iid`: a shuffle cut into near-equal parts;
- `dirichlet`: for each class, the shares of its images are drawn from a
  Dirichlet(alpha) over the clients (small alpha: each client sees few classes; large
  alpha: close to IID), the usual label-skew benchmark of federated learning;
- `classes`: each client holds `classes_per_client` classes (dealt round-robin from a
  shuffled class order), each class's images split evenly among its clients.

A Dirichlet draw can leave a client with no image. It is drawn again (up to
`DIRICHLET_DRAWS` times, each draw seeded), as Flower Datasets' DirichletPartitioner does;
if every draw leaves a client empty the data cannot be dealt that way and the error
says which client and what to change. A client holding one class is allowed (it is the
hardest label skew) and reported in `Partition.warnings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from sparsebench.errors import InputError

Scheme = Literal["iid", "dirichlet", "classes"]
SCHEMES: tuple[str, ...] = ("iid", "dirichlet", "classes")
DIRICHLET_DRAWS = 10


@dataclass
class Partition:
    """Each client's indices into the training split, and its images per class."""

    indices: list[torch.Tensor]
    class_counts: list[list[int]]
    warnings: list[str] = field(default_factory=list)

    @property
    def clients(self) -> int:
        return len(self.indices)

    def sizes(self) -> list[int]:
        return [len(index) for index in self.indices]


def partition_clients(
    labels: torch.Tensor,
    clients: int,
    scheme: Scheme = "iid",
    *,
    seed: int = 0,
    alpha: float | None = None,
    classes_per_client: int | None = None,
    class_names: list[str] | None = None,
) -> Partition:
    """Deal the images whose labels are `labels` to `clients` clients by `scheme`."""
    labels = labels.cpu().long()
    num_classes = len(class_names) if class_names else int(labels.max()) + 1
    names = class_names or [str(c) for c in range(num_classes)]
    _check(len(labels), clients, scheme, alpha, classes_per_client, num_classes)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), clients)
    elif scheme == "dirichlet":
        assert alpha is not None
        parts = _dirichlet(labels.numpy(), clients, alpha, num_classes, rng)
    else:
        assert classes_per_client is not None
        parts = _by_classes(labels.numpy(), clients, classes_per_client, num_classes, rng)
    indices = [torch.from_numpy(np.sort(part)).long() for part in parts]
    counts = [torch.bincount(labels[i], minlength=num_classes).tolist() for i in indices]
    for client, index in enumerate(indices):
        if len(index) == 0:
            raise InputError(
                f"client {client} gets no image ({scheme}, {clients} clients): "
                "use fewer clients or more classes per client"
            )
    held = [[c for c, n in enumerate(row) if n] for row in counts]
    notes = [
        f"client {client} holds one class ({names[classes[0]]!r}, {len(indices[client])} images)"
        for client, classes in enumerate(held)
        if len(classes) == 1 and num_classes > 1
    ]
    present = torch.bincount(labels, minlength=num_classes).tolist()
    dealt = [sum(row[c] for row in counts) for c in range(num_classes)]
    unheld = [names[c] for c in range(num_classes) if present[c] and not dealt[c]]
    if unheld:
        notes.append(
            f"no client holds class(es) {', '.join(map(repr, unheld))}: their images are "
            "not trained on (more clients or more classes per client would deal them)"
        )
    return Partition(indices, counts, notes)


def _check(
    images: int,
    clients: int,
    scheme: str,
    alpha: float | None,
    classes_per_client: int | None,
    num_classes: int,
) -> None:
    if scheme not in SCHEMES:
        raise InputError(f"partition {scheme!r} is not one of {', '.join(SCHEMES)}")
    if clients < 1:
        raise InputError(f"clients must be at least 1, not {clients}")
    if clients > images:
        raise InputError(
            f"{clients} clients but {images} training images: each client needs an image"
        )
    if scheme == "dirichlet" and (alpha is None or not math.isfinite(alpha) or alpha <= 0):
        raise InputError(
            f"alpha must be a positive number for a Dirichlet partition, not {alpha} "
            "(0.1: strong label skew; 100: close to IID)"
        )
    if scheme == "classes" and (
        classes_per_client is None or not 1 <= classes_per_client <= num_classes
    ):
        raise InputError(
            f"classes per client must be between 1 and the data's {num_classes} classes, "
            f"not {classes_per_client}"
        )


def _dirichlet(
    labels: np.ndarray, clients: int, alpha: float, num_classes: int, rng: np.random.Generator
) -> list[np.ndarray]:
    for _ in range(DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for label in range(num_classes):
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).round().astype(int)
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
        dealt = [np.concatenate(pieces) for pieces in parts]
        if all(len(part) for part in dealt):
            return dealt
    empty = next(client for client, part in enumerate(dealt) if not len(part))
    raise InputError(
        f"client {empty} gets no image in any of {DIRICHLET_DRAWS} Dirichlet draws "
        f"(alpha {alpha}, {clients} clients, {len(labels)} images): "
        "use a larger alpha or fewer clients"
    )


def _by_classes(
    labels: np.ndarray, clients: int, per_client: int, num_classes: int, rng: np.random.Generator
) -> list[np.ndarray]:
    order = rng.permutation(num_classes)
    holders: dict[int, list[int]] = {c: [] for c in range(num_classes)}
    for client in range(clients):
        for slot in range(per_client):
            holders[int(order[(client * per_client + slot) % num_classes])].append(client)
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for label, owners in holders.items():
        if not owners:
            continue
        members = rng.permutation(np.flatnonzero(labels == label))
        for owner, piece in zip(owners, np.array_split(members, len(owners)), strict=True):
            parts[owner].append(piece)
    return [np.concatenate(p) if p else np.array([], dtype=np.int64) for p in parts]

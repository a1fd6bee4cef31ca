"""The typed records the results database is written with and read back as: a run as
the store files it, each epoch, each test, and the run's summary. Each record converts
to and from its stored row here and nowhere else; the store knows records, not settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sparsebench.confusion import Confusion, balanced_accuracy, recall_per_class


@dataclass(frozen=True)
class RunRecord:
    """A run as the `runs` table keys it: its id, its settings as stored, and the values
    tables and reports select by."""

    run_id: str
    config: dict[str, Any]
    model: str
    dataset: str
    method: str
    scenario: str  # the label: the baseline's name, a scenario's, or the targets'
    conv_sparsity: float
    linear_sparsity: float
    seed: int
    epochs: int  # every epoch the run trains


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: how training went, what validation said, what it cost."""

    epoch: int
    train_loss: float
    train_accuracy: float
    train_f1: float
    train_precision: float
    train_recall: float
    val_loss: float
    val_accuracy: float
    val_f1: float
    val_precision: float
    val_recall: float
    train_time_s: float
    peak_memory_bytes: float | None
    memory_kind: str | None
    energy_j: float | None
    energy_source: str | None
    energy_missing_reason: str | None
    # Later than the first release: None in epochs an earlier release stored.
    execution: str | None = None  # compact or masked
    train_macs_per_sample: float | None = None  # as executed
    train_macs_dense_per_sample: float | None = None  # of the full-size network
    val_balanced_accuracy: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EpochRecord:
        """From a stored row (a dict or a `sqlite3.Row`) or a checkpoint's history, as
        any release wrote it."""
        present = set(row.keys())
        return cls(**{name: row[name] if name in present else None for name in EPOCH_COLUMNS})

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


EPOCH_COLUMNS = [column.name for column in fields(EpochRecord)]


@dataclass(frozen=True)
class TestMetrics:
    """A network's test on the held-out split: the stored metrics, its confusion matrix,
    and for the best-validation selection the epoch whose weights were tested."""

    __test__ = False  # not a pytest test class, whatever its name

    loss: float
    accuracy: float
    f1: float
    precision: float
    recall: float
    inference_time_per_sample_s: float
    inference_energy_j: float | None
    inference_energy_source: str | None
    inference_energy_missing_reason: str | None
    params_dense: int
    params_effective: int
    macs_dense: int
    macs_effective: int
    confusion_matrix: Confusion
    # Later than the first release: None in tests an earlier release stored.
    auroc: float | None = None  # two-class data, of the positive class
    average_precision: float | None = None
    positive_class: str | None = None
    # The compact network's own counts (the one compact execution tests, and export
    # writes): None for a run trained masked, or stored before numerics 2. `params_dense`
    # and `macs_dense` are the full-size network's; `*_effective`, its non-zero weights'.
    params_compact: int | None = None
    macs_compact: int | None = None
    epoch: int | None = None  # the best-validation selection's epoch

    @property
    def balanced_accuracy(self) -> float | None:
        return balanced_accuracy(self.confusion_matrix)

    @property
    def recall_per_class(self) -> list[float | None]:
        return recall_per_class(self.confusion_matrix)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], confusion: Confusion) -> TestMetrics:
        """From a stored row (`TEST_COLUMNS`, maybe an `epoch`) and its confusion matrix."""
        epoch = row["epoch"] if "epoch" in set(row.keys()) else None
        values = {name: row[name] for name in TEST_COLUMNS}
        return cls(**values, confusion_matrix=confusion, epoch=epoch)

    def stored(self) -> list[Any]:
        """The values of `TEST_COLUMNS`, in their order."""
        return [getattr(self, name) for name in TEST_COLUMNS]

    def as_json(self) -> dict[str, Any]:
        shown = asdict(self)
        if self.epoch is None:
            del shown["epoch"]
        shown["balanced_accuracy"] = self.balanced_accuracy
        shown["recall_per_class"] = self.recall_per_class
        return shown


# The test's columns in the test_metrics table, in the first release's order.
TEST_COLUMNS = [
    "loss",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "inference_time_per_sample_s",
    "inference_energy_j",
    "inference_energy_source",
    "inference_energy_missing_reason",
    "params_dense",
    "params_effective",
    "macs_dense",
    "macs_effective",
    "auroc",
    "average_precision",
    "positive_class",
    "params_compact",
    "macs_compact",
]


@dataclass
class RunSummary:
    """A run in one shape, whether it just trained (`train_run`'s result) or was read
    back from the store (`ResultsStore.run_summary`); `as_json` is what
    `sparsebench train --json` prints and trackers receive."""

    run_id: str
    status: str
    config: dict[str, Any]
    device: str | None
    data: dict[str, Any] | None
    epochs: list[EpochRecord]
    test: TestMetrics | None  # the last epoch's weights
    test_best_val: TestMetrics | None  # the best validation epoch's, with its epoch
    layers: list[dict[str, Any]]  # achieved sparsity per layer
    sparsity_by_kind: dict[str, float]
    error: str | None = None
    derived_from: str | None = None  # the dense run a derived run's training is
    legacy_run_id: str | None = None  # the first release's id
    earlier_run_ids: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    mask_updates_every: int | None = None  # optimiser steps; None: never or not known
    resumed_from_epoch: int = 0
    reused: bool = False  # found finished, not trained by this call
    # what produced it (`measure.provenance`): None for runs stored before numerics 2
    provenance: dict[str, Any] | None = None

    @property
    def execution(self) -> str | None:
        """compact or masked: how the last epoch trained (None before any epoch)."""
        return self.epochs[-1].execution if self.epochs else None

    def epoch_mean(self, key: str) -> float | None:
        """The mean of `key` over the epochs that have it (a resumed older run may not)."""
        values = [getattr(row, key) for row in self.epochs if getattr(row, key) is not None]
        return sum(values) / len(values) if values else None

    def as_json(self) -> dict[str, Any]:
        shown = asdict(self)
        for key in ("test", "test_best_val"):
            tested = getattr(self, key)
            shown[key] = None if tested is None else tested.as_json()
        shown["sparsity"] = {
            "layers": shown.pop("layers"),
            "by_kind": shown.pop("sparsity_by_kind"),
        }
        shown["execution"] = self.execution
        for key in ("train_macs_per_sample", "train_macs_dense_per_sample"):
            shown[key] = self.epoch_mean(key)
        return shown


@dataclass(frozen=True)
class RoundRecord:
    """One federated round: the global model on the test and validation splits after it,
    and what the round cost. Round 0 is the set-up (the initial model; the settings and
    masks sent)."""

    round: int
    test_loss: float
    test_accuracy: float
    test_balanced_accuracy: float
    bytes_up: int  # the clients' replies, serialised as they travel
    bytes_down: int  # the server's messages to the clients
    clients_sampled: int
    clients_failed: int
    client_time_s: float  # the slowest client's local training
    round_time_s: float
    train_macs_per_sample: float | None  # of the clients' local steps, as executed
    mask_round: int = 0  # 1: the clients readjusted their masks and sent them
    # The global model on the validation split the server holds (numerics 2): the best
    # round is chosen on it, never on the test split. None in rounds stored before.
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClientRoundRecord:
    """One client's part in a round; `error` says why it failed (then no update)."""

    client: int
    examples: int | None
    bytes_up: int
    bytes_down: int
    train_time_s: float | None
    train_loss: float | None
    received_accuracy: float | None  # the global model on the client's own images
    error: str | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def _sql_type(kind: Any) -> str:
    text = str(kind)
    return "TEXT" if "str" in text else "INTEGER" if text.startswith("int") else "REAL"


ROUND_COLUMNS = {column.name: _sql_type(column.type) for column in fields(RoundRecord)}
CLIENT_ROUND_COLUMNS = {column.name: _sql_type(column.type) for column in fields(ClientRoundRecord)}

"""Classification metrics from a confusion matrix (rows: true class, columns: predicted).

Macro averages weigh every class equally; a class never predicted has precision 0 and a
class absent from the labels has recall 0 (and F1 0), as in scikit-learn's default
`zero_division=0`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsebench.ranking import ranking_metrics


def confusion_matrix(
    labels: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    index = labels.to(torch.int64) * num_classes + predictions.to(torch.int64)
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


@dataclass(frozen=True)
class ClassificationMetrics:
    loss: float
    accuracy: float
    f1: float
    precision: float
    recall: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{key}": value for key, value in self.__dict__.items()}


def metrics_from_confusion(confusion: torch.Tensor, loss: float) -> ClassificationMetrics:
    confusion = confusion.to(torch.float64)
    true_positive = confusion.diagonal()
    predicted = confusion.sum(dim=0)
    actual = confusion.sum(dim=1)
    total = confusion.sum()
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, actual)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return ClassificationMetrics(
        loss=float(loss),
        accuracy=float(true_positive.sum() / total) if total > 0 else 0.0,
        f1=float(f1.mean()),
        precision=float(precision.mean()),
        recall=float(recall.mean()),
    )


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), 0.0)


class MetricAccumulator:
    """Sums loss and the confusion matrix over batches, on the batches' device; with a
    `positive` class, keeps each image's probability of it (for AUROC and average
    precision, which rank images rather than count them)."""

    def __init__(self, num_classes: int, device: torch.device, positive: int | None = None) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.count = 0
        self.positive = positive
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def add(self, logits: torch.Tensor, labels: torch.Tensor, mean_loss: torch.Tensor) -> None:
        predictions = logits.detach().argmax(dim=1)
        self.confusion += confusion_matrix(labels, predictions, self.num_classes)
        self.loss_sum += mean_loss.detach().to(torch.float64) * labels.numel()
        self.count += labels.numel()
        if self.positive is not None:
            probabilities = logits.detach().to(torch.float64).softmax(dim=1)
            self.scores.append(probabilities[:, self.positive].cpu())
            self.labels.append(labels.cpu())

    def ranking(self) -> dict[str, float | None]:
        """AUROC and average precision of the positive class (None without one)."""
        if self.positive is None or not self.scores:
            return {"auroc": None, "average_precision": None}
        return ranking_metrics(
            torch.cat(self.scores).numpy(), torch.cat(self.labels).numpy(), self.positive
        )

    def result(self) -> ClassificationMetrics:
        loss = float(self.loss_sum) / max(self.count, 1)
        return metrics_from_confusion(self.confusion.cpu(), loss)

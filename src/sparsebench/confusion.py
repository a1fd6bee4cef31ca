"""Metrics for imbalanced data that follow from a confusion matrix alone (rows: true
class, columns: predicted), in plain Python: training, the results database and the
report compute them alike, and a run of any release that stored its matrix gets them.

On inspection data most images are good parts: a network that never finds a defect
scores the share of good parts in accuracy, and 1 / number of classes in balanced
accuracy.
"""

from __future__ import annotations

Confusion = list[list[int]]


def recall_per_class(confusion: Confusion) -> list[float | None]:
    """Each class's share of its images predicted as it; None for a class the labels
    do not hold (its recall is undefined, not zero)."""
    return [row[index] / sum(row) if sum(row) else None for index, row in enumerate(confusion)]


def balanced_accuracy(confusion: Confusion) -> float | None:
    """The mean recall over the classes the labels hold, as scikit-learn's
    `balanced_accuracy_score`; None when there are no labels at all."""
    recalls = [recall for recall in recall_per_class(confusion) if recall is not None]
    return sum(recalls) / len(recalls) if recalls else None


def majority_share(confusion: Confusion) -> float | None:
    """The accuracy of always answering the largest class: the level a network that
    learned nothing reaches on imbalanced data; None when there are no labels."""
    counts = [sum(row) for row in confusion]
    return max(counts) / sum(counts) if sum(counts) else None

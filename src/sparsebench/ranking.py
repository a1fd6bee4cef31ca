"""Two-class metrics that rank the test images by the network's probability of the
positive class (the defect): AUROC and average precision, threshold-free where accuracy
and balanced accuracy judge the argmax alone. Which class is positive matters to
average precision (AUROC is the same either way): the one a user names, else the one
named as a defect, else the rarer in training, since defects are the rare class of
inspection data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from sparsebench.errors import InputError

DEFECT_NAMES = frozenset({"anomaly", "abnormal", "defect", "defective", "bad", "ng", "positive"})


def positive_index(
    class_names: Sequence[str], train_counts: Sequence[int], chosen: str | None
) -> int | None:
    """The positive class of two-class data (None for more classes); `chosen` must name
    one of the classes. A tie in training counts takes the second class."""
    if chosen is not None:
        if len(class_names) != 2:
            raise InputError(
                f"positive class {chosen!r}: the data has {len(class_names)} classes; "
                "AUROC and average precision are for two-class data"
            )
        if chosen not in class_names:
            raise InputError(
                f"positive class {chosen!r} is not a class of the data "
                f"(its classes: {', '.join(class_names)})"
            )
        return list(class_names).index(chosen)
    if len(class_names) != 2:
        return None
    named = [index for index, name in enumerate(class_names) if name.lower() in DEFECT_NAMES]
    if len(named) == 1:
        return named[0]
    return 0 if train_counts[0] < train_counts[1] else 1


def ranking_metrics(
    positive_scores: np.ndarray, labels: np.ndarray, positive: int
) -> dict[str, float | None]:
    """AUROC and average precision of `positive_scores` (the probability of class
    `positive`) against integer `labels`; None when the test split holds one class only
    (neither is defined)."""
    truth = np.asarray(labels) == positive
    if truth.all() or not truth.any():
        return {"auroc": None, "average_precision": None}
    return {
        "auroc": float(roc_auc_score(truth, positive_scores)),
        "average_precision": float(average_precision_score(truth, positive_scores)),
    }

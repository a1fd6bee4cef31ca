"""Training: the run config, the sparse trainer, the loop with its measurements,
checkpoint and resume."""

from sparsebench.settings.run import RunConfig  # re-exported: users import it from here
from sparsebench.train.evaluation import evaluate
from sparsebench.train.loop import train_run
from sparsebench.train.metrics import confusion_matrix, metrics_from_confusion
from sparsebench.train.trainer import SparseTrainer

__all__ = [
    "RunConfig",
    "SparseTrainer",
    "confusion_matrix",
    "evaluate",
    "metrics_from_confusion",
    "train_run",
]

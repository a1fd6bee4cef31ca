"""sparsebench: train, compare and deploy sparse (pruned) convolutional networks.

import sparsebench as sb
model = sb.build_model("resnet18", num_classes=8, image_size=28, width=0.25)
method = sb.make_method("set", sb.SparsityTargets(conv=0.5, linear=0.8))
trainer = sb.SparseTrainer(
    model, optimizer, method, epochs=10, steps_per_epoch=100, input_shape=(3, 28, 28)
)
"""

from sparsebench.data import load_dataset, register_dataset
from sparsebench.errors import InputError
from sparsebench.models import build_model, register_model
from sparsebench.settings import RunConfig
from sparsebench.sparsity import (
    SCENARIOS,
    PruningMethod,
    SparsityTargets,
    make_method,
    sparsity_report,
)
from sparsebench.store import ResultsStore
from sparsebench.store.results import open_results
from sparsebench.train import SparseTrainer, train_run
from sparsebench.train.schedule import LearningRate

__version__ = "0.1.0"

__all__ = [
    "SCENARIOS",
    "InputError",
    "LearningRate",
    "PruningMethod",
    "ResultsStore",
    "RunConfig",
    "SparseTrainer",
    "SparsityTargets",
    "build_model",
    "load_dataset",
    "make_method",
    "open_results",
    "register_dataset",
    "register_model",
    "sparsity_report",
    "train_run",
]

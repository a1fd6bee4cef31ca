"""Data sets: loaders, splits held in memory, batches."""

from sparsebench.data.dataset import BatchLoader, ImageDataset, Split
from sparsebench.data.options import DataOptions, LoaderOptions
from sparsebench.data.registry import (
    DatasetSpec,
    dataset_names,
    dataset_spec,
    load_dataset,
    probe_dataset,
    register_dataset,
)

__all__ = [
    "BatchLoader",
    "DataOptions",
    "DatasetSpec",
    "ImageDataset",
    "LoaderOptions",
    "Split",
    "dataset_names",
    "dataset_spec",
    "load_dataset",
    "probe_dataset",
    "register_dataset",
]

"""Datasets: IDX files found, verified and loaded into memory; batch iterators over them."""

from .datasets import BatchLoader, ImageDataset, epoch_permutation, load_dataset, text_labels
from .idx import IDXError, read_idx, write_idx
from .sources import ChecksumError, DataNotFoundError, locate
from .specs import SPECS, DatasetSpec, get_spec

__all__ = [
    "SPECS",
    "BatchLoader",
    "ChecksumError",
    "DataNotFoundError",
    "DatasetSpec",
    "IDXError",
    "ImageDataset",
    "epoch_permutation",
    "get_spec",
    "load_dataset",
    "locate",
    "read_idx",
    "text_labels",
    "write_idx",
]

"""Datasets: IDX files found, verified and loaded into memory; your own data (CSV, image folders,
NumPy, Parquet, IDX folders) read from a spec; batch iterators over them."""

from .datasets import BatchLoader, ImageDataset, epoch_permutation, load_dataset, text_labels
from .idx import IDXError, read_idx, write_idx
from .sources import ChecksumError, DataNotFoundError, locate
from .specs import SPECS, DatasetSpec, get_spec
from .userdata import (
    KINDS,
    DataOptions,
    DataSpec,
    check_record,
    load_data_spec,
    load_from_record,
    parse_image_shape,
    parse_spec,
    stratified_split,
)

__all__ = [
    "KINDS",
    "SPECS",
    "BatchLoader",
    "ChecksumError",
    "DataNotFoundError",
    "DataOptions",
    "DataSpec",
    "DatasetSpec",
    "IDXError",
    "ImageDataset",
    "check_record",
    "epoch_permutation",
    "get_spec",
    "load_data_spec",
    "load_dataset",
    "load_from_record",
    "locate",
    "parse_image_shape",
    "parse_spec",
    "read_idx",
    "stratified_split",
    "text_labels",
    "write_idx",
]

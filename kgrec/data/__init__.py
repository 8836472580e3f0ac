"""Datasets: the typed :class:`Dataset`, readers, built-in and synthetic data."""

from kgrec.data.builtin import BUILTIN_DATASETS, cache_dir, fetch_dataset_files, load_dataset
from kgrec.data.dataset import Dataset
from kgrec.data.readers import read_atomic, read_atomic_file, read_presplit, read_table
from kgrec.data.synthetic import make_synthetic

__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "cache_dir",
    "fetch_dataset_files",
    "load_dataset",
    "make_synthetic",
    "read_atomic",
    "read_atomic_file",
    "read_presplit",
    "read_table",
]

"""Datasets and their splits: the typed :class:`Dataset`, readers, built-in and synthetic data,
and :class:`Split` (made before anything else reads the interactions)."""

from kgrec.data.builtin import BUILTIN_DATASETS, cache_dir, fetch_dataset_files, load_dataset
from kgrec.data.dataset import Dataset
from kgrec.data.readers import read_atomic, read_atomic_file, read_presplit, read_table
from kgrec.data.split import SPLIT_STRATEGIES, Split, check_ratios, split_dataset
from kgrec.data.config import DataConfig
from kgrec.data.synthetic import make_synthetic

__all__ = [
    "BUILTIN_DATASETS",
    "DataConfig",
    "SPLIT_STRATEGIES",
    "Split",
    "check_ratios",
    "split_dataset",
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

"""kgrec: knowledge-graph recommendation with text-aligned heterogeneous GNNs."""

from kgrec.data import Dataset, load_dataset, make_synthetic
from kgrec.errors import ConfigError, DataError, KGRecError, UnknownIdError
from kgrec.graph import GraphData, Vocab, build_graph, build_vocabs
from kgrec.split import Split, split_dataset

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Dataset",
    "GraphData",
    "KGRecError",
    "Split",
    "UnknownIdError",
    "Vocab",
    "build_graph",
    "build_vocabs",
    "load_dataset",
    "make_synthetic",
    "split_dataset",
]

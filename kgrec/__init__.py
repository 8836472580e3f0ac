"""kgrec: knowledge-graph recommendation with text-aligned heterogeneous GNNs."""

from kgrec.base import BaseRecommender
from kgrec.data import Dataset, load_dataset, make_synthetic
from kgrec.eval import EvalResult, evaluate
from kgrec.errors import ConfigError, DataError, KGRecError, UnknownIdError
from kgrec.graph import GraphData, Vocab, build_graph, build_vocabs
from kgrec.recommender import Recommender
from kgrec.split import Split, split_dataset
from kgrec.text import EmbeddingCache, HashingTextEncoder, TextEncoder, TextTemplates, encode_node_texts

__version__ = "0.1.0"

__all__ = [
    "BaseRecommender",
    "ConfigError",
    "DataError",
    "EmbeddingCache",
    "EvalResult",
    "HashingTextEncoder",
    "Dataset",
    "GraphData",
    "KGRecError",
    "Recommender",
    "Split",
    "TextEncoder",
    "TextTemplates",
    "UnknownIdError",
    "Vocab",
    "build_graph",
    "build_vocabs",
    "encode_node_texts",
    "evaluate",
    "load_dataset",
    "make_synthetic",
    "split_dataset",
]

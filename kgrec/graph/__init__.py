"""The heterogeneous user–item–tag–entity training graph, built from a dataset and its split.

:mod:`~kgrec.graph.build` builds it (train interactions only), :mod:`~kgrec.graph.inputs`
selects what a model reads (the ablation switches), :mod:`~kgrec.graph.state` stores it in
a checkpoint, :mod:`~kgrec.graph.scale` builds a synthetic one of any size as tensors.
"""

from kgrec.graph.build import (HAS_ATTRIBUTE, HAS_TAG, INTERACTS, GraphData, Vocab, add_edges, build_graph,
                               build_vocabs, categorical_codes, data_on, prune_entities, reverse, split_to_index)
from kgrec.graph.inputs import InputConfig, select_inputs
from kgrec.graph.scale import make_scale_world, scale_graph
from kgrec.graph.state import edge_key, graph_from_state, graph_state, parse_edge_key, train_fingerprint

__all__ = [
    "HAS_ATTRIBUTE",
    "HAS_TAG",
    "INTERACTS",
    "GraphData",
    "InputConfig",
    "Vocab",
    "add_edges",
    "build_graph",
    "build_vocabs",
    "categorical_codes",
    "data_on",
    "edge_key",
    "graph_from_state",
    "graph_state",
    "make_scale_world",
    "parse_edge_key",
    "prune_entities",
    "reverse",
    "scale_graph",
    "select_inputs",
    "split_to_index",
    "train_fingerprint",
]

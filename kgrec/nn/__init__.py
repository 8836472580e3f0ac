"""Neural building blocks of kgrec (plain ``torch.nn`` + PyG; no Lightning inside)."""

from kgrec.nn.config import GNNConfig, graph_info
from kgrec.nn.conv import RelationalLightConv
from kgrec.nn.flatten import FlatGraph, flatten_graph, full_degrees, relation_layout
from kgrec.nn.losses import alignment_loss, bpr_loss, gramian_loss, sampled_softmax_loss
from kgrec.nn.model import KGRecModel
from kgrec.nn.scoring import SCORE_FUNCTIONS, score_matrix, score_pairs, score_space

__all__ = [
    "FlatGraph",
    "GNNConfig",
    "KGRecModel",
    "RelationalLightConv",
    "SCORE_FUNCTIONS",
    "alignment_loss",
    "bpr_loss",
    "flatten_graph",
    "full_degrees",
    "gramian_loss",
    "graph_info",
    "relation_layout",
    "sampled_softmax_loss",
    "score_matrix",
    "score_pairs",
    "score_space",
]

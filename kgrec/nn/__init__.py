"""Neural building blocks of kgrec (plain ``torch.nn`` + PyG; no Lightning inside)."""

from kgrec.nn.conv import RelationalLightConv
from kgrec.nn.flatten import FlatGraph, flatten_graph, full_degrees, relation_layout
from kgrec.nn.losses import alignment_loss, bpr_loss, gramian_loss, sampled_softmax_loss
from kgrec.nn.model import KGRecModel

__all__ = [
    "FlatGraph",
    "KGRecModel",
    "RelationalLightConv",
    "alignment_loss",
    "bpr_loss",
    "flatten_graph",
    "full_degrees",
    "gramian_loss",
    "relation_layout",
    "sampled_softmax_loss",
]

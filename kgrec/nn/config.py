"""``GNNConfig``: the architecture of :class:`~kgrec.nn.KGRecModel` (the ``model.gnn`` group)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

from kgrec.errors import ConfigError

__all__ = ["GNNConfig", "graph_info"]

#: The keys :func:`graph_info` gives and :class:`~kgrec.nn.KGRecModel` reads.
GRAPH_INFO_KEYS = ("num_nodes", "text_dims", "edge_types", "num_kg_relations")


def graph_info(graph) -> dict:
    """What a model must know about a :class:`~kgrec.graph.GraphData`: node counts per type,
    text feature widths, edge types, number of KG relations, and the dataset's name.

    Derived from the data, never typed by a user: the CLI links it from the data module
    into the model (``link_arguments(..., apply_on="instantiate")``).
    """
    data = graph.data
    return {
        "num_nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types},
        "text_dims": {nt: int(data[nt].x.size(-1)) for nt in data.node_types if "x" in data[nt]},
        "edge_types": [list(et) for et in data.edge_types],
        "num_kg_relations": len(graph.relations),
        "dataset": graph.dataset_name,
    }


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"gnn.{name} must be a positive integer; got {value!r}.")


@dataclass(frozen=True)
class GNNConfig:
    """The kgrec GNN: input embeddings, message passing, scoring.

    Args:
        hidden_channels: Embedding width.
        num_layers: Message-passing layers (0: the input embeddings score directly).
        use_id_embeddings: Learn an id embedding per user, item and tag, added to its
            projected text (``False`` needs text for users and items).
        score: ``dot`` or ``cosine`` user–item scores.
        dropout: Dropout on the input embeddings while training.
        side_weight: Share of tag, attribute and KG messages at a node that also receives
            user–item messages (see :func:`~kgrec.nn.flatten_graph`).
        id_dropout: Share of items trained without their id embedding each step (as in
            DropoutNet), so text and side edges learn to place an item alone.
        learn_relation_weights: Learn one weight per KG relation and direction; ``False``
            keeps each at 1.
        cold_detach: The cold view reads the warm graph's states without gradient, so the
            cold-view loss trains the item text projection only, not the embeddings the
            warm ranking uses.
        warm_text: Users and items with a trained id embedding add their projected text to
            it (``False``: text places only those without one).
        init_std: Standard deviation of the user and item id embeddings' initialisation
            (tag and entity id embeddings start at zero).
    """

    hidden_channels: int = 64
    num_layers: int = 2
    use_id_embeddings: bool = True
    score: Literal["dot", "cosine"] = "dot"
    dropout: float = 0.0
    side_weight: float = 0.1
    id_dropout: float = 0.0
    learn_relation_weights: bool = False
    cold_detach: bool = True
    warm_text: bool = True
    init_std: float = 0.1

    def __post_init__(self) -> None:
        _positive_int("hidden_channels", self.hidden_channels)
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, numbers.Integral) or self.num_layers < 0:
            raise ConfigError(f"gnn.num_layers must be an integer >= 0; got {self.num_layers!r}.")
        if self.score not in ("dot", "cosine"):
            raise ConfigError(f"gnn.score must be one of {{'dot', 'cosine'}}; got {self.score!r}.")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"gnn.dropout must be in [0, 1); got {self.dropout!r}.")
        if not self.side_weight >= 0:
            raise ConfigError(f"gnn.side_weight must be >= 0; got {self.side_weight!r}.")
        if not 0 <= self.id_dropout < 1:
            raise ConfigError(f"gnn.id_dropout must be in [0, 1); got {self.id_dropout!r}.")
        if not self.init_std > 0:
            raise ConfigError(f"gnn.init_std must be > 0; got {self.init_std!r}.")

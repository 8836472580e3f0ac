"""The kgrec model: text-aligned heterogeneous light GNN (plain ``torch.nn`` + PyG)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from kgrec.errors import ConfigError
from kgrec.nn.config import GRAPH_INFO_KEYS, GNNConfig
from kgrec.nn.conv import RelationalLightConv
from kgrec.nn.flatten import FlatGraph, flatten_graph, full_degrees, relation_layout, side_relation_mask
from kgrec.nn.scoring import score_matrix, score_pairs

__all__ = ["KGRecModel"]

EdgeType = tuple[str, str, str]


class KGRecModel(nn.Module):
    r"""Text-aligned heterogeneous graph recommender.

    Each node starts from :math:`\mathbf{h}^{(0)}_v = \mathbf{e}_v + P_{t(v)}\,\mathbf{x}_v`:
    a learnable id embedding (where enabled) plus a projection of its text embedding
    :math:`\mathbf{x}_v` (where the node type has text). Nodes without either — KG
    entities in a text-only model — always get id embeddings. ``num_layers`` layers of
    :class:`~kgrec.nn.RelationalLightConv` propagate over every edge type (user–item
    train edges, tags, user attributes, KG relations); the output is the mean of all
    layers, and a user–item score is the dot product (or cosine) of their outputs
    (:mod:`kgrec.nn.scoring`).

    Users and items with no training interaction have no trained id embedding, so
    theirs is masked to zero (``id_mask``): a cold item is placed by its text and its
    tag/KG edges alone — this is what makes the model inductive.

    Args:
        graph_info: What the model knows of the graph (:func:`~kgrec.nn.graph_info`):
            ``num_nodes`` per node type, ``text_dims`` per node type with text (none:
            the model reads no text), ``edge_types``, ``num_kg_relations``.
        config: The architecture (:class:`~kgrec.nn.GNNConfig`).

    Shapes:
        :meth:`forward` returns ``{node_type: (num_nodes_in_data, hidden_channels)}``.
    """

    def __init__(self, graph_info: Mapping[str, Any], config: GNNConfig = GNNConfig()) -> None:
        super().__init__()
        missing = [k for k in GRAPH_INFO_KEYS if k not in graph_info]
        if missing:
            raise ConfigError(f"graph_info lacks {missing}; derive it from the graph with kgrec.nn.graph_info.")
        num_nodes, text_dims = dict(graph_info["num_nodes"]), dict(graph_info["text_dims"])
        use_text = bool(text_dims)
        if not config.use_id_embeddings and not (use_text and {"user", "item"} <= set(text_dims)):
            raise ConfigError("gnn.use_id_embeddings=False needs text features for users and items.")
        self.config = config
        self.node_types = list(num_nodes)
        self.edge_types = [tuple(et) for et in graph_info["edge_types"]]
        self.num_kg_relations = int(graph_info["num_kg_relations"])
        self.hidden_channels = config.hidden_channels
        self.score_fn = config.score
        self.use_text = use_text
        self.dropout = config.dropout
        self.side_weight = config.side_weight
        self.id_dropout = config.id_dropout
        self.cold_detach = config.cold_detach
        self.warm_text = config.warm_text
        self.text_proj = nn.ModuleDict()
        for nt, dim in text_dims.items():
            if nt in num_nodes:
                self.text_proj[nt] = nn.Linear(dim, config.hidden_channels)
        self.id_emb = nn.ModuleDict()
        for nt, n in num_nodes.items():
            if config.use_id_embeddings or nt not in self.text_proj:
                emb = nn.Embedding(n, config.hidden_channels)
                if nt in ("user", "item"):
                    nn.init.normal_(emb.weight, std=config.init_std)
                else:
                    # tags and KG entities start at zero: one that never receives a gradient
                    # (e.g. an actor of cold items only) then adds nothing instead of noise
                    nn.init.zeros_(emb.weight)
                self.id_emb[nt] = emb
        num_rel, learnable = relation_layout(self.edge_types, self.num_kg_relations)
        if not config.learn_relation_weights:
            learnable = torch.zeros_like(learnable)
        self.convs = nn.ModuleList(
            RelationalLightConv(num_rel, learnable) for _ in range(config.num_layers)
        )
        # relation ids of side messages (everything but user-item edges), for cold_view
        self.register_buffer("side_relations", side_relation_mask(self.edge_types, self.num_kg_relations),
                             persistent=False)
        # Nodes whose id embedding is trained (set by set_id_mask; default: all).
        for nt in ("user", "item"):
            if nt in num_nodes:
                self.register_buffer(f"id_mask_{nt}", torch.ones(num_nodes[nt], dtype=torch.bool))

    # ----------------------------------------------------------------- inputs
    def set_id_mask(self, node_type: str, mask: Tensor) -> None:
        """Mark which ``node_type`` nodes have a trained id embedding (``(num_nodes,)`` bool)."""
        getattr(self, f"id_mask_{node_type}").copy_(mask.to(torch.bool))

    def project_text(self, node_type: str, x: Tensor) -> Tensor:
        """Text embeddings ``(N, text_dim)`` projected to ``(N, hidden_channels)``."""
        return self.text_proj[node_type](x.float())

    def input_embeddings(self, data: HeteroData, text_only: dict[str, Tensor] | None = None,
                         before_dropout: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """:math:`\\mathbf{h}^{(0)}` per node type for the nodes of ``data`` (``n_id`` if sampled).

        Args:
            data: The (sub)graph.
            text_only: If given, its keys (node types) are filled with their input as a node
                without an id embedding would have it (its projected text, after dropout).
            before_dropout: If given, filled with every node type's input before dropout (what
                the weight decay of :class:`~kgrec.lightning.KGRecModule` penalises).
        """
        out = {}
        for nt in self.node_types:
            if nt not in data.node_types:
                continue
            store = data[nt]
            n = int(store.num_nodes)
            device = next(self.parameters()).device
            n_id = store.n_id if "n_id" in store else torch.arange(n, device=device)
            h = None
            has_id = None  # (n,) bool: the node's id embedding is trained and used this step
            if nt in self.id_emb:
                # nodes added after training (new users/items at inference) have no id embedding
                emb = self.id_emb[nt]
                has_id = n_id < emb.num_embeddings
                safe = n_id.clamp(max=emb.num_embeddings - 1)
                if hasattr(self, f"id_mask_{nt}"):
                    has_id = has_id & getattr(self, f"id_mask_{nt}")[safe]
                if self.training and self.id_dropout > 0 and nt == "item" and nt in self.text_proj:
                    # train some items as if cold: their text and side edges must carry them
                    has_id = has_id & (torch.rand(has_id.size(0), device=has_id.device) >= self.id_dropout)
                h = emb(safe) * has_id.unsqueeze(-1)
            if nt in self.text_proj and "x" in store:
                t = self.project_text(nt, store.x)
                if text_only is not None and nt in text_only:
                    text_only[nt] = F.dropout(t, self.dropout, self.training)
                if h is None:
                    h = t
                elif self.warm_text or not hasattr(self, f"id_mask_{nt}"):
                    h = h + t
                else:
                    # text places only the users / items without a trained id embedding
                    h = h + t * (~has_id).unsqueeze(-1)
            if h is None:
                h = torch.zeros(n, self.hidden_channels, device=device)
            if before_dropout is not None:
                before_dropout[nt] = h
            out[nt] = F.dropout(h, self.dropout, self.training)
        return out

    def set_full_graph(self, data: HeteroData | None, device: torch.device | str | None = None) -> None:
        """Remember the full training graph's degrees: sampled subgraphs are normalised by them.

        ``device``: where to keep them (the training device, so that a sampled step on a GPU
        does not copy a node-count-sized vector per edge type from the host every time).
        ``None`` as ``data`` forgets them: full-graph training never looks them up.
        """
        if data is None:
            self._degrees = None
            return
        self._degrees = {et: tuple(d.to(device) for d in pair) if device is not None else pair
                         for et, pair in full_degrees(data).items()}

    def flatten(self, data: HeteroData) -> FlatGraph:
        """Precompute the propagation graph of ``data`` (reuse it for a fixed full graph).

        A sampled subgraph (node stores carrying ``n_id``) is normalised with the full
        graph's degrees when :meth:`set_full_graph` was called.
        """
        degrees = getattr(self, "_degrees", None)
        sampled = any("n_id" in data[nt] for nt in data.node_types)
        return flatten_graph(data, self.node_types, self.edge_types, self.num_kg_relations, self.side_weight,
                             degrees=degrees if sampled else None)

    # ---------------------------------------------------------------- forward
    def forward(self, data: HeteroData, flat: FlatGraph | None = None,
                cold_view: bool = False, inputs: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Final embeddings per node type of the nodes in ``data``.

        ``inputs``, if given, is filled with each node type's input embeddings before dropout,
        so a caller that penalises them need not compute them a second time.

        With ``cold_view``, the result also holds ``"item_cold"``: every item's embedding
        as if it had no interactions and no id embedding — its projected text plus, at each
        layer, only the side (tag, KG) messages it receives, where the second layer's
        messages carry the item's own input back (item -> tag/entity -> item) as its text
        rather than its id-bearing input. For ``num_layers <= 2`` that is exactly what this
        forward pass gives an item without user–item edges and id embedding (a test compares
        the two); deeper models keep longer echoes of the item's own input. Training warm
        items' cold views to rank (``cold_weight`` of :class:`~kgrec.lightning.KGRecModule`)
        trains the text projection and the KG/tag pathway for cold start on every training
        edge, at the cost of one more side-only propagation per layer.
        """
        flat = flat if flat is not None else self.flatten(data)
        device = flat.edge_index.device
        text0: dict[str, Tensor] | None = {"item": None} if cold_view else None
        h0 = self.input_embeddings(data, text_only=text0, before_dropout=inputs)
        h = torch.cat([h0.get(nt, torch.zeros(flat.sizes[nt], self.hidden_channels, device=device))
                       for nt in self.node_types])
        total = h
        cold = None
        if cold_view:
            if text0["item"] is None:
                raise ConfigError("cold_view needs item text features (use_text=True and item texts).")
            cold = text0["item"]
        for layer, conv in enumerate(self.convs):
            if cold is not None:
                warm = h.detach() if self.cold_detach else h
                side = flat.slice(conv(warm, flat, self.side_relations, mask_key="side"), "item")
                if layer == 1:
                    # replace the item's own input, echoed back over 2-cycles, by its cold input
                    echo = self._echo(flat, self.convs[0].relation_weights(), conv.relation_weights())
                    own = h0["item"].detach() if self.cold_detach else h0["item"]
                    side = side + echo.unsqueeze(-1) * (text0["item"] - own)
                cold = cold + side
            h = conv(h, flat)
            total = total + h
        out = total / (len(self.convs) + 1)
        result = {nt: flat.slice(out, nt) for nt in self.node_types if flat.sizes[nt] > 0}
        if cold is not None:
            result["item_cold"] = cold / (len(self.convs) + 1)
        return result

    def _echo(self, flat: FlatGraph, alpha1: Tensor, alpha2: Tensor) -> Tensor:
        r"""Per item, the weight with which its own layer-0 input returns in layer 2 over side edges.

        :math:`\sum_j S_{ij} A_{ji}` with :math:`A` the layer-1 propagation matrix and
        :math:`S` the layer-2 side-only one (targets as rows): the 2-cycles item -> tag /
        entity / KG-linked item -> item. The pairing of edges is cached on ``flat``.
        """
        layout = getattr(flat, "_echo_layout", None)
        if layout is None:
            layout = flat._echo_layout = _echo_layout(flat, self.side_relations)
        e_side, e_back, pair_side, pair_back, target, num_pairs = layout
        start, n = flat.offsets["item"], flat.sizes["item"]
        w = flat.edge_weight
        side = torch.zeros(num_pairs, device=w.device).index_add_(0, pair_side, w[e_side] * alpha2[flat.rel[e_side]])
        back = torch.zeros(num_pairs, device=w.device).index_add_(0, pair_back, w[e_back] * alpha1[flat.rel[e_back]])
        echo = torch.zeros(flat.num_nodes, device=w.device).index_add_(0, target, side * back)
        return echo[start:start + n]

    def score(self, user: Tensor, item: Tensor) -> Tensor:
        """Scores of aligned pairs: ``(B, d)`` x ``(B, d)`` -> ``(B,)``."""
        return score_pairs(user, item, self.score_fn)

    def score_all(self, user: Tensor, items: Tensor) -> Tensor:
        """Scores of every user against every item: ``(U, d)`` x ``(I, d)`` -> ``(U, I)``."""
        return score_matrix(user, items, self.score_fn)


def _echo_layout(flat: FlatGraph, side_relations: Tensor) -> tuple:
    """Pair every side edge ``j -> i`` into an item with the edges ``i -> j`` going back.

    Returns ``(e_side, e_back, pair_side, pair_back, target, num_pairs)``: the matched
    edge ids of both directions, each one's (i, j) pair id, each pair's item ``i``, and the
    number of pairs — so a pair's echo weight is (sum of its side weights) x (sum of its
    back weights), multi-relation edges included.
    """
    src, dst = flat.edge_index
    n = flat.num_nodes
    start, size = flat.offsets["item"], flat.sizes["item"]
    is_side = (side_relations[flat.rel] > 0) & (dst >= start) & (dst < start + size)
    e_side = is_side.nonzero().view(-1)
    key_side = dst[e_side] * n + src[e_side]          # pair (i, j) of a side edge j -> i
    key_all = src * n + dst                           # pair (i, j) of an edge i -> j
    pairs, pair_side = torch.unique(key_side, return_inverse=True)
    if pairs.numel() == 0:
        pos, hit = torch.zeros_like(key_all), torch.zeros_like(key_all, dtype=torch.bool)
    else:
        pos = torch.searchsorted(pairs, key_all).clamp(max=pairs.numel() - 1)
        hit = pairs[pos] == key_all
    e_back = hit.nonzero().view(-1)
    return e_side, e_back, pair_side, pos[e_back], pairs // n, pairs.numel()

"""Flatten a heterogeneous graph (full or sampled) into one edge list for propagation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

__all__ = ["FlatGraph", "flatten_graph", "full_degrees", "relation_layout", "side_relation_mask"]

EdgeType = tuple[str, str, str]

UI_RELATIONS = ("interacts", "rev_interacts")  # user-item edges; every other edge type is a side edge
KG_RELATIONS = ("kg", "rev_kg")


@dataclass
class FlatGraph:
    """A heterogeneous graph as one homogeneous edge list.

    Attributes:
        offsets: Node type -> first global index; node ``j`` of type ``t`` is ``offsets[t] + j``.
        sizes: Node type -> number of nodes.
        edge_index: ``(2, E)`` global (source, target) indices; messages flow source -> target.
        edge_weight: ``(E,)`` normalisation weights.
        rel: ``(E,)`` relation ids (see :func:`relation_layout`).
        csr: ``(crow, col, perm)``: CSR structure of the adjacency with targets as rows;
            ``perm`` puts per-edge values into CSR order.
        csr_t: The same for the transpose (used by the backward pass).
        rel_pairs: Layout for the gradient of the learnable (KG) relation weights, see
            :func:`_relation_pair_layout`; ``None`` when the graph has no KG edges.
    """

    offsets: dict[str, int]
    sizes: dict[str, int]
    edge_index: Tensor
    edge_weight: Tensor
    rel: Tensor
    csr: tuple[Tensor, Tensor, Tensor] | None = None
    csr_t: tuple[Tensor, Tensor, Tensor] | None = None
    rel_pairs: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None

    @property
    def num_nodes(self) -> int:
        return sum(self.sizes.values())

    def slice(self, h: Tensor, node_type: str) -> Tensor:
        start = self.offsets[node_type]
        return h[start:start + self.sizes[node_type]]


def relation_layout(edge_types: list[EdgeType], num_kg_relations: int) -> tuple[int, Tensor]:
    """Relation ids: one per non-KG edge type, then two per KG relation (forward, reverse).

    Returns:
        ``(num_relation_ids, learnable)`` where ``learnable`` marks the KG relation ids.
    """
    structural = [et for et in edge_types if et[1] not in KG_RELATIONS]
    total = len(structural) + 2 * num_kg_relations
    learnable = torch.zeros(total, dtype=torch.bool)
    learnable[len(structural):] = True
    return total, learnable


def side_relation_mask(edge_types: list[EdgeType], num_kg_relations: int) -> Tensor:
    """``(num_relation_ids,)`` float mask: 1 for side relations (tags, attributes, KG), 0 for user–item ones."""
    total, _ = relation_layout(edge_types, num_kg_relations)
    mask = torch.ones(total)
    structural = [et for et in edge_types if et[1] not in KG_RELATIONS]
    for r, et in enumerate(structural):
        if et[1] in UI_RELATIONS:
            mask[r] = 0.0
    return mask


def full_degrees(data: HeteroData) -> dict[EdgeType, tuple[Tensor, Tensor]]:
    """Out- and in-degree of every node per edge type of the full graph ``data``."""
    out = {}
    for et in data.edge_types:
        ei = data[et].edge_index
        out[et] = (degree(ei[0], int(data[et[0]].num_nodes), dtype=torch.float),
                   degree(ei[1], int(data[et[2]].num_nodes), dtype=torch.float))
    return out


def flatten_graph(data: HeteroData, node_types: list[str], edge_types: list[EdgeType],
                  num_kg_relations: int, side_weight: float = 1.0,
                  degrees: dict[EdgeType, tuple[Tensor, Tensor]] | None = None) -> FlatGraph:
    """Concatenate ``data``'s node types and edge stores into a :class:`FlatGraph`.

    Within each edge type the weight is the symmetric LightGCN normalisation
    :math:`1/\\sqrt{d_{out}(u)\\,d_{in}(v)}` (degrees counted inside that edge type).
    A target mixes its incoming edge types as

    .. math::
        \\mathbf{h}_v' = \\frac{\\mathbf{m}^{\\text{ui}}_v + \\beta\\,
        \\operatorname{mean}_{t}\\,\\mathbf{m}^{t}_v}{1 + \\beta}

    where :math:`\\mathbf{m}^{\\text{ui}}` is the user–item (``interacts`` /
    ``rev_interacts``) message, :math:`t` ranges over the side groups reaching :math:`v`
    — each tag or attribute edge type, and all KG edge types as one group (itself the
    mean of its edge types), so four KG edge types do not drown an item's genre tags —
    and :math:`\\beta` is ``side_weight``.
    The mix is per node type: users and items always weigh side messages
    :math:`\\beta/(1+\\beta)`, also a cold item without user–item messages (scaling its
    side messages up to 1 put cold items on another scale than the warm ones the users
    were trained against, and cold items fell out of every ranking); tags and
    entities, which have no user–item edges, take their side messages whole.
    Keeping the collaborative signal at a fixed share matters: averaging it with four
    KG/tag edge types gave an item only a fifth of its users' signal. Edge types of
    ``edge_types`` that ``data`` lacks (e.g. KG edges in an ablation) are skipped.

    Args:
        data: A :class:`~torch_geometric.data.HeteroData` (the full training graph or a
            sampled subgraph; nodes counted by ``num_nodes``).
        node_types: Node types in the model's order.
        edge_types: Edge types in the model's order (fixes the structural relation ids).
        num_kg_relations: Number of KG relations (``edge_type`` attribute values).
        side_weight: :math:`\\beta \\ge 0`, the weight of side (tag, attribute, KG)
            messages relative to user–item messages.
        degrees: Full-graph degrees (:func:`full_degrees`) for a *sampled* subgraph
            (node stores with ``n_id``). A sampled target sees only some of its
            neighbours; each edge then weighs
            :math:`\\sqrt{d_{in}(v)} / (\\sqrt{d_{out}(u)}\\, \\hat d_{in}(v))` with full-graph
            degrees :math:`d` and the sampled in-degree :math:`\\hat d`, an unbiased estimate
            of the full-graph aggregation, so training on sampled subgraphs matches the
            full-graph propagation used at evaluation.
    """
    if side_weight < 0:
        raise ValueError(f"side_weight must be >= 0; got {side_weight}.")
    offsets, sizes, start = {}, {}, 0
    for nt in node_types:
        n = int(data[nt].num_nodes) if nt in data.node_types else 0
        offsets[nt], sizes[nt] = start, n
        start += n
    structural = [et for et in edge_types if et[1] not in KG_RELATIONS]
    srcs, dsts, weights, rels, side, groups = [], [], [], [], [], []
    device = None
    for et in edge_types:
        if et not in data.edge_types:
            continue
        ei = data[et].edge_index
        if ei.numel() == 0:
            continue
        device = ei.device
        src_t, rel_name, dst_t = et
        d_out = degree(ei[0], sizes[src_t], dtype=torch.float)
        d_in = degree(ei[1], sizes[dst_t], dtype=torch.float)
        if degrees is not None and et in degrees and "n_id" in data[src_t] and "n_id" in data[dst_t]:
            g_out, g_in = (d.to(ei.device) for d in degrees[et])
            g_out, g_in = g_out[data[src_t].n_id[ei[0]]], g_in[data[dst_t].n_id[ei[1]]]
            w = g_in.sqrt() / (g_out.sqrt() * d_in[ei[1]])
        else:
            w = (d_out[ei[0]] * d_in[ei[1]]).rsqrt()
        if rel_name in KG_RELATIONS:
            r = len(structural) + 2 * data[et].edge_type + (1 if rel_name == "rev_kg" else 0)
        else:
            r = torch.full_like(ei[0], structural.index(et))
        srcs.append(ei[0] + offsets[src_t])
        dsts.append(ei[1] + offsets[dst_t])
        weights.append(w)
        rels.append(r)
        side.append(rel_name not in UI_RELATIONS)
        groups.append("kg" if rel_name in KG_RELATIONS else rel_name)
    if not srcs:  # no edge at all (a sampled batch can draw none): an empty graph, where the edges would be
        device = next((data[et].edge_index.device for et in edge_types if et in data.edge_types), None)
        e = torch.empty(0, dtype=torch.long, device=device)
        layout = (torch.zeros(start + 1, dtype=torch.long, device=device), e, e)
        return FlatGraph(offsets, sizes, torch.empty(2, 0, dtype=torch.long, device=device),
                         torch.empty(0, device=device), e, layout, layout)
    src, dst = torch.cat(srcs), torch.cat(dsts)
    weight, rel = torch.cat(weights), torch.cat(rels)
    # side edge types are averaged per target, then mixed with the user-item message
    num_nodes = start
    # the mix is fixed per node *type*: a cold item (no interaction edge) keeps the side
    # share a warm item gives its side messages, so its embedding lives on the same scale
    has_ui = torch.zeros(num_nodes, dtype=torch.bool, device=device)
    for et in edge_types:
        if et in data.edge_types and et[1] in UI_RELATIONS:
            has_ui[offsets[et[2]]:offsets[et[2]] + sizes[et[2]]] = True
    # side messages: the mean over groups (each tag/attribute edge type; all KG edge types
    # together), each group the mean over its edge types reaching the target
    group_reach: dict[str, Tensor] = {}
    for d, is_side, g in zip(dsts, side, groups):
        if is_side:
            reached = torch.zeros(num_nodes, dtype=torch.bool, device=device)
            reached[d] = True
            group_reach[g] = group_reach.get(g, torch.zeros(num_nodes, device=device)) + reached
    groups_in = sum(((c > 0).float() for c in group_reach.values()), torch.zeros(num_nodes, device=device))
    divisor = torch.cat([
        (groups_in[d] * group_reach[g][d]).clamp(min=1) if is_side else torch.ones(d.numel(), device=device)
        for d, is_side, g in zip(dsts, side, groups)
    ])
    is_side = torch.cat([torch.full_like(d, s_, dtype=torch.bool) for d, s_ in zip(dsts, side)])
    has_side = groups_in > 0
    both = (has_ui & has_side)[dst]
    share = torch.where(is_side, torch.where(both, side_weight / (1 + side_weight), torch.ones_like(weight)),
                        torch.where(both, 1 / (1 + side_weight), torch.ones_like(weight)))
    weight = weight * share / divisor
    learnable = rel >= len(structural)
    pairs = _relation_pair_layout(src[learnable], dst[learnable], rel[learnable], weight[learnable],
                                  num_nodes) if bool(learnable.any()) else None
    return FlatGraph(offsets, sizes, torch.stack([src, dst]), weight, rel,
                     _csr_layout(src, dst, num_nodes), _csr_layout(dst, src, num_nodes), pairs)


def _relation_pair_layout(src: Tensor, dst: Tensor, rel: Tensor, weight: Tensor,
                          num_nodes: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Group edges by (relation, source) pair for the relation-weight gradient.

    The gradient of a relation weight :math:`\\alpha_r` is
    :math:`\\sum_{(s,r,d)} w_{sd}\\, \\langle g_d, x_s \\rangle
    = \\sum_{s} \\langle x_s, \\sum_{d:(s,r,d)} w_{sd}\\, g_d \\rangle`: one sparse product
    with rows = distinct (relation, source) pairs instead of an ``(E, d)`` edge-wise
    product (many edges share a pair, e.g. an item's edges to entities of one relation).

    Returns:
        ``(crow, col, values, pair_src, pair_rel)``: a CSR matrix ``(P, num_nodes)`` of
        base edge weights with one row per pair, and each pair's source node and relation.
    """
    key = rel * num_nodes + src
    uniq, pair = torch.unique(key, return_inverse=True)
    order = torch.argsort(pair * num_nodes + dst)
    crow = torch.zeros(uniq.numel() + 1, dtype=torch.long, device=src.device)
    crow[1:] = torch.cumsum(torch.bincount(pair, minlength=uniq.numel()), 0)
    return crow, dst[order], weight[order].contiguous(), uniq % num_nodes, uniq // num_nodes


def _csr_layout(src: Tensor, dst: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """CSR structure of edges ``src -> dst`` with targets as rows: ``(crow, col, perm)``.

    ``perm`` reorders per-edge values into CSR order.
    """
    perm = torch.argsort(dst * num_nodes + src)
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=dst.device)
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
    return crow, src[perm], perm

"""Flatten a heterogeneous graph (full or sampled) into one edge list for propagation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

__all__ = ["FlatGraph", "flatten_graph", "relation_layout"]

EdgeType = tuple[str, str, str]


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
    """

    offsets: dict[str, int]
    sizes: dict[str, int]
    edge_index: Tensor
    edge_weight: Tensor
    rel: Tensor
    csr: tuple[Tensor, Tensor, Tensor] | None = None
    csr_t: tuple[Tensor, Tensor, Tensor] | None = None

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
    structural = [et for et in edge_types if et[1] not in ("kg", "rev_kg")]
    total = len(structural) + 2 * num_kg_relations
    learnable = torch.zeros(total, dtype=torch.bool)
    learnable[len(structural):] = True
    return total, learnable


def flatten_graph(data: HeteroData, node_types: list[str], edge_types: list[EdgeType],
                  num_kg_relations: int) -> FlatGraph:
    """Concatenate ``data``'s node types and edge stores into a :class:`FlatGraph`.

    Within each edge type the weight is the symmetric LightGCN normalisation
    :math:`1/\\sqrt{d_{out}(u)\\,d_{in}(v)}` (degrees counted inside that edge type);
    a target reached by several edge types averages them (each weight is divided by
    the number of edge types that reach the target). Edge types of ``edge_types`` that
    ``data`` lacks (e.g. KG edges in an ablation) are skipped.

    Args:
        data: A :class:`~torch_geometric.data.HeteroData` (the full training graph or a
            sampled subgraph; nodes counted by ``num_nodes``).
        node_types: Node types in the model's order.
        edge_types: Edge types in the model's order (fixes the structural relation ids).
        num_kg_relations: Number of KG relations (``edge_type`` attribute values).
    """
    offsets, sizes, start = {}, {}, 0
    for nt in node_types:
        n = int(data[nt].num_nodes) if nt in data.node_types else 0
        offsets[nt], sizes[nt] = start, n
        start += n
    structural = [et for et in edge_types if et[1] not in ("kg", "rev_kg")]
    srcs, dsts, weights, rels = [], [], [], []
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
        w = (d_out[ei[0]] * d_in[ei[1]]).rsqrt()
        if rel_name in ("kg", "rev_kg"):
            r = len(structural) + 2 * data[et].edge_type + (1 if rel_name == "rev_kg" else 0)
        else:
            r = torch.full_like(ei[0], structural.index(et))
        srcs.append(ei[0] + offsets[src_t])
        dsts.append(ei[1] + offsets[dst_t])
        weights.append(w)
        rels.append(r)
    if not srcs:
        e = torch.empty(0, dtype=torch.long)
        layout = (torch.zeros(start + 1, dtype=torch.long), e, e)
        return FlatGraph(offsets, sizes, torch.empty(2, 0, dtype=torch.long), torch.empty(0), e, layout, layout)
    src, dst = torch.cat(srcs), torch.cat(dsts)
    weight, rel = torch.cat(weights), torch.cat(rels)
    # average over the edge types that reach each target
    num_nodes = start
    types_in = torch.zeros(num_nodes, device=device)
    for d in dsts:
        reached = torch.zeros(num_nodes, dtype=torch.bool, device=device)
        reached[d] = True
        types_in += reached
    weight = weight / types_in[dst].clamp(min=1)
    return FlatGraph(offsets, sizes, torch.stack([src, dst]), weight, rel,
                     _csr_layout(src, dst, num_nodes), _csr_layout(dst, src, num_nodes))


def _csr_layout(src: Tensor, dst: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """CSR structure of edges ``src -> dst`` with targets as rows: ``(crow, col, perm)``.

    ``perm`` reorders per-edge values into CSR order.
    """
    perm = torch.argsort(dst * num_nodes + src)
    crow = torch.zeros(num_nodes + 1, dtype=torch.long, device=dst.device)
    crow[1:] = torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0)
    return crow, src[perm], perm

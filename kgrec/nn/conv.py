"""Relation-aware light graph convolution over a flattened heterogeneous graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RelationalLightConv", "weighted_spmm"]


class _WeightedSpMM(torch.autograd.Function):
    """``A(values) @ x`` for a fixed sparsity pattern, differentiable in ``values`` and ``x``.

    The CSR structures of ``A`` and ``A^T`` are precomputed once per graph, so a step
    costs one sparse product forward and one backward; the gradient of ``values`` is an
    edge-wise dot product computed only for the edges in ``grad_edges``.
    """

    @staticmethod
    def forward(ctx, values, x, csr, csr_t, src, dst, grad_edges):  # noqa: D102
        crow, col, perm = csr
        n = crow.numel() - 1
        adj = torch.sparse_csr_tensor(crow, col, values[perm], (n, x.size(0)), check_invariants=False)
        ctx.save_for_backward(values, x)
        ctx.meta = (csr_t, src, dst, grad_edges, n)
        return adj @ x

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        values, x = ctx.saved_tensors
        (crow_t, col_t, perm_t), src, dst, grad_edges, n = ctx.meta
        grad_x = grad_values = None
        if ctx.needs_input_grad[1]:
            adj_t = torch.sparse_csr_tensor(crow_t, col_t, values[perm_t], (x.size(0), n), check_invariants=False)
            grad_x = adj_t @ grad.contiguous()
        if ctx.needs_input_grad[0] and grad_edges is not None and grad_edges.numel():
            grad_values = torch.zeros_like(values)
            s, d = src[grad_edges], dst[grad_edges]
            grad_values[grad_edges] = (grad.index_select(0, d) * x.index_select(0, s)).sum(-1)
        return grad_values, grad_x, None, None, None, None, None


def weighted_spmm(values: Tensor, x: Tensor, flat, grad_edges: Tensor | None = None) -> Tensor:
    """Propagate ``x`` ``(N, d)`` over ``flat``'s edges weighted by ``values`` ``(E,)``."""
    return _WeightedSpMM.apply(values, x, flat.csr, flat.csr_t, flat.edge_index[0], flat.edge_index[1],
                               grad_edges)


class RelationalLightConv(nn.Module):
    r"""LightGCN propagation with a learnable weight per relation.

    .. math::
        \mathbf{h}_v' = \sum_{(u, r, v) \in \mathcal{E}} \alpha_r\, w_{uv}\, \mathbf{h}_u

    The edge weights :math:`w_{uv}` are fixed per graph (symmetric degree
    normalisation inside each edge type, averaged over the edge types reaching
    :math:`v`; see :func:`kgrec.nn.flatten_graph`). :math:`\alpha_r =
    \operatorname{softplus}(a_r)/\operatorname{softplus}(0)` starts at 1 for every
    relation, so the layer starts as plain LightGCN over the whole graph; each KG
    relation (and direction) then learns how much its messages count, which lets
    the model mute relations that carry no taste signal and amplify those that do.
    Structural edge types (``interacts``, ``has_tag``, ...) keep :math:`\alpha_r = 1`
    unless marked learnable. No feature transform, no non-linearity: as in LightGCN,
    all capacity sits in the input embeddings.

    Why not :class:`torch_geometric.nn.MessagePassing`: it materialises an ``(E, d)``
    message tensor per layer; with scalar relation weights one sparse CSR product does
    the same work, about 6x faster on the ml-100k graph on CPU (measured on the 2-core
    development machine), and it runs on cuSPARSE on a GPU.

    Args:
        num_relations: Number of relation ids.
        learnable: Boolean mask ``(num_relations,)`` of relations whose weight is learned.

    Shapes:
        - input: ``x`` ``(num_nodes, d)`` and a :class:`~kgrec.nn.FlatGraph`
        - output: ``(num_nodes, d)``
    """

    _SOFTPLUS0 = float(torch.nn.functional.softplus(torch.tensor(0.0)))

    def __init__(self, num_relations: int, learnable: Tensor | None = None) -> None:
        super().__init__()
        self.num_relations = num_relations
        self.logit = nn.Parameter(torch.zeros(num_relations))
        mask = torch.ones(num_relations, dtype=torch.bool) if learnable is None else learnable.bool()
        self.register_buffer("learnable", mask, persistent=False)

    def relation_weights(self) -> Tensor:
        """:math:`\alpha_r` for every relation id, shape ``(num_relations,)``."""
        alpha = torch.nn.functional.softplus(self.logit) / self._SOFTPLUS0
        return torch.where(self.learnable, alpha, torch.ones_like(alpha))

    def forward(self, x: Tensor, flat) -> Tensor:
        values = flat.edge_weight * self.relation_weights()[flat.rel]
        grad_edges = None
        if self.logit.requires_grad and torch.is_grad_enabled():
            if getattr(flat, "_learnable_edges", None) is None:
                flat._learnable_edges = torch.nonzero(self.learnable[flat.rel]).view(-1)
            grad_edges = flat._learnable_edges
        return weighted_spmm(values, x, flat, grad_edges)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_relations={self.num_relations})"

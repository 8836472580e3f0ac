"""Relation-aware light graph convolution over a flattened heterogeneous graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kgrec.errors import ConfigError
from kgrec.nn.flatten import _csr_layout

__all__ = ["RelationalLightConv", "relational_spmm"]


class _RelationalSpMM(torch.autograd.Function):
    """``A(alpha) @ x`` with ``A_vs = alpha[r_e] w_e`` for a fixed graph, differentiable in ``alpha`` and ``x``.

    The CSR structures of ``A`` and ``A^T`` are precomputed once per graph (see
    :func:`kgrec.nn.flatten_graph`), so a step costs one sparse product forward and one
    backward for ``x``; the gradient of the learnable relation weights takes one more
    sparse product over (relation, source) pairs (``flat.rel_pairs``) rather than an
    ``(E, d)`` edge-wise product, which was 70% of a training step on ml-100k with its KG.

    The products run in float32 with autocast off, whatever the input dtype: under
    ``bf16-mixed`` autocast would cast them to bfloat16, which the CPU's sparse kernels
    reject ("addmm_out_sparse_csr_impl_mkl not implemented for 'BFloat16'"), and
    propagation is memory-bound, so half precision would buy little there.
    """

    @staticmethod
    def forward(ctx, alpha, x, flat):  # noqa: D102
        crow, col, perm = flat.csr
        n = crow.numel() - 1
        values = flat.edge_weight * alpha[flat.rel]
        ctx.input_dtype = x.dtype
        x = x.float()
        adj = torch.sparse_csr_tensor(crow, col, values[perm], (n, x.size(0)), check_invariants=False)
        ctx.save_for_backward(values, x)
        ctx.flat, ctx.n, ctx.num_rel = flat, n, alpha.numel()
        with torch.autocast(x.device.type, enabled=False):
            return adj @ x

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        values, x = ctx.saved_tensors
        flat, n = ctx.flat, ctx.n
        grad = grad.contiguous()
        grad_alpha = grad_x = None
        if ctx.needs_input_grad[1]:
            crow_t, col_t, perm_t = flat.csr_t
            adj_t = torch.sparse_csr_tensor(crow_t, col_t, values[perm_t], (x.size(0), n), check_invariants=False)
            with torch.autocast(grad.device.type, enabled=False):
                grad_x = (adj_t @ grad.float()).to(ctx.input_dtype)
        if ctx.needs_input_grad[0]:
            grad_alpha = values.new_zeros(ctx.num_rel)
            if flat.rel_pairs is not None:
                crow, col, w, pair_src, pair_rel = flat.rel_pairs
                m = torch.sparse_csr_tensor(crow, col, w, (crow.numel() - 1, n), check_invariants=False)
                with torch.autocast(grad.device.type, enabled=False):
                    contrib = ((m @ grad.float()) * x.index_select(0, pair_src)).sum(-1)
                grad_alpha.index_add_(0, pair_rel, contrib)
        return grad_alpha, grad_x, None


class _FixedSpMM(torch.autograd.Function):
    """``A @ x`` for an adjacency that is constant (no learned relation weight): ``A`` and ``A^T``
    come prebuilt, so a step does one sparse product forward and one backward and nothing
    edge-sized besides. Float32 with autocast off, as :class:`_RelationalSpMM`."""

    @staticmethod
    def forward(ctx, x, adj, adj_t):  # noqa: D102
        ctx.adj_t, ctx.input_dtype = adj_t, x.dtype
        with torch.autocast(x.device.type, enabled=False):
            return adj @ x.float()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        with torch.autocast(grad.device.type, enabled=False):
            return (ctx.adj_t @ grad.contiguous().float()).to(ctx.input_dtype), None, None


def _adjacency(flat, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """``A`` (targets as rows) and ``A^T`` of ``flat`` with edge ``e`` weighted ``alpha[rel_e] * w_e``.

    Edges whose relation weight is 0 (a relation mask, e.g. the cold view's side-only
    propagation, which zeroes every user–item edge) are left out of both matrices, so the
    side-only product touches the tag and KG edges alone (on ml-1m 56k of 1.66M edges).
    """
    weight = alpha[flat.rel]
    values = flat.edge_weight * weight
    (crow, col, perm), (crow_t, col_t, perm_t) = flat.csr, flat.csr_t
    n = crow.numel() - 1
    keep = weight != 0
    if not bool(keep.all()):  # built once per graph and key, so this one sync is cheap
        src, dst = flat.edge_index[0][keep], flat.edge_index[1][keep]
        values = values[keep]
        (crow, col, perm), (crow_t, col_t, perm_t) = _csr_layout(src, dst, n), _csr_layout(dst, src, n)
    # 32-bit indices where they fit: MKL otherwise copies the 64-bit ones on every product
    # (ml-1m's graph: 6.4 -> 4.9 ms a product on the CPU), and cuSPARSE is faster with them
    index = torch.int32 if max(n, values.numel()) < 2**31 - 1 else torch.int64
    return (torch.sparse_csr_tensor(crow.to(index), col.to(index), values[perm], (n, n), check_invariants=False),
            torch.sparse_csr_tensor(crow_t.to(index), col_t.to(index), values[perm_t], (n, n),
                                    check_invariants=False))


def relational_spmm(alpha: Tensor, x: Tensor, flat, cache_key: str | None = None) -> Tensor:
    """Propagate ``x`` ``(N, d)`` over ``flat``'s edges, edge ``e`` weighted ``alpha[rel_e] * w_e``.

    Only the learnable (KG) relations of ``flat`` receive a gradient in ``alpha``. With a
    ``cache_key`` and an ``alpha`` that needs no gradient (fixed relation weights), the
    weighted adjacency and its transpose are built once per graph and key and kept on
    ``flat``: the caller promises that the same key always comes with the same ``alpha``.
    Rebuilding them took three edge-sized gathers per product — on ml-1m's graph the
    largest share of a CPU training step.
    """
    if cache_key is None or alpha.requires_grad:
        return _RelationalSpMM.apply(alpha, x, flat)
    cache = flat.__dict__.setdefault("_adjacency_cache", {})
    key = (cache_key, x.device)
    if key not in cache:
        cache[key] = _adjacency(flat, alpha.to(flat.edge_weight.device))
    adj, adj_t = cache[key]
    return _FixedSpMM.apply(x, adj, adj_t)


class RelationalLightConv(nn.Module):
    r"""LightGCN propagation with an optionally learned weight per relation.

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
    unless marked learnable; with nothing marked (the kgrec model's default, see
    ``learn_relation_weights`` of :class:`~kgrec.nn.KGRecModel`) the layer is plain
    LightGCN over the mixed graph and has no parameter. No feature transform, no
    non-linearity: as in LightGCN, all capacity sits in the input embeddings.

    Why not :class:`torch_geometric.nn.MessagePassing`: it materialises an ``(E, d)``
    message tensor per layer; with scalar relation weights one sparse CSR product does
    the same work, about 6x faster on the ml-100k graph on CPU (measured on the 2-core
    development machine), and it runs on cuSPARSE on a GPU.

    Args:
        num_relations: Number of relation ids.
        learnable: Boolean mask ``(num_relations,)`` of relations whose weight is learned
            (default: all).

    Shapes:
        - input: ``x`` ``(num_nodes, d)`` and a :class:`~kgrec.nn.FlatGraph`
        - output: ``(num_nodes, d)``
    """

    _SOFTPLUS0 = float(torch.nn.functional.softplus(torch.tensor(0.0)))

    def __init__(self, num_relations: int, learnable: Tensor | None = None) -> None:
        super().__init__()
        self.num_relations = num_relations
        mask = torch.ones(num_relations, dtype=torch.bool) if learnable is None else learnable.bool()
        self.register_buffer("learnable", mask, persistent=False)
        self._any_learnable = bool(mask.any())  # a Python flag: no device sync per forward
        # kept (frozen) when nothing is learned: checkpoints keep one layout, and DDP skips it
        self.logit = nn.Parameter(torch.zeros(num_relations), requires_grad=self._any_learnable)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "logit"
        if not self._any_learnable and key in state_dict and bool(state_dict[key].abs().sum() > 0):
            raise ConfigError(
                "this checkpoint learned its KG relation weights; build the model with "
                "learn_relation_weights=True (config: model.learn_relation_weights: true) to load it."
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def relation_weights(self) -> Tensor:
        """:math:`\alpha_r` for every relation id, shape ``(num_relations,)``."""
        if not self._any_learnable:  # nothing learned: constants, no gradient to compute
            return torch.ones(self.num_relations, device=self.learnable.device)
        alpha = torch.nn.functional.softplus(self.logit) / self._SOFTPLUS0
        return torch.where(self.learnable, alpha, torch.ones_like(alpha))

    def forward(self, x: Tensor, flat, relation_mask: Tensor | None = None, mask_key: str | None = None) -> Tensor:
        """Propagate ``x``; ``relation_mask`` ``(num_relations,)`` (0/1) keeps only some relations' messages.

        ``mask_key`` names the mask (e.g. ``"side"``) so that, with fixed relation weights, the
        masked adjacency is built once per graph (see :func:`relational_spmm`); the same key
        must always come with the same mask.
        """
        alpha = self.relation_weights()
        key = "all" if relation_mask is None else mask_key
        if relation_mask is not None:
            alpha = alpha * relation_mask
        return relational_spmm(alpha, x, flat, cache_key=None if self._any_learnable else key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_relations={self.num_relations})"

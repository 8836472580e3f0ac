"""Ranking and alignment losses of the kgrec model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bpr_loss", "sampled_softmax_loss", "gramian_loss", "alignment_loss"]


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    r"""Bayesian personalised ranking: :math:`-\log\sigma(s^+ - s^-)`, averaged.

    Args:
        pos: ``(B,)`` positive scores.
        neg: ``(B,)`` or ``(B, K)`` negative scores (each row's negatives vs its positive).
    """
    if neg.dim() == 2:
        pos = pos.unsqueeze(-1)
    return -F.logsigmoid(pos - neg).mean()


def sampled_softmax_loss(user: Tensor, pos_item: Tensor, neg_item: Tensor | None, temperature: float,
                         pos_ids: Tensor | None = None, neg_ids: Tensor | None = None,
                         in_batch: bool = True) -> Tensor:
    r"""InfoNCE over sampled (and optionally in-batch) negatives.

    Row :math:`b` scores its user against its positive, every shared sampled negative
    and — with ``in_batch`` — the other rows' positives; the target is its own
    positive. Candidates that are the same item as the row's positive (duplicates in
    the batch, or a sampled negative that happens to be it) are masked out, so an item
    is never its own negative.

    .. warning::
        In-batch negatives are drawn in proportion to popularity; without a log-Q
        correction they push popular items down, which hurts on popularity-heavy data
        such as MovieLens. Uniform sampled negatives (``in_batch=False``) do not.

    Args:
        user: ``(B, d)`` user embeddings.
        pos_item: ``(B, d)`` embeddings of each row's positive item.
        neg_item: ``(N, d)`` embeddings of shared sampled negatives, or ``None``.
        temperature: Softmax temperature :math:`\tau > 0`.
        pos_ids: ``(B,)`` item ids of the positives (for masking duplicates).
        neg_ids: ``(N,)`` item ids of the negatives.
        in_batch: Also use the other rows' positives as negatives.
    """
    if not in_batch:
        if neg_item is None:
            raise ValueError("sampled_softmax_loss(in_batch=False) needs sampled negatives.")
        pos = (user * pos_item).sum(-1, keepdim=True)
        neg = user @ neg_item.t()
        if pos_ids is not None and neg_ids is not None:
            neg = neg.masked_fill(pos_ids.view(-1, 1) == neg_ids.view(1, -1), float("-inf"))
        logits = torch.cat([pos, neg], 1) / temperature
        return F.cross_entropy(logits, torch.zeros(user.size(0), dtype=torch.long, device=user.device))
    candidates = pos_item if neg_item is None else torch.cat([pos_item, neg_item], 0)
    logits = user @ candidates.t() / temperature
    if pos_ids is not None:
        cand_ids = pos_ids if neg_ids is None or neg_item is None else torch.cat([pos_ids, neg_ids])
        same = pos_ids.view(-1, 1) == cand_ids.view(1, -1)
        same[torch.arange(len(pos_ids), device=same.device), torch.arange(len(pos_ids), device=same.device)] = False
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(user.size(0), device=user.device)
    return F.cross_entropy(logits, target)


def gramian_loss(user: Tensor, pos_item: Tensor, items: Tensor, unobserved_weight: float,
                 user_weight: Tensor | None = None, item_weight: Tensor | None = None) -> Tensor:
    r"""Implicit-ALS objective on a minibatch: squared error on the observed pairs plus a
    Gramian penalty on *every* (user, item) pair.

    .. math::
        \frac{1}{B}\sum_b (\mathbf{u}_b^\top\mathbf{i}_b - 1)^2
        + \alpha\,\frac{1}{B}\sum_b \frac{1}{N}\sum_{j=1}^{N} (\mathbf{u}_b^\top\mathbf{v}_j)^2,
        \qquad \sum_j (\mathbf{u}^\top\mathbf{v}_j)^2 = \mathbf{u}^\top G\,\mathbf{u},
        \; G = V^\top V.

    The second term scores each batch user against all ``N`` items in ``items`` (the whole
    catalogue in full-graph training, the sampled subgraph's items otherwise) without
    materialising the ``B x N`` score matrix: the ``d x d`` Gramian :math:`G` makes it
    :math:`O((B + N) d^2)`. This is the weighting of unobserved pairs that makes implicit
    ALS (Hu et al., 2008; Rendle et al., "Revisiting the Performance of iALS", 2022) strong
    on dense data — every non-interaction pushes, not a sample of them.

    Args:
        user: ``(B, d)`` user embeddings (one row per training edge).
        pos_item: ``(B, d)`` embeddings of each row's positive item.
        items: ``(N, d)`` embeddings of the candidate items the penalty covers.
        unobserved_weight: :math:`\alpha \ge 0`, the weight of the unobserved pairs
            relative to an observed one (per item averaged over the catalogue).
        user_weight: ``(B,)`` weight of each row's unobserved term (``None``: all 1). A user
            is a row once per training edge, so with equal rows a user's unobserved pairs weigh
            in proportion to their interactions; rows weighted by the inverse of their user's
            degree give every user the same weight, as in iALS.
        item_weight: ``(N,)`` weight of each candidate item's unobserved pairs (``None``: all 1),
            e.g. popularity-based as in element-wise ALS (He et al., 2016); the Gramian becomes
            :math:`V^\top \mathrm{diag}(c)\,V`, at no extra cost.
    """
    observed = ((user * pos_item).sum(-1) - 1).pow(2).mean()
    # The d x d products sum over all B rows and N items: in float16 (16-mixed autocast) they
    # pass 65504 on any real catalogue and the loss turns inf. They are cheap, so run them in
    # float32 whatever the autocast; bf16 would survive but loses digits to the same sums.
    with torch.autocast(device_type=user.device.type, enabled=False):
        items32, user32 = items.float(), user.float()
        gram = items32.t() @ (items32 if item_weight is None else items32 * item_weight.float().unsqueeze(-1))
        # sum_b u_b^T G u_b = <G, U^T U>: a second d x d product instead of a (B, d) one, its
        # elementwise product and their backward passes (with the module's per-node weight decay,
        # a 2^20-edge full-graph step on a 100k-user synthetic world, 2 CPU threads: 7.6 s -> 4.3 s)
        weighted = user32 if user_weight is None else user32 * user_weight.float().unsqueeze(-1)
        unobserved = (gram * (user32.t() @ weighted)).sum() / (user.size(0) * items.size(0))
    return observed + unobserved_weight * unobserved


def alignment_loss(graph: Tensor, text: Tensor, temperature: float) -> Tensor:
    r"""Symmetric InfoNCE between nodes' graph embeddings and their own text embeddings.

    Pulls :math:`\mathbf{g}_v` toward :math:`\mathbf{t}_v` and away from the text of the
    other nodes in the batch (and vice versa), on the unit sphere.

    Args:
        graph: ``(B, d)`` graph embeddings.
        text: ``(B, d)`` projected text embeddings of the same nodes, same order.
        temperature: :math:`\tau > 0`.
    """
    g = F.normalize(graph, dim=-1)
    t = F.normalize(text, dim=-1)
    logits = g @ t.t() / temperature
    target = torch.arange(g.size(0), device=g.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))

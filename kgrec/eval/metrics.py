"""Per-user top-K ranking metrics from a hit matrix.

Definitions (binary relevance; ``rel`` = the user's relevant items, ``hits_k`` =
relevant items among the top ``K`` ranked candidates):

* ``recall@K    = hits_k / |rel|``
* ``precision@K = hits_k / K``
* ``hit@K       = 1 if hits_k > 0 else 0``
* ``ndcg@K      = DCG@K / IDCG@K`` with ``DCG@K = sum_{i<K} rel_i / log2(i + 2)`` and
  ``IDCG@K = sum_{i < min(|rel|, K)} 1 / log2(i + 2)``
* ``mrr@K       = 1 / rank of the first relevant item if it is within the top K, else 0``
* ``mrr`` (no cut-off) ``= 1 / rank of the first relevant item in the full ranking``;
  items tied with it are ranked before it (pessimistic), so constant scores earn no credit

Ties inside the top-K lists are ordered by :func:`torch.topk` (implementation order).

These are the definitions of ``ranx`` (and ``trec_eval``) for binary qrels; the test
suite checks them against ``ranx`` to 1e-6. Written here rather than called from
``ranx`` because the evaluator works on ``(batch, K)`` tensors on the model's device.
"""

from __future__ import annotations

import numbers
from typing import Iterable, Sequence

import torch

from kgrec.errors import ConfigError

__all__ = ["METRIC_NAMES", "DEFAULT_KS", "check_k", "check_ks", "metrics_from_hits"]

#: Metric families reported at every K (``mrr`` is also reported without a cut-off).
METRIC_NAMES = ("recall", "ndcg", "hit", "precision", "mrr")
#: The cut-offs every evaluation reports unless told otherwise.
DEFAULT_KS = (10, 20, 50)


def check_k(k: object, name: str = "k", maximum: int | None = None, of: str = "items") -> int:
    """Validate a cut-off: a positive integer (``bool`` and floats are refused), at most
    ``maximum`` when given (``of`` names what there are ``maximum`` of, for the message)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or int(k) <= 0:
        raise ConfigError(f"The {name!r} parameter must be a positive integer; got {k!r}.")
    if maximum is not None and int(k) > maximum:
        raise ConfigError(f"The {name!r} parameter is {int(k)}, more than the {maximum:,} {of} there are; "
                          f"use {name} <= {maximum}.")
    return int(k)


def check_ks(ks: Iterable[object] | object, name: str = "ks") -> tuple[int, ...]:
    """Validate a collection of cut-offs; returns them sorted and de-duplicated."""
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        ks = (ks,)
    values = tuple(ks)
    if not values:
        raise ConfigError(f"The {name!r} parameter must hold at least one positive integer; got ().")
    return tuple(sorted({check_k(k, name) for k in values}))


def metrics_from_hits(
    hits: torch.Tensor,
    num_relevant: torch.Tensor,
    ks: Sequence[int],
    first_rank: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-user metrics from the relevance of each user's top-ranked items.

    Args:
        hits: ``(num_users, K_max)`` bool, ``hits[u, i]`` = the item ranked ``i + 1``
            for user ``u`` is relevant. ``K_max`` may be smaller than ``max(ks)`` when
            there are fewer candidates than ``K``.
        num_relevant: ``(num_users,)`` number of relevant candidates per user (> 0).
        ks: Cut-offs.
        first_rank: ``(num_users,)`` 1-based full-ranking rank of the first relevant
            item, for the un-cut ``mrr``; omitted when ``None``.

    Returns:
        ``{"recall@K": (num_users,) float64, ...}`` for every family in
        :data:`METRIC_NAMES` and every ``K``, plus ``"mrr"`` when ``first_rank`` is given.
    """
    hits = hits.to(torch.float64)
    n_rel = num_relevant.to(torch.float64)
    num_users, k_max = hits.shape
    device = hits.device
    positions = torch.arange(1, k_max + 1, device=device, dtype=torch.float64)
    discount = 1.0 / torch.log2(positions + 1.0)
    cum_hits = hits.cumsum(dim=1)
    cum_dcg = (hits * discount).cumsum(dim=1)
    # ideal DCG for any number of relevant items up to max(ks)
    k_top = max(ks)
    ideal = torch.cumsum(
        1.0 / torch.log2(torch.arange(2, k_top + 2, device=device, dtype=torch.float64)), 0
    )
    # first relevant position within the list (k_max + 1 when none)
    any_hit = hits.any(dim=1)
    first_pos = torch.where(any_hit, hits.argmax(dim=1) + 1, torch.full_like(n_rel, k_max + 1, dtype=torch.long))
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        col = min(k, k_max) - 1
        if col < 0:  # no candidates at all
            zero = torch.zeros(num_users, dtype=torch.float64, device=device)
            h_k = dcg = zero
        else:
            h_k = cum_hits[:, col]
            dcg = cum_dcg[:, col]
        n_ideal = torch.clamp(n_rel, max=k).long()
        idcg = ideal[(n_ideal - 1).clamp(min=0)]
        out[f"recall@{k}"] = h_k / n_rel
        out[f"ndcg@{k}"] = dcg / idcg
        out[f"hit@{k}"] = (h_k > 0).to(torch.float64)
        out[f"precision@{k}"] = h_k / k
        out[f"mrr@{k}"] = torch.where(first_pos <= k, 1.0 / first_pos.to(torch.float64), 0.0)
    if first_rank is not None:
        out["mrr"] = 1.0 / first_rank.to(torch.float64)
    return out

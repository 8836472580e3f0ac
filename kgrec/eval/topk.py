"""Top-k lists: the one masking-and-ranking step behind ``recommend``, ``similar_items`` and
``kgrec predict``, and the table every recommender returns."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from torch import Tensor

__all__ = ["top_k", "ranking_frame", "RANKING_COLUMNS"]

#: The columns of every recommendation table, in order.
RANKING_COLUMNS = ("user", "rank", "item", "name", "score")


def top_k(scores: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None = None,
          allow: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The ``k`` best-scored columns of each row.

    Args:
        scores: ``(B, N)`` scores, higher is better (not modified).
        k: List length; at most ``N`` are returned.
        exclude: ``(row, col)`` index pairs never to return (a user's seen items).
        allow: ``(C,)`` column indices; the others are never returned (``None``: all).

    Returns:
        ``(values, indices)``, each ``(B, min(k, N))``, best first. A slot that had no
        candidate left holds ``-inf`` (callers drop it).
    """
    if exclude is not None or allow is not None:
        scores = scores.clone()
    if allow is not None:
        keep = torch.zeros(scores.size(1), dtype=torch.bool, device=scores.device)
        keep[allow.to(scores.device)] = True
        scores[:, ~keep] = float("-inf")
    if exclude is not None and exclude[0].numel():
        scores[exclude[0].to(scores.device), exclude[1].to(scores.device)] = float("-inf")
    return torch.topk(scores, min(int(k), scores.size(1)), dim=1)


def ranking_frame(users: Sequence[str], values: Tensor, indices: Tensor, item_ids: Sequence[str],
                  item_names: Sequence[str] | None = None) -> pd.DataFrame:
    """A top-k result as a table: ``user``, ``rank`` (1-based), ``item``, ``name``, ``score``.

    Row ``r`` of ``values`` / ``indices`` belongs to ``users[r]``; ``-inf`` slots are left
    out, so a user may get fewer than ``k`` rows. ``name`` is the item's display name
    (its id when ``item_names`` is ``None``).
    """
    values, indices = values.cpu(), indices.cpu()
    names = item_ids if item_names is None else item_names
    rows = []
    for r, user in enumerate(users):
        for rank, (score, item) in enumerate(zip(values[r].tolist(), indices[r].tolist()), 1):
            if score == float("-inf"):
                break
            rows.append((user, rank, item_ids[item], names[item], score))
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))

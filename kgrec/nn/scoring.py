"""The one user–item scoring function: dot product, or cosine (the dot product of unit vectors).

Training losses, evaluation, ``recommend`` and serving all score through these, so a
``cosine`` model is ranked the same way everywhere.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["SCORE_FUNCTIONS", "score_space", "score_matrix", "score_pairs"]

#: The scores a model may use (:attr:`kgrec.nn.GNNConfig.score`).
SCORE_FUNCTIONS = ("dot", "cosine")


def score_space(score_fn: str, *vectors: Tensor) -> tuple[Tensor, ...]:
    """``vectors`` mapped to where a plain dot product is the score: unchanged for ``dot``,
    L2-normalised rows for ``cosine``. Each tensor is ``(N, d)``."""
    if score_fn == "cosine":
        return tuple(F.normalize(v, dim=-1) for v in vectors)
    return vectors


def score_matrix(users: Tensor, items: Tensor, score_fn: str = "dot") -> Tensor:
    """Scores of every user against every item: ``(U, d)`` x ``(I, d)`` -> ``(U, I)``."""
    users, items = score_space(score_fn, users, items)
    return users @ items.t()


def score_pairs(users: Tensor, items: Tensor, score_fn: str = "dot") -> Tensor:
    """Scores of aligned pairs: ``(B, d)`` x ``(B, d)`` -> ``(B,)``."""
    users, items = score_space(score_fn, users, items)
    return (users * items).sum(-1)

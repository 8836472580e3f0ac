"""Most-popular baseline: every user gets the items with most train interactions."""

from __future__ import annotations

import numpy as np
import torch

from kgrec.models.base import BaseRecommender

__all__ = ["MostPop"]


class MostPop(BaseRecommender):
    """Rank items by their number of train interactions (the same list for everyone).

    Popularity is counted on ``split.train`` only.

    Args:
        device: Device the scores are computed on (``"cpu"`` or ``"cuda"``).
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def _fit(self, split, graph) -> None:
        counts = np.asarray(self.train_.sum(axis=0), dtype=np.float32).ravel()
        self.popularity_ = torch.from_numpy(counts)  # (num_items,)

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        pop = self._on_score_device("popularity_")
        return pop.unsqueeze(0).expand(len(users), -1).clone()

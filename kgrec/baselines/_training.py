"""Shared pieces of the trained baselines: negative sampling and factor scoring.

Written here (not taken from PyG's ``negative_sampling``) because BPR needs one
negative *per positive pair* that the given user has not interacted with in train,
drawn for a whole epoch at once; PyG samples edges absent from the graph, which is
a different distribution.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from kgrec.models.base import BaseRecommender
from kgrec.errors import ConfigError

__all__ = ["BPRTripletSampler", "FactorScorer", "check_positive_int", "check_positive_float"]


def check_positive_int(model: object, *names: str) -> None:
    for name in names:
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"The {name!r} parameter must be a positive integer; got {value!r}.")


def check_positive_float(model: object, *names: str, allow_zero: bool = False) -> None:
    for name in names:
        value = getattr(model, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            value >= 0 if allow_zero else value > 0
        )
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(f"The {name!r} parameter must be a number {bound}; got {value!r}.")


class BPRTripletSampler:
    """Uniform negatives per (user, positive) pair, rejecting the user's train items.

    Membership is a lookup in a dense ``(num_users, num_items)`` bool mask when it has
    at most ``dense_limit`` cells (MovieLens sizes), else a binary search in the sorted
    ``user * num_items + item`` keys.

    Args:
        train: ``(num_users, num_items)`` binary CSR of train interactions.
        generator: Torch generator (seeded by the caller).
        dense_limit: Largest mask (cells) kept dense.
    """

    def __init__(self, train: sp.csr_matrix, generator: torch.Generator, dense_limit: int = 1 << 27) -> None:
        coo = train.tocoo()
        self.num_items = train.shape[1]
        self.users = torch.from_numpy(coo.row.astype(np.int64))
        self.items = torch.from_numpy(coo.col.astype(np.int64))
        self.keys = torch.sort(self.users * self.num_items + self.items).values
        self.dense = None
        if train.shape[0] * train.shape[1] <= dense_limit:
            self.dense = torch.zeros(train.shape[0] * train.shape[1], dtype=torch.bool)
            self.dense[self.keys] = True
        self.generator = generator

    def __len__(self) -> int:
        return len(self.users)

    def _seen(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.num_items + items
        if self.dense is not None:
            return self.dense[keys]
        pos = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: torch.Tensor, max_tries: int = 20) -> torch.Tensor:
        """``(len(users),)`` negatives; after ``max_tries`` a few may stay positives."""
        neg = torch.randint(self.num_items, users.shape, generator=self.generator)
        for _ in range(max_tries):
            bad = self._seen(users, neg)
            if not bad.any():
                break
            neg[bad] = torch.randint(self.num_items, (int(bad.sum()),), generator=self.generator)
        return neg

    def epoch(self, batch_size: int):
        """Yield ``(users, pos_items, neg_items)`` batches covering every train pair once."""
        perm = torch.randperm(len(self.users), generator=self.generator)
        users, items = self.users[perm], self.items[perm]
        negs = self.sample(users)
        for lo in range(0, len(perm), batch_size):
            yield users[lo : lo + batch_size], items[lo : lo + batch_size], negs[lo : lo + batch_size]


class FactorScorer(BaseRecommender):
    """Scores as dot products of ``user_factors_`` ``(num_users, d)`` and ``item_factors_`` ``(num_items, d)``."""

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        return self._on_score_device("user_factors_")[users] @ self._on_score_device("item_factors_").T

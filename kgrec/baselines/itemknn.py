"""Item-based k-nearest-neighbours with sparse cosine similarity."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from kgrec.models.base import BaseRecommender
from kgrec.errors import ConfigError

__all__ = ["ItemKNN"]


class ItemKNN(BaseRecommender):
    r"""Item-based collaborative filtering (Sarwar et al., 2001; Deshpande & Karypis, 2004).

    With the binary train matrix :math:`X` (users x items), the similarity of items
    :math:`i, j` is the shrunk cosine

    .. math::
        s_{ij} = \frac{x_i^\top x_j}{\lVert x_i\rVert \lVert x_j\rVert + \lambda}

    Each item keeps its ``neighbors`` most similar items; a user's score for item
    :math:`j` is :math:`\sum_{i \in I_u} s_{ji}` over the neighbours of :math:`j` the
    user interacted with. The similarity stays a ``scipy.sparse`` matrix (never a dense
    ``(num_items, num_items)`` array); the product with user rows is sparse too.

    Args:
        neighbors: Neighbours kept per item (positive integer).
        shrink: Shrinkage :math:`\lambda \ge 0` added to the cosine denominator.
        normalize_scores: Divide each item's neighbour weights by their sum (row
            normalisation), which favours items with few but strong neighbours.
        device: Device the returned scores are moved to.
    """

    def __init__(
        self,
        neighbors: int = 100,
        shrink: float = 0.0,
        normalize_scores: bool = False,
        device: str = "cpu",
    ) -> None:
        self.neighbors = neighbors
        self.shrink = shrink
        self.normalize_scores = normalize_scores
        self.device = device

    def _fit(self, split, graph) -> None:
        if isinstance(self.neighbors, bool) or not isinstance(self.neighbors, int) or self.neighbors < 1:
            raise ConfigError(f"The 'neighbors' parameter must be a positive integer; got {self.neighbors!r}.")
        if not self.shrink >= 0:
            raise ConfigError(f"The 'shrink' parameter must be >= 0; got {self.shrink!r}.")
        x = self.train_.tocsc().astype(np.float32)
        co = (x.T @ x).tocsr()  # (num_items, num_items) co-occurrence
        norms = np.sqrt(np.asarray(co.diagonal(), dtype=np.float32))
        co.setdiag(0)
        co.eliminate_zeros()
        coo = co.tocoo()
        denom = norms[coo.row] * norms[coo.col] + float(self.shrink)
        sim = sp.csr_matrix((coo.data / denom, (coo.row, coo.col)), shape=co.shape, dtype=np.float32)
        # keep the top `neighbors` entries of each row (row j = neighbours of item j)
        indptr, indices, data = [0], [], []
        for j in range(sim.shape[0]):
            lo, hi = sim.indptr[j], sim.indptr[j + 1]
            vals, cols = sim.data[lo:hi], sim.indices[lo:hi]
            if len(vals) > self.neighbors:
                keep = np.argpartition(-vals, self.neighbors - 1)[: self.neighbors]
                vals, cols = vals[keep], cols[keep]
            if self.normalize_scores and vals.sum() > 0:
                vals = vals / vals.sum()
            indices.append(cols)
            data.append(vals)
            indptr.append(indptr[-1] + len(vals))
        pruned = sp.csr_matrix(
            (np.concatenate(data) if data else np.zeros(0, np.float32),
             np.concatenate(indices) if indices else np.zeros(0, np.int32), np.asarray(indptr)),
            shape=sim.shape,
        )
        self.similarity_ = pruned.T.tocsr()  # (num_items, num_items): column j = neighbours of j

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        rows = self.train_[users.cpu().numpy()]
        scores = (rows @ self.similarity_).toarray().astype(np.float32, copy=False)
        return torch.from_numpy(scores).to(self.device_)

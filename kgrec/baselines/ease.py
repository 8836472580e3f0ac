"""EASE: the closed-form linear item-item autoencoder."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from kgrec.models.base import BaseRecommender
from kgrec.errors import ConfigError

__all__ = ["EASE"]


class EASE(BaseRecommender):
    r"""Embarrassingly shallow autoencoder (Steck, 2019).

    With the binary train matrix :math:`X` (users x items), EASE learns the item-item
    weights :math:`B` minimising :math:`\lVert X - XB\rVert_F^2 + \lambda\lVert B\rVert_F^2`
    subject to :math:`\operatorname{diag}(B) = 0` (an item may not predict itself). The
    solution is closed-form: with :math:`P = (X^\top X + \lambda I)^{-1}`,
    :math:`B_{ij} = -P_{ij} / P_{jj}` off the diagonal. A user's scores are :math:`x_u B`.

    One of the strongest item-item baselines on MovieLens-like data; there is no training
    loop, so no epochs or early stopping, but :math:`B` is a dense
    ``(num_items, num_items)`` matrix: ``max_items`` refuses catalogues whose Gramian and
    inverse would not fit comfortably (two dense float64 copies during the solve).

    Args:
        l2: Ridge penalty :math:`\lambda > 0` (the benchmark suites' values were chosen on
            validation; see ``docs/decisions.md``).
        max_items: The largest catalogue :meth:`fit` accepts.
        device: Device the solve and the scores run on (``"cpu"`` or ``"cuda"``).
    """

    def __init__(self, l2: float = 500.0, max_items: int = 40_000, device: str = "cpu") -> None:
        self.l2 = l2
        self.max_items = max_items
        self.device = device

    def _fit(self, split, graph) -> None:
        if isinstance(self.l2, bool) or not isinstance(self.l2, numbers.Real) or not self.l2 > 0:
            raise ConfigError(f"The 'l2' parameter must be a number > 0; got {self.l2!r}.")
        if isinstance(self.max_items, bool) or not isinstance(self.max_items, int) or self.max_items < 1:
            raise ConfigError(f"The 'max_items' parameter must be a positive integer; got {self.max_items!r}.")
        num_items = self.train_.shape[1]
        if num_items > self.max_items:
            gib = 2 * num_items**2 * 8 / 2**30
            raise ConfigError(
                f"EASE solves a dense {num_items:,} x {num_items:,} system (about {gib:,.1f} GiB in float64), "
                f"above max_items={self.max_items:,}; raise max_items if the memory is there, or use a "
                "factorisation model (als, kgrec)."
            )
        x = self.train_.astype(np.float64)
        gram = torch.from_numpy((x.T @ x).toarray()).to(self.device_)
        gram.diagonal().add_(float(self.l2))
        # G + lambda I is symmetric positive definite: a Cholesky solve, not a general inverse.
        # At most two dense float64 copies live at once (G and its factor, then the factor and P).
        factor = torch.linalg.cholesky(gram)
        del gram
        p = torch.cholesky_inverse(factor)
        del factor
        p.div_((-p.diagonal()).unsqueeze(0))  # B = -P / diag(P), column by column
        p.diagonal().zero_()
        self.weights_ = p.float()  # (num_items, num_items): column j scores item j

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        rows = self.train_[users.cpu().numpy()].toarray()
        weights = self._on_score_device("weights_")
        return torch.from_numpy(rows).to(weights) @ weights

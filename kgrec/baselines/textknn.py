"""Zero-shot text recommender: a user is the mean text embedding of their train items."""

from __future__ import annotations

import numpy as np
import torch

from kgrec.models.base import BaseRecommender
from kgrec.errors import ConfigError, DataError

__all__ = ["TextKNN"]


class TextKNN(BaseRecommender):
    r"""Content-only zero-shot baseline over item text embeddings.

    Items are represented by their (L2-normalised) text embeddings; a user by the mean
    of the embeddings of their *train* items; the score is the cosine similarity
    :math:`\cos(\bar e_u, e_i)`. Nothing is learned from interactions besides that
    mean, so the model also ranks cold items that have text but no interactions.
    Users without train items score every item 0.

    Args:
        text_features: Per node type text embeddings, e.g. ``{"item": (num_items, dim)}``
            from :mod:`kgrec.text`; ``None`` reads ``graph.data["item"].x`` at fit time.
            Rows follow ``graph.vocabs["item"]``.
        device: Device the scores are computed on.
    """

    #: Tells the benchmark runner to build text features (kgrec.text) for the graph.
    uses_text_features = True

    def __init__(self, text_features: dict[str, torch.Tensor] | None = None, device: str = "cpu") -> None:
        self.text_features = text_features
        self.device = device

    def _fit(self, split, graph) -> None:
        if self.text_features is not None:
            if "item" not in self.text_features:
                raise ConfigError(
                    "The 'text_features' parameter must map 'item' to a (num_items, dim) tensor; "
                    f"got keys {sorted(self.text_features)}."
                )
            emb = self.text_features["item"]
        else:
            emb = getattr(graph.data["item"], "x", None)
            if emb is None:
                raise ConfigError(
                    "TextKNN needs item text embeddings: pass text_features={'item': tensor} or "
                    "build the graph with text_features (kgrec.text)."
                )
        emb = torch.as_tensor(emb).float()
        if emb.dim() != 2 or emb.shape[0] != self.num_items:
            raise DataError(
                f"item text features must have shape (num_items={self.num_items}, dim); "
                f"got {tuple(emb.shape)}."
            )
        items = torch.nn.functional.normalize(emb, dim=1)
        x = self.train_.tocoo()
        adj = torch.sparse_coo_tensor(
            torch.from_numpy(np.vstack([x.row, x.col]).astype(np.int64)), torch.ones(x.nnz), x.shape,
            check_invariants=True,
        ).coalesce()
        degree = torch.sparse.sum(adj, dim=1).to_dense().clamp(min=1).unsqueeze(1)
        self.item_embeddings_ = items  # (num_items, dim)
        self.user_embeddings_ = torch.sparse.mm(adj, items) / degree  # (num_users, dim)

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        u = torch.nn.functional.normalize(self._on_score_device("user_embeddings_")[users], dim=1)
        return u @ self._on_score_device("item_embeddings_").T

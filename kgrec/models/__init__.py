"""Recommenders under one contract: :class:`BaseRecommender`, kgrec's own :class:`KGRec`
(the baselines live in :mod:`kgrec.baselines`), and :func:`load` for any kgrec checkpoint."""

from kgrec.models.base import BaseRecommender, NotFittedError, load, train_matrix
from kgrec.models.kgrec import KGRec

__all__ = ["BaseRecommender", "KGRec", "NotFittedError", "load", "train_matrix"]

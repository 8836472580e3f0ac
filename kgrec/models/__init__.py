"""The kgrec GNN under the recommender contract of :mod:`kgrec.base`."""

from kgrec.models.kgrec import KGRec

__all__ = ["KGRec"]

"""Baseline recommenders, under the same :class:`~kgrec.models.base.BaseRecommender` contract
and scored by the same :func:`kgrec.eval.evaluate` as kgrec's own model.

``ALS`` needs the optional ``implicit`` package (``pip install 'kgrec[als]'``); it is
imported only when an ``ALS`` is fitted.
"""

from kgrec.baselines.als import ALS
from kgrec.baselines.bprmf import BPRMF
from kgrec.baselines.ease import EASE
from kgrec.baselines.itemknn import ItemKNN
from kgrec.baselines.lightgcn import LightGCN
from kgrec.baselines.mostpop import MostPop
from kgrec.baselines.textknn import TextKNN

__all__ = ["ALS", "BPRMF", "EASE", "ItemKNN", "LightGCN", "MostPop", "TextKNN"]

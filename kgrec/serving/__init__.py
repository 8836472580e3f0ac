"""Serving a trained model: place new users and items, explain a recommendation.

Reads the model (:mod:`kgrec.nn`) and its graph (:mod:`kgrec.graph`) only, never the
training side; :class:`kgrec.models.KGRec` puts both together.
"""

from kgrec.serving.explain import Explainer, Explanation, humanize_relation
from kgrec.serving.placement import NewEdges, NodePlacer

__all__ = ["Explainer", "Explanation", "NewEdges", "NodePlacer", "humanize_relation"]

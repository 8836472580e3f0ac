"""Evaluation: one full-ranking protocol for every kgrec model and baseline."""

from kgrec.eval.early_stopping import EarlyStopping
from kgrec.eval.evaluator import EvalResult, evaluate
from kgrec.eval.metrics import METRIC_NAMES, check_k, check_ks, metrics_from_hits
from kgrec.eval.significance import PairedComparison, compare_paired, holm_adjust

__all__ = [
    "EarlyStopping",
    "EvalResult",
    "METRIC_NAMES",
    "PairedComparison",
    "check_k",
    "check_ks",
    "compare_paired",
    "evaluate",
    "holm_adjust",
    "metrics_from_hits",
]

"""Evaluation: one full-ranking protocol for every kgrec model and baseline."""

from kgrec.eval.early_stopping import EarlyStopping
from kgrec.eval.evaluator import (EvalResult, RankingDataset, RankingTask, Scorer, evaluate, mean_over_users,
                                  rank_batch, ranking_task, summarize)
from kgrec.eval.metrics import DEFAULT_KS, METRIC_NAMES, check_k, check_ks, metrics_from_hits
from kgrec.eval.significance import PairedComparison, compare_paired, holm_adjust
from kgrec.eval.topk import RANKING_COLUMNS, ranking_frame, top_k

__all__ = [
    "DEFAULT_KS",
    "EarlyStopping",
    "EvalResult",
    "METRIC_NAMES",
    "PairedComparison",
    "RANKING_COLUMNS",
    "RankingDataset",
    "RankingTask",
    "Scorer",
    "check_k",
    "check_ks",
    "compare_paired",
    "evaluate",
    "holm_adjust",
    "mean_over_users",
    "metrics_from_hits",
    "rank_batch",
    "ranking_frame",
    "ranking_task",
    "summarize",
    "top_k",
]

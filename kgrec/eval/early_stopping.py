"""Early stopping on a validation metric (the test set is never looked at)."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Callable

from kgrec.errors import ConfigError
from kgrec.eval.evaluator import Scorer, evaluate

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.data.split import Split
    from kgrec.graph import GraphData

__all__ = ["EarlyStopping"]

log = logging.getLogger("kgrec")


class EarlyStopping:
    """Track a validation metric, remember the best state, say when to stop.

    Args:
        metric: Metric name from :func:`kgrec.eval.evaluate` (``on="valid"``), e.g. ``"ndcg@20"``.
        patience: Number of consecutive checks without improvement before stopping.
        min_delta: Smallest increase that counts as an improvement.

    Use::

        stopper = EarlyStopping("ndcg@20", patience=5)
        for epoch in range(max_epochs):
            train_one_epoch()
            if stopper.step(model, split, graph, epoch, state=lambda: params_copy()):
                break
        restore(stopper.best_state)
    """

    def __init__(self, metric: str = "ndcg@20", patience: int = 5, min_delta: float = 0.0) -> None:
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"The 'patience' parameter must be a positive integer; got {patience!r}.")
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.best_score = float("-inf")
        self.best_epoch = -1
        self.best_state: Any = None
        self.history: list[tuple[int, float]] = []
        self._bad = 0

    def step(
        self,
        model: Scorer,
        split: "Split",
        graph: "GraphData",
        epoch: int,
        state: Callable[[], Any] | None = None,
    ) -> bool:
        """Evaluate ``model`` on ``split.valid``; returns ``True`` when training should stop.

        Args:
            model: The recommender being trained (its ``score`` must work mid-training).
            split: The split; only ``train`` (for exclusion) and ``valid`` are read.
            graph: The training graph.
            epoch: Current epoch number (recorded in :attr:`history`).
            state: Called on improvement; its return value is kept as :attr:`best_state`.
        """
        k = int(self.metric.split("@")[1]) if "@" in self.metric else 20
        result = evaluate(model, split, graph, on="valid", ks=(k,))
        if self.metric not in result.metrics:
            raise ConfigError(
                f"The 'metric' parameter must be one of {sorted(result.metrics)}; got {self.metric!r}."
            )
        value = result.metrics[self.metric]
        self.history.append((epoch, value))
        log.info("%s epoch %d: valid %s = %.4f (best %.4f)", type(model).__name__, epoch,
                 self.metric, value, max(value, self.best_score))
        if value > self.best_score + self.min_delta:
            self.best_score = value
            self.best_epoch = epoch
            self.best_state = copy.deepcopy(state()) if state is not None else None
            self._bad = 0
            return False
        self._bad += 1
        return self._bad >= self.patience

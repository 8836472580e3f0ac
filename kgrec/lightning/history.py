"""``MetricsHistory``: the per-epoch validation metrics of a fit, kept in memory."""

from __future__ import annotations

import lightning as L

__all__ = ["MetricsHistory"]


class MetricsHistory(L.Callback):
    """Records, after every validation, the logged ``val/*`` metrics and the last ``train/loss``.

    :class:`~kgrec.models.KGRec` trains without a logger (nothing is written to disk);
    this callback is what gives it a ``history_`` (one row per validation epoch).

    Attributes:
        rows: ``[{"epoch": int, "val/ndcg@20": float, ..., "train/loss": float}, ...]``.
    """

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("val/") or k == "train/loss"}
        self.rows.append({"epoch": int(trainer.current_epoch), **metrics})

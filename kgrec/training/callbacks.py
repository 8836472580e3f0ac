"""Callbacks that keep or write what a run produced: the metrics history, test metrics, predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from kgrec.errors import ConfigError
from kgrec.eval import ranking_frame
from kgrec.io import atomic_write, atomic_write_text

__all__ = ["MetricsHistory", "TestMetricsWriter", "TopKWriter"]

log = logging.getLogger("kgrec")


class MetricsHistory(L.Callback):
    """Records, after every validation, the logged ``val/*`` metrics and the last ``train/loss``.

    :meth:`kgrec.models.KGRec.fit` trains without a logger (nothing is written to disk);
    this callback is what gives it a ``history_`` (one row per validation epoch).

    Attributes:
        rows: ``[{"epoch": int, "val/ndcg@20": float, ..., "train/loss": float}, ...]``.
    """

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("val/") or k == "train/loss"}
        self.rows.append({"epoch": int(trainer.current_epoch), **metrics})


def _run_dirs(trainer: L.Trainer) -> list[Path]:
    """Where a run's files go: its logger's directory, and the run that trained the checkpoint
    being evaluated (``<run>/checkpoints/best.ckpt`` -> ``<run>``), where a user looks for them."""
    log_dir = trainer.log_dir  # a collective under DDP: every rank asks
    targets = [Path(log_dir)] if log_dir else []
    ckpt = trainer.ckpt_path
    if ckpt and Path(ckpt).parent.name == "checkpoints":
        trained_run = Path(ckpt).resolve().parent.parent
        if all(trained_run != t.resolve() for t in targets):
            targets.append(trained_run)
    return targets


class TestMetricsWriter(L.Callback):
    """Writes the test metrics to ``test_metrics.json`` when ``kgrec test`` ends.

    The file goes into the test run's directory and, for ``--ckpt_path <run>/checkpoints/...``,
    beside the run that trained the checkpoint (a read-only archive there costs a warning,
    not the result). Keys are the metric names without ``test/``: ``ndcg@20``,
    ``cold_recall@20``, ...
    """

    __test__ = False  # not a pytest test class

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        targets = _run_dirs(trainer)
        if not trainer.is_global_zero:
            return
        payload = {k[len("test/"):]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        text = json.dumps(payload, indent=2)
        for n, directory in enumerate(targets):
            try:
                atomic_write_text(directory / "test_metrics.json", text)
            except OSError as err:
                if n == 0:
                    raise
                log.warning("could not write test metrics beside the checkpoint's run (%s): %s", directory, err)
                continue
            log.info("test metrics written to %s", directory / "test_metrics.json")


class TopKWriter(BasePredictionWriter):
    """Writes every user's top-k items (``kgrec predict``) to ``<run dir>/predictions.parquet``.

    Each process keeps the top-k lists of its own users (``predict_step`` returns them);
    at the end they are gathered, and the first process writes one row per (user, rank):
    ``user``, ``rank`` (1-based), ``item``, ``name``, ``score``, users in vocabulary order,
    atomically. ``k`` and ``exclude_seen`` are ``data.predict``'s.

    Args:
        filename: The file's name inside the run directory.
    """

    def __init__(self, filename: str = "predictions.parquet") -> None:
        if not filename.endswith(".parquet") or Path(filename).name != filename:
            raise ConfigError(f"predictions.filename must be a file name ending in .parquet; got {filename!r}.")
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: Path | None = None
        self._parts: list[dict[str, torch.Tensor]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        self._parts.append({k: v.cpu() for k, v in prediction.items()})

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        mine = {k: torch.cat([p[k] for p in self._parts]) for k in ("users", "items", "scores")} if self._parts \
            else None
        self._parts = []
        parts = [mine]
        if trainer.world_size > 1:
            parts = [None] * trainer.world_size
            torch.distributed.all_gather_object(parts, mine)
        directory = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir is collective: every rank asks
        if not trainer.is_global_zero:
            return
        parts = [p for p in parts if p is not None]
        users = torch.cat([p["users"] for p in parts]).numpy()
        _, first = np.unique(users, return_index=True)  # each user once (a sampler may repeat some)
        pick = torch.from_numpy(first)
        items, scores = (torch.cat([p[k] for p in parts])[pick] for k in ("items", "scores"))
        graph = trainer.datamodule.graph
        user_ids = [str(u) for u in graph.vocabs["user"].ids[users[first]]]
        item_ids = [str(i) for i in graph.vocabs["item"].ids]
        frame = ranking_frame(user_ids, scores, items, item_ids, graph.display_names())
        self.path = atomic_write(directory / self.filename, lambda fh: frame.to_parquet(fh, index=False))
        log.info("top-%d items of %d users written to %s", items.size(1), len(user_ids), self.path)

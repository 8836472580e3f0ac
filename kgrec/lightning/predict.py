"""``kgrec predict``: every user's top-k items, written as a table beside the run."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pandas as pd

from kgrec.errors import ConfigError
from kgrec.io import atomic_write

__all__ = ["TopKWriter"]

log = logging.getLogger("kgrec")


class TopKWriter(L.Callback):
    """Writes the top-``k`` items of every user to ``<run dir>/predictions.parquet`` after ``predict``.

    ``kgrec predict --config C --ckpt_path CKPT`` ranks the whole catalogue for every user of
    the data module's graph with the trained model, exactly as
    :meth:`kgrec.Recommender.recommend` does from that checkpoint (the same code serves both),
    and writes one row per (user, rank): ``user``, ``rank`` (1-based), ``item``, ``name``,
    ``score``. The run directory is the logger's (``runs/lightning_logs/version_N/``); the
    file is written atomically. In the CLI: ``--predictions.k 50``,
    ``--predictions.exclude_seen false``.

    Args:
        k: Items per user (at most the catalogue size).
        exclude_seen: Leave out each user's training items.
        chunk_users: Users ranked per step (bounds the ``(chunk, num_items)`` score matrix).
        filename: The file's name inside the run directory.
    """

    def __init__(self, k: int = 20, exclude_seen: bool = True, chunk_users: int = 4096,
                 filename: str = "predictions.parquet") -> None:
        for name, value in (("k", k), ("chunk_users", chunk_users)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"predictions.{name} must be a positive integer; got {value!r}.")
        if not filename.endswith(".parquet") or Path(filename).name != filename:
            raise ConfigError(f"predictions.filename must be a file name ending in .parquet; got {filename!r}.")
        self.k, self.exclude_seen, self.chunk_users, self.filename = k, exclude_seen, chunk_users, filename
        self.path: Path | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        num_items = trainer.datamodule.graph.num_items  # checked on every rank, before any work
        if self.k > num_items:
            raise ConfigError(f"predictions.k={self.k} is larger than the catalogue ({num_items:,} items); "
                              f"use predictions.k <= {num_items}.")

    def on_predict_end(self, trainer, pl_module) -> None:
        directory = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir is collective: every rank asks
        if not trainer.is_global_zero:
            return
        from tqdm.auto import tqdm

        from kgrec.recommender import Recommender
        from kgrec.serving import serving_bundle

        rec = Recommender(pl_module.model, serving_bundle(trainer.datamodule), device=str(pl_module.device))
        users = rec.vocabs["user"]
        starts = range(0, len(users), self.chunk_users)
        frames = [rec.recommend(users[s:s + self.chunk_users], k=self.k, exclude_seen=self.exclude_seen)
                  for s in tqdm(starts, desc="Ranking", unit="chunk", disable=len(starts) < 2)]
        frame = pd.concat(frames, ignore_index=True)
        self.path = atomic_write(directory / self.filename, lambda fh: frame.to_parquet(fh, index=False))
        log.info("top-%d items of %d users written to %s", self.k, len(users), self.path)

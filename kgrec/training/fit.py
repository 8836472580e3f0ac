"""Train a module in-process with early stopping and keep its best epoch (what ``KGRec.fit`` runs)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from kgrec.training.callbacks import MetricsHistory
from kgrec.training.config import ScheduleConfig

__all__ = ["FitResult", "fit_module", "trainer_devices", "MONITOR"]

#: The metric early stopping and checkpointing watch.
MONITOR = "val/ndcg@20"


@dataclass
class FitResult:
    """What :func:`fit_module` saw: one row per validation, the best epoch, epochs run."""

    history: pd.DataFrame
    best_epoch: int
    epochs: int


def trainer_devices(device: str) -> tuple[str, int | list[int]]:
    """Lightning's ``(accelerator, devices)`` for a torch device string: ``"cuda:1"`` is
    ``("gpu", [1])``, the GPU it names (``devices=1`` would mean Lightning's first GPU)."""
    if str(device).startswith("cuda"):
        return "gpu", [torch.device(device).index or 0]
    return "cpu", 1


def fit_module(module: L.LightningModule, datamodule: L.LightningDataModule, schedule: ScheduleConfig,
               device: str = "cpu") -> FitResult:
    """Fit ``module`` on one device, early-stopping on :data:`MONITOR`, then load the best epoch's weights.

    Nothing is written outside a temporary directory (no logger, no progress bar); the
    caller seeds first (the module's initial weights come from its constructor).
    """
    history = MetricsHistory()
    with tempfile.TemporaryDirectory(prefix="kgrec-fit-") as tmp:
        checkpoint = ModelCheckpoint(dirpath=tmp, monitor=MONITOR, mode="max", save_top_k=1)
        accelerator, devices = trainer_devices(device)
        trainer = L.Trainer(
            max_epochs=schedule.max_epochs, accelerator=accelerator, devices=devices, logger=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp,
            callbacks=[EarlyStopping(MONITOR, mode="max", patience=schedule.patience), checkpoint, history],
        )
        trainer.fit(module, datamodule)
        if checkpoint.best_model_path:
            state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
    frame = pd.DataFrame(history.rows)
    epochs = int(trainer.current_epoch)
    monitored = frame.get(MONITOR)
    best = (int(frame.loc[monitored.idxmax(), "epoch"]) if monitored is not None and monitored.notna().any()
            else epochs - 1)
    return FitResult(frame, best, epochs)

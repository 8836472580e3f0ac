"""``kgrec fit|validate|test|predict``: LightningCLI over KGRecModule and KGRecDataModule."""

from __future__ import annotations

from typing import Sequence

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from kgrec.lightning.datamodule import KGRecDataModule
from kgrec.lightning.module import KGRecModule
from kgrec.lightning.predict import TopKWriter

__all__ = ["KGRecCLI", "run_cli"]


class KGRecCLI(LightningCLI):
    """LightningCLI with kgrec's links and defaults.

    ``data.graph_info`` (node counts, text widths, edge types, KG relations) is linked
    into ``model.graph_info``; early stopping and checkpointing watch ``val/ndcg@20``
    (configurable under ``early_stopping`` / ``checkpoint``); the resolved config is
    saved beside the checkpoints by LightningCLI's ``SaveConfigCallback``. Metrics go to a
    ``CSVLogger`` (``<default_root_dir>/lightning_logs/version_N/metrics.csv``) unless
    ``trainer.logger`` names another: Lightning's own default is TensorBoard wherever
    ``tensorboard`` happens to be installed, and a run's files should not depend on that.
    ``kgrec predict`` writes every user's top-k items to ``predictions.parquet`` in its run
    directory (:class:`~kgrec.lightning.predict.TopKWriter`, options under ``predictions``).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.graph_info", "model.graph_info", apply_on="instantiate")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/ndcg@20", "early_stopping.mode": "max",
                             "early_stopping.patience": 5})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/ndcg@20", "checkpoint.mode": "max",
                             "checkpoint.save_top_k": 1, "checkpoint.filename": "best",
                             "checkpoint.save_last": True})
        parser.add_lightning_class_args(TopKWriter, "predictions")  # what `kgrec predict` writes

    #: The trainer of the run in progress (read when a run fails, see :func:`run_cli`).
    last_trainer = None

    def instantiate_trainer(self, **kwargs):
        trainer = self.config_init.get(f"{self.subcommand}.trainer" if self.subcommand else "trainer") or {}
        if "logger" not in kwargs and trainer.get("logger") in (None, True):
            kwargs["logger"] = CSVLogger(save_dir=trainer.get("default_root_dir") or "runs")
        KGRecCLI.last_trainer = out = super().instantiate_trainer(**kwargs)
        return out

    def before_fit(self) -> None:
        self.model.check_fanouts(self.datamodule)


def run_cli(args: Sequence[str]) -> KGRecCLI:
    """Run the Lightning CLI on ``args`` (e.g. ``["fit", "--config", "configs/quickstart.yaml"]``)."""
    import sys
    from unittest import mock

    # ``args`` is the whole command line; hide sys.argv so LightningCLI does not warn about both.
    KGRecCLI.last_trainer = None
    with mock.patch.object(sys, "argv", sys.argv[:1]):
        try:
            return _make_cli(args)
        except BaseException:
            _drop_stillborn_run(KGRecCLI.last_trainer)
            raise


#: What every run writes before its first step; a run directory holding nothing else recorded nothing.
_SETUP_FILES = {"config.yaml", "hparams.yaml"}


def _drop_stillborn_run(trainer) -> None:
    """Remove the run directory of a run that failed before it wrote anything of its own.

    A refused ``kgrec test`` (a checkpoint from another split, say) has by then created
    ``version_N/`` with its config: left there, it reads like a run that happened, and the
    next run is numbered past it. A directory holding anything more (metrics, checkpoints)
    is kept.
    """
    import shutil
    from pathlib import Path

    log_dir = getattr(trainer, "log_dir", None) if trainer is not None else None
    if not log_dir or not Path(log_dir).is_dir():
        return
    files = [p for p in Path(log_dir).rglob("*") if p.is_file()]
    if all(p.name in _SETUP_FILES and p.parent == Path(log_dir) for p in files):
        shutil.rmtree(log_dir, ignore_errors=True)


def _make_cli(args: Sequence[str]) -> KGRecCLI:
    return KGRecCLI(
        KGRecModule,
        KGRecDataModule,
        args=list(args),
        seed_everything_default=2026,
        trainer_defaults={"max_epochs": 100, "check_val_every_n_epoch": 1, "log_every_n_steps": 10,
                          "num_sanity_val_steps": 0, "default_root_dir": "runs"},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "kgrec", "description": "Train and evaluate kgrec models."},
    )

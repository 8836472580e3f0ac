"""``kgrec fit|validate|test|predict``: LightningCLI over KGRecModule and KGRecDataModule."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence
from unittest import mock

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from kgrec.training.callbacks import TestMetricsWriter, TopKWriter
from kgrec.training.config import ScheduleConfig
from kgrec.training.datamodule import KGRecDataModule
from kgrec.training.fit import MONITOR
from kgrec.training.module import KGRecModule

__all__ = ["KGRecCLI", "run_cli", "TRAINER_DEFAULTS"]

#: The CLI's trainer defaults; the schedule's come from :class:`~kgrec.training.ScheduleConfig`,
#: so ``kgrec fit`` and ``KGRec().fit`` stop alike.
TRAINER_DEFAULTS = {"max_epochs": ScheduleConfig().max_epochs, "check_val_every_n_epoch": 1,
                    "log_every_n_steps": 10, "num_sanity_val_steps": 0, "default_root_dir": "runs"}


class KGRecCLI(LightningCLI):
    """LightningCLI with kgrec's links and defaults.

    ``data.graph_info`` (node counts, text widths, edge types, KG relations) is linked
    into ``model.graph_info``; early stopping and checkpointing watch ``val/ndcg@20``
    (configurable under ``early_stopping`` / ``checkpoint``); the resolved config is
    saved beside the checkpoints by LightningCLI's ``SaveConfigCallback``. Metrics go to a
    ``CSVLogger`` (``<default_root_dir>/lightning_logs/version_N/metrics.csv``) unless
    ``trainer.logger`` names another: Lightning's own default is TensorBoard wherever
    ``tensorboard`` happens to be installed, and a run's files should not depend on that.
    ``kgrec test`` writes ``test_metrics.json`` (:class:`~kgrec.training.TestMetricsWriter`),
    ``kgrec predict`` every user's top-k items to ``predictions.parquet``
    (:class:`~kgrec.training.TopKWriter`), both in the run directory.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.graph_info", "model.graph_info", apply_on="instantiate")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": MONITOR, "early_stopping.mode": "max",
                             "early_stopping.patience": ScheduleConfig().patience})
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": MONITOR, "checkpoint.mode": "max",
                             "checkpoint.save_top_k": 1, "checkpoint.filename": "best",
                             "checkpoint.save_last": True})
        parser.add_lightning_class_args(TopKWriter, "predictions")  # what `kgrec predict` writes
        parser.add_lightning_class_args(TestMetricsWriter, "test_metrics")  # what `kgrec test` writes

    #: The ``version_N/`` directory the run in progress will create, when its logger numbers runs
    #: and that directory does not exist yet (read if the run fails, see :func:`run_cli`).
    new_run_dir: Optional[Path] = None

    def instantiate_trainer(self, **kwargs):
        trainer = self.config_init.get(f"{self.subcommand}.trainer" if self.subcommand else "trainer") or {}
        if "logger" not in kwargs and trainer.get("logger") in (None, True):
            kwargs["logger"] = CSVLogger(save_dir=trainer.get("default_root_dir") or "runs")
        out = super().instantiate_trainer(**kwargs)
        if isinstance(out.logger, (CSVLogger, TensorBoardLogger)) and out.is_global_zero:
            run_dir = Path(out.logger.log_dir)
            KGRecCLI.new_run_dir = None if run_dir.exists() else run_dir
        return out


def run_cli(args: Sequence[str]) -> KGRecCLI:
    """Run the Lightning CLI on ``args`` (e.g. ``["fit", "--config", "configs/quickstart.yaml"]``)."""
    # ``args`` is the whole command line. sys.argv is set to it for the run: LightningCLI warns when
    # the two differ, and multi-process DDP (`--trainer.devices 2`) starts each further rank by
    # re-running sys.argv, which has to be this command, subcommand included.
    KGRecCLI.new_run_dir = None
    with mock.patch.object(sys, "argv", [sys.argv[0], *args]):
        try:
            return make_cli(args)
        except BaseException:
            _drop_stillborn_run(KGRecCLI.new_run_dir)
            raise
        finally:
            KGRecCLI.new_run_dir = None


def make_cli(args: Sequence[str] | None, run: bool = True) -> KGRecCLI:
    """The :class:`KGRecCLI` over ``args``; ``run=False`` parses and instantiates without running."""
    return KGRecCLI(
        KGRecModule,
        KGRecDataModule,
        args=None if args is None else list(args),
        run=run,
        seed_everything_default=2026,
        trainer_defaults=dict(TRAINER_DEFAULTS),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "kgrec", "description": "Train and evaluate kgrec models."},
    )


#: What every run writes before its first step; a run directory holding nothing else recorded nothing.
_SETUP_FILES = {"config.yaml", "hparams.yaml"}


def _drop_stillborn_run(run_dir: Optional[Path]) -> None:
    """Remove the ``version_N/`` directory a failed run created, if it wrote nothing of its own.

    A refused ``kgrec test`` (a checkpoint from another split, say) has by then created
    ``version_N/`` with its config: left there, it reads like a run that happened, and the
    next run is numbered past it. Only a directory this run's logger created is considered
    (never ``default_root_dir`` or a logger's ``save_dir``), and one holding anything more
    than its config (metrics, checkpoints) is kept.
    """
    if run_dir is None or not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    if all(p.is_file() and p.name in _SETUP_FILES for p in entries):
        shutil.rmtree(run_dir, ignore_errors=True)

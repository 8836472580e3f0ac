"""``kgrec fit|validate|test|predict``: LightningCLI over KGRecModule and KGRecDataModule."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

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

    def before_fit(self) -> None:
        self.model.check_fanouts(self.datamodule)


def run_cli(args: Sequence[str]) -> KGRecCLI:
    """Run the Lightning CLI on ``args`` (e.g. ``["fit", "--config", "configs/quickstart.yaml"]``)."""
    import sys
    from unittest import mock

    # ``args`` is the whole command line. sys.argv is set to it for the run: LightningCLI warns when
    # the two differ, and multi-process DDP (`--trainer.devices 2`) starts each further rank by
    # re-running sys.argv, which has to be this command, subcommand included.
    KGRecCLI.new_run_dir = None
    with mock.patch.object(sys, "argv", [sys.argv[0], *args]):
        try:
            return _make_cli(args)
        except BaseException:
            _drop_stillborn_run(KGRecCLI.new_run_dir)
            raise
        finally:
            KGRecCLI.new_run_dir = None


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
    import shutil

    if run_dir is None or not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    if all(p.is_file() and p.name in _SETUP_FILES for p in entries):
        shutil.rmtree(run_dir, ignore_errors=True)


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

"""Training in Lightning: the hyper-parameter groups, the data module, the module, callbacks, the CLI.

Imports point down the pipeline only: training reads the world, the graph, the model and the
evaluator, and never the serving side (:mod:`kgrec.serving`, :mod:`kgrec.models`).
"""

from kgrec.training.callbacks import MetricsHistory, TestMetricsWriter, TopKWriter
from kgrec.training.checkpoint import KGREC_CLASS_PATH, checkpoint_fields, lightning_fields, load_module
from kgrec.training.config import LoaderConfig, LossConfig, OptimConfig, PredictConfig, ScheduleConfig
from kgrec.training.datamodule import KGRecDataModule
from kgrec.training.fit import MONITOR, FitResult, fit_module, trainer_devices
from kgrec.training.loaders import DeviceGraph, EdgeSet, TensorBatchSampler
from kgrec.training.module import KGRecModule

__all__ = [
    "DeviceGraph",
    "EdgeSet",
    "FitResult",
    "KGREC_CLASS_PATH",
    "KGRecDataModule",
    "KGRecModule",
    "LoaderConfig",
    "LossConfig",
    "MONITOR",
    "MetricsHistory",
    "OptimConfig",
    "PredictConfig",
    "ScheduleConfig",
    "TensorBatchSampler",
    "TestMetricsWriter",
    "TopKWriter",
    "checkpoint_fields",
    "fit_module",
    "lightning_fields",
    "load_module",
    "trainer_devices",
]

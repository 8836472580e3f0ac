"""Lightning integration: data module, training module and the ``kgrec`` LightningCLI."""

from kgrec.lightning.datamodule import KGRecDataModule
from kgrec.lightning.history import MetricsHistory
from kgrec.lightning.module import EmbeddingScorer, KGRecModule
from kgrec.lightning.predict import TopKWriter

__all__ = ["EmbeddingScorer", "KGRecDataModule", "KGRecModule", "MetricsHistory", "TopKWriter"]

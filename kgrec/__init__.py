"""kgrec: knowledge-graph recommendation with text-aligned heterogeneous GNNs.

The names a user needs::

    import kgrec

    world = kgrec.build_world(kgrec.DataConfig("ml-100k", split="random"))   # split first
    model = kgrec.KGRec().fit(world.split, world.graph)
    kgrec.evaluate(model, world.split, world.graph).metrics["ndcg@20"]
    model.save("model.ckpt"); model = kgrec.load("model.ckpt")               # or kgrec fit's best.ckpt
"""

from kgrec._version import __version__
from kgrec.data import DataConfig, Dataset, Split, load_dataset, make_synthetic, split_dataset
from kgrec.errors import ConfigError, DataError, KGRecError, UnknownIdError
from kgrec.eval import EvalResult, evaluate
from kgrec.graph import GraphData, InputConfig, build_graph, build_vocabs
from kgrec.models import BaseRecommender, KGRec, load
from kgrec.nn import GNNConfig
from kgrec.text import TextEncoder
from kgrec.training import LoaderConfig, LossConfig, OptimConfig, ScheduleConfig
from kgrec.world import World, build_world

__all__ = [
    "BaseRecommender",
    "ConfigError",
    "DataConfig",
    "DataError",
    "Dataset",
    "EvalResult",
    "GNNConfig",
    "GraphData",
    "InputConfig",
    "KGRec",
    "KGRecError",
    "LoaderConfig",
    "LossConfig",
    "OptimConfig",
    "ScheduleConfig",
    "Split",
    "TextEncoder",
    "UnknownIdError",
    "World",
    "__version__",
    "build_graph",
    "build_vocabs",
    "build_world",
    "evaluate",
    "load",
    "load_dataset",
    "make_synthetic",
    "split_dataset",
]

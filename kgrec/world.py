"""One way to build the world: dataset -> split -> vocabularies -> text features -> graph.

Every kgrec entry point calls :func:`build_world`: the Lightning data module behind
``kgrec fit``, ``kgrec info``, the benchmark runner and the ``synthetic-scale`` data, so
they all train and measure on the same graph. ::

    from kgrec.data import DataConfig
    from kgrec.world import build_world

    world = build_world(DataConfig("ml-100k", split="random", split_seed=2026))
    world.split, world.graph          # split first; the graph holds train edges only

.. warning::
    The split is made before anything reads the interactions; text profiles, the graph and
    its degrees read ``split.train`` only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from kgrec.data import BUILTIN_DATASETS, Dataset, Split, load_dataset, split_dataset
from kgrec.data.config import DataConfig
from kgrec.data.scale import SCALE_DATASET
from kgrec.errors import ConfigError, DataError
from kgrec.graph import GraphData, InputConfig, build_graph, build_vocabs, make_scale_world, select_inputs
from kgrec.text import DEFAULT_ENCODER_SPEC, BaseTextEncoder, TextEncoder, encode_node_texts, encoder_spec

__all__ = ["World", "build_world", "check_source"]

log = logging.getLogger("kgrec")


@dataclass
class World:
    """A dataset split and the training graph built from it.

    Attributes:
        split: Train / valid / test interactions.
        graph: The training graph (train edges only), restricted to the model's inputs.
        dataset: The dataset (``None`` for the tensor-built ``synthetic-scale`` world).
    """

    split: Split
    graph: GraphData
    dataset: Dataset | None = None

    def summary(self) -> str:
        if self.dataset is not None:
            head = self.dataset.summary()
        else:  # a tensor-built world: its sizes
            n = len(self.split.train) + len(self.split.valid) + len(self.split.test)
            head = (f"Dataset[{self.graph.dataset_name}]: users {self.graph.num_users:,}, "
                    f"items {self.graph.num_items:,}, interactions {n:,}")
        return "\n".join([head, self.split.summary(), self.graph.summary()])


def check_source(path: str) -> None:
    """Refuse, by name, a ``dataset.path`` that is neither built in nor an existing directory."""
    if path != SCALE_DATASET and path not in BUILTIN_DATASETS and not Path(path).expanduser().is_dir():
        raise DataError(
            f"dataset.path {path!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}, "
            f"{SCALE_DATASET}) nor an existing directory of RecBole atomic files."
        )


def build_world(config: DataConfig = DataConfig(), inputs: InputConfig = InputConfig(),
                text_encoder: BaseTextEncoder | None = None, dataset: Dataset | None = None) -> World:
    """Load, split, encode text and build the training graph, in that order.

    Args:
        config: The dataset and its split.
        inputs: What the graph keeps (text, tags, KG; applied by
            :func:`kgrec.graph.select_inputs`). Text is encoded only when ``use_text``.
        text_encoder: Encoder of node texts (``None``: :class:`~kgrec.text.TextEncoder`
            with the packaged all-MiniLM-L6-v2). Embeddings are cached on disk.
        dataset: The dataset ``config.path`` names, already loaded (a caller that splits one
            dataset several ways loads it once).

    Returns:
        The :class:`World`; its graph records which encoder wrote its text features.
    """
    if config.is_scale:
        return _scale_world(config, inputs, text_encoder)
    if dataset is None:
        check_source(config.path)
        dataset = load_dataset(config.path, cache_dir=config.cache_dir)
    split = split_dataset(dataset, config.split, ratios=config.ratios, seed=config.split_seed,
                          cold_fraction=config.cold_fraction, rating_threshold=config.rating_threshold)
    vocabs = build_vocabs(dataset)
    features, spec = None, None
    if inputs.use_text:
        encoder = text_encoder if text_encoder is not None else TextEncoder()
        cache = None if config.cache_dir is None else Path(config.cache_dir) / "text"
        features = encode_node_texts(dataset, split, vocabs, encoder, cache_dir=cache)
        features = {nt: x for nt, x in features.items() if x is not None}
        spec = DEFAULT_ENCODER_SPEC if text_encoder is None else encoder_spec(text_encoder)
    graph = build_graph(dataset, split, text_features=features, vocabs=vocabs)
    graph = select_inputs(replace(graph, text_encoder=spec), inputs)
    world = World(split, graph, dataset)
    log.info("%s", world.summary())
    return world


def _scale_world(config: DataConfig, inputs: InputConfig, text_encoder) -> World:
    if not (inputs.use_kg and inputs.use_side_info):
        raise ConfigError(f"dataset.path {SCALE_DATASET!r} always has tags and KG edges; "
                          "inputs.use_kg and inputs.use_side_info must stay true.")
    if text_encoder is not None:
        raise ConfigError(f"text_encoder does not apply to dataset.path {SCALE_DATASET!r} (its text features "
                          "are random stand-ins); leave it unset.")
    start = time.perf_counter()
    split, graph = make_scale_world(**config.scale, ratios=config.ratios, seed=config.split_seed)
    graph = select_inputs(graph, inputs)
    log.info("%s built in %.1f s (stand-in text features: %s)\n%s\n%s", graph.dataset_name,
             time.perf_counter() - start, inputs.use_text, split.summary(), graph.summary())
    return World(split, graph)

"""``KGRecDataModule``: the world (:func:`kgrec.world.build_world`) as Lightning loaders."""

from __future__ import annotations

from typing import Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from torch_geometric.loader import LinkLoader

from kgrec.config import coerce_config
from kgrec.data import load_dataset
from kgrec.data.config import DataConfig
from kgrec.errors import ConfigError
from kgrec.eval import RankingDataset, RankingTask, ranking_task
from kgrec.graph import INTERACTS, GraphData, InputConfig, select_inputs, train_fingerprint
from kgrec.nn import graph_info
from kgrec.sampler import HeteroNeighborSampler
from kgrec.text.base import BaseTextEncoder
from kgrec.training.config import LoaderConfig, PredictConfig
from kgrec.training.loaders import DeviceGraph, EdgeSet, TensorBatchSampler, whole_batch
from kgrec.world import World, build_world, check_source

__all__ = ["KGRecDataModule", "PredictTask"]

_SCORE_BLOCK = 1 << 24  # score values of one evaluation chunk: 64 MiB of float32


class KGRecDataModule(L.LightningDataModule):
    """Builds the world (load, split first, encode text, build the graph) and serves it.

    Training batches are TRAIN (user, item) edges — index tensors over the whole graph
    (``loader.sampling: full``) or sampled k-hop subgraphs around them (``neighbor``).
    Validation, test and predict batches are chunks of users (:class:`~kgrec.eval.RankingDataset`),
    each carrying what the evaluator's kernel needs, so under DDP every process ranks its own
    users. Everything derived from the data (node counts, text widths, edge types, KG
    relations) is :attr:`graph_info`, which the CLI links into the model.

    Args:
        dataset: Which dataset and how it is split (:class:`~kgrec.data.DataConfig`).
        inputs: What the graph keeps: text, tags, KG (:class:`~kgrec.graph.InputConfig`).
        loader: Batches and chunks (:class:`~kgrec.training.LoaderConfig`).
        predict: What ``kgrec predict`` writes per user (:class:`~kgrec.training.PredictConfig`).
        text_encoder: The text encoder (any :class:`kgrec.text.BaseTextEncoder`, given in a
            config as ``class_path`` + ``init_args``); ``None``: :class:`kgrec.text.TextEncoder`
            with the packaged all-MiniLM-L6-v2.

    .. warning::
        Only ``split.train`` reaches the graph, the text profiles and the negatives.
    """

    def __init__(
        self,
        dataset: DataConfig = DataConfig(),
        inputs: InputConfig = InputConfig(),
        loader: LoaderConfig = LoaderConfig(),
        predict: PredictConfig = PredictConfig(),
        text_encoder: Optional[BaseTextEncoder] = None,
    ) -> None:
        super().__init__()
        self.dataset = coerce_config(DataConfig, dataset, "data.dataset")
        self.inputs = coerce_config(InputConfig, inputs, "data.inputs")
        self.loader = coerce_config(LoaderConfig, loader, "data.loader")
        self.predict = coerce_config(PredictConfig, predict, "data.predict")
        self.text_encoder = text_encoder
        if self.dataset.is_scale and text_encoder is not None:
            raise ConfigError("data.text_encoder does not apply to dataset.path 'synthetic-scale' (its text "
                              "features are random stand-ins); leave it unset.")
        self.world: World | None = None
        self._device_graph: DeviceGraph | None = None
        self._fingerprint: str | None = None
        self._tasks: dict[tuple, RankingTask] = {}

    @classmethod
    def from_world(cls, world: World, inputs: InputConfig = InputConfig(), loader: LoaderConfig = LoaderConfig(),
                   predict: PredictConfig = PredictConfig()) -> "KGRecDataModule":
        """A data module over a world already built (its graph restricted to ``inputs``)."""
        dm = cls(inputs=inputs, loader=loader, predict=predict)
        dm.world = World(world.split, select_inputs(world.graph, dm.inputs), world.dataset)
        return dm

    # ------------------------------------------------------------ building
    def prepare_data(self) -> None:
        """Fetch the dataset into the cache (first use only; one process under DDP)."""
        if self.world is None and not self.dataset.is_scale:
            check_source(self.dataset.path)
            load_dataset(self.dataset.path, cache_dir=self.dataset.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.world is None:
            self.world = build_world(self.dataset, self.inputs, self.text_encoder)

    @property
    def graph(self) -> GraphData:
        """The training graph (built on first use)."""
        self.setup()
        return self.world.graph

    @property
    def split(self):
        self.setup()
        return self.world.split

    @property
    def graph_info(self) -> dict:
        """What the model must know about the data (:func:`kgrec.nn.graph_info`)."""
        return graph_info(self.graph)

    def train_fingerprint(self) -> str:
        """:func:`kgrec.graph.train_fingerprint` of the graph, computed once."""
        if self._fingerprint is None:
            self._fingerprint = train_fingerprint(self.graph)
        return self._fingerprint

    def graph_on(self, device: torch.device | str):
        """The training graph on ``device``, copied there once and shared by the sampler and the model."""
        if self._device_graph is None or self._device_graph.data is not self.graph.data:
            self._device_graph = DeviceGraph(self.graph.data)
        return self._device_graph.on(device)

    # ------------------------------------------------------------ loaders
    def train_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """TRAIN (user, item) index pairs, each ``(num_train,)``: the graph's ``interacts`` edges."""
        edge_index = self.graph.data[INTERACTS].edge_index
        return edge_index[0], edge_index[1]

    def _drop_last(self, num_edges: int) -> bool:
        """Drop the last, short batch only when this rank has more than one batch of edges:
        otherwise an epoch would have no step at all (fewer train edges than ``batch_size``,
        or a DDP shard of ``num_edges / world_size`` that is)."""
        world = self.trainer.world_size if self.trainer is not None else 1
        return -(-num_edges // world) > self.loader.batch_size

    def _sample_on(self) -> torch.device:
        """The device ``neighbor`` sampling runs on (see ``loader.sampling_device``)."""
        if self.loader.sampling_device == "cpu" or self.loader.num_workers > 0 or self.trainer is None:
            return torch.device("cpu")
        return self.trainer.strategy.root_device

    def train_dataloader(self):
        batch_size, workers = self.loader.batch_size, self.loader.num_workers
        if self.loader.sampling == "full":
            users, items = self.train_edges()
            edges = EdgeSet(users, items)
            batches = TensorBatchSampler(RandomSampler(edges), batch_size, drop_last=self._drop_last(len(users)))
            return DataLoader(edges, batch_sampler=batches, collate_fn=whole_batch, num_workers=workers)
        device = self._sample_on()
        data = self.graph_on(device)
        sampler = HeteroNeighborSampler(data, num_neighbors=list(self.loader.num_neighbors), device=device)
        return LinkLoader(data, sampler, edge_label_index=(INTERACTS, None), batch_size=batch_size,
                          shuffle=True, num_workers=workers,
                          drop_last=self._drop_last(self.graph.data[INTERACTS].num_edges))

    def ranking_task(self, on: str, cold_only: bool = False) -> RankingTask:
        """The evaluator's task for ``on`` (``valid`` draws ``loader.val_max_users`` users), made once."""
        key = (on, cold_only)
        if key not in self._tasks:
            max_users = self.loader.val_max_users if on == "valid" else None
            self._tasks[key] = ranking_task(self.split, self.graph, on=on, cold_only=cold_only, max_users=max_users)
        return self._tasks[key]

    def _users_loader(self, dataset) -> DataLoader:
        size = self.loader.eval_batch_users or max(1, min(8192, _SCORE_BLOCK // max(self.graph.num_items, 1)))
        return DataLoader(dataset, batch_size=size, shuffle=False, collate_fn=whole_batch)

    def val_dataloader(self):
        return self._users_loader(RankingDataset(self.ranking_task("valid")))

    def test_dataloader(self):
        """Every user with a test item; on a split with cold items, a second loader ranks those only."""
        loaders = [self._users_loader(RankingDataset(self.ranking_task("test")))]
        if self.split.cold_items:
            loaders.append(self._users_loader(RankingDataset(self.ranking_task("test", cold_only=True))))
        return loaders

    def predict_dataloader(self):
        return self._users_loader(PredictTask(self.graph, self.predict))


class PredictTask(torch.utils.data.Dataset):
    """Every user of the graph, a chunk at a time, with their train items to leave out.

    A batch is ``{"users": (B,), "excluded": (2, nnz) (row, item) pairs, "k": int}``
    (``excluded`` empty when ``predict.exclude_seen`` is off).
    """

    def __init__(self, graph: GraphData, predict: PredictConfig) -> None:
        if predict.k > graph.num_items:
            raise ConfigError(f"predict.k={predict.k} is larger than the catalogue ({graph.num_items:,} items); "
                              f"use predict.k <= {graph.num_items}.")
        self.num_users, self.k = graph.num_users, predict.k
        ui = graph.data[INTERACTS].edge_index
        order = torch.argsort(ui[0], stable=True)
        self.items = ui[1][order] if predict.exclude_seen else ui[1][:0]
        counts = torch.bincount(ui[0], minlength=self.num_users) if predict.exclude_seen \
            else torch.zeros(self.num_users, dtype=torch.long)
        self.ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def __len__(self) -> int:
        return self.num_users

    def __getitem__(self, index: int):
        return self.__getitems__([index])

    def __getitems__(self, indices) -> dict:
        users = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        lengths = self.ptr[users + 1] - self.ptr[users]
        rows = torch.repeat_interleave(torch.arange(users.numel()), lengths)
        starts = torch.repeat_interleave(self.ptr[users], lengths)
        offsets = torch.arange(int(lengths.sum())) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        return {"users": users, "excluded": torch.stack([rows, self.items[starts + offsets]]), "k": self.k}

"""``KGRecDataModule``: dataset -> split -> text features -> graph -> loaders."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal, Optional, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from kgrec.data import load_dataset
from kgrec.data.scale import SCALE_DATASET, check_scale, make_scale_world
from kgrec.errors import ConfigError, DataError
from kgrec.graph import INTERACTS, GraphData, build_graph, build_vocabs, data_on, prune_entities
from kgrec.split import Split, check_ratios, split_dataset
from kgrec.text.base import BaseTextEncoder

__all__ = ["KGRecDataModule", "EdgeSet", "TensorBatchSampler"]

log = logging.getLogger("kgrec")


class EdgeSet(Dataset):
    """TRAIN (user, item) index pairs that hand out a whole batch with one indexing op.

    ``DataLoader(TensorDataset(...), batch_size=B)`` fetches and collates a batch one pair at a
    time: on ml-1m (805k edges, batches of 16,384) that loop took 5.6 s of every epoch on the
    CPU, against 0.2 s when the batch is one index tensor (``__getitems__``, which PyTorch's
    fetcher calls with the batch sampler's indices).
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        self.users, self.items = users, items

    def __len__(self) -> int:
        return self.users.numel()

    def __getitem__(self, index):
        return self.users[index], self.items[index]

    def __getitems__(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.users[index], self.items[index]


class TensorBatchSampler(BatchSampler):
    """A :class:`~torch.utils.data.BatchSampler` whose batches are index tensors cut from one
    order per epoch, instead of lists built one index at a time.

    Over a plain :class:`~torch.utils.data.RandomSampler` it draws the very permutation that
    sampler would have drawn (same generator, or the same seed drawn from torch's global RNG),
    so batches equal ``DataLoader(..., shuffle=True)``'s; over any other sampler (Lightning's
    ``DistributedSampler`` under DDP, which re-creates this class with it) it takes that
    sampler's order. The constructor is :class:`~torch.utils.data.BatchSampler`'s, which is
    what Lightning calls when it injects a distributed sampler.
    """

    def __iter__(self):
        sampler = self.sampler
        if (isinstance(sampler, RandomSampler) and not sampler.replacement
                and sampler.num_samples == len(sampler.data_source)):
            generator = sampler.generator
            if generator is None:  # what RandomSampler.__iter__ does without a generator
                generator = torch.Generator()
                generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            order = torch.randperm(len(sampler.data_source), generator=generator)
        else:
            order = torch.as_tensor(list(sampler), dtype=torch.long)
        stop = order.numel() - order.numel() % self.batch_size if self.drop_last else order.numel()
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]


def _check_fits(data, device: torch.device) -> None:
    """Refuse, by name and size, to copy a graph onto a device without the memory for it.

    Without this a graph too large for the GPU fails as a bare CUDA out-of-memory error in
    the middle of the copy. Only tensors not already on ``device`` count (they are the ones
    copied); a device whose free memory cannot be known is not checked.
    """
    from kgrec.sampler.hetero_csc import format_bytes, available_bytes

    need = sum(v.numel() * v.element_size() for store in data.stores for v in store.values()
               if isinstance(v, torch.Tensor) and v.device != device)
    free = available_bytes(device) if need else None
    if free is not None and need > free:
        raise ConfigError(
            f"the training graph and its features need {format_bytes(need)} ({need} bytes) on device "
            f"'{device}', which has {format_bytes(free)} free. kgrec evaluates (and trains with "
            "data.sampling: full) by passes over the whole graph on the trainer's device, so the graph "
            "must fit there: use a device with more memory, train on the CPU (--trainer.accelerator cpu), "
            "or shrink the graph (data.use_kg: false, fewer text dimensions)."
        )


def _as_batch(batch):
    """The collate function of :class:`EdgeSet` batches: they come whole."""
    return batch


class KGRecDataModule(L.LightningDataModule):
    """Loads a dataset, splits it first, encodes node text and builds the training graph.

    Everything derived from the data (node counts, text widths, edge types, KG
    relations) is exposed as :attr:`graph_info`, which the CLI links into the model
    (``link_arguments("data.graph_info", "model.graph_info", apply_on="instantiate")``),
    so nobody types a number the data already knows.

    Args:
        path: Built-in dataset name (``ml-100k``, ``ml-1m``, ``synthetic``), ``synthetic-scale``
            (a tensor-built graph of any size, see ``scale``) or a directory of RecBole atomic
            files (a pre-split directory is used exactly as given).
        split: Split strategy (``random``, ``temporal``, ``leave_one_out``, ``cold_item``,
            ``presplit``); ``None``: ``presplit`` for pre-split data, else ``random``.
        seed: Split seed.
        ratios: Train / valid / test shares per user.
        cold_fraction: Share of items held out by the ``cold_item`` split.
        rating_threshold: Keep interactions rated at least this (``None``: all are positives).
        encode_text: Encode node text as features (items, users, tags).
        text_encoder: The text encoder (any :class:`kgrec.text.BaseTextEncoder`, given in a
            config as ``class_path`` + ``init_args``); ``None``: :class:`kgrec.text.TextEncoder`
            with the packaged all-MiniLM-L6-v2.
        use_kg: Add the knowledge-graph edges (and entity nodes).
        use_side_info: Add tag nodes (item tags and user attributes).
        kg_min_degree: Drop KG entities (not linked to an item) with fewer KG edges than this.
        sampling: ``full`` (the whole training graph each step) or ``neighbor``
            (k-hop neighbourhoods from :class:`kgrec.sampler.HeteroNeighborSampler`).
        num_neighbors: Fanout per hop for ``neighbor`` sampling; its length must equal the
            model's ``num_layers``.
        batch_size: Supervision edges per training step.
        num_workers: DataLoader workers (0 keeps sampling in the main process).
        sampling_device: Where ``neighbor`` sampling runs. ``auto``: on the trainer's device
            when ``num_workers`` is 0, so on a GPU the graph, its features and the sampler stay
            on the device and a batch is never copied from the host; on the CPU when workers
            sample (a forked worker cannot use CUDA). ``cpu``: always on the host (keeps the
            sampler's CSC and relabel buffers off the GPU; evaluation still runs full-graph
            passes on the trainer's device, so the graph itself must fit there).
        cache_dir: Dataset and embedding cache root (``None``: ``$KGREC_CACHE_DIR``).
        scale: Sizes of the ``synthetic-scale`` graph (``path: synthetic-scale`` only): any of
            ``users``, ``items``, ``edges`` (interactions before the split), ``text_dim`` and
            ``communities``; the rest keep :data:`kgrec.data.scale.SCALE_KEYS` (1M users, 200k
            items, 102M interactions, 384-d, 64 communities; ``configs/synthetic_scale.yaml``
            sets ``ratios`` 0.98 / 0.01 / 0.01, hence ~100M TRAIN edges). Built straight as
            tensors by :func:`kgrec.data.scale.make_scale_world` with random stand-in text
            features (``encode_text: false`` drops them; ``text_encoder`` and
            ``rating_threshold`` must stay unset, the split is ``random`` per interaction).

    .. warning::
        Only ``split.train`` reaches the graph, the text profiles and the negatives.
    """

    def __init__(
        self,
        path: str = "ml-100k",
        split: Optional[Literal["random", "temporal", "leave_one_out", "cold_item", "presplit"]] = None,
        seed: int = 2026,
        ratios: Sequence[float] = (0.8, 0.1, 0.1),
        cold_fraction: float = 0.2,
        rating_threshold: Optional[float] = None,
        encode_text: bool = True,
        text_encoder: Optional[BaseTextEncoder] = None,
        use_kg: bool = True,
        use_side_info: bool = True,
        kg_min_degree: int = 2,
        sampling: Literal["full", "neighbor"] = "full",
        num_neighbors: Sequence[int] = (10, 10),
        batch_size: int = 2048,
        num_workers: int = 0,
        sampling_device: Literal["auto", "cpu"] = "auto",
        cache_dir: Optional[str] = None,
        scale: Optional[dict[str, int]] = None,
    ) -> None:
        super().__init__()
        if sampling not in ("full", "neighbor"):
            raise ConfigError(f"The 'sampling' parameter must be one of {{'full', 'neighbor'}}; got {sampling!r}.")
        if batch_size <= 0:
            raise ConfigError(f"The 'batch_size' parameter must be a positive integer; got {batch_size}.")
        if any(int(n) == 0 or int(n) < -1 for n in num_neighbors):
            raise ConfigError(f"num_neighbors must be positive (or -1 for all); got {list(num_neighbors)}.")
        if sampling_device not in ("auto", "cpu"):
            raise ConfigError(f"The 'sampling_device' parameter must be one of {{'auto', 'cpu'}}; got {sampling_device!r}.")
        self.save_hyperparameters(ignore=["text_encoder"])
        self.path = path
        self.split_strategy = split
        self.seed = seed
        self.ratios = tuple(ratios)
        self.cold_fraction = cold_fraction
        self.rating_threshold = rating_threshold
        self.encode_text = encode_text
        self.text_encoder = text_encoder
        self.use_kg = use_kg
        self.use_side_info = use_side_info
        self.kg_min_degree = kg_min_degree
        self.sampling = sampling
        self.num_neighbors = [int(n) for n in num_neighbors]
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.sampling_device = sampling_device
        self.cache_dir = cache_dir
        self.scale = None
        if path == SCALE_DATASET:
            self.scale = check_scale(scale)
            check_ratios(self.ratios)
            if split not in (None, "random"):
                raise ConfigError(f"data.path {SCALE_DATASET!r} is split at random; got data.split={split!r}.")
            if not (use_kg and use_side_info):
                raise ConfigError(f"data.path {SCALE_DATASET!r} always has tags and KG edges; "
                                  "use_kg and use_side_info must stay true.")
            for name, value in (("rating_threshold", rating_threshold), ("text_encoder", text_encoder)):
                if value is not None:
                    raise ConfigError(f"data.{name} does not apply to data.path {SCALE_DATASET!r} "
                                      "(no ratings; random stand-in text features); leave it unset.")
        elif scale is not None:
            raise ConfigError(f"data.scale sizes the {SCALE_DATASET!r} graph only; data.path is {path!r}.")
        self.dataset = None
        self.split: Split | None = None
        self.graph: GraphData | None = None
        self._graph_copy: tuple | None = None  # (device, source HeteroData, its copy there)

    # ------------------------------------------------------------ building
    @classmethod
    def from_graph(cls, graph: GraphData, split: Split, **kwargs) -> "KGRecDataModule":
        """A data module over an already built graph and split (used by :class:`kgrec.models.KGRec`)."""
        dm = cls(path=graph.dataset_name or "in-memory", **kwargs)
        dm.split, dm.graph = split, graph
        return dm

    def _check_path(self) -> None:
        from kgrec.data import BUILTIN_DATASETS

        if self.scale is None and self.path not in BUILTIN_DATASETS and not Path(self.path).expanduser().is_dir():
            raise DataError(
                f"data.path {self.path!r} is neither a built-in dataset ({', '.join(BUILTIN_DATASETS)}, "
                f"{SCALE_DATASET}) nor an existing directory of RecBole atomic files."
            )

    def prepare_data(self) -> None:
        """Fetch the dataset into the cache (first use only)."""
        if self.graph is None and self.scale is None:
            self._check_path()
            load_dataset(self.path, cache_dir=self.cache_dir)

    def _build(self) -> None:
        if self.graph is not None:
            return
        if self.scale is not None:
            self._build_scale()
            return
        self._check_path()
        dataset = load_dataset(self.path, cache_dir=self.cache_dir)
        if not self.use_kg:
            from dataclasses import replace

            dataset = replace(dataset, kg=None, links=None)
        if not self.use_side_info:
            from dataclasses import replace

            dataset = replace(dataset, item_tag_columns=(), user_attribute_columns=())
        split = split_dataset(dataset, self.split_strategy, ratios=self.ratios, seed=self.seed,
                              cold_fraction=self.cold_fraction, rating_threshold=self.rating_threshold)
        vocabs = build_vocabs(dataset)
        features = None
        if self.encode_text:
            from kgrec.text import TextEncoder, encode_node_texts

            encoder = self.text_encoder if self.text_encoder is not None else TextEncoder()
            cache = None if self.cache_dir is None else Path(self.cache_dir) / "text"
            features = encode_node_texts(dataset, split, vocabs, encoder, cache_dir=cache)
            features = {nt: x for nt, x in features.items() if x is not None}
        self.dataset, self.split = dataset, split
        self.graph = prune_entities(build_graph(dataset, split, text_features=features, vocabs=vocabs),
                                    self.kg_min_degree)
        log.info("%s\n%s\n%s", dataset.summary(), split.summary(), self.graph.summary())

    def _build_scale(self) -> None:
        start = time.perf_counter()
        split, graph = make_scale_world(**self.scale, ratios=self.ratios, seed=self.seed)
        graph = prune_entities(graph, self.kg_min_degree)
        if not self.encode_text:
            for nt in graph.data.node_types:
                if "x" in graph.data[nt]:
                    del graph.data[nt].x
        self.split, self.graph = split, graph
        log.info("%s built in %.1f s (stand-in text features: %s)\n%s\n%s", graph.dataset_name,
                 time.perf_counter() - start, self.encode_text, split.summary(), graph.summary())

    def setup(self, stage: str | None = None) -> None:
        self._build()

    @property
    def graph_info(self) -> dict:
        """What the model must know about the data: node counts, text widths, edge types, relations."""
        self._build()
        data = self.graph.data
        return {
            "num_nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types},
            "text_dims": {nt: int(data[nt].x.size(-1)) for nt in data.node_types if "x" in data[nt]},
            "edge_types": [list(et) for et in data.edge_types],
            "num_kg_relations": len(self.graph.relations),
            "dataset": self.graph.dataset_name,
        }

    def train_fingerprint(self) -> str:
        """A digest of the TRAIN (user, item) pairs: ``"<count>:<sum>:<xor>"`` of their
        64-bit mixes, so it does not depend on their order. A checkpoint stores it, and
        :class:`~kgrec.lightning.KGRecModule` refuses to validate or test on a split whose
        train part differs (its valid / test interactions could be ones it trained on).
        A few vectorised passes over the edges (0.9 s per 10M pairs on a 2-core CPU), once
        per data module."""
        if getattr(self, "_fingerprint", None) is None:
            users, items = (t.cpu().numpy().astype(np.uint64) for t in self.train_edges())
            h = (users << np.uint64(32)) | items
            for shift, mult in ((31, 0xBF58476D1CE4E5B9), (29, 0x94D049BB133111EB)):  # splitmix64 finaliser
                h = (h ^ (h >> np.uint64(shift))) * np.uint64(mult)
            h ^= h >> np.uint64(32)
            total = int(h.sum(dtype=np.uint64)) if h.size else 0
            mixed = int(np.bitwise_xor.reduce(h)) if h.size else 0
            self._fingerprint = f"{h.size}:{total:016x}:{mixed:016x}"
        return self._fingerprint

    def graph_on(self, device: torch.device | str):
        """The training graph (``graph.data``) on ``device``, copied there once.

        The sampled loader and the module's full-graph passes (full-graph training, evaluation)
        share this one copy, so a GPU holds the graph and its text features once, not twice.
        """
        self._build()
        device = torch.device(device)
        cached = self._graph_copy
        if cached is None or cached[0] != device or cached[1] is not self.graph.data:
            self._graph_copy = cached = None  # an older copy is not kept beside the new one
            _check_fits(self.graph.data, device)
            self._graph_copy = cached = (device, self.graph.data, data_on(self.graph.data, device))
        return cached[2]

    def _sample_on(self) -> torch.device:
        """The device ``neighbor`` sampling runs on (see ``sampling_device``)."""
        if self.sampling_device == "cpu" or self.num_workers > 0 or self.trainer is None:
            return torch.device("cpu")
        return self.trainer.strategy.root_device

    # ------------------------------------------------------------ loaders
    def train_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """TRAIN (user, item) index pairs, each ``(num_train,)``.

        The graph's ``interacts`` edges, which :func:`~kgrec.graph.build_graph` made from
        ``split.train`` row by row — read back from the graph rather than re-encoding the
        split's raw ids, which costs minutes at 100M interactions.
        """
        self._build()
        edge_index = self.graph.data[INTERACTS].edge_index
        return edge_index[0], edge_index[1]

    def _drop_last(self, num_edges: int) -> bool:
        """Drop the last, short batch only when this rank has more than one batch of edges:
        otherwise an epoch would have no step at all (fewer train edges than ``batch_size``,
        or a DDP shard of ``num_edges / world_size`` that is)."""
        world = self.trainer.world_size if self.trainer is not None else 1
        return -(-num_edges // world) > self.batch_size

    def train_dataloader(self):
        self._build()
        if self.sampling == "full":
            users, items = self.train_edges()
            edges = EdgeSet(users, items)
            batches = TensorBatchSampler(RandomSampler(edges), self.batch_size, drop_last=self._drop_last(len(users)))
            return DataLoader(edges, batch_sampler=batches, collate_fn=_as_batch, num_workers=self.num_workers)
        from torch_geometric.loader import LinkLoader

        from kgrec.sampler import HeteroNeighborSampler

        device = self._sample_on()
        data = self.graph_on(device)
        sampler = HeteroNeighborSampler(data, num_neighbors=self.num_neighbors, device=device)
        return LinkLoader(data, sampler, edge_label_index=(INTERACTS, None),
                          batch_size=self.batch_size, shuffle=True, num_workers=self.num_workers,
                          drop_last=self._drop_last(self.graph.data[INTERACTS].num_edges))

    def _one_step(self):
        # Evaluation ranks every item for every user in one step (kgrec.eval); the loader
        # only tells Lightning to run that step once per validation / test.
        return DataLoader(TensorDataset(torch.zeros(1)), batch_size=1)

    def val_dataloader(self):
        return self._one_step()

    def test_dataloader(self):
        return self._one_step()

    def predict_dataloader(self):
        return self._one_step()

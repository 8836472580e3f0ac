"""Build the heterogeneous user–item–tag–entity graph from a dataset and its split.

Node types (PyG names): ``user``, ``item``, ``tag`` (item tags and user attribute
values as ``field=value``), ``entity`` (KG entities not linked to an item; an item
linked to an entity is one ``item`` node). Every edge type travels with its
``rev_`` reverse, as :class:`torch_geometric.transforms.ToUndirected` names them.

.. warning::
    User–item edges come from ``split.train`` only. Valid and test interactions never
    enter the graph, its degrees or anything computed from it; ``build_graph`` has no
    way to receive them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from kgrec.data.dataset import Dataset
from kgrec.data.split import Split
from kgrec.errors import ConfigError, DataError, UnknownIdError
from kgrec.text.layout import TextLayout
from kgrec.text.profiles import item_display_names

__all__ = ["Vocab", "GraphData", "categorical_codes", "build_vocabs", "build_graph", "prune_entities",
           "split_to_index", "data_on", "add_edges", "reverse", "INTERACTS", "HAS_TAG", "HAS_ATTRIBUTE"]

#: The supervision edge type (TRAIN interactions only).
INTERACTS = ("user", "interacts", "item")
#: Item -> its tag values (``genre=Comedy``).
HAS_TAG = ("item", "has_tag", "tag")
#: User -> its attribute values (``age=25-34``), which are ``tag`` nodes too.
HAS_ATTRIBUTE = ("user", "has_attribute", "tag")


def categorical_codes(values, index: pd.Index) -> np.ndarray | None:
    """``values``' positions in ``index`` read off a :class:`pandas.Categorical` over exactly ``index``.

    A frame whose id column is such a Categorical (``kgrec.data.scale`` builds them) is
    encoded without hashing a string per row — minutes saved at 100M rows. ``None`` when
    ``values`` is anything else (then the caller looks the ids up); missing values come
    back as ``-1``.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        values = values.array
    if not isinstance(values, pd.Categorical):
        return None
    categories = values.categories
    if categories is not index and not (len(categories) == len(index) and categories.equals(index)):
        return None
    return values.codes.astype(np.int64)


class Vocab:
    """Raw ids of one node type and their indices ``0 .. len-1``.

    Args:
        ids: Raw ids (strings) in index order; must be unique.
        node_type: Node type name, used in error messages.
    """

    def __init__(self, ids: Iterable[str], node_type: str = "node") -> None:
        self.node_type = node_type
        self.ids = np.asarray(list(ids), dtype=object)
        self._index = pd.Index(self.ids)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][0]
            raise DataError(f"{node_type} vocabulary has duplicate id {dup!r}.")

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw_id) -> bool:
        return raw_id in self._index

    def __repr__(self) -> str:
        return f"Vocab({self.node_type!r}, size={len(self)})"

    def encode(self, raw_ids) -> np.ndarray:
        """Indices of ``raw_ids`` (shape preserved for 1-D input), ``int64``.

        Raises:
            UnknownIdError: an id is not in the vocabulary (the first one is named).
        """
        codes = categorical_codes(raw_ids, self._index)
        if codes is not None and (codes >= 0).all():
            return codes
        raw = pd.Index(np.asarray(list(raw_ids) if not isinstance(raw_ids, (np.ndarray, pd.Series, pd.Index))
                                  else raw_ids, dtype=object))
        idx = self._index.get_indexer(raw)
        if (idx < 0).any():
            bad = raw[int(np.flatnonzero(idx < 0)[0])]
            raise UnknownIdError(
                f"Unknown {self.node_type} id {bad!r} ({int((idx < 0).sum())} unknown in total); "
                f"valid ids are the {len(self)} {self.node_type} ids of the dataset, "
                f"e.g. {list(self.ids[:3])}."
            )
        return idx.astype(np.int64)

    def decode(self, index) -> np.ndarray:
        """Raw ids at ``index`` (array-like of ints)."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise UnknownIdError(f"{self.node_type} index out of range [0, {len(self)}).")
        return self.ids[index]


@dataclass
class GraphData:
    """A built graph: the :class:`~torch_geometric.data.HeteroData` and its vocabularies.

    Attributes:
        data: The graph. ``data[INTERACTS].edge_index`` holds TRAIN interactions only,
            shape ``(2, num_train)``; KG edge stores carry ``edge_type`` (relation ids).
        vocabs: Raw id ↔ index per node type.
        relations: KG relation names; ``relations[r]`` is relation id ``r``.
        dataset_name: Name of the dataset the graph was built from.
        item_names: Display name per item index (``None``: the raw ids).
        text_layout: How node texts were written (templates, tag and attribute columns), so
            a new user's or item's text can be written the same way; ``None`` if unknown.
        text_encoder: ``{"class_path", "init_args"}`` of the encoder that wrote ``x``
            (:func:`kgrec.text.encoder_spec`); ``None`` when no encoder did.
    """

    data: HeteroData
    vocabs: dict[str, Vocab]
    relations: list[str] = field(default_factory=list)
    dataset_name: str = ""
    item_names: list[str] | None = None
    text_layout: TextLayout | None = None
    text_encoder: dict | None = None

    def display_names(self) -> list[str]:
        """A display name per item, in index order (the raw id where none is known)."""
        if self.item_names is not None:
            return list(self.item_names)
        return [str(i) for i in self.vocabs["item"].ids]

    @property
    def num_users(self) -> int:
        return len(self.vocabs["user"])

    @property
    def num_items(self) -> int:
        return len(self.vocabs["item"])

    @property
    def metadata(self):
        return self.data.metadata()

    def train_edge_index(self) -> Tensor:
        """TRAIN user–item edges, shape ``(2, num_train)``: row 0 users, row 1 items."""
        return self.data[INTERACTS].edge_index

    def summary(self) -> str:
        lines = [f"Graph of {self.dataset_name!r}", "  nodes:"]
        for nt in self.data.node_types:
            x = self.data[nt].get("x")
            feat = f"  x {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}" if x is not None else ""
            lines.append(f"    {nt:<8}{self.data[nt].num_nodes:>12,}{feat}")
        lines.append("  edges:")
        for et in self.data.edge_types:
            lines.append(f"    {'-'.join(et):<32}{self.data[et].num_edges:>12,}")
        if self.relations:
            lines.append(f"  KG relations: {len(self.relations)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"GraphData({self.dataset_name!r}, {self.data!r})"


def _tag_ids(dataset: Dataset) -> list[str]:
    tags: set[str] = set()
    for col in dataset.item_tag_columns:
        for cell in dataset.items[col]:
            tags.update(f"{col}={t}" for t in cell)
    if dataset.users is not None:
        for col in dataset.user_attribute_columns:
            tags.update(f"{col}={v}" for v in dataset.users[col] if v != "")
    return sorted(tags)


def _entity_ids(dataset: Dataset) -> list[str]:
    if dataset.kg is None:
        return []
    linked = set(dataset.links["entity"]) if dataset.links is not None else set()
    ents = pd.unique(pd.concat([dataset.kg["head"], dataset.kg["tail"]]).to_numpy(dtype=object))
    return sorted(e for e in ents if e not in linked)


def build_vocabs(dataset: Dataset) -> dict[str, Vocab]:
    """Per-node-type vocabularies of ``dataset``; they do not depend on the split.

    ``user``: all users of the dataset; ``item``: the catalogue in ``dataset.items`` order;
    ``tag``: sorted ``field=value`` ids of item tags and user attributes; ``entity``: sorted
    KG entities not linked to an item (absent when there are none).
    """
    vocabs = {
        "user": Vocab(dataset.user_ids, "user"),
        "item": Vocab(dataset.item_ids, "item"),
        "tag": Vocab(_tag_ids(dataset), "tag"),
    }
    entities = _entity_ids(dataset)
    if entities:
        vocabs["entity"] = Vocab(entities, "entity")
    return vocabs


def _edge_index(src, dst) -> Tensor:
    if isinstance(src, Tensor) and isinstance(dst, Tensor):  # kgrec.data.scale builds tensors
        return torch.stack([src, dst]).long()
    return torch.from_numpy(np.stack([src, dst]).astype(np.int64, copy=False))


def reverse(edge_type: tuple[str, str, str]) -> tuple[str, str, str]:
    """``("item", "has_tag", "tag")`` -> ``("tag", "rev_has_tag", "item")`` and back."""
    src, rel, dst = edge_type
    return (dst, rel[len("rev_"):], src) if rel.startswith("rev_") else (dst, f"rev_{rel}", src)


def add_edges(data: HeteroData, etype: tuple[str, str, str], src, dst, **attrs) -> None:
    """Set ``etype``'s edges (``src[j] -> dst[j]``) and its ``rev_`` reverse on ``data``.

    ``src``/``dst`` are index arrays or tensors of equal length; each keyword becomes an
    edge attribute of both directions (e.g. ``edge_type=`` KG relation ids).
    """
    data[etype].edge_index = _edge_index(src, dst)
    rev = reverse(etype)
    data[rev].edge_index = _edge_index(dst, src)
    for key, value in attrs.items():
        data[etype][key] = value
        data[rev][key] = value.clone()


def data_on(data: HeteroData, device: torch.device | str) -> HeteroData:
    """``data`` on ``device``, leaving the caller's object where it is.

    PyG's ``HeteroData.to`` replaces the tensors of the object it is called on (and returns
    that object), so ``graph.data.to("cuda")`` would move a user's graph to the GPU behind
    their back and break the next CPU consumer of it. This moves a shallow copy (new
    stores, the same tensors until they are moved), which costs nothing on the same device.
    """
    return copy.copy(data).to(device)


def split_to_index(graph: GraphData, frame: pd.DataFrame) -> tuple[Tensor, Tensor]:
    """User and item indices (``LongTensor`` of shape ``(len(frame),)`` each) of an interaction frame."""
    # the Series itself: Categorical id columns are read as codes (see categorical_codes)
    users = torch.from_numpy(graph.vocabs["user"].encode(frame["user"]))
    items = torch.from_numpy(graph.vocabs["item"].encode(frame["item"]))
    return users, items


def build_graph(
    dataset: Dataset,
    split: Split,
    text_features: Mapping[str, Tensor] | None = None,
    vocabs: Mapping[str, Vocab] | None = None,
    feature_dtype: torch.dtype | None = None,
) -> GraphData:
    """Build the training graph of ``dataset`` under ``split``.

    Args:
        dataset: The dataset (items, users, KG).
        split: The split; only ``split.train`` interactions become edges.
        text_features: Optional node features per node type, shape ``(num_nodes, dim)``
            with rows in ``vocabs[node_type]`` order (see :mod:`kgrec.text`); stored as ``x``.
        vocabs: Vocabularies to use; default :func:`build_vocabs` of ``dataset``.
        feature_dtype: Store ``x`` in this dtype (e.g. ``torch.float16`` for large graphs).

    Returns:
        A :class:`GraphData` whose ``data.validate()`` passes. Cold items are nodes with
        their tag and KG edges and no interaction edge.
    """
    vocabs = dict(vocabs) if vocabs is not None else build_vocabs(dataset)
    data = HeteroData()
    for nt, vocab in vocabs.items():
        data[nt].num_nodes = len(vocab)

    names = item_display_names(dataset)
    graph = GraphData(data, vocabs, dataset_name=dataset.name,
                      item_names=[str(names.get(i, i)) for i in vocabs["item"].ids],
                      text_layout=TextLayout.of(dataset))
    u, i = split_to_index(graph, split.train)
    add_edges(data, INTERACTS, u.numpy(), i.numpy())

    tag_vocab = vocabs["tag"]
    if dataset.item_tag_columns:
        item_idx, tag_raw = [], []
        for col in dataset.item_tag_columns:
            exploded = dataset.items[["item", col]].explode(col).dropna()
            item_idx.append(exploded["item"].to_numpy(dtype=object))
            tag_raw.append((col + "=" + exploded[col].astype(str)).to_numpy(dtype=object))
        items = np.concatenate(item_idx)
        add_edges(data, HAS_TAG, vocabs["item"].encode(items), tag_vocab.encode(np.concatenate(tag_raw)))
    if dataset.users is not None and dataset.user_attribute_columns:
        users, tags = [], []
        for col in dataset.user_attribute_columns:
            keep = dataset.users[col] != ""
            users.append(dataset.users.loc[keep, "user"].to_numpy(dtype=object))
            tags.append((col + "=" + dataset.users.loc[keep, col]).to_numpy(dtype=object))
        add_edges(data, HAS_ATTRIBUTE, vocabs["user"].encode(np.concatenate(users)),
             tag_vocab.encode(np.concatenate(tags)))

    if dataset.kg is not None and len(dataset.kg):
        relations = sorted(dataset.kg["relation"].unique())
        graph.relations = list(relations)
        rel_id = pd.Index(relations).get_indexer(dataset.kg["relation"])
        entity_to_item = {}
        if dataset.links is not None:
            entity_to_item = dict(zip(dataset.links["entity"], dataset.links["item"]))
        ends = {}
        for end in ("head", "tail"):
            raw = dataset.kg[end].to_numpy(dtype=object)
            is_item = np.fromiter((e in entity_to_item for e in raw), bool, len(raw))
            idx = np.empty(len(raw), dtype=np.int64)
            if is_item.any():
                idx[is_item] = vocabs["item"].encode([entity_to_item[e] for e in raw[is_item]])
            if (~is_item).any():
                idx[~is_item] = vocabs["entity"].encode(raw[~is_item])
            ends[end] = (is_item, idx)
        for src_t in ("item", "entity"):
            for dst_t in ("item", "entity"):
                mask = (ends["head"][0] == (src_t == "item")) & (ends["tail"][0] == (dst_t == "item"))
                if not mask.any():
                    continue
                add_edges(data, (src_t, "kg", dst_t), ends["head"][1][mask], ends["tail"][1][mask],
                     edge_type=torch.from_numpy(rel_id[mask].astype(np.int64)))

    if text_features:
        for nt, x in text_features.items():
            if nt not in vocabs:
                raise DataError(f"text_features has node type {nt!r}; the graph has {sorted(vocabs)}.")
            if x.dim() != 2 or x.size(0) != len(vocabs[nt]):
                raise DataError(
                    f"text_features[{nt!r}] must have shape ({len(vocabs[nt])}, dim); got {tuple(x.shape)}."
                )
            data[nt].x = x.to(feature_dtype) if feature_dtype is not None else x
    data.validate(raise_on_error=True)
    return graph


def prune_entities(graph: GraphData, min_degree: int, max_degree: int | None = None) -> GraphData:
    """A copy of ``graph`` without KG entities that have fewer than ``min_degree`` or more
    than ``max_degree`` KG edges.

    The caller's graph is not changed. An entity met by one KG edge only (most actors of
    ml-100k's Freebase KG) links no two items, so it carries no collaborative signal but
    costs propagation time. A hub entity (the English language, the USA, a rating class)
    links most of the catalogue: its message is the average item, which says nothing
    about taste and swamps a cold item's own signal.
    """
    if max_degree is not None and max_degree < max(min_degree, 1):
        raise ConfigError(
            f"prune_entities: max_degree={max_degree} is below min_degree={min_degree}; it would drop every "
            "entity. Use max_degree >= min_degree, or None to keep hubs."
        )
    data = graph.data
    if "entity" not in data.node_types or (min_degree <= 1 and max_degree is None):
        return graph
    deg = torch.zeros(data["entity"].num_nodes, dtype=torch.long)
    for et in data.edge_types:
        if et[1] == "kg":  # forward KG edges only: each triple counted once per entity end
            ei = data[et].edge_index
            if et[0] == "entity":
                deg += torch.bincount(ei[0], minlength=deg.numel())
            if et[2] == "entity":
                deg += torch.bincount(ei[1], minlength=deg.numel())
    ok = deg >= min_degree
    if max_degree is not None:
        ok &= deg <= max_degree
    keep = torch.nonzero(ok).view(-1)
    vocabs = dict(graph.vocabs)
    vocabs["entity"] = Vocab(graph.vocabs["entity"].ids[keep.numpy()], "entity")
    return replace(graph, data=data.subgraph({"entity": keep}), vocabs=vocabs, relations=list(graph.relations))

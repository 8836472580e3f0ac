"""The ``synthetic-scale`` world: a split and its training graph at any size, built as tensors.

See :mod:`kgrec.data.scale` for how the interactions are drawn and why this path skips
pandas and text encoding.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from kgrec.data.scale import AFFINITY, SCALE_DATASET, SCALE_KEYS, check_scale, powerlaw_pairs, zipf_ranks
from kgrec.data.split import Split, check_ratios
from kgrec.errors import ConfigError
from kgrec.graph.build import HAS_ATTRIBUTE, HAS_TAG, INTERACTS, GraphData, Vocab, add_edges

__all__ = ["scale_graph", "make_scale_world"]


def scale_graph(users: torch.Tensor, items: torch.Tensor, num_users: int, num_items: int,
                seed: int = 0, text_dim: int = 384, name: str = SCALE_DATASET,
                communities: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The kgrec graph (:class:`kgrec.graph.GraphData`) over the TRAIN pairs ``(users, items)``.

    Beside the user–item edges: 1,000 item tags (two per item, Zipf) and 100 user-attribute
    values (three per user) as ``tag`` nodes; ``num_items // 2`` KG entities, two
    ``item -> entity`` edges per item over four relations. Users, items and tags carry a
    random unit-norm ``text_dim`` ``float16`` vector where a text embedding would be. With
    ``communities`` (``(user_community, item_community)``), side information follows them
    as real metadata would: a user's and an item's vector is its community's centroid plus
    noise of the same size, and an item's first tag and first entity come from its
    community's own block. Vocabulary ids are ``u0, u1, …``, ``i0, …``, ``t0, …``, ``e0, …``.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    num_item_tags, num_attrs = 1000, 100
    num_entities = max(num_items // 2, 1)

    def by_community(n: int, comm: torch.Tensor, num_comm: int) -> torch.Tensor:
        block = max(n // num_comm, 1)  # community c owns ids [c * block, (c + 1) * block)
        return ((comm * block) % n + torch.randint(block, (comm.numel(),), generator=gen)).clamp_(max=n - 1)

    data = HeteroData()
    sizes = {"user": num_users, "item": num_items, "tag": num_item_tags + num_attrs, "entity": num_entities}
    num_comm = int(max(c.max() for c in communities)) + 1 if communities is not None else 0
    centroids = torch.randn(max(num_comm, 1), text_dim, generator=gen)
    for nt, n in sizes.items():
        data[nt].num_nodes = n
        if nt == "entity":
            continue
        x = torch.randn(n, text_dim, generator=gen)
        if communities is not None and nt in ("user", "item"):
            x += centroids[communities[0 if nt == "user" else 1]]
        data[nt].x = torch.nn.functional.normalize(x, dim=-1).to(torch.float16)  # unit norm, as MiniLM gives

    add_edges(data, INTERACTS, users.long(), items.long())
    tagged = torch.arange(num_items).repeat_interleave(2)
    tags, entities = zipf_ranks(num_item_tags, tagged.numel(), 0.8, gen), zipf_ranks(num_entities, tagged.numel(), 0.8, gen)
    if communities is not None:  # every item's first tag and entity follow its community
        tags[::2] = by_community(num_item_tags, communities[1], num_comm)
        entities[::2] = by_community(num_entities, communities[1], num_comm)
    add_edges(data, HAS_TAG, tagged, tags)
    attributed = torch.arange(num_users).repeat_interleave(3)
    add_edges(data, HAS_ATTRIBUTE, attributed, num_item_tags + torch.randint(num_attrs, (attributed.numel(),), generator=gen))
    add_edges(data, ("item", "kg", "entity"), tagged, entities, edge_type=torch.randint(4, (tagged.numel(),), generator=gen))
    vocabs = {nt: Vocab(_ids(nt[0], n), nt) for nt, n in sizes.items()}
    return GraphData(data, vocabs, relations=["r0", "r1", "r2", "r3"], dataset_name=name)


def _ids(prefix: str, n: int) -> np.ndarray:
    return np.char.add(prefix, np.arange(n).astype(str)).astype(object)


def _frame(users: torch.Tensor, items: torch.Tensor, user_ids: pd.Index, item_ids: pd.Index) -> pd.DataFrame:
    """An interaction frame whose columns are Categoricals over the vocabularies' ids (no strings copied)."""
    return pd.DataFrame({
        "user": pd.Categorical.from_codes(users.numpy().astype(np.int32), categories=user_ids),
        "item": pd.Categorical.from_codes(items.numpy().astype(np.int32), categories=item_ids),
    })


def make_scale_world(users: int = SCALE_KEYS["users"], items: int = SCALE_KEYS["items"],
                     edges: int = SCALE_KEYS["edges"], text_dim: int = SCALE_KEYS["text_dim"],
                     communities: int = SCALE_KEYS["communities"],
                     ratios: Sequence[float] = (0.98, 0.01, 0.01), seed: int = 0):
    """A synthetic split and its training graph at any size: ``(Split, GraphData)``.

    Users and items fall into ``communities`` at random; ``edges`` distinct power-law
    interactions (:func:`powerlaw_pairs`), :data:`AFFINITY` of them inside the user's
    community, are split at random *per interaction* into train / valid / test by
    ``ratios`` (per-user splitting would group 100M rows by user for no gain on random
    data); only TRAIN pairs become graph edges (:func:`scale_graph`, whose text stand-ins and
    tags follow the communities). The split's strategy reads ``random``.

    Args:
        users, items, edges, text_dim, communities: Sizes (see :data:`SCALE_KEYS` for the defaults).
        ratios: Train / valid / test shares (positive, summing to 1).
        seed: Draws the communities, the pairs, the split and the stand-in features.
    """
    sizes = check_scale({"users": users, "items": items, "edges": edges, "text_dim": text_dim,
                         "communities": communities})
    ratios = check_ratios(ratios)
    gen = torch.Generator().manual_seed(seed + 2)
    comm = (torch.randint(sizes["communities"], (sizes["users"],), generator=gen),
            torch.randint(sizes["communities"], (sizes["items"],), generator=gen))
    u, i = powerlaw_pairs(sizes["users"], sizes["items"], sizes["edges"], seed=seed,
                          communities=comm, affinity=AFFINITY)
    n = u.numel()  # already in random order
    if n < sizes["edges"]:
        raise ConfigError(
            f"dataset.scale.edges={sizes['edges']:,} distinct pairs could not be drawn: the popular users and "
            f"items saturate at {n:,}; ask for fewer edges or more users / items."
        )
    n_valid = max(int(n * ratios[1]), 1)
    n_test = max(int(n * ratios[2]), 1)
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise ConfigError(f"dataset.scale.edges={edges} leaves no TRAIN interaction after the valid / test shares.")
    graph = scale_graph(u[:n_train], i[:n_train], sizes["users"], sizes["items"], seed=seed,
                        text_dim=sizes["text_dim"], communities=comm,
                        name=f"{SCALE_DATASET}-{sizes['users']}x{sizes['items']}x{sizes['edges']}")
    user_ids, item_ids = graph.vocabs["user"]._index, graph.vocabs["item"]._index
    parts = [_frame(u[a:b], i[a:b], user_ids, item_ids)
             for a, b in ((0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, n))]
    return Split(*parts, strategy="random", seed=seed), graph

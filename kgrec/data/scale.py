"""Synthetic graphs at GPU scale, built straight as tensors (``data.path: synthetic-scale``).

The regular pipeline (:func:`kgrec.data.load_dataset` → :func:`kgrec.split.split_dataset`
→ text encoding → :func:`kgrec.graph.build_graph`) works on pandas frames of string ids
and real texts: right for MovieLens-sized data, but at 100M interactions the string
handling alone takes tens of minutes and tens of GB. :func:`make_scale_world` skips it:
interactions are drawn as index tensors with power-law degrees, split once, and only
the TRAIN part becomes graph edges. The :class:`~kgrec.split.Split` it returns holds
its frames as :class:`pandas.Categorical` columns whose categories are the vocabularies'
ids, so :meth:`kgrec.graph.Vocab.encode` and the evaluator read their codes directly
instead of hashing 100M strings — the same evaluation protocol, at this size.

Users and items belong to hidden communities that shape who interacts with what and the
side information (tags, KG entities, stand-in text features), so validation metrics at
scale show learning, not only popularity. Text features are random ``float16`` vectors of
the encoder's width around each community's centroid, scaled to unit norm as MiniLM's
sentence embeddings are (a stand-in: encoding a million real user texts is a separate
cost, measured by ``benchmarks.text_speed``). The norm matters: un-normalised stand-ins,
27 times longer, made the text projection dominate early training — on a 20k-user /
1M-edge world (batches of 65,536 edges) valid NDCG@20 was 0.131 after the first epoch and
crept to 0.307 in 15, against 0.295 after one and 0.329 after seven with unit norm.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from kgrec.errors import ConfigError

__all__ = ["SCALE_DATASET", "SCALE_KEYS", "AFFINITY", "zipf_ranks", "powerlaw_pairs", "scale_graph", "make_scale_world", "check_scale"]

#: The ``data.path`` value that selects :func:`make_scale_world`.
SCALE_DATASET = "synthetic-scale"
#: Keys of ``data.scale`` and their defaults: the 1M-user / 200k-item / 100M-train-edge graph.
SCALE_KEYS: dict[str, int] = {"users": 1_000_000, "items": 200_000, "edges": 102_000_000, "text_dim": 384,
                              "communities": 64}
#: Share of a user's interactions drawn from the items of the user's own community.
AFFINITY = 0.8


def check_scale(scale: dict | None) -> dict[str, int]:
    """``scale`` merged over :data:`SCALE_KEYS`, every value checked; a clear error names a bad one."""
    scale = dict(scale or {})
    unknown = set(scale) - set(SCALE_KEYS)
    if unknown:
        raise ConfigError(f"data.scale has unknown key(s) {sorted(unknown)}; valid keys: {list(SCALE_KEYS)}.")
    out = {**SCALE_KEYS, **scale}
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"data.scale.{key} must be a positive integer; got {value!r}.")
    if out["users"] < 2 or out["items"] < 2:
        raise ConfigError(f"data.scale needs at least 2 users and 2 items; got {out['users']} and {out['items']}.")
    if out["edges"] > out["users"] * out["items"] // 2:
        raise ConfigError(
            f"data.scale.edges={out['edges']:,} is more than half of all {out['users']:,} x {out['items']:,} "
            "user-item pairs; ask for fewer edges or more users / items."
        )
    return {key: int(value) for key, value in out.items()}


def zipf_ranks(n: torch.Tensor | int, count: int, exponent: float, generator: torch.Generator) -> torch.Tensor:
    """``count`` ranks in ``[0, n)`` (``n`` an int or one per draw) with rank ``r`` weighing about
    ``(r + 1) ** -exponent``: the inverse CDF of the density ``x ** -exponent`` on ``[1, n + 1)``,
    floored — no weight table per ``n``, so every draw may have its own ``n``."""
    a = 1.0 - exponent
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    size = torch.as_tensor(n, dtype=torch.float64) + 1
    if abs(a) < 1e-9:  # exponent 1: the density 1 / x, whose CDF is a logarithm
        rank = size.pow(u).floor().long() - 1
    else:
        rank = (1 + u * (size.pow(a) - 1)).pow(1.0 / a).floor().long() - 1
    return torch.minimum(rank.clamp_(min=0), torch.as_tensor(n) - 1)


def powerlaw_pairs(num_users: int, num_items: int, num_edges: int, seed: int = 0, exponent: float = 0.8,
                   communities: torch.Tensor | None = None,
                   affinity: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_edges`` distinct (user, item) pairs, in random order, whose user and item
    degrees follow Zipf laws (rank ``r = 1, 2, …`` weighs about ``r ** -exponent``, drawn by
    the inverse CDF of the continuous law; popular ids scattered).

    With ``communities`` (``(user_community, item_community)`` id tensors) and ``affinity``
    > 0, that share of a user's items is drawn from the items of the user's own community
    (Zipf within it), so the pairs carry taste a model can learn, not only popularity.
    Heavy heads draw the same pair repeatedly, so pairs are drawn until enough distinct
    ones exist (each round sized by the share of new pairs the last one gave), for at most
    20 rounds: a graph so dense that the heads saturate comes back
    with fewer pairs (:func:`make_scale_world` refuses that, naming the count it reached).
    """
    gen = torch.Generator().manual_seed(seed)
    scatter = {n: torch.randperm(n, generator=gen) for n in {num_users, num_items}}

    def zipf_rank(n: torch.Tensor | int, count: int) -> torch.Tensor:
        return zipf_ranks(n, count, exponent, gen)

    if communities is not None and affinity > 0:
        user_comm, item_comm = communities
        members = torch.argsort(item_comm[scatter[num_items]], stable=True)  # items grouped by community
        members = scatter[num_items][members]
        sizes = torch.bincount(item_comm, minlength=int(user_comm.max()) + 1)
        starts = torch.cumsum(sizes, 0) - sizes

    def draw_pairs(count: int) -> torch.Tensor:
        users = scatter[num_users][zipf_rank(num_users, count)]
        items = scatter[num_items][zipf_rank(num_items, count)]
        if communities is not None and affinity > 0:
            own = (torch.rand(count, generator=gen) < affinity) & (sizes[user_comm[users]] > 0)
            c = user_comm[users[own]]
            items[own] = members[starts[c] + zipf_rank(sizes[c], int(own.sum()))]
        return users * num_items + items

    keys = torch.empty(0, dtype=torch.long)
    new_per_draw = 1.0  # share of the last round's draws that were new pairs
    for _ in range(20):
        missing = num_edges - keys.numel()
        if missing <= 0:
            break
        draws = int(1.5 * missing / max(new_per_draw, 0.01)) + 16
        before = keys.numel()
        keys = torch.unique(torch.cat([keys, draw_pairs(draws)]))
        new_per_draw = (keys.numel() - before) / draws
    keys = keys[torch.randperm(keys.numel(), generator=gen)[:num_edges]]
    return keys // num_items, keys % num_items


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
    from torch_geometric.data import HeteroData

    from kgrec.graph import HAS_ATTRIBUTE, HAS_TAG, INTERACTS, GraphData, Vocab, _add

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

    _add(data, INTERACTS, users.long(), items.long())
    tagged = torch.arange(num_items).repeat_interleave(2)
    tags, entities = zipf_ranks(num_item_tags, tagged.numel(), 0.8, gen), zipf_ranks(num_entities, tagged.numel(), 0.8, gen)
    if communities is not None:  # every item's first tag and entity follow its community
        tags[::2] = by_community(num_item_tags, communities[1], num_comm)
        entities[::2] = by_community(num_entities, communities[1], num_comm)
    _add(data, HAS_TAG, tagged, tags)
    attributed = torch.arange(num_users).repeat_interleave(3)
    _add(data, HAS_ATTRIBUTE, attributed, num_item_tags + torch.randint(num_attrs, (attributed.numel(),), generator=gen))
    _add(data, ("item", "kg", "entity"), tagged, entities, edge_type=torch.randint(4, (tagged.numel(),), generator=gen))
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
    from kgrec.split import Split

    sizes = check_scale({"users": users, "items": items, "edges": edges, "text_dim": text_dim,
                         "communities": communities})
    from kgrec.split import check_ratios

    ratios = check_ratios(ratios)
    gen = torch.Generator().manual_seed(seed + 2)
    comm = (torch.randint(sizes["communities"], (sizes["users"],), generator=gen),
            torch.randint(sizes["communities"], (sizes["items"],), generator=gen))
    u, i = powerlaw_pairs(sizes["users"], sizes["items"], sizes["edges"], seed=seed,
                          communities=comm, affinity=AFFINITY)
    n = u.numel()  # already in random order
    if n < sizes["edges"]:
        raise ConfigError(
            f"data.scale.edges={sizes['edges']:,} distinct pairs could not be drawn: the popular users and "
            f"items saturate at {n:,}; ask for fewer edges or more users / items."
        )
    n_valid = max(int(n * ratios[1]), 1)
    n_test = max(int(n * ratios[2]), 1)
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise ConfigError(f"data.scale.edges={edges} leaves no TRAIN interaction after the valid / test shares.")
    graph = scale_graph(u[:n_train], i[:n_train], sizes["users"], sizes["items"], seed=seed,
                        text_dim=sizes["text_dim"], communities=comm,
                        name=f"{SCALE_DATASET}-{sizes['users']}x{sizes['items']}x{sizes['edges']}")
    user_ids, item_ids = graph.vocabs["user"]._index, graph.vocabs["item"]._index
    parts = [_frame(u[a:b], i[a:b], user_ids, item_ids)
             for a, b in ((0, n_train), (n_train, n_train + n_valid), (n_train + n_valid, n))]
    return Split(*parts, strategy="random", seed=seed), graph

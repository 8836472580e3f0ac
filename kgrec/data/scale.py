"""Synthetic interactions at GPU scale, drawn straight as tensors (``dataset.path: synthetic-scale``).

The regular pipeline (:func:`kgrec.data.load_dataset` → :func:`kgrec.data.split.split_dataset`
→ text encoding → :func:`kgrec.graph.build_graph`) works on pandas frames of string ids
and real texts: right for MovieLens-sized data, but at 100M interactions the string
handling alone takes tens of minutes and tens of GB. :func:`kgrec.graph.make_scale_world` skips it:
interactions are drawn as index tensors with power-law degrees, split once, and only
the TRAIN part becomes graph edges. The :class:`~kgrec.data.split.Split` it returns holds
its frames as :class:`pandas.Categorical` columns whose categories are the vocabularies'
ids, so :meth:`kgrec.graph.Vocab.encode` and the evaluator read their codes directly
instead of hashing 100M strings — the same evaluation protocol, at this size.

Users and items belong to hidden communities that shape who interacts with what and the
side information (tags, KG entities, stand-in text features), so validation metrics at
scale show learning, not only popularity. Text features are random ``float16`` vectors of
the encoder's width around each community's centroid, scaled to unit norm as MiniLM's
sentence embeddings are (a stand-in: encoding a million real user texts is a separate
cost, measured by ``benchmarks.text_speed``). The norm matters: un-normalised stand-ins,
27 times longer, made the text projection dominate early training (``docs/decisions.md``).
"""

from __future__ import annotations

import numbers
import torch

from kgrec.errors import ConfigError

__all__ = ["SCALE_DATASET", "SCALE_KEYS", "AFFINITY", "zipf_ranks", "powerlaw_pairs", "check_scale"]

#: The ``data.path`` value that selects :func:`make_scale_world`.
SCALE_DATASET = "synthetic-scale"
#: Keys of ``dataset.scale`` and their defaults: the 1M-user / 200k-item / 100M-train-edge graph.
SCALE_KEYS: dict[str, int] = {"users": 1_000_000, "items": 200_000, "edges": 102_000_000, "text_dim": 384,
                              "communities": 64}
#: Share of a user's interactions drawn from the items of the user's own community.
AFFINITY = 0.8


def check_scale(scale: dict | None, name: str = "dataset.scale") -> dict[str, int]:
    """``scale`` merged over :data:`SCALE_KEYS`, every value checked; a clear error names a bad one
    (as ``name``: the config key or command-line option it came from)."""
    scale = dict(scale or {})
    unknown = set(scale) - set(SCALE_KEYS)
    if unknown:
        raise ConfigError(f"{name} has unknown key(s) {sorted(unknown)}; valid keys: {list(SCALE_KEYS)}.")
    out = {**SCALE_KEYS, **scale}
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"{name}.{key} must be a positive integer; got {value!r}.")
    if out["users"] < 2 or out["items"] < 2:
        raise ConfigError(f"{name} needs at least 2 users and 2 items; got {out['users']} and {out['items']}.")
    if out["edges"] > out["users"] * out["items"] // 2:
        raise ConfigError(
            f"{name}.edges={out['edges']:,} is more than half of all {out['users']:,} x {out['items']:,} "
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

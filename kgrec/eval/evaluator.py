"""Full-ranking evaluation: the one protocol every kgrec model is measured with.

For every user with at least one target (test or valid) item, the model scores
*all* catalogue items; the user's train items (and valid items when ranking for
test) are removed from the candidates; the top ``max(ks)`` of what remains is
compared with the target items (see :mod:`kgrec.eval.metrics` for the formulas);
per-user values are averaged over users.

Users are processed in chunks on the model's device: a chunk's
``(batch, num_items)`` score block is masked, reduced to its top-K and to
per-user metric values, and dropped, so no full ``(num_users, num_items)`` score
matrix ever exists (1M users x 100k items runs in bounded memory).
"""

from __future__ import annotations

import numbers
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from kgrec.errors import ConfigError, KGRecError
from kgrec.eval.metrics import check_ks, metrics_from_hits
from kgrec.graph import categorical_codes

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.base import BaseRecommender
    from kgrec.graph import GraphData
    from kgrec.split import Split

__all__ = ["EvalResult", "evaluate"]

_SCORE_BLOCK = 1 << 24  # elements of one (batch, num_items) score block: 64 MiB of float32


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    Attributes:
        metrics: Mean over evaluated users: ``recall@K``, ``ndcg@K``, ``hit@K``,
            ``precision@K``, ``mrr@K`` for each ``K``, and ``mrr`` (full ranking).
        num_users: Users ranked: those with at least one target item left, or a
            ``max_users`` sample of them (how many there were: ``counts["eligible_users"]``).
        skipped_users: Users of the vocabulary not evaluated because they have no
            target item (never a division by zero).
        counts: Bookkeeping of what the protocol dropped or met, e.g.
            ``target_interactions``, ``unknown_user_interactions`` /
            ``unknown_item_interactions`` (ids outside the graph's vocabularies,
            dropped), ``seen_target_interactions`` (target pairs also in the excluded
            sets, dropped), ``target_items_without_train`` (target interactions whose
            item has no train interaction: kept, rankable only through side
            information), ``num_candidates``, ``eligible_users`` (users with a target
            item; more than ``num_users`` when ``max_users`` sampled them).
        on: ``"test"`` or ``"valid"``.
        cold_only: Whether ranking was restricted to ``split.cold_items``.
        ks: The cut-offs.
        seconds: Wall-clock time of the evaluation.
        per_user: One row per evaluated user (``user`` raw id, ``num_relevant`` and
            every metric) when requested, else ``None``.
    """

    metrics: dict[str, float]
    num_users: int
    skipped_users: int
    counts: dict[str, int] = field(default_factory=dict)
    on: str = "test"
    cold_only: bool = False
    ks: tuple[int, ...] = (10, 20, 50)
    seconds: float = 0.0
    per_user: pd.DataFrame | None = None

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]


def _encode(frame: pd.DataFrame, index: pd.Index, column: str) -> np.ndarray:
    codes = categorical_codes(frame[column], index)
    if codes is not None:
        return codes
    return index.get_indexer(pd.Index(frame[column].to_numpy(dtype=object), dtype=object))


_CACHE: "OrderedDict[tuple, tuple[list, dict]]" = OrderedDict()
_CACHE_SIZE = 4


def _prepared(split: "Split", graph: "GraphData", on: str) -> dict:
    """Encoded target / excluded / train matrices, cached per (split frames, vocabularies, on).

    Early stopping evaluates the same split many times; encoding raw string ids is the
    dominant cost at MovieLens scale, so it is done once. Entries are keyed by object
    identity and checked through weak references (frames are never mutated in place).
    """
    owners = [split.train, split.valid, split.test, graph.vocabs["user"], graph.vocabs["item"]]
    key = (on, *map(id, owners))
    hit = _CACHE.get(key)
    if hit is not None and all(ref() is obj for ref, obj in zip(hit[0], owners)):
        _CACHE.move_to_end(key)
        return hit[1]
    users_index = pd.Index(np.asarray(graph.vocabs["user"].ids, dtype=object), dtype=object)
    items_index = pd.Index(np.asarray(graph.vocabs["item"].ids, dtype=object), dtype=object)
    target_frame = split.test if on == "test" else split.valid
    train, _, _ = _pairs_matrix([split.train], users_index, items_index)
    target, unk_u, unk_i = _pairs_matrix([target_frame], users_index, items_index)
    if on == "test":
        valid, _, _ = _pairs_matrix([split.valid], users_index, items_index)
        excluded = ((train + valid) > 0).astype(np.float32).tocsr()
    else:
        excluded = train
    prepared = {
        "users_index": users_index, "items_index": items_index, "target": target,
        "excluded": excluded, "train_pop": np.asarray(train.sum(axis=0)).ravel(),
        "num_target_rows": int(len(target_frame)), "unknown_users": unk_u, "unknown_items": unk_i,
    }
    try:
        refs = [weakref.ref(o) for o in owners]
    except TypeError:  # an owner without weakref support: do not cache
        return prepared
    _CACHE[key] = (refs, prepared)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return prepared


def _pairs_matrix(
    frames: Sequence[pd.DataFrame], users: pd.Index, items: pd.Index
) -> tuple[sp.csr_matrix, int, int]:
    """Binary CSR of (user, item) pairs; returns it and the unknown user/item row counts."""
    rows, cols = [], []
    unknown_users = unknown_items = 0
    for frame in frames:
        if len(frame) == 0:
            continue
        r = _encode(frame, users, "user")
        c = _encode(frame, items, "item")
        unknown_users += int((r < 0).sum())
        unknown_items += int(((c < 0) & (r >= 0)).sum())
        ok = (r >= 0) & (c >= 0)
        rows.append(r[ok])
        cols.append(c[ok])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    mat = sp.csr_matrix(
        (np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(items))
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat, unknown_users, unknown_items


def _rows_to_coo(mat: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, col)`` of the nonzeros of ``mat[rows]``, ``row`` counted within ``rows``, on ``device``."""
    sub = mat[rows].tocoo()
    return (torch.from_numpy(sub.row.astype(np.int64)).to(device),
            torch.from_numpy(sub.col.astype(np.int64)).to(device))


def evaluate(
    model: "BaseRecommender",
    split: "Split",
    graph: "GraphData",
    on: str = "test",
    ks: Sequence[int] = (10, 20, 50),
    cold_only: bool = False,
    batch_size: int | None = None,
    per_user: bool = False,
    max_users: int | None = None,
    seed: int = 0,
) -> EvalResult:
    """Full-ranking evaluation of a fitted recommender.

    Args:
        model: A fitted :class:`~kgrec.base.BaseRecommender`; its ``score`` is called on
            chunks of user indices and its ``score_device`` hosts the top-K.
        split: The split the model was fitted on.
        graph: The graph built from ``split.train``; its vocabularies fix the indices.
        on: ``"test"`` (exclude train and valid items) or ``"valid"`` (exclude train items).
        ks: Cut-offs, positive integers.
        cold_only: Strict cold-start: rank only ``split.cold_items`` and keep only target
            interactions with those items (``cold_item`` splits).
        batch_size: Users per chunk; ``None`` keeps each ``(batch, num_items)`` score
            block near 16M values.
        per_user: Also return one row of metrics per evaluated user.
        max_users: Evaluate at most this many users: above it, a uniform random subset of the
            users with a target item, drawn from ``seed`` (the same subset on every call with
            the same split, so validation epochs stay comparable for early stopping). For
            cheap validation on large graphs; ``None`` (the default, and what every reported
            test number uses) evaluates every user. ``counts["eligible_users"]`` records how
            many users the subset was drawn from.
        seed: Seed of the ``max_users`` subset.

    Returns:
        An :class:`EvalResult`.

    .. warning::
        ``on="test"`` is for the final measurement only; tune and early-stop with
        ``on="valid"``.
    """
    start = time.perf_counter()
    if on not in ("test", "valid"):
        raise ConfigError(f"The 'on' parameter must be one of {{'test', 'valid'}}; got {on!r}.")
    ks = check_ks(ks)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0
    ):
        raise ConfigError(
            f"The 'batch_size' parameter must be a positive integer or None; got {batch_size!r}."
        )
    if max_users is not None and (
        isinstance(max_users, bool) or not isinstance(max_users, numbers.Integral) or max_users <= 0
    ):
        raise ConfigError(f"The 'max_users' parameter must be a positive integer or None; got {max_users!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"The 'seed' parameter must be a non-negative integer; got {seed!r}.")
    if not getattr(model, "is_fitted", False):
        raise ConfigError(f"{type(model).__name__} is not fitted; call fit(split, graph) before evaluate.")

    prep = _prepared(split, graph, on)
    users_index, items_index = prep["users_index"], prep["items_index"]
    num_users, num_items = len(users_index), len(items_index)
    target, excluded, train_pop = prep["target"], prep["excluded"], prep["train_pop"]
    counts = {
        "target_interactions": prep["num_target_rows"],
        "unknown_user_interactions": prep["unknown_users"],
        "unknown_item_interactions": prep["unknown_items"],
    }

    if cold_only:
        cold = [i for i in split.cold_items if i in items_index]
        if not cold:
            raise ConfigError(
                "cold_only=True needs a split with cold items (strategy 'cold_item'); "
                f"this {split.strategy!r} split has none in the catalogue."
            )
        candidates = np.sort(items_index.get_indexer(cold))
        target = target[:, candidates].tocsr()
        excluded = excluded[:, candidates].tocsr()
        train_pop = train_pop[candidates]
    else:
        candidates = None
    num_candidates = target.shape[1]

    overlap = target.multiply(excluded)
    counts["seen_target_interactions"] = int(overlap.nnz)
    if overlap.nnz:
        target = (target - overlap).tocsr()
        target.eliminate_zeros()
    counts["target_items_without_train"] = int(target[:, train_pop == 0].nnz)
    counts["num_candidates"] = int(num_candidates)

    n_rel = np.diff(target.indptr)
    eval_users = np.flatnonzero(n_rel > 0)
    skipped = int(num_users - len(eval_users))
    counts["eligible_users"] = int(len(eval_users))
    if max_users is not None and len(eval_users) > max_users:
        rng = np.random.default_rng(seed)
        eval_users = np.sort(rng.choice(eval_users, size=int(max_users), replace=False))

    device = model.score_device
    if batch_size is None:
        batch_size = max(1, min(8192, _SCORE_BLOCK // max(num_items, 1)))
    k_max = min(max(ks), num_candidates)
    cand_t = None if candidates is None else torch.from_numpy(candidates.astype(np.int64)).to(device)
    name = type(model).__name__

    chunks: dict[str, list[np.ndarray]] = {}
    for lo in range(0, len(eval_users), batch_size):
        rows = eval_users[lo : lo + batch_size]
        scores = model.score(torch.from_numpy(rows.astype(np.int64)))
        if scores.shape != (len(rows), num_items):
            raise KGRecError(
                f"{name}.score returned shape {tuple(scores.shape)}; expected "
                f"({len(rows)}, {num_items}) = (batch, num_items)."
            )
        # a row sum is NaN when the row holds a NaN (or both infinities): the cheap test first
        if torch.isnan(scores.sum(dim=1)).any() and torch.isnan(scores).any():
            raise KGRecError(
                f"{name}.score returned NaN scores (for {int(torch.isnan(scores).any(1).sum())} "
                f"of {len(rows)} users in a batch); the model '{name}' cannot be evaluated."
            )
        raw = scores
        scores = scores.to(device=device, dtype=torch.float32)
        if cand_t is not None:
            scores = scores.index_select(1, cand_t)
        elif scores.data_ptr() == raw.data_ptr():  # the model's own tensor: write on a copy
            scores = scores.clone()
        # The masks as sparse (row, col) pairs rather than dense (batch, num_items) boolean
        # blocks: writing -inf at the excluded pairs and reading the relevant pairs' scores
        # costs a fraction of masking and reducing whole blocks. With the int32 count below
        # (a bool sum widens to int64) it halved the evaluation, 2 CPU threads: ml-1m 0.385 s
        # -> 0.194 s (benchmarks.eval_speed), a 100k-user x 20k-item world 14.2 s -> 7.0 s.
        ex_row, ex_col = _rows_to_coo(excluded, rows, device)
        scores[ex_row, ex_col] = float("-inf")
        rel_row, rel_col = _rows_to_coo(target, rows, device)
        relevant = torch.zeros(len(rows), num_candidates, dtype=torch.bool, device=device)
        relevant[rel_row, rel_col] = True
        top = torch.topk(scores, k_max, dim=1, sorted=True).indices
        hits = relevant.gather(1, top)
        # full-ranking rank of the first relevant item; ties with its score are broken
        # against it (every tied non-relevant item ranks first), so a constant scorer
        # does not get MRR 1
        rel_scores = scores[rel_row, rel_col]
        best_rel = torch.full((len(rows),), float("-inf"), dtype=scores.dtype, device=device).scatter_reduce(
            0, rel_row, rel_scores, reduce="amax")
        at_or_above = (scores >= best_rel.unsqueeze(1)).sum(dim=1, dtype=torch.int32)
        tied_relevant = torch.zeros(len(rows), dtype=torch.int32, device=device).index_add_(
            0, rel_row, (rel_scores == best_rel[rel_row]).to(torch.int32))
        first_rank = (at_or_above - tied_relevant + 1).to(torch.int64)
        values = metrics_from_hits(
            hits, torch.from_numpy(n_rel[rows]).to(device), ks, first_rank=first_rank
        )
        for key, val in values.items():
            chunks.setdefault(key, []).append(val.cpu().numpy())
        del scores, relevant

    per_user_values = {k: np.concatenate(v) for k, v in chunks.items()}
    metrics = {k: float(v.mean()) for k, v in per_user_values.items()} if len(eval_users) else {}
    frame = None
    if per_user:
        frame = pd.DataFrame({"user": users_index.to_numpy()[eval_users], "num_relevant": n_rel[eval_users]})
        for k, v in per_user_values.items():
            frame[k] = v
    return EvalResult(
        metrics=metrics,
        num_users=int(len(eval_users)),
        skipped_users=skipped,
        counts=counts,
        on=on,
        cold_only=cold_only,
        ks=ks,
        seconds=time.perf_counter() - start,
        per_user=frame,
    )

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

The protocol has three parts that every caller shares: :func:`ranking_task` encodes what
is ranked for whom (targets and excluded items per user, once per split),
:meth:`RankingTask.batch` cuts it into chunks of users (:class:`RankingDataset` serves
them to a Lightning loader, so validation and test shard across devices), and
:func:`rank_batch` turns one chunk's scores into per-user metrics. :func:`evaluate` runs
them over a fitted recommender.
"""

from __future__ import annotations

import numbers
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from kgrec.errors import ConfigError, KGRecError
from kgrec.eval.metrics import DEFAULT_KS, check_ks, metrics_from_hits
from kgrec.graph.build import categorical_codes

if TYPE_CHECKING:  # pragma: no cover
    from kgrec.data.split import Split
    from kgrec.graph import GraphData

__all__ = ["EvalResult", "Scorer", "RankingTask", "RankingDataset", "evaluate", "mean_over_users", "rank_batch", "ranking_task",
           "summarize"]

class Scorer(Protocol):
    """What :func:`evaluate` needs of a model (every :class:`kgrec.models.BaseRecommender` is one)."""

    is_fitted: bool

    @property
    def score_device(self) -> torch.device: ...

    def score(self, users: Tensor) -> Tensor:
        """``(len(users), num_items)`` scores of the user indices ``users``, higher is better."""


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


@dataclass
class RankingTask:
    """What one full-ranking evaluation ranks, for whom, encoded once (:func:`ranking_task`).

    Attributes:
        on: ``"test"`` or ``"valid"``.
        cold_only: Whether ranking is restricted to the split's cold items.
        users: ``(U,)`` indices of the users evaluated (ascending).
        target: ``(num_users, num_candidates)`` binary CSR of the target pairs left after
            dropping those also in ``excluded``.
        excluded: ``(num_users, num_candidates)`` binary CSR of the pairs never ranked
            (train, and valid when ranking for test).
        candidates: ``(num_candidates,)`` catalogue indices ranked (``None``: all items).
        num_items: Catalogue size (the width of a score row).
        user_ids: Raw id of every user index.
        counts: Bookkeeping (see :class:`EvalResult`).
        skipped: Users of the vocabulary without a target.
    """

    on: str
    cold_only: bool
    users: np.ndarray
    target: sp.csr_matrix
    excluded: sp.csr_matrix
    candidates: np.ndarray | None
    num_items: int
    user_ids: np.ndarray
    counts: dict[str, int]
    skipped: int

    def batch(self, rows: np.ndarray, device: torch.device | str = "cpu") -> dict[str, Tensor | None]:
        """The chunk of users ``rows`` (user indices) as tensors on ``device``.

        Returns:
            ``users`` ``(B,)``; ``excluded`` and ``relevant``: ``(2, nnz)`` (row within the
            chunk, candidate column) pairs; ``num_relevant`` ``(B,)``; ``candidates``
            ``(C,)`` catalogue indices or ``None``. What :func:`rank_batch` reads.
        """
        rows = np.asarray(rows, dtype=np.int64)
        return {
            "users": torch.from_numpy(rows).to(device),
            "excluded": torch.stack(_rows_to_coo(self.excluded, rows, device)),
            "relevant": torch.stack(_rows_to_coo(self.target, rows, device)),
            "num_relevant": torch.from_numpy(np.diff(self.target.indptr)[rows].astype(np.int64)).to(device),
            "candidates": None if self.candidates is None else torch.from_numpy(self.candidates).to(device),
        }


class RankingDataset(TorchDataset):
    """The users of a :class:`RankingTask`, served a whole chunk at a time.

    ``DataLoader(RankingDataset(task), batch_size=B, collate_fn=lambda b: b)`` yields
    :meth:`RankingTask.batch` dicts of ``B`` users: one indexing op per chunk
    (``__getitems__``), and under DDP Lightning's distributed sampler gives each process its
    own users. Its padding repeats a few users, so aggregate per user (see
    :func:`kgrec.eval.evaluator.mean_over_users`).
    """

    def __init__(self, task: RankingTask) -> None:
        self.task = task

    def __len__(self) -> int:
        return len(self.task.users)

    def __getitem__(self, index: int):
        return self.__getitems__([index])

    def __getitems__(self, indices) -> dict[str, Tensor | None]:
        return self.task.batch(self.task.users[np.asarray(indices, dtype=np.int64)])


def ranking_task(split: "Split", graph: "GraphData", on: str = "test", cold_only: bool = False,
                 max_users: int | None = None, seed: int = 0) -> RankingTask:
    """Encode what :func:`evaluate` ranks: targets and excluded items per user, the users.

    Arguments as :func:`evaluate`'s. Encoding raw ids is the dominant cost at MovieLens
    scale, so the matrices are cached per split (see ``_prepared``).
    """
    if on not in ("test", "valid"):
        raise ConfigError(f"The 'on' parameter must be one of {{'test', 'valid'}}; got {on!r}.")
    if max_users is not None and (
        isinstance(max_users, bool) or not isinstance(max_users, numbers.Integral) or max_users <= 0
    ):
        raise ConfigError(f"The 'max_users' parameter must be a positive integer or None; got {max_users!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"The 'seed' parameter must be a non-negative integer; got {seed!r}.")
    prep = _prepared(split, graph, on)
    users_index, items_index = prep["users_index"], prep["items_index"]
    target, excluded, train_pop = prep["target"], prep["excluded"], prep["train_pop"]
    counts = {
        "target_interactions": prep["num_target_rows"],
        "unknown_user_interactions": prep["unknown_users"],
        "unknown_item_interactions": prep["unknown_items"],
    }
    candidates = None
    if cold_only:
        cold = [i for i in split.cold_items if i in items_index]
        if not cold:
            raise ConfigError(
                "cold_only=True needs a split with cold items (strategy 'cold_item'); "
                f"this {split.strategy!r} split has none in the catalogue."
            )
        candidates = np.sort(items_index.get_indexer(cold)).astype(np.int64)
        target = target[:, candidates].tocsr()
        excluded = excluded[:, candidates].tocsr()
        train_pop = train_pop[candidates]
    overlap = target.multiply(excluded)
    counts["seen_target_interactions"] = int(overlap.nnz)
    if overlap.nnz:
        target = (target - overlap).tocsr()
        target.eliminate_zeros()
    counts["target_items_without_train"] = int(target[:, train_pop == 0].nnz)
    counts["num_candidates"] = int(target.shape[1])
    users = np.flatnonzero(np.diff(target.indptr) > 0)
    counts["eligible_users"] = int(len(users))
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=int(max_users), replace=False))
    return RankingTask(on=on, cold_only=cold_only, users=users.astype(np.int64), target=target, excluded=excluded,
                       candidates=candidates, num_items=len(items_index), user_ids=users_index.to_numpy(),
                       counts=counts, skipped=int(len(users_index) - counts["eligible_users"]))


def rank_batch(scores: Tensor, batch: dict[str, Tensor | None], ks: Sequence[int] = DEFAULT_KS) -> dict[str, Tensor]:
    """Per-user metrics of one chunk: the kernel of the protocol.

    Args:
        scores: ``(B, num_items)`` scores of the chunk's users (not modified).
        batch: :meth:`RankingTask.batch` of the same users, on ``scores``' device.
        ks: Cut-offs (checked by the caller).

    Returns:
        ``{"recall@10": (B,) float64, ...}``: every metric of :func:`metrics_from_hits`
        plus the full-ranking ``mrr``.
    """
    num_relevant = batch["num_relevant"]
    scores = scores.to(dtype=torch.float32)
    if batch["candidates"] is not None:
        scores = scores.index_select(1, batch["candidates"])
    else:
        scores = scores.clone()
    num_candidates = scores.size(1)
    # The masks as sparse (row, col) pairs rather than dense (batch, num_items) boolean
    # blocks: writing -inf at the excluded pairs and reading the relevant pairs' scores
    # costs a fraction of masking and reducing whole blocks (half the evaluation time).
    ex_row, ex_col = batch["excluded"]
    scores[ex_row, ex_col] = float("-inf")
    rel_row, rel_col = batch["relevant"]
    relevant = torch.zeros(scores.size(0), num_candidates, dtype=torch.bool, device=scores.device)
    relevant[rel_row, rel_col] = True
    top = torch.topk(scores, min(max(ks), num_candidates), dim=1, sorted=True).indices
    hits = relevant.gather(1, top)
    # full-ranking rank of the first relevant item; ties with its score are broken
    # against it (every tied non-relevant item ranks first), so a constant scorer
    # does not get MRR 1
    rel_scores = scores[rel_row, rel_col]
    best_rel = torch.full((scores.size(0),), float("-inf"), dtype=scores.dtype, device=scores.device).scatter_reduce(
        0, rel_row, rel_scores, reduce="amax")
    at_or_above = (scores >= best_rel.unsqueeze(1)).sum(dim=1, dtype=torch.int32)
    tied_relevant = torch.zeros(scores.size(0), dtype=torch.int32, device=scores.device).index_add_(
        0, rel_row, (rel_scores == best_rel[rel_row]).to(torch.int32))
    first_rank = (at_or_above - tied_relevant + 1).to(torch.int64)
    return metrics_from_hits(hits, num_relevant, ks, first_rank=first_rank)


def mean_over_users(users: np.ndarray, values: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-user values keyed by user, each user once and in ascending order.

    Chunks may arrive in any order and, from a distributed sampler, with a few users twice;
    this is what makes every way of ranking a task give the same means.

    Returns:
        ``(users, values)`` with the users sorted and de-duplicated.
    """
    users = np.asarray(users)
    unique, first = np.unique(users, return_index=True)
    return unique, {k: np.asarray(v)[first] for k, v in values.items()}


def evaluate(
    model: Scorer,
    split: "Split",
    graph: "GraphData",
    on: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    cold_only: bool = False,
    batch_size: int | None = None,
    per_user: bool = False,
    max_users: int | None = None,
    seed: int = 0,
) -> EvalResult:
    """Full-ranking evaluation of a fitted recommender.

    Args:
        model: A fitted :class:`~kgrec.models.BaseRecommender` (any :class:`Scorer`); its ``score`` is called on
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
    ks = check_ks(ks)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0
    ):
        raise ConfigError(
            f"The 'batch_size' parameter must be a positive integer or None; got {batch_size!r}."
        )
    task = ranking_task(split, graph, on=on, cold_only=cold_only, max_users=max_users, seed=seed)
    if not getattr(model, "is_fitted", False):
        raise ConfigError(f"{type(model).__name__} is not fitted; call fit(split, graph) before evaluate.")
    device = model.score_device
    if batch_size is None:
        batch_size = max(1, min(8192, _SCORE_BLOCK // max(task.num_items, 1)))
    name = type(model).__name__
    chunks: dict[str, list[np.ndarray]] = {}
    for lo in range(0, len(task.users), batch_size):
        rows = task.users[lo : lo + batch_size]
        scores = model.score(torch.from_numpy(rows))
        if scores.shape != (len(rows), task.num_items):
            raise KGRecError(
                f"{name}.score returned shape {tuple(scores.shape)}; expected "
                f"({len(rows)}, {task.num_items}) = (batch, num_items)."
            )
        # a row sum is NaN when the row holds a NaN (or both infinities): the cheap test first
        if torch.isnan(scores.sum(dim=1)).any() and torch.isnan(scores).any():
            raise KGRecError(
                f"{name}.score returned NaN scores (for {int(torch.isnan(scores).any(1).sum())} "
                f"of {len(rows)} users in a batch); the model '{name}' cannot be evaluated."
            )
        values = rank_batch(scores.to(device), task.batch(rows, device), ks)
        for key, val in values.items():
            chunks.setdefault(key, []).append(val.cpu().numpy())
        del scores
    values = {k: np.concatenate(v) for k, v in chunks.items()}
    return summarize(task, task.users, values, ks, seconds=time.perf_counter() - start, per_user=per_user)


def summarize(task: RankingTask, users: np.ndarray, values: dict[str, np.ndarray], ks: Sequence[int],
              seconds: float = 0.0, per_user: bool = False) -> EvalResult:
    """The :class:`EvalResult` of a task's per-user metric values (users in any order,
    possibly repeated, as :func:`mean_over_users` accepts them)."""
    users, values = mean_over_users(users, values)
    metrics = {k: float(v.mean()) for k, v in values.items()} if len(users) else {}
    frame = None
    if per_user:
        frame = pd.DataFrame({"user": task.user_ids[users],
                              "num_relevant": np.diff(task.target.indptr)[users]})
        for k, v in values.items():
            frame[k] = v
    return EvalResult(metrics=metrics, num_users=int(len(users)), skipped_users=task.skipped,
                      counts=dict(task.counts), on=task.on, cold_only=task.cold_only, ks=tuple(ks),
                      seconds=seconds, per_user=frame)

"""Train / valid / test splits: typed, seeded, and made before anything else.

Everything downstream (graph, degrees, popularity, text profiles) reads
``split.train`` only. See DESIGN.md, "Splits".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from kgrec.data.dataset import Dataset
from kgrec.errors import ConfigError, DataError

__all__ = [
    "Split",
    "SPLIT_STRATEGIES",
    "split_dataset",
    "split_random",
    "split_temporal",
    "split_leave_one_out",
    "split_cold_item",
    "check_ratios",
]

SplitStrategy = Literal["random", "temporal", "leave_one_out", "cold_item", "presplit"]
SPLIT_STRATEGIES: tuple[str, ...] = ("random", "temporal", "leave_one_out", "cold_item", "presplit")


@dataclass(frozen=True)
class Split:
    """Disjoint train, valid and test interaction frames of one dataset.

    Attributes:
        train: Interactions that may be used for learning (graph, degrees, profiles).
        valid: Interactions for model selection / early stopping.
        test: Interactions touched once, for the final report.
        strategy: How the split was made (one of :data:`SPLIT_STRATEGIES`).
        seed: The random seed, or ``None`` where the split is deterministic.
        cold_items: Raw ids of items held out entirely (``cold_item`` strategy).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    strategy: str
    seed: int | None = None
    cold_items: frozenset = field(default_factory=frozenset)

    def part(self, on: str) -> pd.DataFrame:
        """The frame named ``on`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if on not in ("train", "valid", "test"):
            raise ConfigError(f"The 'on' argument must be one of {{'train', 'valid', 'test'}}; got {on!r}.")
        return getattr(self, on)

    def summary(self) -> str:
        n = len(self.train) + len(self.valid) + len(self.test)
        text = (
            f"Split[{self.strategy}, seed={self.seed}]: train {len(self.train):,} "
            f"({len(self.train) / n:.1%}), valid {len(self.valid):,}, test {len(self.test):,}"
        )
        if self.cold_items:
            text += f"; {len(self.cold_items):,} cold items"
        return text

    def __repr__(self) -> str:
        return (
            f"Split(strategy={self.strategy!r}, seed={self.seed}, train={len(self.train)}, "
            f"valid={len(self.valid)}, test={len(self.test)}, cold_items={len(self.cold_items)})"
        )


# --------------------------------------------------------------------- helpers
def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``ratios`` as three positive finite train / valid / test shares summing to 1, else a
    :class:`~kgrec.errors.ConfigError` naming them (shared by every split and ``synthetic-scale``)."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(not math.isfinite(r) or r <= 0 for r in ratios):
        raise ConfigError(
            f"The 'ratios' argument must be three positive numbers (train, valid, test); got {ratios}."
        )
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise ConfigError(f"The 'ratios' argument must sum to 1; got {ratios} (sum {sum(ratios):.4f}).")
    return ratios  # type: ignore[return-value]


def _counts(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (n_valid, n_test): floor of the ratio, at least one each while train keeps ≥ 1."""
    n_valid = np.floor(n * ratios[1]).astype(np.int64)
    n_test = np.floor(n * ratios[2]).astype(np.int64)
    # Small users: give test, then valid, one interaction as long as train keeps one.
    give_test = (n_test == 0) & (n - n_valid - n_test >= 2)
    n_test += give_test
    give_valid = (n_valid == 0) & (n - n_valid - n_test >= 2)
    n_valid += give_valid
    return n_valid, n_test


def _assign_by_position(frame: pd.DataFrame, order_key: np.ndarray, ratios) -> np.ndarray:
    """Rank rows within each user by ``order_key``; first part train, then valid, then test.

    Returns an int8 array: 0 train, 1 valid, 2 test.
    """
    users = frame["user"].to_numpy(dtype=object)
    codes, _ = pd.factorize(users)
    order = np.lexsort((order_key, codes))
    sorted_codes = codes[order]
    n_per_user = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(n_per_user)[:-1]))
    pos_sorted = np.arange(len(frame)) - starts[sorted_codes]
    n_valid, n_test = _counts(n_per_user, ratios)
    n_train = n_per_user - n_valid - n_test
    part_sorted = np.where(
        pos_sorted < n_train[sorted_codes], 0,
        np.where(pos_sorted < (n_train + n_valid)[sorted_codes], 1, 2),
    ).astype(np.int8)
    part = np.empty(len(frame), dtype=np.int8)
    part[order] = part_sorted
    return part


def _make(frame: pd.DataFrame, part: np.ndarray, strategy: str, seed, cold=frozenset()) -> Split:
    pieces = [frame.loc[part == i].reset_index(drop=True) for i in range(3)]
    return Split(*pieces, strategy=strategy, seed=seed, cold_items=frozenset(cold))


def _interactions(dataset: Dataset, rating_threshold: float | None) -> pd.DataFrame:
    inter = dataset.interactions
    if rating_threshold is not None:
        if "rating" not in inter.columns:
            raise ConfigError(
                f"rating_threshold={rating_threshold} was given but dataset {dataset.name!r} has no "
                "'rating' column; leave rating_threshold unset for implicit feedback."
            )
        inter = inter.loc[inter["rating"] >= rating_threshold].reset_index(drop=True)
        if inter.empty:
            raise DataError(
                f"No interaction of dataset {dataset.name!r} has rating >= {rating_threshold}; "
                f"ratings range from {dataset.interactions['rating'].min()} to "
                f"{dataset.interactions['rating'].max()}."
            )
    return inter


# ------------------------------------------------------------------ strategies
def split_random(dataset: Dataset, ratios=(0.8, 0.1, 0.1), seed: int = 2026,
                 rating_threshold: float | None = None) -> Split:
    """Per user, a seeded random ``ratios`` share of interactions to train / valid / test."""
    ratios = check_ratios(ratios)
    inter = _interactions(dataset, rating_threshold)
    key = np.random.default_rng(seed).random(len(inter))
    return _make(inter, _assign_by_position(inter, key, ratios), "random", seed)


def split_temporal(dataset: Dataset, ratios=(0.8, 0.1, 0.1), rating_threshold: float | None = None) -> Split:
    """Per user, the oldest ``ratios[0]`` share to train, the newest ``ratios[2]`` to test."""
    ratios = check_ratios(ratios)
    if not dataset.has_timestamps:
        raise ConfigError(
            f"split 'temporal' needs a 'timestamp' column, which dataset {dataset.name!r} lacks; "
            "use 'random' or 'leave_one_out'."
        )
    inter = _interactions(dataset, rating_threshold)
    key = inter["timestamp"].to_numpy()  # ties keep file order: np.lexsort is stable
    return _make(inter, _assign_by_position(inter, key, ratios), "temporal", None)


def split_leave_one_out(dataset: Dataset, seed: int = 2026, rating_threshold: float | None = None) -> Split:
    """Per user, the last interaction to test and the one before to valid.

    "Last" is by timestamp where the dataset has one, else a seeded random order.
    Users with fewer than three interactions keep everything but one test item in
    train (and users with one interaction keep it in train).
    """
    inter = _interactions(dataset, rating_threshold)
    if dataset.has_timestamps:
        key, seed_used = inter["timestamp"].to_numpy(), None
    else:
        key, seed_used = np.random.default_rng(seed).random(len(inter)), seed
    codes, _ = pd.factorize(inter["user"].to_numpy(dtype=object))
    order = np.lexsort((key, codes))
    n_per_user = np.bincount(codes)
    ends = np.cumsum(n_per_user)
    pos_from_end = ends[codes[order]] - 1 - np.arange(len(inter))  # 0 = last
    n_sorted = n_per_user[codes[order]]
    part_sorted = np.zeros(len(inter), dtype=np.int8)
    part_sorted[(pos_from_end == 0) & (n_sorted >= 2)] = 2
    part_sorted[(pos_from_end == 1) & (n_sorted >= 3)] = 1
    part = np.empty(len(inter), dtype=np.int8)
    part[order] = part_sorted
    return _make(inter, part, "leave_one_out", seed_used)


def split_cold_item(dataset: Dataset, cold_fraction: float = 0.2, ratios=(0.8, 0.1, 0.1),
                    seed: int = 2026, rating_threshold: float | None = None) -> Split:
    """Hold a seeded ``cold_fraction`` of items out entirely: all their interactions go to test.

    The remaining (warm) interactions are split per user at random by ``ratios``.
    Cold items stay in the catalogue and may reach the graph through text, tags and
    KG edges only.
    """
    if not (0.0 < float(cold_fraction) < 1.0):
        raise ConfigError(f"The 'cold_fraction' argument must be in (0, 1); got {cold_fraction}.")
    ratios = check_ratios(ratios)
    inter = _interactions(dataset, rating_threshold)
    rng = np.random.default_rng(seed)
    items = np.sort(pd.unique(inter["item"].to_numpy(dtype=object)).astype(str))
    n_cold = max(1, int(round(len(items) * cold_fraction)))
    cold = set(rng.choice(items, size=n_cold, replace=False).tolist())
    is_cold = inter["item"].isin(cold).to_numpy()
    warm = inter.loc[~is_cold]
    part = np.full(len(inter), 2, dtype=np.int8)
    key = rng.random(len(warm))
    part[~is_cold] = _assign_by_position(warm, key, ratios)
    return _make(inter, part, "cold_item", seed, cold)


def split_dataset(
    dataset: Dataset,
    strategy: SplitStrategy | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 2026,
    cold_fraction: float = 0.2,
    rating_threshold: float | None = None,
) -> Split:
    """Split ``dataset`` by ``strategy``.

    Args:
        dataset: The dataset. When it was read from a pre-split directory, only
            ``strategy="presplit"`` (the default there) is allowed.
        strategy: One of ``random``, ``temporal``, ``leave_one_out``, ``cold_item``, ``presplit``;
            ``None`` means ``presplit`` for a pre-split dataset and ``random`` otherwise.
        ratios: Train / valid / test shares (positive, summing to 1) for per-user splits.
        seed: Random seed (ignored by ``temporal``).
        cold_fraction: Share of items held out by ``cold_item``.
        rating_threshold: Keep only interactions with ``rating >= rating_threshold``;
            ``None`` treats every interaction as a positive (implicit feedback).
    """
    if strategy is None:
        strategy = "presplit" if dataset.presplit is not None else "random"
    if strategy not in SPLIT_STRATEGIES:
        raise ConfigError(
            f"The 'strategy' parameter must be one of {set(SPLIT_STRATEGIES)}; got {strategy!r}."
        )
    if dataset.presplit is not None:
        if strategy != "presplit":
            raise ConfigError(
                f"Dataset {dataset.name!r} was read already split; it is used exactly as given, "
                f"so split strategy {strategy!r} cannot apply. Use strategy='presplit'."
            )
        if rating_threshold is not None:
            raise ConfigError("rating_threshold cannot re-filter a pre-split dataset; filter the files instead.")
        return dataset.presplit
    if strategy == "presplit":
        raise ConfigError(
            f"strategy='presplit' needs a dataset read from a pre-split directory "
            f"(NAME.train.inter, NAME.valid.inter, NAME.test.inter); {dataset.name!r} is not one."
        )
    if strategy == "random":
        return split_random(dataset, ratios, seed, rating_threshold)
    if strategy == "temporal":
        return split_temporal(dataset, ratios, rating_threshold)
    if strategy == "leave_one_out":
        return split_leave_one_out(dataset, seed, rating_threshold)
    return split_cold_item(dataset, cold_fraction, ratios, seed, rating_threshold)

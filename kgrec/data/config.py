"""``DataConfig``: which dataset, and how it is split (the ``data.dataset`` group of a config)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal, Optional

from kgrec.data.scale import SCALE_DATASET, check_scale
from kgrec.data.split import SPLIT_STRATEGIES, check_ratios
from kgrec.errors import ConfigError

__all__ = ["DataConfig"]


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they are split (split first, always).

    Args:
        path: Built-in dataset name (``ml-100k``, ``ml-1m``, ``synthetic``),
            ``synthetic-scale`` (a tensor-built graph of any size, see ``scale``) or a
            directory of RecBole atomic files (a pre-split directory is used exactly as given).
        split: ``random``, ``temporal``, ``leave_one_out``, ``cold_item`` or ``presplit``;
            ``None``: ``presplit`` for pre-split data, else ``random``.
        split_seed: Seed of the split (a model's own seed is separate).
        ratios: Train / valid / test shares per user.
        cold_fraction: Share of items held out by the ``cold_item`` split.
        rating_threshold: Keep interactions rated at least this (``None``: every
            interaction is a positive).
        scale: Sizes of the ``synthetic-scale`` graph (only with that ``path``): any of
            ``users``, ``items``, ``edges``, ``text_dim``, ``communities``
            (:data:`kgrec.data.scale.SCALE_KEYS` gives the rest).
        cache_dir: Dataset and text-embedding cache root (``None``: ``$KGREC_CACHE_DIR``,
            else ``~/.cache/kgrec``).
    """

    path: str = "ml-100k"
    split: Optional[Literal["random", "temporal", "leave_one_out", "cold_item", "presplit"]] = None
    split_seed: int = 2026
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cold_fraction: float = 0.2
    rating_threshold: Optional[float] = None
    scale: Optional[dict[str, int]] = None
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError(f"dataset.path must be a dataset name or a directory; got {self.path!r}.")
        if self.split is not None and self.split not in SPLIT_STRATEGIES:
            raise ConfigError(f"dataset.split must be one of {', '.join(SPLIT_STRATEGIES)} (or null); "
                              f"got {self.split!r}.")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, numbers.Integral):
            raise ConfigError(f"dataset.split_seed must be an integer; got {self.split_seed!r}.")
        object.__setattr__(self, "ratios", check_ratios(self.ratios))
        if not (isinstance(self.cold_fraction, numbers.Real) and 0 < self.cold_fraction < 1):
            raise ConfigError(f"dataset.cold_fraction must be between 0 and 1; got {self.cold_fraction!r}.")
        if self.rating_threshold is not None and not (
                isinstance(self.rating_threshold, numbers.Real) and math.isfinite(self.rating_threshold)):
            raise ConfigError(f"dataset.rating_threshold must be a number or null; got {self.rating_threshold!r}.")
        if self.path == SCALE_DATASET:
            object.__setattr__(self, "scale", check_scale(self.scale))
            if self.split not in (None, "random"):
                raise ConfigError(f"dataset.path {SCALE_DATASET!r} is split at random; got dataset.split={self.split!r}.")
            if self.rating_threshold is not None:
                raise ConfigError(f"dataset.rating_threshold does not apply to dataset.path {SCALE_DATASET!r} "
                                  "(it has no ratings); leave it unset.")
        elif self.scale is not None:
            raise ConfigError(f"dataset.scale sizes the {SCALE_DATASET!r} graph only; dataset.path is {self.path!r}.")

    @property
    def is_scale(self) -> bool:
        """Whether this is the tensor-built ``synthetic-scale`` world."""
        return self.path == SCALE_DATASET

"""The typed dataset object every kgrec pipeline starts from."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kgrec.errors import DataError

__all__ = ["Dataset"]

log = logging.getLogger("kgrec")

_INTERACTION_COLUMNS = ("user", "item", "rating", "timestamp")


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} is missing column(s) {missing}; columns present: {list(frame.columns)}."
        )


def _as_str(series: pd.Series) -> pd.Series:
    """Raw ids as stripped Python strings in an ``object`` column (hash lookups stay fast)."""
    values = [v.strip() if isinstance(v, str) else str(v) for v in series.to_numpy(dtype=object)]
    return pd.Series(np.asarray(values, dtype=object), index=series.index, dtype=object)


def _isin(values: pd.Series, pool) -> np.ndarray:
    """Boolean mask of ``values`` found in ``pool``: a hash lookup on ``object`` arrays."""
    index = pd.Index(pd.unique(np.asarray(pool, dtype=object)), dtype=object)
    return index.get_indexer(pd.Index(values.to_numpy(dtype=object), dtype=object)) >= 0


def _as_tags(value) -> tuple[str, ...]:
    """A tag cell becomes a tuple of non-empty strings (strings split on '|' or whitespace)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    if isinstance(value, str):
        parts = value.split("|") if "|" in value else value.split()
        return tuple(p.strip() for p in parts if p.strip())
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return (str(value),)


@dataclass(frozen=True)
class Dataset:
    """Interactions, item metadata, user attributes and a knowledge graph, with raw ids.

    Build one with :meth:`from_frames` (which validates and copies its inputs) or with
    the readers in :mod:`kgrec.data` (:func:`~kgrec.data.load_dataset`,
    :func:`~kgrec.data.read_atomic`, :func:`~kgrec.data.read_table`).

    Attributes:
        name: Dataset name, used in reports and cache keys.
        interactions: Columns ``user`` and ``item`` (``str``), optional ``rating`` and
            ``timestamp`` (``float64``). One row per distinct (user, item) pair.
        items: The catalogue: column ``item`` (``str``, unique) plus text columns (``str``)
            and tag columns (each cell a ``tuple[str, ...]``).
        users: Column ``user`` (``str``, unique) plus attribute columns (``str``), or ``None``.
        kg: Knowledge-graph triples, columns ``head``, ``relation``, ``tail`` (``str``), or ``None``.
        links: Item to KG entity links, columns ``item`` and ``entity`` (``str``), or ``None``.
            Each item links to at most one entity and vice versa.
        item_text_columns: Item columns that hold free text (titles, years, descriptions).
        item_tag_columns: Item columns that hold tag tuples (genres, user tags).
        user_attribute_columns: User columns that become ``field=value`` tag nodes.
        item_name_column: Column with an item's display name, or ``None`` (the raw id is used).
        presplit: The given train/valid/test split when the data was read already split.
        report: Counts of what loading dropped or repaired (duplicates, dangling KG rows, ...).

    .. warning::
        ``interactions`` holds *every* interaction, including those a split will put
        in valid and test. Never compute popularity, degrees or profiles from it:
        split first (:func:`kgrec.data.split.split_dataset`) and read ``split.train``.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    kg: pd.DataFrame | None = None
    links: pd.DataFrame | None = None
    item_text_columns: tuple[str, ...] = ()
    item_tag_columns: tuple[str, ...] = ()
    user_attribute_columns: tuple[str, ...] = ()
    item_name_column: str | None = None
    presplit: Any = None  # a kgrec.data.Split (split.py builds on this module, so it is not imported here)
    report: Mapping[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    @property
    def item_ids(self) -> np.ndarray:
        """Raw item ids in catalogue order, shape ``(num_items,)``."""
        return self.items["item"].to_numpy(dtype=object)

    @property
    def user_ids(self) -> np.ndarray:
        """Raw user ids: the users frame's order, then users only seen in interactions."""
        if self.users is not None:
            return self.users["user"].to_numpy(dtype=object)
        return pd.unique(self.interactions["user"].to_numpy(dtype=object))

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.columns

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    def item_names(self) -> pd.Series:
        """Display name per raw item id (the raw id where no name column exists)."""
        col = self.item_name_column
        names = self.items[col] if col else self.items["item"]
        return pd.Series(names.to_numpy(dtype=object), index=self.items["item"].to_numpy(dtype=object))

    def summary(self) -> str:
        lines = [
            f"Dataset {self.name!r}: {self.num_users:,} users, {self.num_items:,} items, "
            f"{len(self.interactions):,} interactions"
        ]
        if self.kg is not None:
            lines.append(
                f"  KG: {len(self.kg):,} triples, {self.kg['relation'].nunique()} relations; "
                f"{0 if self.links is None else len(self.links):,} item-entity links"
            )
        if self.item_tag_columns:
            lines.append(f"  item tags: {', '.join(self.item_tag_columns)}")
        if self.user_attribute_columns:
            lines.append(f"  user attributes: {', '.join(self.user_attribute_columns)}")
        if self.presplit is not None:
            s = self.presplit
            lines.append(f"  pre-split: {len(s.train):,} / {len(s.valid):,} / {len(s.test):,}")
        for key, value in self.report.items():
            if value:
                lines.append(f"  {key}: {value:,}")
        return "\n".join(lines)

    def __repr__(self) -> str:  # frames are too large for the dataclass repr
        return (
            f"Dataset(name={self.name!r}, users={self.num_users}, items={self.num_items}, "
            f"interactions={len(self.interactions)})"
        )

    def with_interactions(self, interactions: pd.DataFrame) -> "Dataset":
        """A copy whose interactions are replaced (already normalised) and presplit dropped."""
        return replace(self, interactions=interactions, presplit=None)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        kg: pd.DataFrame | None = None,
        links: pd.DataFrame | None = None,
        *,
        name: str = "dataset",
        item_text_columns: Sequence[str] | None = None,
        item_tag_columns: Sequence[str] = (),
        user_attribute_columns: Sequence[str] | None = None,
        item_name_column: str | None = None,
        keep_unused_items: bool = False,
        source: str = "interactions",
    ) -> "Dataset":
        """Validate, normalise and copy frames into a :class:`Dataset`.

        The caller's frames are never mutated.

        Args:
            interactions: Columns ``user``, ``item``, optional ``rating``, ``timestamp``.
            items: Column ``item`` plus metadata columns, or ``None`` (catalogue = items seen).
            users: Column ``user`` plus attribute columns, or ``None``.
            kg: Columns ``head``, ``relation``, ``tail``, or ``None``.
            links: Columns ``item``, ``entity``, or ``None``.
            name: Dataset name.
            item_text_columns: Text columns of ``items``; default: every column that is
                neither ``item`` nor a tag column.
            item_tag_columns: Tag columns of ``items`` (cells are lists/tuples, or strings
                split on ``|`` or whitespace).
            user_attribute_columns: Attribute columns of ``users``; default: all but ``user``.
            item_name_column: Display-name column; default: the first text column whose name
                contains ``title`` or ``name``.
            keep_unused_items: Keep catalogue items that have no interaction at all.
            source: Where ``interactions`` came from, used in error messages.

        Raises:
            DataError: a required column is missing, a rating/timestamp is not numeric, or
                nothing is left after cleaning.
        """
        report: dict[str, int] = {}
        _require_columns(interactions, ("user", "item"), f"Interactions ({source})")
        cols = [c for c in _INTERACTION_COLUMNS if c in interactions.columns]
        inter = interactions.loc[:, cols].copy()
        inter["user"] = _as_str(inter["user"])
        inter["item"] = _as_str(inter["item"])
        for col in ("rating", "timestamp"):
            if col in inter.columns:
                values = pd.to_numeric(inter[col], errors="coerce")
                bad = values.isna() & interactions[col].notna()
                if bad.any():
                    pos = int(np.flatnonzero(bad.to_numpy())[0])
                    raise DataError(
                        f"{source}: column {col!r} must be numeric; row {pos} has "
                        f"{interactions[col].iloc[pos]!r}."
                    )
                inter[col] = values.astype("float64")
        if "timestamp" in inter.columns:
            inter = inter.sort_values("timestamp", kind="stable")
        before = len(inter)
        inter = inter.drop_duplicates(["user", "item"], keep="first").reset_index(drop=True)
        report["duplicate_interactions_dropped"] = before - len(inter)
        if report["duplicate_interactions_dropped"]:
            log.warning(
                "%s: dropped %d duplicate (user, item) interactions (kept the earliest).",
                source, report["duplicate_interactions_dropped"],
            )
        if inter.empty:
            raise DataError(f"{source}: the dataset has no interactions.")

        # ---------------------------------------------------------- items
        tag_cols = tuple(item_tag_columns)
        if items is not None:
            _require_columns(items, ("item", *tag_cols), "Items frame")
            it = items.copy()
            it["item"] = _as_str(it["item"])
            dup = it["item"].duplicated()
            if dup.any():
                report["duplicate_items_dropped"] = int(dup.sum())
                it = it.loc[~dup]
        else:
            it = pd.DataFrame({"item": pd.unique(inter["item"].to_numpy(dtype=object))})
        if item_text_columns is None:
            text_cols = tuple(c for c in it.columns if c != "item" and c not in tag_cols)
        else:
            text_cols = tuple(item_text_columns)
            _require_columns(it, text_cols, "Items frame")
        missing_items = pd.unique(inter.loc[~_isin(inter["item"], it["item"]), "item"].to_numpy(dtype=object))
        if len(missing_items):
            report["items_without_metadata"] = len(missing_items)
            it = pd.concat([it, pd.DataFrame({"item": missing_items})], ignore_index=True)
        if not keep_unused_items:
            used = _isin(it["item"], inter["item"])
            if links is not None and "item" in links.columns:
                used |= _isin(it["item"], _as_str(links["item"]))
            report["unused_items_dropped"] = int((~used).sum())
            it = it.loc[used]
        for col in text_cols:
            it[col] = it[col].astype(object).map(
                lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            )
        for col in tag_cols:
            it[col] = it[col].astype(object).map(_as_tags)
        it = it.loc[:, ["item", *text_cols, *tag_cols]].reset_index(drop=True)
        if item_name_column is None:
            item_name_column = next(
                (c for c in text_cols if "title" in c.lower() or "name" in c.lower()), None
            )
        elif item_name_column not in it.columns:
            raise DataError(
                f"item_name_column {item_name_column!r} is not an item column; "
                f"columns present: {list(it.columns)}."
            )

        # ---------------------------------------------------------- users
        us = None
        attr_cols: tuple[str, ...] = ()
        if users is not None:
            _require_columns(users, ("user",), "Users frame")
            us = users.copy()
            us["user"] = _as_str(us["user"])
            us = us.loc[~us["user"].duplicated()]
            if user_attribute_columns is None:
                attr_cols = tuple(c for c in us.columns if c != "user")
            else:
                attr_cols = tuple(user_attribute_columns)
                _require_columns(us, attr_cols, "Users frame")
            for col in attr_cols:
                us[col] = us[col].astype(object).map(
                    lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                )
            extra = pd.unique(inter.loc[~_isin(inter["user"], us["user"]), "user"].to_numpy(dtype=object))
            if len(extra):
                report["users_without_attributes"] = len(extra)
                us = pd.concat([us, pd.DataFrame({"user": extra})], ignore_index=True)
                for col in attr_cols:
                    us[col] = us[col].fillna("")
            us = us.loc[:, ["user", *attr_cols]].reset_index(drop=True)

        # ---------------------------------------------------------- KG
        kg_out = links_out = None
        if kg is not None:
            _require_columns(kg, ("head", "relation", "tail"), "KG frame")
            kg_out = kg.loc[:, ["head", "relation", "tail"]].copy()
            before = len(kg_out)
            kg_out = kg_out.dropna()
            for col in ("head", "relation", "tail"):
                kg_out[col] = _as_str(kg_out[col])
            kg_out = kg_out.loc[(kg_out != "").all(axis=1)]
            kg_out = kg_out.drop_duplicates().reset_index(drop=True)
            report["kg_rows_dropped"] = before - len(kg_out)
        if links is not None:
            _require_columns(links, ("item", "entity"), "Links frame")
            lk = links.loc[:, ["item", "entity"]].dropna().copy()
            before = len(lk)
            lk["item"] = _as_str(lk["item"])
            lk["entity"] = _as_str(lk["entity"])
            known = _isin(lk["item"], it["item"])
            if kg_out is not None:
                known &= _isin(lk["entity"], pd.concat([kg_out["head"], kg_out["tail"]]))
            lk = lk.loc[known]
            lk = lk.loc[~lk["item"].duplicated() & ~lk["entity"].duplicated()].reset_index(drop=True)
            report["link_rows_dropped"] = before - len(lk)
            if report["link_rows_dropped"]:
                log.warning(
                    "dropped %d item-entity links that name an unknown item or entity, or repeat one.",
                    report["link_rows_dropped"],
                )
            links_out = lk

        return cls(
            name=name,
            interactions=inter,
            items=it,
            users=us,
            kg=kg_out,
            links=links_out,
            item_text_columns=text_cols,
            item_tag_columns=tag_cols,
            user_attribute_columns=attr_cols,
            item_name_column=item_name_column,
            report={k: int(v) for k, v in report.items()},
        )

"""User profile texts: attributes plus a short summary of TRAIN history."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from kgrec.text.clean import clean_text
from kgrec.text.templates import HISTORY_FIELDS, TextTemplates, render_segments

__all__ = ["item_display_names", "summarize_history", "write_user_profiles", "default_user_segments",
           "field_label"]


def field_label(column: str, plural: bool = False) -> str:
    """``"occupation" -> "Occupation"``, ``"genre" -> "Genres"`` (plural)."""
    label = column.replace("_", " ").strip().capitalize()
    return label + "s" if plural and not label.endswith("s") else label


def _year_column(dataset) -> str | None:
    return next((c for c in dataset.item_text_columns if "year" in c.lower()), None)


def item_display_names(dataset) -> pd.Series:
    """Cleaned display name per raw item id: the name column plus ``" (year)"`` when a year
    column exists and the name does not already contain it; the raw id without a name."""
    name_col = dataset.item_name_column
    year_col = _year_column(dataset)
    items = dataset.items
    ids = items["item"].to_numpy(dtype=object)
    raw_names = items[name_col].to_numpy(dtype=object) if name_col else ids
    years = items[year_col].to_numpy(dtype=object) if year_col is not None and year_col != name_col else None
    names = []
    for row in range(len(items)):
        name = clean_text(raw_names[row]).text or clean_text(ids[row]).text
        if years is not None:
            year = clean_text(years[row]).text
            if year and name and year not in name:
                name = f"{name} ({year})"
        names.append(name)
    return pd.Series(names, index=items["item"].to_numpy(dtype=object), dtype=object)


def default_user_segments(dataset) -> tuple[str, ...]:
    """``("Age: {age}. ", ..., "Favourite genres: {top_tags}. ", "Liked: {liked_items}.")``."""
    segments = [f"{field_label(c)}: {{{c}}}. " for c in dataset.user_attribute_columns]
    tag_label = " and ".join(field_label(c, plural=True).lower() for c in dataset.item_tag_columns) or "tags"
    segments += [f"Favourite {tag_label}: {{top_tags}}. ", "Liked: {liked_items}."]
    return tuple(segments)


def summarize_history(dataset, train: pd.DataFrame, templates: TextTemplates) -> pd.DataFrame:
    """Per-user TRAIN history summary, columns ``top_tags`` and ``liked_items`` (index: user).

    ``top_tags``: the user's ``history_tags`` most frequent item tags (ties by name);
    ``liked_items``: ``history_items`` item names, highest rating first, then most recent,
    then by id. Only ``train`` is read.

    .. warning::
        Pass ``split.train``; anything else leaks evaluation interactions into profiles.
    """
    cols = ["user", "item"] + [c for c in ("rating", "timestamp") if c in train.columns]
    frame = train[cols]
    if templates.history_min_rating is not None and "rating" in frame.columns:
        frame = frame[frame["rating"] >= templates.history_min_rating]
    out = pd.DataFrame(index=pd.Index(pd.unique(frame["user"].to_numpy(dtype=object)), name="user"),
                       columns=list(HISTORY_FIELDS), dtype=object)
    if frame.empty:
        return out
    if templates.history_tags and dataset.item_tag_columns:
        pieces = []
        for col in dataset.item_tag_columns:
            tags = dataset.items[["item", col]].explode(col).dropna()
            tags = tags.rename(columns={col: "tag"})
            tags["tag"] = tags["tag"].map(lambda v: clean_text(v).text)
            pieces.append(frame[["user", "item"]].merge(tags.dropna(), on="item"))
        user_tags = pd.concat(pieces, ignore_index=True)
        if not user_tags.empty:
            counts = user_tags.groupby(["user", "tag"], sort=False).size().rename("n").reset_index()
            counts = counts.sort_values(["user", "n", "tag"], ascending=[True, False, True], kind="stable")
            top = counts.groupby("user", sort=False).head(templates.history_tags)
            out["top_tags"] = top.groupby("user", sort=False)["tag"].agg(", ".join)
    if templates.history_items:
        keys, ascending = ["user"], [True]
        for col in ("rating", "timestamp"):
            if col in frame.columns:
                keys.append(col)
                ascending.append(False)
        liked = frame.sort_values(keys + ["item"], ascending=ascending + [True], kind="stable")
        liked = liked.groupby("user", sort=False).head(templates.history_items)
        names = item_display_names(dataset)
        liked = liked.assign(name=names.reindex(liked["item"].to_numpy(dtype=object)).to_numpy(dtype=object))
        out["liked_items"] = liked.dropna(subset=["name"]).groupby("user", sort=False)["name"].agg(", ".join)
    return out


def write_user_profiles(dataset, user_ids: Sequence[str], train: pd.DataFrame | None,
                        templates: TextTemplates) -> tuple[list[str | None], np.ndarray]:
    """Profile text per user id (``None`` when nothing is known) and a ``repaired`` mask.

    Args:
        dataset: The dataset (user attributes, item names and tags).
        user_ids: Raw user ids in output order, length ``n``.
        train: TRAIN interactions (``split.train``), or ``None`` for attributes only.
        templates: Text templates.

    Returns:
        ``(texts, repaired)`` with ``len(texts) == n`` and ``repaired`` ``bool`` ``(n,)``.
    """
    segments = templates.user or default_user_segments(dataset)
    attr_cols = list(dataset.user_attribute_columns) if dataset.users is not None else []
    users = dataset.users
    history = (summarize_history(dataset, train, templates) if templates.user_history and train is not None
               else pd.DataFrame(columns=list(HISTORY_FIELDS), dtype=object))
    attributes: dict[str, tuple] = {}
    if users is not None:
        columns = [users[c].to_numpy(dtype=object) for c in attr_cols]
        attributes = {uid: tuple(col[k] for col in columns) for k, uid in enumerate(users["user"].tolist())}
    summaries = {uid: (tags if isinstance(tags, str) else None, liked if isinstance(liked, str) else None)
                 for uid, tags, liked in zip(history.index, history["top_tags"], history["liked_items"])}
    texts: list[str | None] = []
    repaired = np.zeros(len(user_ids), dtype=bool)
    blank = {c: None for c in dataset.user_attribute_columns}
    for row, uid in enumerate(user_ids):
        values: dict[str, str | None] = dict(blank)
        values["user"] = clean_text(uid).text
        for col, value in zip(attr_cols, attributes.get(uid, ())):
            cleaned = clean_text(value)
            values[col] = cleaned.text
            repaired[row] |= cleaned.repaired
        values["top_tags"], values["liked_items"] = summaries.get(uid, (None, None))
        texts.append(render_segments(segments, values, what="user"))
    return texts, repaired

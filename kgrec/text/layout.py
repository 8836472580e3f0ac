"""How a dataset's node texts are laid out, kept with a trained model to write new nodes' texts alike."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Mapping, Sequence

from kgrec.text.node_texts import default_item_segments
from kgrec.text.profiles import default_user_segments
from kgrec.text.templates import render_segments

__all__ = ["TextLayout"]


def _fields(segment: str) -> list[str]:
    return [f[1] for f in string.Formatter().parse(segment) if f[1]]


@dataclass(frozen=True)
class TextLayout:
    """The default text templates of a dataset and the columns they read.

    A trained model keeps this (in :class:`~kgrec.graph.GraphData` and its checkpoint) so a
    user or item added after training gets a text written the way the training ones were
    (``"Orbit. Genres: Sci-Fi"``, ``"Age: 25-34. Favourite genres: Drama. Liked: Heat (1995)."``)
    without the dataset.

    Attributes:
        item_segments: Item template segments (:func:`~kgrec.text.default_item_segments`).
        user_segments: User template segments (empty: users have no text).
        item_tag_columns: Item tag columns (tags are ``column=value``).
        user_attribute_columns: User attribute columns.
    """

    item_segments: tuple[str, ...] = ()
    user_segments: tuple[str, ...] = ()
    item_tag_columns: tuple[str, ...] = ()
    user_attribute_columns: tuple[str, ...] = ()

    @classmethod
    def of(cls, dataset) -> "TextLayout":
        """The layout :mod:`kgrec.text` uses for ``dataset`` by default."""
        return cls(tuple(default_item_segments(dataset)), tuple(default_user_segments(dataset)),
                   tuple(dataset.item_tag_columns), tuple(dataset.user_attribute_columns))

    def to_dict(self) -> dict[str, list[str]]:
        """Plain lists (what a checkpoint stores)."""
        return {k: list(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, values: Mapping[str, Sequence[str]]) -> "TextLayout":
        return cls(**{k: tuple(values.get(k, ())) for k in cls.__dataclass_fields__})

    def item_text(self, name: str, tags: Sequence[str] = ()) -> str:
        """A new item's text from its display name and ``column=value`` tags."""
        segments = self.item_segments or ("{title}",)
        values: dict[str, str | None] = {f: None for segment in segments for f in _fields(segment)}
        first = _fields(segments[0])
        values[first[0] if first else "title"] = name
        for col in self.item_tag_columns:
            chosen = [t.split("=", 1)[1] for t in tags if t.startswith(col + "=")]
            values[col] = ", ".join(chosen) or None
        return render_segments(segments, values, what="item") or name

    def user_text(self, attributes: Mapping[str, str], top_tags: Sequence[str] = (),
                  liked_names: Sequence[str] = ()) -> str | None:
        """A new user's profile from attributes, favourite tag values and liked item names;
        ``None`` where users have no text."""
        if not self.user_segments:
            return None
        values: dict[str, str | None] = {c: None for c in self.user_attribute_columns}
        values.update({str(k): str(v) for k, v in attributes.items()})
        values["user"] = None
        values["top_tags"] = ", ".join(top_tags) or None
        values["liked_items"] = ", ".join(liked_names) or None
        return render_segments(self.user_segments, values, what="user")

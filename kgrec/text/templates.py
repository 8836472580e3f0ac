"""How each node type's text is written: configurable segment templates."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from kgrec.errors import ConfigError

__all__ = ["TextTemplates", "render_segments", "HISTORY_FIELDS"]

#: Fields a user template may use besides the user's attribute columns (TRAIN history only).
HISTORY_FIELDS = ("top_tags", "liked_items")
_FALLBACKS = ("zeros", "id")


def _fields(segment: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(segment) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"Text template segment {segment!r} is not a valid format string: {exc}.") from None


def render_segments(segments: Sequence[str], values: Mapping[str, str | None], *,
                    dedupe: bool = False, what: str = "text") -> str | None:
    """Concatenate template segments, dropping each segment that has a missing field.

    Args:
        segments: Format strings such as ``"{title}"``, ``" ({year})"``, ``". Genres: {genre}"``.
        values: Field values; ``None`` (or a missing key that is a known column) drops the segment.
        dedupe: Also drop a segment whose field value already appears in the text so far
            (``"Toy Story (1995)"`` followed by ``" ({year})"``).
        what: Node type, for error messages.

    Returns:
        The text with leading punctuation stripped, or ``None`` when nothing is left.

    Raises:
        ConfigError: a segment names a field that is not in ``values``.
    """
    out = ""
    for segment in segments:
        names = _fields(segment)
        unknown = [n for n in names if n not in values]
        if unknown:
            raise ConfigError(
                f"The {what} template segment {segment!r} uses unknown field(s) {unknown}; "
                f"valid fields are {sorted(values)}."
            )
        field_values = {n: values[n] for n in names}
        if any(v is None for v in field_values.values()):
            continue
        if dedupe and names and all(v in out for v in field_values.values()):
            continue
        out += segment.format(**field_values)
    out = out.strip().lstrip(".,;: ").strip()
    return out or None


@dataclass(frozen=True)
class TextTemplates:
    """Templates for item, user and tag texts.

    A template is a sequence of ``str.format`` segments that are concatenated; a segment
    whose field is missing or empty for a node is dropped, so ``("{title}", " ({year})")``
    gives ``"Heat"`` for an item without a year. Tuple cells (genres) are joined with ``", "``.

    Args:
        item: Item segments over item columns (``item`` is the raw id). ``None``: built from
            the dataset — name, ``(year)``, other text columns, then each tag column, e.g.
            ``"Toy Story (1995). Genres: Animation, Children's, Comedy"``.
        user: User segments over user attribute columns, ``top_tags`` and ``liked_items``
            (the TRAIN history summary). ``None``: ``"Age: 25-34. Gender: M. Occupation:
            writer. Favourite genres: Comedy, Drama. Liked: Heat (1995), Fargo (1996)."``
        tag: Tag template over ``field`` and ``value`` (tag ids are ``field=value``).
        user_history: Fill ``top_tags``/``liked_items`` from ``split.train``.
        history_tags: How many of a user's most frequent TRAIN tags to name.
        history_items: How many liked TRAIN items to name (highest rating, then most recent).
        history_min_rating: Only TRAIN interactions rated at least this count as liked
            (ignored when interactions carry no rating). ``None``: all TRAIN interactions.
        fallback: Feature of a node whose text is missing or empty: ``"zeros"`` (a zero
            row; the model's id embedding carries it) or ``"id"`` (encode ``"<type> <raw id>"``).
        max_chars: Texts are cut to this many characters before tokenisation (counted as
            truncated); guards against pathological cells.

    .. warning::
        With ``user_history=True`` a profile is written from the interactions you pass as
        ``split.train``. Pass a real split: profiles written from ``dataset.interactions``
        would leak valid/test items into the features.
    """

    item: tuple[str, ...] | None = None
    user: tuple[str, ...] | None = None
    tag: str = "{field}: {value}"
    user_history: bool = True
    history_tags: int = 3
    history_items: int = 3
    history_min_rating: float | None = None
    fallback: Literal["zeros", "id"] = "zeros"
    max_chars: int = 4000

    def __post_init__(self) -> None:
        for name in ("item", "user"):
            value = getattr(self, name)
            if isinstance(value, str):  # a single segment
                object.__setattr__(self, name, (value,))
            elif value is not None:
                if not all(isinstance(s, str) for s in value):
                    raise ConfigError(f"TextTemplates '{name}' must be a sequence of strings; got {value!r}.")
                object.__setattr__(self, name, tuple(value))
        for name in ("item", "user"):
            for segment in getattr(self, name) or ():
                _fields(segment)
        tag_fields = set(_fields(self.tag))
        if not tag_fields <= {"field", "value"}:
            raise ConfigError(
                f"TextTemplates 'tag' may use the fields {{'field', 'value'}}; got {sorted(tag_fields)} in {self.tag!r}."
            )
        for name in ("history_tags", "history_items"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"TextTemplates '{name}' must be an int >= 0; got {value!r}.")
        if self.fallback not in _FALLBACKS:
            raise ConfigError(f"TextTemplates 'fallback' must be one of {set(_FALLBACKS)}; got {self.fallback!r}.")
        if not isinstance(self.max_chars, int) or self.max_chars < 1:
            raise ConfigError(f"TextTemplates 'max_chars' must be a positive int; got {self.max_chars!r}.")

"""Turn raw cell values (strings, bytes, numbers, tag tuples, NaN) into clean text."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["CleanText", "clean_text"]

_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class CleanText(NamedTuple):
    """Result of :func:`clean_text`.

    Attributes:
        text: The cleaned text, or ``None`` when the value is missing, NaN or empty.
        repaired: ``True`` when undecodable bytes or control characters were repaired.
    """

    text: str | None
    repaired: bool


def _decode_bytes(raw: bytes) -> tuple[str, bool]:
    """UTF-8 first; on failure Latin-1, which MovieLens-era files use and which never fails."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, bytes, bytearray)):
        return False
    result = pd.isna(value)  # NaN, pd.NA, NaT, np.nan
    return bool(result) if isinstance(result, (bool, np.bool_)) else False


def clean_text(value: Any) -> CleanText:
    """Clean one cell value into a single-line string.

    * ``None``, NaN, ``pd.NA`` and strings that are empty after cleaning give ``text=None``.
    * ``bytes`` are decoded as UTF-8, falling back to Latin-1 (``repaired=True``).
    * Strings holding lone surrogates (what ``errors="surrogateescape"`` makes of
      undecodable bytes) are re-decoded the same way; any surrogate left becomes U+FFFD.
      Tokenizers reject surrogates, so this must happen before encoding.
    * Control characters are dropped, whitespace runs collapse to one space.
    * Integral floats print without ``.0`` (``1995.0 -> "1995"``); tuples and lists
      (tag cells) are joined with ``", "``.

    Args:
        value: Any cell value.

    Returns:
        :class:`CleanText` ``(text, repaired)``.
    """
    if isinstance(value, (list, tuple)):
        parts = [clean_text(v) for v in value]
        texts = [p.text for p in parts if p.text is not None]
        return CleanText(", ".join(texts) if texts else None, any(p.repaired for p in parts))
    if _is_missing(value):
        return CleanText(None, False)
    repaired = False
    if isinstance(value, (bytes, bytearray)):
        text, repaired = _decode_bytes(bytes(value))
    elif isinstance(value, str):
        text = value
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    if _SURROGATE.search(text):
        repaired = True
        try:
            text, _ = _decode_bytes(text.encode("utf-8", errors="surrogateescape"))
        except UnicodeEncodeError:  # surrogates that never were bytes
            pass
        text = _SURROGATE.sub("\ufffd", text)
    if not text.isprintable():  # drop control / format characters, keep whitespace
        kept = "".join(
            ch if ch.isspace() or unicodedata.category(ch)[0] != "C"
            else (" " if unicodedata.category(ch) == "Cc" else "")
            for ch in text
        )
        repaired = repaired or kept != text
        text = kept
    cleaned = _SPACE.sub(" ", text).strip()
    return CleanText(cleaned or None, repaired)

"""Files: atomic writes (every cache, checkpoint and result kgrec writes goes through here), the
checkpoint format tags, and one-line error reasons.

A write lands in a temporary file in the target's directory and is moved into place
with :func:`os.replace`, so a reader sees the old file or the new one, never half of
one; on any error the temporary file is removed.
"""

from __future__ import annotations

import os
import re
import tempfile
import textwrap
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_text", "one_line", "CHECKPOINT_FORMAT", "READABLE_FORMATS"]

#: The format tag of every checkpoint this kgrec writes (a recommender's ``save``, ``kgrec fit``).
CHECKPOINT_FORMAT = "kgrec-recommender-v2"
#: Formats this kgrec reads; v1 is kgrec 0.1's ``save`` (same layout; kgrec 0.1's KGRec files
#: kept embeddings only and are refused with what to do).
READABLE_FORMATS = ("kgrec-recommender-v1", CHECKPOINT_FORMAT)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], binary: bool = True) -> Path:
    """Call ``write(handle)`` on a temporary file, then move it to ``path`` atomically.

    Args:
        path: Destination; its parent directory is created.
        write: Writes the content to the open handle.
        binary: Open the handle in binary (``"wb"``) or text (``"w"``, UTF-8) mode.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text), binary=False)


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message as one line of at most ``limit`` characters: terminal colour codes
    dropped, whitespace collapsed and the text cut at a word (``textwrap.shorten``)."""
    text = textwrap.shorten(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)), width=limit, placeholder=" …")
    return text or type(exc).__name__

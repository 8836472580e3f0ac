"""Exception types raised by kgrec.

Library code raises these with messages that name the offending file,
column, argument or value and say what would be valid. The ``kgrec`` command
line prints ``str(error)`` on one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

__all__ = ["KGRecError", "DataError", "ConfigError", "UnknownIdError"]


class KGRecError(Exception):
    """Base class of every error kgrec raises on purpose."""


class DataError(KGRecError, ValueError):
    """A data file, frame, column or value is missing or malformed."""


class ConfigError(KGRecError, ValueError):
    """An argument or configuration value is outside its valid set."""


class UnknownIdError(KGRecError, KeyError):
    """A raw user, item or tag id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""

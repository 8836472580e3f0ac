"""How kgrec's hyper-parameter groups are given: a dataclass, a mapping of its fields, or nothing.

Every group (:class:`~kgrec.data.DataConfig`, :class:`~kgrec.graph.InputConfig`,
:class:`~kgrec.nn.GNNConfig`, the training groups of :mod:`kgrec.training.config`) is a
frozen dataclass that validates itself, defined once and read by the library class, the
Lightning modules and the YAML alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from kgrec.errors import ConfigError

__all__ = ["coerce_config"]

T = TypeVar("T")


def coerce_config(cls: type[T], value: Any, name: str) -> T:
    """``value`` as a ``cls``: an instance as is, a mapping of its fields, or ``None`` for the defaults.

    Raises:
        ConfigError: a key that is not a field of ``cls`` (the valid ones are named), or a
            value of another type.
    """
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(f"{name} has no field(s) {unknown}; valid fields: {', '.join(fields)}.")
        return cls(**value)
    raise ConfigError(f"{name} must be a {cls.__name__} or a mapping of its fields; got {type(value).__name__}.")

"""A text encoder as plain data (what a checkpoint records), and back.

A trained model must embed a new item's or user's text with the encoder its features
came from. The checkpoint stores ``{"class_path", "init_args"}`` read off the encoder's
``__init__`` signature; loading rebuilds it, importing only kgrec's own encoder classes
and never with ``trust_remote_code`` (a checkpoint is data: it must not make a process
download and run a model's code).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from kgrec.errors import ConfigError
from kgrec.text.base import BaseTextEncoder

__all__ = ["encoder_spec", "encoder_from_spec", "DEFAULT_ENCODER_SPEC"]

_PLAIN = (str, int, float, bool, type(None))

#: The spec of ``TextEncoder()``: the packaged all-MiniLM-L6-v2.
DEFAULT_ENCODER_SPEC = {"class_path": "kgrec.text.encoder.TextEncoder", "init_args": {}}


def encoder_spec(encoder: BaseTextEncoder | None) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of a text encoder, from its ``__init__`` signature.

    Device and dtype are left to the loading machine (``None`` / ``"auto"``); arguments
    that are not plain values are left at their defaults.
    """
    if encoder is None:
        return None
    args = {}
    for name, param in inspect.signature(type(encoder).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = getattr(encoder, name, param.default)
        if name == "device":
            value = None
        elif name == "dtype":
            value = "auto"
        elif name == "model" and value is not None:
            value = str(value)
        if isinstance(value, _PLAIN):
            args[name] = value
    return {"class_path": f"{type(encoder).__module__}.{type(encoder).__qualname__}", "init_args": args}


def encoder_from_spec(spec: dict[str, Any] | None) -> BaseTextEncoder | None:
    """The text encoder a spec describes; only classes under :mod:`kgrec.text` are imported.

    Raises:
        ConfigError: the spec names a class outside :mod:`kgrec.text`, one that is not a
            :class:`~kgrec.text.BaseTextEncoder`, or asks for ``trust_remote_code`` (pass
            the encoder yourself instead: ``kgrec.load(path, text_encoder=...)``).
    """
    if spec is None:
        return None
    path = str(spec.get("class_path", ""))
    module, _, name = path.rpartition(".")
    if not module.startswith("kgrec.text"):
        raise ConfigError(
            f"the checkpoint's text encoder is {path!r}, which kgrec does not import from a checkpoint; "
            "pass text_encoder=... to kgrec.load."
        )
    klass = getattr(importlib.import_module(module), name, None)
    if not (isinstance(klass, type) and issubclass(klass, BaseTextEncoder)):
        raise ConfigError(f"the checkpoint's text encoder {path!r} is not a kgrec text encoder.")
    init_args = dict(spec.get("init_args", {}))
    if init_args.get("trust_remote_code"):
        raise ConfigError(
            f"the checkpoint's text encoder ({init_args.get('model')!r}) asks for trust_remote_code=True, "
            "which kgrec never takes from a file; build the encoder yourself and pass "
            "text_encoder=... to kgrec.load."
        )
    return klass(**init_args)

"""The interface every kgrec text encoder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
from torch import Tensor

__all__ = ["BaseTextEncoder"]


class BaseTextEncoder(ABC):
    """Maps strings to fixed-size vectors.

    Implementations: :class:`~kgrec.text.TextEncoder` (Hugging Face models) and
    :class:`~kgrec.text.HashingTextEncoder` (deterministic, model-free; tests and
    ablations). :class:`~kgrec.text.EmbeddingCache` and
    :func:`~kgrec.text.encode_node_texts` work with any subclass.
    """

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the vectors (model, revision, pooling, max length, ...).

        Must be cheap (no model load where avoidable) and JSON-serialisable; the
        embedding cache is keyed by it, so two encoders with equal fingerprints must
        produce the same vectors for the same text.
        """

    @abstractmethod
    def encode(self, texts: Sequence[str], show_progress: bool | None = None) -> Tensor:
        """Encode ``texts``.

        Args:
            texts: Non-empty strings, length ``n``.
            show_progress: Show a progress bar; ``None`` shows one for long inputs.

        Returns:
            ``float32`` CPU tensor of shape ``(n, dim)``.
        """

    @abstractmethod
    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """Which texts exceed the encoder's input length and are cut, ``bool`` ``(n,)``."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Output dimension (may load the model)."""

    def expected_dim(self) -> int | None:
        """Output dimension if known without loading a model, else ``None``."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.fingerprint().items())
        return f"{type(self).__name__}({args})"

"""A deterministic, model-free text encoder (feature hashing of words and word pairs)."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from kgrec.errors import ConfigError
from kgrec.text.base import BaseTextEncoder

__all__ = ["HashingTextEncoder"]

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingTextEncoder(BaseTextEncoder):
    r"""Signed feature hashing of lower-cased words and adjacent word pairs, L2-normalised.

    Each word :math:`w` adds :math:`s(w)\,e_{h(w) \bmod d}` with a BLAKE2 hash :math:`h`
    and sign :math:`s`; equal texts give equal vectors on every machine, and texts
    sharing words have positive cosine. Written here (rather than scikit-learn's
    ``HashingVectorizer``) so that it needs no fitted state, returns torch tensors and
    implements :class:`~kgrec.text.BaseTextEncoder` with truncation counting. It is the
    test double for :class:`~kgrec.text.TextEncoder` and a no-model ablation.

    Args:
        dim: Output dimension ``d``.
        max_length: Words kept per text; longer texts are truncated (and reported).
        seed: Hash salt; different seeds give unrelated vectors.
        normalize: L2-normalise outputs.

    Attributes:
        num_encoded: Total number of texts passed to :meth:`encode` so far (tests use it
            to prove that a cached run encodes nothing).
    """

    def __init__(self, dim: int = 64, max_length: int = 128, seed: int = 0, normalize: bool = True) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"HashingTextEncoder 'dim' must be a positive int; got {dim!r}.")
        if not isinstance(max_length, int) or max_length < 1:
            raise ConfigError(f"HashingTextEncoder 'max_length' must be a positive int; got {max_length!r}.")
        self._dim = dim
        self.max_length = max_length
        self.seed = seed
        self.normalize = normalize
        self.num_encoded = 0

    def fingerprint(self) -> dict[str, Any]:
        return {
            "encoder": "hashing",
            "dim": self._dim,
            "max_length": self.max_length,
            "seed": self.seed,
            "normalize": self.normalize,
        }

    @property
    def dim(self) -> int:
        return self._dim

    def expected_dim(self) -> int | None:
        return self._dim

    def _words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def _bucket(self, token: str) -> tuple[int, float]:
        key = f"kgrec-hashing-{self.seed}".encode()
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8, key=key).digest()
        value = int.from_bytes(digest, "little")
        return value % self._dim, 1.0 if (value >> 63) & 1 else -1.0

    def encode(self, texts: Sequence[str], show_progress: bool | None = None) -> Tensor:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = self._words(text)[: self.max_length]
            for token in words + [a + " " + b for a, b in zip(words, words[1:])]:
                col, sign = self._bucket(token)
                out[row, col] += sign
        self.num_encoded += len(texts)
        emb = torch.from_numpy(out)
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, dim=1)
        return emb

    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([len(self._words(t)) > self.max_length for t in texts], dtype=bool)

"""Pool token embeddings of a transformer into one vector per text."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from kgrec.errors import ConfigError

__all__ = ["POOLING_MODES", "pool_tokens"]

#: Pooling modes :func:`pool_tokens` implements.
POOLING_MODES = ("mean", "cls", "last_token")


def pool_tokens(hidden: Tensor, attention_mask: Tensor, mode: Literal["mean", "cls", "last_token"]) -> Tensor:
    r"""Pool token embeddings, padding-side agnostic.

    * ``mean``: :math:`\sum_t m_t h_t / \max(1, \sum_t m_t)` (sentence-transformers' mean).
    * ``cls``: the first attended token (``[CLS]`` of BERT-style encoders).
    * ``last_token``: the last attended token, what decoder-LLM embedders
      (Qwen3-Embedding, e5-mistral) are trained with; correct for left *and* right padding.

    Args:
        hidden: Token embeddings, shape ``(batch, seq_len, hidden)``.
        attention_mask: ``1`` for real tokens, ``0`` for padding, shape ``(batch, seq_len)``.
        mode: One of :data:`POOLING_MODES`.

    Returns:
        Pooled embeddings ``(batch, hidden)`` in ``hidden``'s dtype.
    """
    if mode not in POOLING_MODES:
        raise ConfigError(f"The 'pooling' parameter must be one of {set(POOLING_MODES)}; got {mode!r}.")
    mask = attention_mask.to(hidden.device)
    if mode == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    rows = torch.arange(hidden.size(0), device=hidden.device)
    if mode == "cls":
        first = mask.long().argmax(dim=1)
        return hidden[rows, first]
    last = mask.size(1) - 1 - mask.long().flip(1).argmax(dim=1)
    return hidden[rows, last]

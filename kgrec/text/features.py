"""Per-node-type text embeddings, ready for :func:`kgrec.graph.build_graph`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from kgrec.errors import ConfigError
from kgrec.text.base import BaseTextEncoder
from kgrec.text.cache import EmbeddingCache
from kgrec.text.node_texts import NodeTexts, write_node_texts
from kgrec.text.templates import TextTemplates

__all__ = ["TextFeatures", "TextReport", "encode_node_texts"]

log = logging.getLogger("kgrec")

_FEATURE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class TextReport:
    """What happened while writing and encoding node texts (counts per node type).

    Attributes:
        nodes: Nodes per node type.
        missing: Nodes with empty, missing or NaN text, given the ``fallback`` feature.
        repaired: Nodes whose input had undecodable bytes or control characters.
        truncated: Nodes whose text was cut (``max_chars`` or the encoder's token limit).
        fallback: The fallback used for missing texts (``"zeros"`` or ``"id"``).
        num_cached: Distinct texts read from the cache.
        num_encoded: Distinct texts the encoder encoded.
        encoder: ``repr`` of the encoder.
    """

    nodes: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)
    fallback: str = "zeros"
    num_cached: int = 0
    num_encoded: int = 0
    encoder: str = ""

    def has_problems(self) -> bool:
        return any(sum(d.values()) for d in (self.missing, self.repaired, self.truncated))

    def __str__(self) -> str:
        lines = [f"Text features from {self.encoder}: {self.num_encoded} texts encoded, "
                 f"{self.num_cached} from cache"]
        for nt, n in self.nodes.items():
            lines.append(f"  {nt:<6} {n:>8} nodes, {self.missing.get(nt, 0)} without text "
                         f"(fallback {self.fallback!r}), {self.truncated.get(nt, 0)} truncated, "
                         f"{self.repaired.get(nt, 0)} repaired")
        return "\n".join(lines)


class TextFeatures(dict):
    """``node_type -> Tensor (num_nodes, dim)``, a plain ``dict`` for
    :func:`~kgrec.graph.build_graph`, carrying ``report`` (:class:`TextReport`) and
    ``texts`` (:class:`~kgrec.text.NodeTexts`)."""

    def __init__(self, features: Mapping[str, Tensor], report: TextReport, texts: NodeTexts) -> None:
        super().__init__(features)
        self.report = report
        self.texts = texts


def encode_node_texts(
    dataset,
    split,
    vocabs: Mapping,
    encoder: BaseTextEncoder,
    templates: TextTemplates | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    dtype: torch.dtype = torch.float32,
    show_progress: bool | None = None,
) -> TextFeatures:
    """Text embeddings of every ``user``, ``item`` and ``tag`` node, in vocabulary order.

    Texts come from :func:`~kgrec.text.write_node_texts`; identical texts are encoded once;
    embeddings come from the :class:`~kgrec.text.EmbeddingCache` where present. KG entities
    get no entry (the model gives them learnable embeddings).

    Args:
        dataset: A :class:`~kgrec.data.Dataset`.
        split: A :class:`~kgrec.data.split.Split`; user profiles read ``split.train`` only.
        vocabs: ``node_type -> Vocab`` from :func:`kgrec.graph.build_vocabs`.
        encoder: Any :class:`~kgrec.text.BaseTextEncoder`, e.g. :class:`~kgrec.text.TextEncoder`.
        templates: Text templates; default :class:`~kgrec.text.TextTemplates()`.
        cache_dir: Embedding cache root; ``None``: ``$KGREC_CACHE_DIR/text`` or
            ``~/.cache/kgrec/text``.
        use_cache: Read and write the embedding cache.
        dtype: Feature dtype: ``torch.float32``, or ``torch.float16``/``torch.bfloat16`` to
            halve the memory of large graphs.
        show_progress: Progress bar while encoding; ``None``: for 1000 texts or more.

    Returns:
        :class:`TextFeatures`: ``{"user": (num_users, dim), "item": (num_items, dim),
        "tag": (num_tags, dim)}`` (those present in ``vocabs``), plus ``.report``.

    .. warning::
        Profiles read ``split.train``; features built with a split are only valid for that
        split (valid/test never reach them, so a profile does not change when they do).
    """
    if dtype not in _FEATURE_DTYPES:
        raise ConfigError(f"The 'dtype' parameter must be one of {list(_FEATURE_DTYPES)}; got {dtype!r}.")
    templates = templates or TextTemplates()
    node_texts = write_node_texts(dataset, split, vocabs, templates)

    report = TextReport(fallback=templates.fallback, encoder=repr(encoder))
    to_encode: dict[str, list[str | None]] = {}
    for nt, texts in node_texts.texts.items():
        missing = node_texts.missing(nt)
        report.nodes[nt] = len(texts)
        report.missing[nt] = int(missing.sum())
        report.repaired[nt] = int(node_texts.repaired[nt].sum())
        if templates.fallback == "id":
            ids = vocabs[nt].ids
            texts = [t if t is not None else f"{nt} {ids[i]}" for i, t in enumerate(texts)]
        to_encode[nt] = texts

    flat = [t for texts in to_encode.values() for t in texts if t is not None]
    if use_cache:
        result = EmbeddingCache(cache_dir).encode(encoder, flat, show_progress=show_progress)
        emb, truncated = result.embeddings, result.truncated
        report.num_cached, report.num_encoded = result.num_cached, result.num_encoded
    else:
        unique = list(dict.fromkeys(flat))
        position = {t: i for i, t in enumerate(unique)}
        unique_emb = encoder.encode(unique, show_progress=show_progress) if unique else None
        unique_trunc = encoder.truncated(unique) if unique else np.zeros(0, dtype=bool)
        rows = np.fromiter((position[t] for t in flat), dtype=np.int64, count=len(flat))
        emb = unique_emb[torch.from_numpy(rows)] if unique else torch.zeros(0, 0)
        truncated = np.asarray(unique_trunc, dtype=bool)[rows]
        report.num_encoded = len(unique)

    dim = int(emb.shape[1]) if len(flat) else encoder.dim
    features: dict[str, Tensor] = {}
    offset = 0
    for nt, texts in to_encode.items():
        has_text = np.array([t is not None for t in texts], dtype=bool)
        n_text = int(has_text.sum())
        x = torch.zeros(len(texts), dim, dtype=torch.float32)
        x[torch.from_numpy(has_text)] = emb[offset:offset + n_text]
        cut = np.zeros(len(texts), dtype=bool)
        cut[has_text] = truncated[offset:offset + n_text]
        report.truncated[nt] = int((cut | node_texts.clipped[nt]).sum())
        offset += n_text
        features[nt] = x.to(dtype)
    if report.has_problems():
        log.warning("%s", report)
    else:
        log.info("%s", report)
    return TextFeatures(features, report, node_texts)

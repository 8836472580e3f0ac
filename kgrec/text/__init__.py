"""Text modality: node texts, language-model embeddings and their on-disk cache.

Typical use::

    from kgrec.graph import build_graph, build_vocabs
    from kgrec.text import TextEncoder, encode_node_texts

    vocabs = build_vocabs(dataset)
    x = encode_node_texts(dataset, split, vocabs, TextEncoder())   # cached on disk
    graph = build_graph(dataset, split, text_features=x, vocabs=vocabs)

(:func:`kgrec.world.build_world` does all of this, as every kgrec entry point does.)

Importing this package does not import ``transformers``; models load on first use.
"""

from kgrec.text.base import BaseTextEncoder
from kgrec.text.cache import CachedEncoding, EmbeddingCache, default_cache_dir, text_hash
from kgrec.text.clean import CleanText, clean_text
from kgrec.text.encoder import PACKAGED_MODEL, TextEncoder, packaged_model_path
from kgrec.text.features import TextFeatures, TextReport, encode_node_texts
from kgrec.text.hashing import HashingTextEncoder
from kgrec.text.layout import TextLayout
from kgrec.text.node_texts import NodeTexts, default_item_segments, write_item_texts, write_node_texts
from kgrec.text.pooling import POOLING_MODES, pool_tokens
from kgrec.text.profiles import summarize_history, write_user_profiles
from kgrec.text.spec import DEFAULT_ENCODER_SPEC, encoder_from_spec, encoder_spec
from kgrec.text.templates import TextTemplates

__all__ = [
    "BaseTextEncoder",
    "DEFAULT_ENCODER_SPEC",
    "CachedEncoding",
    "CleanText",
    "EmbeddingCache",
    "HashingTextEncoder",
    "NodeTexts",
    "PACKAGED_MODEL",
    "POOLING_MODES",
    "TextEncoder",
    "TextFeatures",
    "TextLayout",
    "TextReport",
    "TextTemplates",
    "clean_text",
    "default_cache_dir",
    "default_item_segments",
    "encode_node_texts",
    "encoder_from_spec",
    "encoder_spec",
    "packaged_model_path",
    "pool_tokens",
    "summarize_history",
    "text_hash",
    "write_item_texts",
    "write_node_texts",
    "write_user_profiles",
]

"""Write one text per node (items, tags, users) in vocabulary order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from kgrec.errors import ConfigError
from kgrec.text.clean import clean_text
from kgrec.text.profiles import field_label, write_user_profiles
from kgrec.text.templates import TextTemplates, render_segments

__all__ = ["NodeTexts", "default_item_segments", "write_item_texts", "write_node_texts"]

#: Node types that get text; others (KG ``entity``) get none and learn id embeddings.
TEXT_NODE_TYPES = ("user", "item", "tag")


@dataclass
class NodeTexts:
    """Texts per node type, rows in ``vocabs[node_type]`` order.

    Attributes:
        texts: ``node_type -> list`` of texts; ``None`` where a node has no text.
        repaired: ``node_type -> bool (num_nodes,)``: undecodable bytes or control
            characters were repaired in the node's input.
        clipped: ``node_type -> bool (num_nodes,)``: the text was cut at ``max_chars``.
    """

    texts: dict[str, list[str | None]]
    repaired: dict[str, np.ndarray] = field(default_factory=dict)
    clipped: dict[str, np.ndarray] = field(default_factory=dict)

    def missing(self, node_type: str) -> np.ndarray:
        """``bool (num_nodes,)``: nodes of ``node_type`` without text."""
        return np.array([t is None for t in self.texts[node_type]], dtype=bool)


def default_item_segments(dataset) -> tuple[str, ...]:
    """Name, ``" ({year})"``, ``". <Column>: {col}"`` per other text column, then
    ``". <Tags>: {tag_col}"`` per tag column (rendered with de-duplication)."""
    text_cols = list(dataset.item_text_columns)
    name = dataset.item_name_column or (text_cols[0] if text_cols else None)
    segments = [f"{{{name}}}"] if name else []
    for col in text_cols:
        if col == name:
            continue
        segments.append(f" ({{{col}}})" if "year" in col.lower() else f". {field_label(col)}: {{{col}}}")
    segments += [f". {field_label(col, plural=True)}: {{{col}}}" for col in dataset.item_tag_columns]
    return tuple(segments)


def _item_texts(dataset, items, item_ids, templates: TextTemplates) -> tuple[list[str | None], np.ndarray]:
    auto = templates.item is None
    segments = default_item_segments(dataset) if auto else templates.item
    records = items.set_index("item", drop=False).reindex(item_ids)
    columns = list(records.columns)
    texts, repaired = [], np.zeros(len(item_ids), dtype=bool)
    for row, record in enumerate(records.itertuples(index=False, name=None)):
        values: dict[str, str | None] = {}
        for col, value in zip(columns, record):
            cleaned = clean_text(value)
            values[col] = cleaned.text
            repaired[row] |= cleaned.repaired
        texts.append(render_segments(segments, values, dedupe=auto, what="item"))
    return texts, repaired


def write_item_texts(dataset, items, templates: TextTemplates | None = None) -> list[str | None]:
    """Texts of item rows with ``dataset``'s columns — e.g. brand-new items for cold-start.

    Args:
        dataset: The dataset whose item columns and templates define the text.
        items: A frame with column ``item`` and the item text/tag columns, ``n`` rows.
        templates: Text templates; default :class:`TextTemplates()`.

    Returns:
        ``n`` texts (``None`` where an item has no text), in ``items`` row order.
    """
    templates = templates or TextTemplates()
    if "item" not in items.columns:
        raise ConfigError(f"write_item_texts needs an 'item' column; got columns {list(items.columns)}.")
    ids = items["item"].to_numpy(dtype=object)
    if len(set(ids.tolist())) != len(ids):
        raise ConfigError("write_item_texts needs unique values in the 'item' column.")
    texts = _item_texts(dataset, items, list(ids), templates)[0]
    return [t[: templates.max_chars] if t is not None else None for t in texts]


def _tag_texts(tag_ids, templates: TextTemplates) -> tuple[list[str | None], np.ndarray]:
    texts, repaired = [], np.zeros(len(tag_ids), dtype=bool)
    for row, tag in enumerate(tag_ids):
        raw_field, sep, raw_value = str(tag).partition("=")
        fld, val = clean_text(raw_field), clean_text(raw_value if sep else None)
        repaired[row] = fld.repaired or val.repaired
        texts.append(render_segments((templates.tag,), {"field": fld.text, "value": val.text}, what="tag"))
    return texts, repaired


def write_node_texts(dataset, split, vocabs: Mapping, templates: TextTemplates | None = None) -> NodeTexts:
    """Write the text of every ``user``, ``item`` and ``tag`` node.

    Items: their columns through ``templates.item``; tags (``field=value`` ids): ``"field:
    value"``; users: attributes plus, with ``templates.user_history``, a summary of
    ``split.train`` (top tags, liked items). KG entities get no text.

    Args:
        dataset: A :class:`~kgrec.data.Dataset`.
        split: A :class:`~kgrec.data.split.Split`; only ``split.train`` is read. May be ``None``
            when ``templates.user_history`` is ``False``.
        vocabs: ``node_type -> Vocab`` (:func:`kgrec.graph.build_vocabs`); rows follow
            ``vocabs[node_type].ids``.
        templates: Text templates; default :class:`TextTemplates()`.

    Returns:
        :class:`NodeTexts` for the node types among ``user``, ``item``, ``tag`` in ``vocabs``.

    Raises:
        ConfigError: ``split`` is ``None`` while user history is on, or a template names
            an unknown field.

    .. warning::
        User profiles read ``split.train`` only; never pass a split whose train part
        holds valid/test interactions.
    """
    templates = templates or TextTemplates()
    if split is None and templates.user_history and "user" in vocabs:
        raise ConfigError(
            "User profiles with TRAIN history need a split (they read split.train only); pass "
            "split=<Split> or templates=TextTemplates(user_history=False)."
        )
    out = NodeTexts(texts={})
    for node_type in TEXT_NODE_TYPES:
        if node_type not in vocabs:
            continue
        ids = list(vocabs[node_type].ids)
        if node_type == "item":
            texts, repaired = _item_texts(dataset, dataset.items, ids, templates)
        elif node_type == "tag":
            texts, repaired = _tag_texts(ids, templates)
        else:
            texts, repaired = write_user_profiles(dataset, ids, None if split is None else split.train, templates)
        clipped = np.array([t is not None and len(t) > templates.max_chars for t in texts], dtype=bool)
        out.texts[node_type] = [t[: templates.max_chars] if t is not None else None for t in texts]
        out.repaired[node_type] = repaired
        out.clipped[node_type] = clipped
    return out

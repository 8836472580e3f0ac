"""What a training checkpoint carries so a model can be served without the dataset.

``kgrec fit`` writes, beside the weights, a *serving bundle* into every checkpoint
(``checkpoint["kgrec_serving"]``): the vocabularies, the training graph's edges and
text features, item display names, the text templates and a description of the text
encoder. :class:`kgrec.Recommender` rebuilds the model from it alone, so serving needs
neither the dataset nor the split, and a checkpoint stays loadable with
``torch.load(..., weights_only=True)`` (plain containers and tensors only).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

import torch
from torch_geometric.data import HeteroData

from kgrec.data.scale import SCALE_DATASET
from kgrec.errors import ConfigError, DataError

__all__ = ["SERVING_FORMAT", "serving_bundle", "encoder_spec", "encoder_from_spec"]

#: Version tag of the bundle layout; :class:`kgrec.Recommender` refuses any other.
SERVING_FORMAT = "kgrec-serving-v2"
#: Formats this kgrec reads: v1 stored every ``rev_`` edge type and fp32 text features.
READABLE_FORMATS = ("kgrec-serving-v1", SERVING_FORMAT)

_PLAIN = (str, int, float, bool, type(None))


def edge_key(edge_type: tuple[str, str, str]) -> str:
    """``("user", "interacts", "item")`` -> ``"user|interacts|item"`` (a checkpoint-safe key)."""
    return "|".join(edge_type)


def parse_edge_key(key: Any) -> tuple[str, str, str] | None:
    """The inverse of :func:`edge_key`; ``None`` when ``key`` is not three non-empty names."""
    parts = tuple(key.split("|")) if isinstance(key, str) else ()
    return parts if len(parts) == 3 and all(parts) else None  # type: ignore[return-value]


def encoder_spec(encoder) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of a text encoder, from its ``__init__`` signature.

    Device and dtype are left to the loading machine (``None`` / ``"auto"``).
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


def encoder_from_spec(spec: dict[str, Any] | None):
    """The text encoder a bundle describes; only kgrec's own encoder classes are imported.

    Raises:
        ConfigError: the spec names a class outside :mod:`kgrec.text` (pass the encoder
            explicitly to :meth:`kgrec.Recommender.from_checkpoint` instead).
    """
    from kgrec.text.base import BaseTextEncoder

    if spec is None:
        return None
    path = str(spec.get("class_path", ""))
    module, _, name = path.rpartition(".")
    if not module.startswith("kgrec.text"):
        raise ConfigError(
            f"the checkpoint's text encoder is {path!r}, which kgrec does not import from a checkpoint; "
            "pass text_encoder=... to Recommender.from_checkpoint."
        )
    klass = getattr(importlib.import_module(module), name, None)
    if not (isinstance(klass, type) and issubclass(klass, BaseTextEncoder)):
        raise ConfigError(f"the checkpoint's text encoder {path!r} is not a kgrec text encoder.")
    init_args = dict(spec.get("init_args", {}))
    if init_args.get("trust_remote_code"):
        # a checkpoint is data: it may not make this process download and run a model's own code
        raise ConfigError(
            f"the checkpoint's text encoder ({init_args.get('model')!r}) asks for trust_remote_code=True, "
            "which kgrec never takes from a file; build the encoder yourself and pass "
            "text_encoder=... to Recommender.from_checkpoint."
        )
    return klass(**init_args)


def serving_bundle(dm) -> dict[str, Any]:
    """The serving bundle of a set-up :class:`~kgrec.lightning.KGRecDataModule`."""
    from kgrec import __version__
    from kgrec.text.node_texts import default_item_segments
    from kgrec.text.profiles import default_user_segments, item_display_names

    graph = dm.graph
    data = graph.data
    dataset = getattr(dm, "dataset", None)
    item_ids = [str(i) for i in graph.vocabs["item"].ids]
    names = item_ids
    item_segments: list[str] = []
    user_segments: list[str] = []
    tag_columns: list[str] = []
    attribute_columns: list[str] = []
    if dataset is not None:
        display = item_display_names(dataset)
        names = [str(display.get(i, i)) for i in graph.vocabs["item"].ids]
        item_segments = list(default_item_segments(dataset))
        user_segments = list(default_user_segments(dataset))
        tag_columns = list(dataset.item_tag_columns)
        attribute_columns = list(dataset.user_attribute_columns)
    return {
        "format": SERVING_FORMAT,
        "kgrec_version": __version__,
        "dataset": graph.dataset_name,
        "vocabs": {nt: [str(v) for v in vocab.ids] for nt, vocab in graph.vocabs.items() if nt in data.node_types},
        "relations": [str(r) for r in graph.relations],
        # forward edge types only: each rev_ type is its forward one flipped, rebuilt on load
        # (:func:`bundle_graph`), which halves the checkpoint; text features keep their dtype
        "edge_types": [edge_key(et) for et in data.edge_types],
        "edges": {edge_key(et): data[et].edge_index.cpu() for et in data.edge_types if not _is_reverse(et)},
        "edge_relations": {edge_key(et): data[et].edge_type.cpu() for et in data.edge_types
                           if "edge_type" in data[et] and not _is_reverse(et)},
        "x": {nt: data[nt].x.cpu() for nt in data.node_types if "x" in data[nt]},
        "item_names": names,
        "item_segments": item_segments,
        "user_segments": user_segments,
        "item_tag_columns": tag_columns,
        "user_attribute_columns": attribute_columns,
        "text_encoder": _text_encoder_spec(dm),
    }


def _text_encoder_spec(dm) -> dict[str, Any] | None:
    if not any("x" in dm.graph.data[nt] for nt in dm.graph.data.node_types):
        return None
    if getattr(dm, "path", None) == SCALE_DATASET:
        return None  # random stand-in features: no encoder wrote them, none can place new text
    encoder = getattr(dm, "text_encoder", None)
    if encoder is None:  # the data module's default: packaged all-MiniLM-L6-v2
        return {"class_path": "kgrec.text.encoder.TextEncoder", "init_args": {}}
    return encoder_spec(encoder)


def _is_reverse(edge_type: tuple[str, str, str]) -> bool:
    return edge_type[1].startswith("rev_")


def _stored_key(key: str) -> str:
    """The bundle key whose edges hold ``key``'s: itself, or a ``rev_`` type's forward type."""
    src, rel, dst = parse_edge_key(key)
    return edge_key((dst, rel[len("rev_"):], src)) if rel.startswith("rev_") else key


def bundle_graph(bundle: Mapping[str, Any]) -> HeteroData:
    """The training graph a (checked) bundle holds, in its edge-type order, ``rev_`` types
    rebuilt from their forward ones; text features as fp32."""
    data = HeteroData()
    for nt, ids in bundle["vocabs"].items():
        data[nt].num_nodes = len(ids)
    for nt, x in bundle["x"].items():
        data[nt].x = x.float()
    relations = bundle.get("edge_relations", {})
    for key in bundle.get("edge_types", list(bundle["edges"])):  # v1: every type is stored
        et = parse_edge_key(key)
        source = key if key in bundle["edges"] else _stored_key(key)  # v1 stores rev_ types too
        flip = source != key
        ei = bundle["edges"][source].long()
        data[et].edge_index = ei.flip(0) if flip else ei
        if source in relations:
            data[et].edge_type = relations[source].long().clone() if flip else relations[source].long()
    return data


def check_bundle(bundle: Any, where: str) -> dict[str, Any]:
    """Validate a bundle read from ``where``; a clear :class:`~kgrec.errors.DataError` otherwise."""
    if not isinstance(bundle, dict):
        raise DataError(
            f"{where} has no kgrec serving data: it was not written by `kgrec fit` (or by a kgrec older "
            "than 0.1). Train with `kgrec fit --config ...` and load its checkpoints/best.ckpt."
        )
    if bundle.get("format") not in READABLE_FORMATS:
        raise DataError(
            f"{where} was written by an incompatible kgrec version (serving format "
            f"{bundle.get('format')!r}; this kgrec reads {' and '.join(map(repr, READABLE_FORMATS))}). "
            "Retrain with this version."
        )
    missing = {"vocabs", "edges", "x", "item_names"} - set(bundle)
    if missing:
        raise DataError(f"{where} is incomplete (serving data lacks {sorted(missing)}); retrain with `kgrec fit`.")
    for key in [*bundle["edges"], *bundle.get("edge_types", [])]:
        if parse_edge_key(key) is None:
            raise DataError(f"{where} is corrupt: edge type key {key!r} is not 'source|relation|destination'.")
    for key, value in bundle["edges"].items():
        if not (isinstance(value, torch.Tensor) and value.dim() == 2 and value.size(0) == 2):
            raise DataError(f"{where} is corrupt: edges {key!r} is not a (2, E) tensor.")
    for key in bundle.get("edge_types", []):
        forward = _stored_key(key)
        if forward not in bundle["edges"]:
            raise DataError(f"{where} is corrupt: edge type {key!r} has no stored edges ({forward!r}).")
    return bundle

"""The kgrec checkpoint: one file, written by ``kgrec fit`` and by :meth:`kgrec.models.KGRec.save`.

It is a Lightning checkpoint (``state_dict``, ``hyper_parameters``, the trainer's own keys
when a trainer wrote it), so ``kgrec test --ckpt_path`` and ``KGRecModule.load_from_checkpoint``
read it, plus what serving needs without the dataset:

* ``format`` / ``class_path`` / ``kgrec_version``: what the file is and which class serves it;
* ``params``: the :class:`~kgrec.models.KGRec` parameters of the run (plain containers);
* ``graph``: the training graph (:func:`kgrec.graph.graph_state`);
* ``train_fingerprint``: the digest of its train pairs (another split is refused).

Everything is plain containers and tensors: ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L

from kgrec._version import __version__
from kgrec.errors import ConfigError, DataError
from kgrec.io import CHECKPOINT_FORMAT, one_line
from kgrec.training.config import LossConfig

__all__ = ["KGREC_CLASS_PATH", "checkpoint_fields", "lightning_fields", "load_module", "module_hparams",
           "migrate_params"]

#: The class that serves a kgrec checkpoint (named, not imported: training does not import serving).
KGREC_CLASS_PATH = "kgrec.models.kgrec.KGRec"

# kgrec 0.1 checkpoints kept every hyper-parameter flat; where each lives now
_GNN_KEYS = ("hidden_channels", "num_layers", "use_id_embeddings", "score", "dropout", "side_weight", "id_dropout",
             "learn_relation_weights", "cold_detach", "warm_text")
_LOSS_KEYS = tuple(f for f in LossConfig.__dataclass_fields__ if f != "name")


def checkpoint_fields(graph_state: Mapping[str, Any], fingerprint: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The kgrec entries of a checkpoint, beside Lightning's."""
    return {"format": CHECKPOINT_FORMAT, "class_path": KGREC_CLASS_PATH, "kgrec_version": __version__,
            "params": dict(params), "graph": dict(graph_state), "train_fingerprint": fingerprint}


def lightning_fields(module: L.LightningModule, epoch: int = 0, global_step: int = 0) -> dict[str, Any]:
    """What Lightning reads to restore a module from a file no trainer wrote."""
    return {"pytorch-lightning_version": L.__version__, "epoch": epoch, "global_step": global_step,
            "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}


def migrate_params(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A kgrec 0.1 module's flat hyper-parameters as today's groups (``graph_info``, ``gnn``,
    ``loss``, ``optim``); today's pass through."""
    if "gnn" in hparams:
        return {k: v for k, v in hparams.items() if not str(k).startswith("_")}
    old = dict(hparams)
    info = dict(old["graph_info"])
    if old.get("use_text", True) is False:  # a text-free model reads no text features
        info["text_dims"] = {}
    gnn = {k: old[k] for k in _GNN_KEYS if k in old}
    # checkpoints written before the option existed always learned their KG relation weights
    gnn.setdefault("learn_relation_weights", True)
    loss = {k: old[k] for k in _LOSS_KEYS if k in old}
    if "loss" in old:
        loss["name"] = old["loss"]
    return {"graph_info": info, "gnn": gnn, "loss": loss, "optim": {"lr": old.get("lr", 5e-3)}}


def module_hparams(payload: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The module's constructor arguments in a checkpoint (a kgrec 0.1 one migrated)."""
    hparams = payload.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or "graph_info" not in hparams or not isinstance(
            payload.get("state_dict"), Mapping):
        raise DataError(f"{where} has no kgrec model weights (no state_dict / hyper_parameters).")
    try:
        return migrate_params(hparams)
    except (KeyError, TypeError) as exc:
        raise DataError(f"{where} has hyper-parameters this kgrec cannot read ({one_line(exc)}).") from None


def load_module(module_class: type, payload: Mapping[str, Any], where: str):
    """The trained module a checkpoint holds, weights loaded.

    Raises:
        DataError: the weights do not fit the model its hyper-parameters describe.
    """
    try:
        module = module_class(**module_hparams(payload, where))
        module.load_state_dict(payload["state_dict"])
    except (TypeError, RuntimeError, ConfigError) as exc:
        raise DataError(f"{where} does not match this kgrec version's model ({one_line(exc)}).") from None
    return module

"""The training groups of hyper-parameters: loss, optimiser, loaders, schedule, predictions.

Each is defined once and read by :class:`~kgrec.models.KGRec`, the Lightning modules and
the YAML configs alike (``model.loss``, ``model.optim``, ``data.loader``, ``data.predict``;
the schedule is the trainer's ``max_epochs`` and ``early_stopping.patience``, whose CLI
defaults come from :class:`ScheduleConfig`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal, Optional

from kgrec.errors import ConfigError

__all__ = ["LossConfig", "OptimConfig", "LoaderConfig", "ScheduleConfig", "PredictConfig"]


def _check(group: str, name: str, value, *, integer: bool = False, minimum: float | None = None,
           strict: bool = False, optional: bool = False) -> None:
    """Refuse a bad number by name: ``group.name must be ...; got value``."""
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Integral if integer else numbers.Real)
          and math.isfinite(value))
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ConfigError(f"{group}.{name} must be {kind}{bound}{' or null' if optional else ''}; got {value!r}.")


def _choice(group: str, name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{group}.{name} must be one of {{{', '.join(map(repr, choices))}}}; got {value!r}.")


@dataclass(frozen=True)
class LossConfig:
    """The training objective.

    Args:
        name: ``ials`` (squared error on the batch's edges plus ``unobserved_weight`` times
            every batch user's squared scores over all negative items, through their Gramian;
            :func:`kgrec.nn.gramian_loss`), ``softmax`` (sampled softmax) or ``bpr``.
        unobserved_weight: ``ials``: weight of the unobserved (user, item) pairs.
        unobserved_user_power: ``ials``: each edge's unobserved term is weighted by its
            user's training degree to this negative power (0: every edge alike; 1: every
            user alike, as in iALS).
        unobserved_item_power: ``ials``: each negative item's unobserved pairs are weighted
            by its training popularity to this power (element-wise ALS's weighting; 0: all alike).
        negative_items: ``trained`` (only items with a training interaction are negatives:
            an item nobody could interact with is no evidence of dislike) or ``all``.
        num_negatives: Negatives per batch (``softmax``) or per positive (``bpr``).
        temperature: ``softmax`` temperature.
        in_batch_negatives: ``softmax``: the batch's other positives are negatives too.
        weight_decay: L2 penalty on each batch edge's user and item input embeddings.
        cold_weight: Weight of the cold-view loss: every batch item is also ranked from its
            text, tags and KG alone, as a cold item would be (0 switches it off; needs item text).
        align_weight: Weight of the text–graph contrastive alignment loss (0: off).
        align_temperature: Its temperature.
        align_stop_graph: Its gradient stops at the graph embeddings, so it moves the text
            projection towards the graph and not the other way.
        align_max_nodes: Most distinct nodes per type it contrasts in a step (a random
            subset above it; bounds its ``B x B`` cost).
    """

    name: Literal["ials", "softmax", "bpr"] = "ials"
    unobserved_weight: float = 20.0
    unobserved_user_power: float = 0.0
    unobserved_item_power: float = 0.0
    negative_items: Literal["trained", "all"] = "trained"
    num_negatives: int = 1024
    temperature: float = 1.0
    in_batch_negatives: bool = False
    weight_decay: float = 0.01
    cold_weight: float = 1.0
    align_weight: float = 0.0
    align_temperature: float = 0.2
    align_stop_graph: bool = True
    align_max_nodes: int = 2048

    def __post_init__(self) -> None:
        _choice("loss", "name", self.name, ("ials", "softmax", "bpr"))
        _choice("loss", "negative_items", self.negative_items, ("trained", "all"))
        for name in ("unobserved_weight", "unobserved_user_power", "weight_decay", "cold_weight", "align_weight"):
            _check("loss", name, getattr(self, name), minimum=0)
        _check("loss", "unobserved_item_power", self.unobserved_item_power)
        for name in ("temperature", "align_temperature"):
            _check("loss", name, getattr(self, name), minimum=0, strict=True)
        _check("loss", "num_negatives", self.num_negatives, integer=True, minimum=1)
        _check("loss", "align_max_nodes", self.align_max_nodes, integer=True, minimum=2)


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser (Adam).

    Args:
        lr: Learning rate.
    """

    lr: float = 5e-3

    def __post_init__(self) -> None:
        _check("optim", "lr", self.lr, minimum=0, strict=True)


@dataclass(frozen=True)
class LoaderConfig:
    """How training batches and evaluation chunks are made.

    Args:
        batch_size: Supervision (train) edges per training step.
        sampling: ``full`` (every step propagates over the whole training graph) or
            ``neighbor`` (k-hop neighbourhoods of the batch's edges,
            :class:`~kgrec.sampler.HeteroNeighborSampler`), for graphs that outgrow a device.
        num_neighbors: ``neighbor`` fanout per hop, one per message-passing layer (-1: all).
        num_workers: DataLoader workers (0 samples in the main process).
        sampling_device: Where ``neighbor`` sampling runs: ``auto`` (the trainer's device
            when ``num_workers`` is 0, so a GPU's batches never leave it) or ``cpu``.
        eval_batch_users: Users per validation / test / predict chunk (``None``: keeps each
            chunk's ``(users, items)`` score block near 16M values).
        val_max_users: Validate on a fixed random subset of this many users (``None``: all);
            test always ranks every user.
    """

    batch_size: int = 4096
    sampling: Literal["full", "neighbor"] = "full"
    num_neighbors: tuple[int, ...] = (10, 10)
    num_workers: int = 0
    sampling_device: Literal["auto", "cpu"] = "auto"
    eval_batch_users: Optional[int] = None
    val_max_users: Optional[int] = None

    def __post_init__(self) -> None:
        _check("loader", "batch_size", self.batch_size, integer=True, minimum=1)
        _choice("loader", "sampling", self.sampling, ("full", "neighbor"))
        _choice("loader", "sampling_device", self.sampling_device, ("auto", "cpu"))
        fanouts = tuple(self.num_neighbors)
        if not fanouts or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n == 0 or n < -1
                              for n in fanouts):
            raise ConfigError(f"loader.num_neighbors must be positive integers (or -1 for all), one per layer; "
                              f"got {list(fanouts)}.")
        object.__setattr__(self, "num_neighbors", tuple(int(n) for n in fanouts))
        _check("loader", "num_workers", self.num_workers, integer=True, minimum=0)
        _check("loader", "eval_batch_users", self.eval_batch_users, integer=True, minimum=1, optional=True)
        _check("loader", "val_max_users", self.val_max_users, integer=True, minimum=1, optional=True)


@dataclass(frozen=True)
class ScheduleConfig:
    """When training stops (early stopping on validation NDCG@20).

    Args:
        max_epochs: Epoch cap (the CLI's ``trainer.max_epochs``).
        patience: Validations without improvement before stopping (``early_stopping.patience``).
    """

    max_epochs: int = 200
    patience: int = 5

    def __post_init__(self) -> None:
        _check("schedule", "max_epochs", self.max_epochs, integer=True, minimum=1)
        _check("schedule", "patience", self.patience, integer=True, minimum=1)


@dataclass(frozen=True)
class PredictConfig:
    """What ``kgrec predict`` writes for every user.

    Args:
        k: Items per user.
        exclude_seen: Leave out each user's training items.
    """

    k: int = 20
    exclude_seen: bool = True

    def __post_init__(self) -> None:
        _check("predict", "k", self.k, integer=True, minimum=1)

"""Negative items for link prediction: uniform or popularity-weighted, optionally
rejecting known train positives."""

from __future__ import annotations

import math
import numbers
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.sampler import NegativeSampling
from torch_geometric.typing import EdgeType

from kgrec.errors import ConfigError
from kgrec.sampler.hetero_csc import HeteroCSC, contains

__all__ = ["NegativeSampler", "draw_negatives", "check_negative_sampling"]

_MODES = ("binary", "triplet")


def check_negative_sampling(neg_sampling: Optional[NegativeSampling]) -> None:
    """Raise :class:`~kgrec.errors.ConfigError` unless ``neg_sampling`` is ``None`` or a
    :class:`~torch_geometric.sampler.NegativeSampling` with a positive finite ``amount``
    (an integer one in ``"triplet"`` mode)."""
    if neg_sampling is None:
        return
    if not isinstance(neg_sampling, NegativeSampling):
        raise ConfigError(
            f"neg_sampling must be a torch_geometric NegativeSampling (or kgrec NegativeSampler) or None; "
            f"got {type(neg_sampling).__name__}."
        )
    _check_amount(neg_sampling.amount, neg_sampling.mode.value)


def _check_amount(amount, mode: str) -> None:
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or not math.isfinite(amount) or amount <= 0:
        raise ConfigError(f"The negative sampling amount must be a positive number of negatives per positive; got {amount!r}.")
    if mode == "triplet" and amount != math.ceil(amount):
        raise ConfigError(f"The negative sampling amount must be a whole number in 'triplet' mode; got {amount!r}.")


class NegativeSampler(NegativeSampling):
    r"""PyG's :class:`~torch_geometric.sampler.NegativeSampling` with two kgrec
    options, understood by :class:`~kgrec.sampler.HeteroNeighborSampler` and
    :class:`~kgrec.sampler.FullGraphSampler` (pass it as the loader's
    ``neg_sampling``; PyG's own samplers treat it as plain uniform sampling).

    * ``mode="binary"``: :math:`\lceil B \cdot \text{amount} \rceil` random
      (user, item) pairs labelled 0 are appended to the :math:`B` positives
      (``edge_label_index`` of shape ``(2, B + num_neg)``, ``edge_label`` of shape
      ``(B + num_neg,)``).
    * ``mode="triplet"``: ``amount`` random items per positive, returned as
      ``dst_neg_index`` of shape ``(B,)`` (amount 1) or ``(B, amount)``.

    Destination nodes (items) are drawn uniformly, or with probability
    proportional to :math:`\deg(v)^{\alpha}` where :math:`\deg` counts the
    supervision edge type's edges into :math:`v` in the sampler's (training)
    graph and :math:`\alpha` is ``popularity_exponent``. Items without a train
    interaction then have probability 0. Source nodes in binary mode are drawn
    uniformly. Explicit ``src_weight``/``dst_weight`` override both.

    Args:
        mode (str): ``"binary"`` or ``"triplet"`` as in PyG.
        amount (int or float): negatives per positive edge, > 0 (a whole
            number in triplet mode).
        popularity_exponent (float): :math:`\alpha \ge 0`; 0 is uniform,
            0.75 is word2vec's choice, 1 is proportional to popularity.
        reject_positives (bool): redraw a negative whose (user, item) pair is
            an edge of the supervision edge type in the sampler's graph (the
            train positives), up to ``rejection_rounds`` times; a negative can
            only remain a positive if all rounds hit positives (probability
            density**rounds for a graph of that density).
        rejection_rounds (int): redraw rounds, >= 1. A fixed count keeps the
            loop free of host synchronisation on a GPU.
        src_weight (Tensor, optional): ``(num_src_nodes,)`` non-negative weights.
        dst_weight (Tensor, optional): ``(num_dst_nodes,)`` non-negative weights.
    """

    def __init__(
        self,
        mode: str = "binary",
        amount: Union[int, float] = 1,
        popularity_exponent: float = 0.0,
        reject_positives: bool = False,
        rejection_rounds: int = 8,
        src_weight: Optional[Tensor] = None,
        dst_weight: Optional[Tensor] = None,
    ) -> None:
        mode_value = getattr(mode, "value", mode)
        if mode_value not in _MODES:
            raise ConfigError(f"The negative sampling mode must be one of {set(_MODES)}; got {mode!r}.")
        _check_amount(amount, mode_value)
        if (
            isinstance(popularity_exponent, bool)
            or not isinstance(popularity_exponent, numbers.Real)
            or not math.isfinite(popularity_exponent)
            or popularity_exponent < 0
        ):
            raise ConfigError(f"popularity_exponent must be a finite number >= 0; got {popularity_exponent!r}.")
        if isinstance(rejection_rounds, bool) or not isinstance(rejection_rounds, int) or rejection_rounds < 1:
            raise ConfigError(f"rejection_rounds must be an integer >= 1; got {rejection_rounds!r}.")
        super().__init__(mode_value, amount, src_weight, dst_weight)
        self.popularity_exponent = float(popularity_exponent)
        self.reject_positives = bool(reject_positives)
        self.rejection_rounds = rejection_rounds

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(mode={self.mode.value!r}, amount={self.amount}, "
            f"popularity_exponent={self.popularity_exponent}, reject_positives={self.reject_positives})"
        )


def _cdf(weight: Tensor, num_nodes: int, name: str, device: torch.device) -> Tensor:
    weight = weight.to(device, torch.float64).flatten()
    if weight.numel() != num_nodes:
        raise ConfigError(f"{name} must hold one weight per node ({num_nodes}); got {weight.numel()}.")
    cdf = torch.cumsum(weight, 0)
    if bool((weight < 0).any()) or not bool(cdf[-1] > 0):
        raise ConfigError(f"{name} must be non-negative with a positive sum.")
    return cdf


def _draw(num: int, num_nodes: int, cdf: Optional[Tensor], device: torch.device) -> Tensor:
    if cdf is None:
        return torch.randint(num_nodes, (num,), device=device)
    u = torch.rand(num, dtype=torch.float64, device=device) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=num_nodes - 1)


def _popularity_cdf(
    csc: HeteroCSC, edge_type: EdgeType, exponent: float, cache: Dict[Tuple[EdgeType, float], Optional[Tensor]]
) -> Optional[Tensor]:
    key = (edge_type, exponent)
    if key not in cache:
        degree = csc.colptr[edge_type].diff().to(torch.float64)
        weight = degree.pow(exponent)
        weight[degree == 0] = 0.0
        cdf = torch.cumsum(weight, 0)
        cache[key] = cdf if cdf.numel() > 0 and bool(cdf[-1] > 0) else None  # no edges: uniform
    return cache[key]


def draw_negatives(
    neg_sampling: NegativeSampling,
    src: Tensor,
    csc: HeteroCSC,
    edge_type: EdgeType,
    cache: Dict,
) -> Tuple[Optional[Tensor], Tensor]:
    """Negatives for the positives with sources ``src`` (shape ``(B,)``) of ``edge_type``.

    Returns ``(src_neg, dst_neg)``: in binary mode both of shape
    ``(ceil(B * amount),)``; in triplet mode ``src_neg`` is ``None`` and
    ``dst_neg`` has shape ``(B * amount,)``, entry ``i * amount + j`` being the
    ``j``-th negative of positive ``i`` (PyG's layout).
    """
    device = src.device
    src_type, _, dst_type = edge_type
    num_src, num_dst = csc.num_nodes[src_type], csc.num_nodes[dst_type]
    num_pos = src.numel()
    exponent = getattr(neg_sampling, "popularity_exponent", 0.0)
    reject = getattr(neg_sampling, "reject_positives", False)
    rounds = getattr(neg_sampling, "rejection_rounds", 0)

    if neg_sampling.dst_weight is not None:
        dst_cdf = _cdf(neg_sampling.dst_weight, num_dst, "dst_weight", device)
    elif exponent > 0:
        dst_cdf = _popularity_cdf(csc, edge_type, exponent, cache)
    else:
        dst_cdf = None

    if neg_sampling.is_binary():
        num_neg = math.ceil(num_pos * neg_sampling.amount)
        src_cdf = None
        if neg_sampling.src_weight is not None:
            src_cdf = _cdf(neg_sampling.src_weight, num_src, "src_weight", device)
        src_neg = _draw(num_neg, num_src, src_cdf, device)
        owner = src_neg
    else:
        num_neg = num_pos * int(neg_sampling.amount)
        src_neg = None
        owner = src.repeat_interleave(int(neg_sampling.amount))

    dst_neg = _draw(num_neg, num_dst, dst_cdf, device)
    if reject and num_neg > 0:
        keys, _, _ = csc.pair_keys(edge_type)
        for _ in range(rounds):
            hit = contains(keys, owner * num_dst + dst_neg)
            dst_neg = torch.where(hit, _draw(num_neg, num_dst, dst_cdf, device), dst_neg)
    return src_neg, dst_neg

"""What kgrec's samplers share: PyG's ``sample_from_edges``/``sample_from_nodes``
contract around a per-sampler neighbourhood function."""

from __future__ import annotations

from abc import abstractmethod
from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    HeteroSamplerOutput,
    NegativeSampling,
    NodeSamplerInput,
)
from torch_geometric.typing import EdgeType, NodeType

from kgrec.errors import ConfigError, DataError
from kgrec.graph.build import reverse
from kgrec.sampler.hetero_csc import HeteroCSC
from kgrec.sampler.negatives import check_negative_sampling, draw_negatives

__all__ = ["HeteroSamplerBase", "SeedExclusion", "data_device"]


def data_device(data) -> torch.device:
    """The device of ``data``'s first ``edge_index`` (the CPU when there is none)."""
    stores = data.edge_stores if isinstance(data, HeteroData) else []
    return next((store.edge_index.device for store in stores if "edge_index" in store), torch.device("cpu"))


class SeedExclusion:
    """The supervision edges of one mini-batch, to be kept out of its
    message-passing subgraph: every edge of ``edge_type`` joining a seed pair
    (parallel edges included) and every edge of the reverse edge type
    (``rev_<rel>``, see :func:`~kgrec.graph.reverse`)
    joining the swapped pair. The edges are flagged in the graph's per-edge
    scratch flags until :meth:`release`; :meth:`mask` is then a gather.

    Args:
        edge_type (tuple): the seed edges' type.
        src (Tensor): ``(B,)`` global source ids of the seed edges.
        dst (Tensor): ``(B,)`` global destination ids.
        csc (HeteroCSC): the graph.
    """

    def __init__(self, edge_type: EdgeType, src: Tensor, dst: Tensor, csc: HeteroCSC) -> None:
        self.edge_type = edge_type
        self.reverse = reverse(edge_type)
        self._flagged: Dict[EdgeType, Tensor] = {}
        self._csc = csc
        for et, (a, b) in ((edge_type, (src, dst)), (self.reverse, (dst, src))):
            if et in csc.edge_types and et not in self._flagged:
                eids = csc.find_edges(et, a, b)
                csc.edge_flags(et)[eids] = True
                self._flagged[et] = eids

    def applies_to(self, edge_type: EdgeType) -> bool:
        return edge_type in self._flagged

    def flags(self, edge_type: EdgeType) -> Tensor:
        """``(E,)`` booleans, ``True`` for the excluded edges of ``edge_type``."""
        return self._csc.edge_flags(edge_type)

    def mask(self, edge_type: EdgeType, edge_ids: Tensor) -> Tensor:
        """``True`` where an edge (by original id) of ``edge_type`` is excluded."""
        if edge_type not in self._flagged:
            return torch.zeros_like(edge_ids, dtype=torch.bool)
        return self._csc.edge_flags(edge_type)[edge_ids]

    def release(self) -> None:
        """Reset the scratch flags this batch set."""
        for et, eids in self._flagged.items():
            self._csc.edge_flags(et)[eids] = False
        self._flagged = {}


class HeteroSamplerBase(BaseSampler):
    """A :class:`~torch_geometric.sampler.BaseSampler` over a :class:`HeteroCSC`
    whose subclasses implement :meth:`sample_neighbourhood`; this class turns
    PyG's loader inputs into seeds, draws negatives and builds the metadata
    exactly as PyG's ``edge_sample``/``node_sample`` (non-disjoint) do, so
    :class:`~torch_geometric.loader.LinkLoader` and
    :class:`~torch_geometric.loader.NodeLoader` consume the output unchanged."""

    csc: HeteroCSC
    exclude_seed_edges: bool
    #: Whether ``sample_neighbourhood`` returns every node with local id ==
    #: global id (then seeds are not relabelled).
    local_is_global: bool = False

    def __init__(self) -> None:
        self._neg_cache: Dict = {}

    @property
    def device(self) -> torch.device:
        return self.csc.device

    @property
    def num_nodes(self) -> Dict[NodeType, int]:
        return self.csc.num_nodes

    @abstractmethod
    def sample_neighbourhood(
        self, seed: Dict[NodeType, Tensor], exclusion: Optional[SeedExclusion] = None
    ) -> HeteroSamplerOutput:
        """Sample around ``seed`` (unique global ids per node type, on
        :attr:`device`); the seeds must come first, in order, in ``node``."""

    # -- input checks ---------------------------------------------------------

    def _check_ids(self, ids: Tensor, node_type: NodeType, name: str) -> None:
        # Inputs reach the sampler on the CPU (PyG's *SamplerInput moves them
        # there), so this costs no device synchronisation.
        if ids.numel() == 0:
            return
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.num_nodes[node_type]:
            raise DataError(
                f"{name} holds {node_type!r} ids in [{lo}, {hi}] but the graph has "
                f"{self.num_nodes[node_type]} {node_type!r} nodes (valid ids 0..{self.num_nodes[node_type] - 1})."
            )

    def _check_edge_type(self, edge_type) -> EdgeType:
        if edge_type is None or tuple(edge_type) not in self.csc.edge_types:
            raise ConfigError(
                f"Seed edges must be of an edge type of the graph, one of {self.csc.edge_types}; got {edge_type!r}."
            )
        return tuple(edge_type)

    # -- PyG contract -----------------------------------------------------------

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        """Sample around seed nodes; ``inputs.node`` should hold unique ids (as
        :class:`~torch_geometric.loader.NodeLoader`'s batches do)."""
        node_type = inputs.input_type
        if node_type not in self.num_nodes:
            raise ConfigError(
                f"Seed nodes must be of a node type of the graph, one of {list(self.num_nodes)}; got {node_type!r}."
            )
        if inputs.time is not None:
            raise ConfigError("kgrec samplers do not support temporal sampling (seed time given).")
        self._check_ids(inputs.node, node_type, "The seed nodes")
        out = self.sample_neighbourhood({node_type: inputs.node.to(self.device, torch.long)})
        out.metadata = (inputs.input_id, inputs.time)
        return out

    def sample_from_edges(
        self, inputs: EdgeSamplerInput, neg_sampling: Optional[NegativeSampling] = None
    ) -> HeteroSamplerOutput:
        """Sample around a batch of seed edges (plus negatives), as PyG's
        :class:`~torch_geometric.sampler.NeighborSampler` does with
        ``disjoint=False``."""
        edge_type = self._check_edge_type(inputs.input_type)
        if inputs.time is not None:
            raise ConfigError("kgrec samplers do not support temporal sampling (edge_label_time given).")
        check_negative_sampling(neg_sampling)
        src_type, _, dst_type = edge_type
        self._check_ids(inputs.row, src_type, "The seed edges' source column")
        self._check_ids(inputs.col, dst_type, "The seed edges' destination column")

        device = self.device
        src = inputs.row.to(device, torch.long)
        dst = inputs.col.to(device, torch.long)
        edge_label = inputs.label.to(device) if inputs.label is not None else None
        num_pos = src.numel()
        src_pos, dst_pos = src, dst

        if neg_sampling is not None:
            src_neg, dst_neg = draw_negatives(neg_sampling, src, self.csc, edge_type, self._neg_cache)
            dst = torch.cat([dst, dst_neg])
            if neg_sampling.is_binary():
                src = torch.cat([src, src_neg])
                if edge_label is None:
                    edge_label = torch.ones(num_pos, device=device)
                size = (src_neg.numel(),) + edge_label.size()[1:]
                edge_label = torch.cat([edge_label, edge_label.new_zeros(size)])
            elif edge_label is not None:
                raise ConfigError("edge_label must be None with 'triplet' negative sampling (as in PyG).")

        if src_type != dst_type:
            src_seed, inverse_src = src.unique(return_inverse=True)
            dst_seed, inverse_dst = dst.unique(return_inverse=True)
            seed = {src_type: src_seed, dst_type: dst_seed}
        else:
            node_seed, inverse_seed = torch.cat([src, dst]).unique(return_inverse=True)
            inverse_src, inverse_dst = inverse_seed[: src.numel()], inverse_seed[src.numel():]
            seed = {src_type: node_seed}

        # Flags set here are reset in `finally`, whatever happens in between.
        exclusion = SeedExclusion(edge_type, src_pos, dst_pos, self.csc) if self.exclude_seed_edges else None
        try:
            out = self.sample_neighbourhood(seed, exclusion)
        finally:
            if exclusion is not None:
                exclusion.release()
        if self.local_is_global:  # full-graph output: batch ids are global ids
            inverse_src, inverse_dst = src, dst

        if neg_sampling is None or neg_sampling.is_binary():
            edge_label_index = torch.stack([inverse_src, inverse_dst], dim=0)
            out.metadata = (inputs.input_id, edge_label_index, edge_label, None)
        else:
            dst_neg_index = inverse_dst[num_pos:].view(num_pos, -1).squeeze(-1)
            out.metadata = (inputs.input_id, inverse_src, inverse_dst[:num_pos], dst_neg_index, None)
        return out


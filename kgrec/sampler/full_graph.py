"""Full-graph mini-batches: the whole training graph at every step, behind PyG's
loader interface."""

from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import HeteroSamplerOutput
from torch_geometric.typing import NodeType

from kgrec.sampler.base import HeteroSamplerBase, SeedExclusion, data_device
from kgrec.sampler.hetero_csc import HeteroCSC

__all__ = ["FullGraphSampler"]


class FullGraphSampler(HeteroSamplerBase):
    r"""A :class:`~torch_geometric.sampler.BaseSampler` that returns the whole
    graph for every batch of seed edges or nodes, so full-graph training uses
    the same :class:`~torch_geometric.loader.LinkLoader` /
    :class:`~torch_geometric.loader.NodeLoader` loop as sampled training.

    On MovieLens-sized graphs a 2-hop neighbourhood of a few thousand seed
    edges already covers most nodes, so skipping the sampling can be faster;
    ``python -m benchmarks.speed sampler`` measures where each wins.

    Local ids equal global ids (``n_id`` is ``arange(num_nodes)`` per type), so
    ``edge_label_index`` (binary mode) or ``src_index``/``dst_pos_index``/
    ``dst_neg_index`` (triplet mode) hold global ids. ``num_sampled_nodes`` and
    ``num_sampled_edges`` are ``None`` (there are no hops).

    .. warning::
        In the full graph every supervision edge is also a message-passing
        edge. ``exclude_seed_edges=True`` (default) drops the batch's seed
        edges and their reverses (``rev_<rel>``) from that batch's graph; set it
        to ``False`` only when the supervision edges are not in ``data``.

    Args:
        data (HeteroData): the message-passing graph (train edges only); only
            ``edge_index`` and ``num_nodes`` are read.
        exclude_seed_edges (bool): drop each batch's seed edges (and reverses).
        device (str or torch.device, optional): where the graph lives;
            defaults to the device of ``data``'s edges.
        max_bytes (int, optional): memory the sampler may use on ``device``.
    """

    local_is_global = True

    def __init__(
        self,
        data: HeteroData,
        exclude_seed_edges: bool = True,
        device: Optional[Union[str, torch.device]] = None,
        max_bytes: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.csc = HeteroCSC(data, device=device if device is not None else data_device(data), max_bytes=max_bytes)
        self.exclude_seed_edges = bool(exclude_seed_edges)
        self._node = {t: torch.arange(n, device=self.device) for t, n in self.csc.num_nodes.items()}
        self._edge_index = {et: self.csc.edge_index(et) for et in self.csc.edge_types}
        self._edge_id = {et: torch.arange(self.csc.num_edges(et), device=self.device) for et in self.csc.edge_types}

    def sample_neighbourhood(
        self, seed: Dict[NodeType, Tensor], exclusion: Optional[SeedExclusion] = None
    ) -> HeteroSamplerOutput:
        row, col, edge = {}, {}, {}
        for et in self.csc.edge_types:
            src, dst = self._edge_index[et]
            eid = self._edge_id[et]
            if exclusion is not None and exclusion.applies_to(et) and eid.numel() > 0:
                keep = (~exclusion.flags(et)).nonzero().squeeze(1)
                src, dst, eid = src[keep], dst[keep], keep
            row[et], col[et], edge[et] = src, dst, eid
        return HeteroSamplerOutput(node=dict(self._node), row=row, col=col, edge=edge)

    def sample_from_nodes(self, inputs, **kwargs) -> HeteroSamplerOutput:
        """The whole graph with the seed nodes renumbered first (NodeLoader's
        ``batch_size`` convention: the first ``batch_size`` nodes of the input
        type are the seeds); other node types keep global ids. Seeds must be unique."""
        out = super().sample_from_nodes(inputs, **kwargs)
        node_type = inputs.input_type
        seeds = inputs.node.to(self.device, torch.long)
        num = self.csc.num_nodes[node_type]
        is_seed = torch.zeros(num, dtype=torch.bool, device=self.device)
        is_seed[seeds] = True
        order = torch.cat([seeds, self._node[node_type][~is_seed]])
        local = torch.empty(num, dtype=torch.long, device=self.device)
        local[order] = torch.arange(num, device=self.device)
        out.node = dict(out.node)
        out.node[node_type] = order
        for et in self.csc.edge_types:
            if et[0] == node_type:
                out.row[et] = local[out.row[et]]
            if et[2] == node_type:
                out.col[et] = local[out.col[et]]
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(exclude_seed_edges={self.exclude_seed_edges}, device='{self.device}')"

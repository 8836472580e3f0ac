"""Per-edge-type compressed sparse column (CSC) storage of a heterogeneous graph."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType, NodeType

from kgrec.errors import ConfigError, DataError

__all__ = ["HeteroCSC", "available_bytes", "contains", "format_bytes"]

_INT64 = 8


def available_bytes(device: torch.device) -> Optional[int]:
    """Free memory on ``device`` in bytes, or ``None`` where it cannot be known.

    On CUDA that is the driver's free memory plus what PyTorch's caching allocator holds
    reserved but unused (``mem_get_info`` counts that as taken, though a new tensor gets it).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            return None
    return None


def format_bytes(num: int) -> str:
    return f"{num / 2**30:.2f} GiB" if num >= 2**30 else f"{num / 2**20:.1f} MiB"


class HeteroCSC:
    r"""The edges of a :class:`~torch_geometric.data.HeteroData` grouped by
    destination node, one CSC block per edge type, built once and kept on
    ``device``.

    For an edge type ``(src, rel, dst)`` with :math:`E` edges, ``colptr[et]``
    has shape ``(num_dst + 1,)``, and the incoming neighbours of destination
    node ``v`` are ``row[et][colptr[et][v]:colptr[et][v + 1]]`` (source node
    ids), whose original edge ids (positions in ``data[et].edge_index``) are
    ``perm[et][...]`` at the same positions. Within one destination the
    original edge order is kept (a stable sort), as in PyG's own CSC.

    Also holds, per node type, two ``int64`` scratch buffers of length
    ``num_nodes`` used by the samplers to relabel global node ids into
    mini-batch ids without sorting. Memory: ``8 * (num_dst + 1 + 2 * E)``
    bytes per edge type plus ``16 * num_nodes`` bytes per node type.

    Args:
        data (HeteroData): the graph; every edge type needs ``edge_index`` of
            shape ``(2, E)`` with ids inside its node types' ``num_nodes``.
        device (torch.device or str): where the CSC and buffers live.
        max_bytes (int, optional): memory the structure may use; defaults to
            the device's free memory. A graph that needs more raises
            :class:`~kgrec.errors.ConfigError` naming the size needed.
    """

    def __init__(
        self,
        data: HeteroData,
        device: Union[torch.device, str] = "cpu",
        max_bytes: Optional[int] = None,
    ) -> None:
        if not isinstance(data, HeteroData):
            raise DataError(
                f"The sampler needs a torch_geometric HeteroData graph; got {type(data).__name__}."
            )
        self.device = torch.device(device)
        self.node_types: List[NodeType] = list(data.node_types)
        self.edge_types: List[EdgeType] = list(data.edge_types)
        self.num_nodes: Dict[NodeType, int] = {}
        for node_type in self.node_types:
            num = data[node_type].num_nodes
            if num is None:
                raise DataError(f"Node type {node_type!r} has no 'num_nodes'; set data[{node_type!r}].num_nodes.")
            self.num_nodes[node_type] = int(num)

        num_edges = {}
        for edge_type in self.edge_types:
            edge_index = data[edge_type].get("edge_index")
            if edge_index is None or edge_index.dim() != 2 or edge_index.size(0) != 2:
                shape = None if edge_index is None else tuple(edge_index.shape)
                raise DataError(f"Edge type {edge_type} needs an 'edge_index' of shape (2, E); got {shape}.")
            num_edges[edge_type] = edge_index.size(1)

        self.nbytes = sum(
            _INT64 * (self.num_nodes[et[2]] + 1 + 2 * num_edges[et]) + num_edges[et] for et in self.edge_types
        ) + sum(2 * _INT64 * n for n in self.num_nodes.values())
        limit = max_bytes if max_bytes is not None else available_bytes(self.device)
        if limit is not None and self.nbytes > limit:
            raise ConfigError(
                f"The graph is too large for device '{self.device}': its CSC and relabel buffers need "
                f"{format_bytes(self.nbytes)} ({self.nbytes} bytes) but only {format_bytes(limit)} "
                f"({limit} bytes) are available. Use a device with more memory (device='cpu'; in a kgrec "
                f"config, data.sampling_device: cpu), "
                f"drop edge types the model does not use, or pass a larger max_bytes."
            )

        self.colptr: Dict[EdgeType, Tensor] = {}
        self.row: Dict[EdgeType, Tensor] = {}
        self.perm: Dict[EdgeType, Tensor] = {}
        for edge_type in self.edge_types:
            src_type, _, dst_type = edge_type
            edge_index = data[edge_type].edge_index.to(self.device, torch.long)
            src, dst = edge_index[0], edge_index[1]
            if src.numel() > 0:
                lo = torch.stack([src.min(), dst.min()]).cpu()
                hi = torch.stack([src.max(), dst.max()]).cpu()
                if lo.min() < 0 or hi[0] >= self.num_nodes[src_type] or hi[1] >= self.num_nodes[dst_type]:
                    raise DataError(
                        f"Edge type {edge_type} has node ids outside [0, num_nodes): source ids span "
                        f"[{int(lo[0])}, {int(hi[0])}] for {self.num_nodes[src_type]} {src_type!r} nodes, "
                        f"destination ids span [{int(lo[1])}, {int(hi[1])}] for "
                        f"{self.num_nodes[dst_type]} {dst_type!r} nodes."
                    )
            dst_sorted, perm = torch.sort(dst, stable=True)
            counts = torch.bincount(dst_sorted, minlength=self.num_nodes[dst_type])
            colptr = torch.zeros(self.num_nodes[dst_type] + 1, dtype=torch.long, device=self.device)
            torch.cumsum(counts, 0, out=colptr[1:])
            self.colptr[edge_type] = colptr
            self.row[edge_type] = src[perm]
            self.perm[edge_type] = perm

        # Scratch buffers for relabelling (see kgrec.sampler.neighbor_sampler).
        self.local: Dict[NodeType, Tensor] = {
            t: torch.full((n,), -1, dtype=torch.long, device=self.device) for t, n in self.num_nodes.items()
        }
        self.first: Dict[NodeType, Tensor] = {
            t: torch.full((n,), torch.iinfo(torch.long).max, dtype=torch.long, device=self.device)
            for t, n in self.num_nodes.items()
        }
        self._pair_keys: Dict[EdgeType, Tuple[Tensor, Tensor, int]] = {}
        self._edge_flags: Dict[EdgeType, Tensor] = {}

    def num_edges(self, edge_type: EdgeType) -> int:
        """Number of edges of ``edge_type``."""
        return self.row[edge_type].numel()

    def edge_index(self, edge_type: EdgeType) -> Tuple[Tensor, Tensor]:
        """``(src, dst)`` global ids of all edges of ``edge_type`` in original edge order."""
        colptr, row, perm = self.colptr[edge_type], self.row[edge_type], self.perm[edge_type]
        dst_sorted = torch.repeat_interleave(
            torch.arange(colptr.numel() - 1, device=self.device), colptr.diff(), output_size=row.numel()
        )
        src = torch.empty_like(row)
        dst = torch.empty_like(row)
        src[perm] = row
        dst[perm] = dst_sorted
        return src, dst

    def pair_keys(self, edge_type: EdgeType) -> Tuple[Tensor, Tensor, int]:
        """``(keys, edge_ids, multiplicity)``: the sorted ``src * num_dst + dst``
        keys of the edges of ``edge_type``, the original edge id at each sorted
        position, and the largest number of parallel edges between one pair
        (cached). Membership of a node pair is then one :func:`torch.searchsorted`."""
        cached = self._pair_keys.get(edge_type)
        if cached is None:
            src, dst = self.edge_index(edge_type)
            keys, order = torch.sort(src * self.num_nodes[edge_type[2]] + dst, stable=True)
            mult = int(torch.unique_consecutive(keys, return_counts=True)[1].max()) if keys.numel() else 1
            cached = (keys, order, mult)
            self._pair_keys[edge_type] = cached
        return cached

    def find_edges(self, edge_type: EdgeType, src: Tensor, dst: Tensor) -> Tensor:
        """Original ids of all edges ``src[i] -> dst[i]`` of ``edge_type`` that exist
        (parallel edges included), as a 1-D tensor."""
        keys, order, mult = self.pair_keys(edge_type)
        if keys.numel() == 0 or src.numel() == 0:
            return torch.empty(0, dtype=torch.long, device=self.device)
        # Sorted queries walk the same search paths: far fewer cache misses.
        query = torch.sort(src * self.num_nodes[edge_type[2]] + dst).values
        pos = torch.searchsorted(keys, query).unsqueeze(1) + torch.arange(mult, device=self.device)
        pos = pos.clamp_(max=keys.numel() - 1)
        return order[pos][keys[pos] == query.unsqueeze(1)]

    def edge_flags(self, edge_type: EdgeType) -> Tensor:
        """A reusable all-``False`` boolean scratch tensor of shape ``(E,)`` for
        ``edge_type``; whoever sets entries resets them."""
        flags = self._edge_flags.get(edge_type)
        if flags is None:
            flags = torch.zeros(self.num_edges(edge_type), dtype=torch.bool, device=self.device)
            self._edge_flags[edge_type] = flags
        return flags


def contains(sorted_keys: Tensor, keys: Tensor) -> Tensor:
    """Boolean mask: which of ``keys`` occur in the sorted 1-D tensor ``sorted_keys``."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys

"""A vectorised pure-PyTorch k-hop neighbour sampler for heterogeneous graphs."""

from __future__ import annotations

import warnings
from typing import Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch_geometric.typing as pyg_typing
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import HeteroSamplerOutput
from torch_geometric.typing import EdgeType, NodeType

from kgrec.errors import ConfigError
from kgrec.sampler.base import HeteroSamplerBase, SeedExclusion, data_device
from kgrec.sampler.hetero_csc import HeteroCSC

__all__ = ["HeteroNeighborSampler", "pyg_lib_available", "parse_num_neighbors"]

#: Fanouts up to this size draw without replacement with Floyd's algorithm
#: (``k`` passes over ``(num_frontier, k)`` tensors); larger ones rank all
#: candidate edges by a random key.
FLOYD_MAX_FANOUT = 64

NumNeighborsArg = Union[Sequence[int], Mapping[Union[EdgeType, str], Sequence[int]]]


def pyg_lib_available() -> bool:
    """Whether PyG found ``pyg-lib`` (read at call time, so tests can fake it)."""
    return bool(pyg_typing.WITH_PYG_LIB)


def _edge_type_key(key, edge_types: List[EdgeType]) -> Optional[EdgeType]:
    if isinstance(key, str):
        key = tuple(key.split("__"))
    key = tuple(key) if isinstance(key, (tuple, list)) else key
    return key if key in edge_types else None


def parse_num_neighbors(num_neighbors: NumNeighborsArg, edge_types: List[EdgeType]) -> Dict[EdgeType, List[int]]:
    """Per-edge-type fanouts, one entry per hop, from a list (same for every edge
    type) or a dict keyed by edge type (tuples or PyG's ``"src__rel__dst"``
    strings). Every edge type needs an entry (``0`` skips it in a hop, ``-1``
    takes all neighbours) and all lists need the same length (the hops)."""
    if isinstance(num_neighbors, Mapping):
        unknown = [key for key in num_neighbors if _edge_type_key(key, edge_types) is None]
        if unknown:
            raise ConfigError(
                f"num_neighbors has keys that are not edge types of the graph: {unknown}; valid edge types are {edge_types}."
            )
        fanouts = {_edge_type_key(key, edge_types): value for key, value in num_neighbors.items()}
        missing = [et for et in edge_types if et not in fanouts]
        if missing:
            raise ConfigError(
                f"num_neighbors has no entry for edge types {missing}; give one list per edge type (use 0 to skip a hop)."
            )
    elif isinstance(num_neighbors, (list, tuple)):
        fanouts = {et: num_neighbors for et in edge_types}
    else:
        raise ConfigError(
            f"num_neighbors must be a list of fanouts per hop or a dict edge type -> list; got {type(num_neighbors).__name__}."
        )
    out: Dict[EdgeType, List[int]] = {}
    for et, values in fanouts.items():
        if not isinstance(values, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= -1 for v in values
        ):
            raise ConfigError(
                f"num_neighbors[{et}] must be a list of integers >= -1 (-1 = all neighbours); got {values!r}."
            )
        out[et] = [int(v) for v in values]
    lengths = {et: len(v) for et, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(
            f"num_neighbors must give every edge type one fanout per hop (the same number of hops); got lengths {lengths}."
        )
    if out and next(iter(lengths.values())) == 0:
        raise ConfigError("num_neighbors must give at least one hop; got empty fanout lists.")
    return out


class HeteroNeighborSampler(HeteroSamplerBase):
    r"""k-hop neighbour sampling on a :class:`~torch_geometric.data.HeteroData`
    in vectorised PyTorch, a drop-in :class:`~torch_geometric.sampler.BaseSampler`
    for :class:`~torch_geometric.loader.LinkLoader` and
    :class:`~torch_geometric.loader.NodeLoader`.

    Why our own: PyG's :class:`~torch_geometric.sampler.NeighborSampler` needs
    ``pyg-lib`` (no PyPI wheels) or ``torch-sparse`` (a long source build) and
    samples on the CPU only. This one needs only torch, keeps the CSC on
    ``device`` and runs every hop there, so on a GPU no sampled data visits the
    host (the only host synchronisation is the size of each hop's output, which
    any dynamic-shape op needs).

    Semantics follow PyG's directional sampling with ``disjoint=False``: the
    seeds are hop 0; in hop :math:`h`, for each edge type ``(src, rel, dst)``,
    every ``dst`` node discovered in hop :math:`h-1` draws up to
    ``num_neighbors[edge_type][h]`` of its incoming ``src`` neighbours, so
    messages flow toward the seeds. Nodes are listed per type in order of
    discovery (seeds first), edges per type in hop order, and
    ``num_sampled_nodes``/``num_sampled_edges`` count them per hop (as
    pyg-lib reports them for :func:`~torch_geometric.utils.trim_to_layer`).
    ``edge`` holds original edge ids (``edge_permutation`` is ``None``).

    Without replacement, ``k`` of ``d`` neighbours are drawn uniformly by
    Floyd's algorithm (all ``d`` when ``d <= k``, in stored order); with
    replacement, ``k`` independent uniform draws (none when ``d = 0``).
    Randomness comes from torch's global generator of ``device``, so
    :func:`torch.manual_seed` makes batches reproducible.

    .. warning::
        PyG's samplers leave a batch's supervision edges in its sampled
        graph, so a model can read the label off the message-passing edges.
        Here ``exclude_seed_edges=True`` (default) removes every seed edge of
        the batch, and the same pair in the reverse edge type
        (``rev_<rel>``), from the sampled subgraph. Valid and test edges can
        never be sampled as long as ``data`` is the graph built from the train
        split (:func:`kgrec.graph.build_graph` builds it that way): the
        sampler only ever reads ``data``'s edges.

    Memory: the CSC (``8 * (num_dst + 1 + 2 E)`` bytes per edge type) and two
    ``int64`` relabel buffers per node type (``16 * num_nodes`` bytes); a
    graph that does not fit ``device`` raises :class:`~kgrec.errors.ConfigError`
    with the size needed. The relabel buffers make one sampler instance
    single-threaded (DataLoader worker processes each hold their own copy).

    Args:
        data (HeteroData): the message-passing graph (train edges only); only
            ``edge_index`` and ``num_nodes`` are read.
        num_neighbors (list[int] or dict): fanout per hop for every edge type,
            or a dict ``edge_type -> list[int]`` covering all edge types
            (``-1`` = all neighbours, ``0`` = none); all lists the same length.
        replace (bool): sample with replacement.
        exclude_seed_edges (bool): keep each batch's seed edges (and their
            reverses) out of its sampled subgraph.
        device (str or torch.device, optional): where the CSC lives and the
            sampling runs; defaults to the device of ``data``'s edges.
        backend (str): ``"kgrec"`` (this implementation), ``"pyg"`` (PyG's
            native sampler through pyg-lib or torch-sparse, on the CPU, with
            kgrec's negatives and seed-edge exclusion around it), or
            ``"auto"``: ``"pyg"`` when pyg-lib is installed and ``device`` is
            the CPU, else ``"kgrec"``.
        max_bytes (int, optional): memory the sampler may use on ``device``
            (default: the device's free memory).
    """

    def __init__(
        self,
        data: HeteroData,
        num_neighbors: NumNeighborsArg,
        replace: bool = False,
        exclude_seed_edges: bool = True,
        device: Optional[Union[str, torch.device]] = None,
        backend: Literal["auto", "kgrec", "pyg"] = "auto",
        max_bytes: Optional[int] = None,
    ) -> None:
        super().__init__()
        if backend not in ("auto", "kgrec", "pyg"):
            raise ConfigError(f"backend must be one of {{'auto', 'kgrec', 'pyg'}}; got {backend!r}.")
        self.csc = HeteroCSC(data, device=device if device is not None else data_device(data), max_bytes=max_bytes)
        self.num_neighbors = parse_num_neighbors(num_neighbors, self.csc.edge_types)
        self.num_hops = len(next(iter(self.num_neighbors.values()), []))
        self.replace = bool(replace)
        self.exclude_seed_edges = bool(exclude_seed_edges)
        if backend == "auto":
            backend = "pyg" if pyg_lib_available() and self.device.type == "cpu" else "kgrec"
        if backend == "pyg":
            self._pyg = self._make_pyg_sampler(data)
        self.backend = backend

    # -- PyG delegation -------------------------------------------------------

    def _make_pyg_sampler(self, data: HeteroData):
        if not (pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE):
            raise ConfigError("backend='pyg' needs pyg-lib or torch-sparse installed; use backend='kgrec'.")
        from torch_geometric.sampler import NeighborSampler

        light = HeteroData()
        for node_type, num in self.csc.num_nodes.items():
            light[node_type].num_nodes = num
        for edge_type in self.csc.edge_types:
            light[edge_type].edge_index = data[edge_type].edge_index.cpu()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return NeighborSampler(light, num_neighbors=self.num_neighbors, replace=self.replace)

    def _sample_pyg(self, seed: Dict[NodeType, Tensor], exclusion: Optional[SeedExclusion]) -> HeteroSamplerOutput:
        out = self._pyg._sample({t: s.cpu() for t, s in seed.items()})
        perm = self._pyg.perm or {}
        device = self.device
        node = {t: out.node.get(t, torch.empty(0, dtype=torch.long)).to(device) for t in self.csc.node_types}
        row, col, edge = {}, {}, {}
        num_sampled_edges = dict(out.num_sampled_edges) if out.num_sampled_edges is not None else None
        for et in self.csc.edge_types:
            r = out.row.get(et, torch.empty(0, dtype=torch.long)).to(device)
            c = out.col.get(et, torch.empty(0, dtype=torch.long)).to(device)
            e = out.edge.get(et) if out.edge is not None else None
            e = torch.empty(0, dtype=torch.long) if e is None else e.long()
            if perm.get(et) is not None:
                e = perm[et][e]
            e = e.to(device)
            if exclusion is not None and exclusion.applies_to(et) and r.numel() > 0:
                drop = exclusion.mask(et, e)
                if num_sampled_edges is not None and et in num_sampled_edges:
                    counts = torch.tensor(num_sampled_edges[et], device=device)
                    hop = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
                    num_sampled_edges[et] = torch.bincount(hop[~drop], minlength=counts.numel()).tolist()
                r, c, e = r[~drop], c[~drop], e[~drop]
            row[et], col[et], edge[et] = r, c, e
        return HeteroSamplerOutput(
            node=node,
            row=row,
            col=col,
            edge=edge,
            num_sampled_nodes=out.num_sampled_nodes,
            num_sampled_edges=num_sampled_edges,
        )

    # -- kgrec sampling -------------------------------------------------------

    def _choose(
        self, edge_type: EdgeType, frontier: Tensor, k: int, exclusion: Optional[SeedExclusion]
    ) -> Tuple[Tensor, Tensor]:
        """Pick up to ``k`` incoming edges of each ``frontier`` node, leaving out
        excluded seed edges: ``(csc_pos, owner)``, positions into the CSC arrays
        and, per picked edge, the index into ``frontier`` of its destination."""
        colptr = self.csc.colptr[edge_type]
        device = self.device
        n = frontier.numel()
        if self.csc.num_edges(edge_type) == 0:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return empty, empty
        start = colptr.index_select(0, frontier)
        deg = colptr.index_select(0, frontier + 1) - start
        excluded = exclusion.flags(edge_type) if exclusion is not None and exclusion.applies_to(edge_type) else None

        if k < 0 or (not self.replace and k > FLOYD_MAX_FANOUT):
            ptr = torch.cumsum(deg, 0) - deg
            owner = torch.repeat_interleave(torch.arange(n, device=device), deg)
            pos = torch.arange(owner.numel(), device=device) - ptr[owner] + start[owner]
            if k >= 0:  # rank each node's candidates by a random key, keep the first k
                key = owner.to(torch.float64) + torch.rand(owner.numel(), dtype=torch.float64, device=device)
                order = torch.argsort(key)
                owner, pos = owner[order], pos[order]
                keep = (torch.arange(owner.numel(), device=device) - ptr[owner] < k).nonzero().squeeze(1)
                owner, pos = owner[keep], pos[keep]
            if excluded is not None:
                keep = (~excluded[self.csc.perm[edge_type][pos]]).nonzero().squeeze(1)
                owner, pos = owner[keep], pos[keep]
            return pos, owner

        if self.replace:
            offset = (torch.rand(n, k, dtype=torch.float64, device=device) * deg.unsqueeze(1)).long()
            valid = (deg > 0).unsqueeze(1).expand(n, k)
        else:
            offset = self._floyd(deg, k)
            valid = torch.arange(k, device=device).unsqueeze(0) < deg.unsqueeze(1)
        pos = (start.unsqueeze(1) + offset).flatten()
        valid = valid.flatten()
        if excluded is not None and pos.numel() > 0:
            # Invalid slots may point anywhere; clamp before the gather.
            eid = self.csc.perm[edge_type].index_select(0, pos.clamp(max=max(self.csc.num_edges(edge_type) - 1, 0)))
            valid = valid & ~excluded.index_select(0, eid)
        keep = valid.nonzero().squeeze(1)
        return pos.index_select(0, keep), torch.div(keep, k, rounding_mode="floor")

    def _floyd(self, deg: Tensor, k: int) -> Tensor:
        """``(n, k)`` distinct uniform offsets in ``[0, deg)`` per row (Floyd's
        algorithm, vectorised over rows); rows with ``deg <= k`` get ``0..k-1``."""
        device = self.device
        n = deg.numel()
        out = torch.empty(n, k, dtype=torch.long, device=device)
        base = deg - k
        for t in range(k):
            j = base + t  # draw from [0, j], take j itself on a collision
            r = (torch.rand(n, dtype=torch.float64, device=device) * (j + 1)).long()
            r = torch.minimum(r, j)
            if t > 0:
                r = torch.where((out[:, :t] == r.unsqueeze(1)).any(1), j, r)
            out[:, t] = r
        slots = torch.arange(k, device=device).unsqueeze(0)
        return torch.where((deg <= k).unsqueeze(1), slots, out)

    def _discover(self, node_type: NodeType, cand: Tensor, offset: int) -> Tensor:
        """Append the not-yet-seen ids of ``cand`` (in first-occurrence order) to
        ``node_type``'s local numbering, starting at ``offset``; return them."""
        local, first = self.csc.local[node_type], self.csc.first[node_type]
        unseen = cand[local.index_select(0, cand) < 0]
        if unseen.numel() == 0:
            return unseen
        idx = torch.arange(unseen.numel(), device=self.device)
        first.scatter_reduce_(0, unseen, idx, reduce="amin", include_self=True)
        new = unseen[first.index_select(0, unseen) == idx]
        first[unseen] = torch.iinfo(torch.long).max
        local[new] = torch.arange(offset, offset + new.numel(), device=self.device)
        return new

    def sample_neighbourhood(
        self, seed: Dict[NodeType, Tensor], exclusion: Optional[SeedExclusion] = None
    ) -> HeteroSamplerOutput:
        if self.backend == "pyg":
            return self._sample_pyg(seed, exclusion)
        csc, device = self.csc, self.device
        empty = torch.empty(0, dtype=torch.long, device=device)

        nodes: Dict[NodeType, List[Tensor]] = {}
        num_sampled_nodes: Dict[NodeType, List[int]] = {}
        frontier: Dict[NodeType, Tuple[Tensor, int]] = {}
        offset: Dict[NodeType, int] = {}
        # csc.local maps global ids to this batch's local ids and must be all -1 between
        # batches: reset it in `finally`, so a batch that fails part-way (out of memory, an
        # interrupt) cannot leave stale ids that would silently relabel the next batch's edges
        done = False
        try:
            for t in csc.node_types:
                s = seed.get(t, empty)
                if s.numel() > 0:
                    csc.local[t][s] = torch.arange(s.numel(), device=device)
                nodes[t], num_sampled_nodes[t] = [s], [s.numel()]
                frontier[t], offset[t] = (s, 0), s.numel()

            rows: Dict[EdgeType, List[Tensor]] = {et: [] for et in csc.edge_types}
            cols: Dict[EdgeType, List[Tensor]] = {et: [] for et in csc.edge_types}
            edges: Dict[EdgeType, List[Tensor]] = {et: [] for et in csc.edge_types}
            num_sampled_edges: Dict[EdgeType, List[int]] = {et: [] for et in csc.edge_types}

            for hop in range(self.num_hops):
                picked = []
                candidates: Dict[NodeType, List[Tensor]] = {t: [] for t in csc.node_types}
                for et in csc.edge_types:
                    k = self.num_neighbors[et][hop]
                    src_type, _, dst_type = et
                    front, start = frontier[dst_type]
                    if k == 0 or front.numel() == 0:
                        picked.append((et, empty, empty, empty))
                        continue
                    pos, owner = self._choose(et, front, k, exclusion)
                    src, eid = csc.row[et].index_select(0, pos), csc.perm[et].index_select(0, pos)
                    picked.append((et, src, owner + start, eid))
                    candidates[src_type].append(src)

                for t in csc.node_types:
                    new = self._discover(t, torch.cat(candidates[t]), offset[t]) if candidates[t] else empty
                    nodes[t].append(new)
                    num_sampled_nodes[t].append(new.numel())
                    frontier[t] = (new, offset[t])
                    offset[t] += new.numel()

                for et, src, dst_local, eid in picked:
                    rows[et].append(csc.local[et[0]].index_select(0, src))
                    cols[et].append(dst_local)
                    edges[et].append(eid)
                    num_sampled_edges[et].append(src.numel())
            done = True
        finally:
            for t, chunks in nodes.items():
                ids = torch.cat(chunks) if chunks else empty
                if ids.numel() > 0:
                    csc.local[t][ids] = -1
            if not done:  # _discover's scratch too, should it have been interrupted
                for t in csc.node_types:
                    csc.first[t].fill_(torch.iinfo(torch.long).max)
        node = {t: torch.cat(chunks) for t, chunks in nodes.items()}
        cat = lambda chunks: torch.cat(chunks) if chunks else empty  # noqa: E731
        return HeteroSamplerOutput(
            node=node,
            row={et: cat(v) for et, v in rows.items()},
            col={et: cat(v) for et, v in cols.items()},
            edge={et: cat(v) for et, v in edges.items()},
            num_sampled_nodes=num_sampled_nodes,
            num_sampled_edges=num_sampled_edges,
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_hops={self.num_hops}, replace={self.replace}, "
            f"exclude_seed_edges={self.exclude_seed_edges}, backend={self.backend!r}, device='{self.device}')"
        )

"""kgrec's samplers against PyG's own: deferral to pyg-lib, and batch layout
checked against ``LinkNeighborLoader`` when torch-sparse or pyg-lib is installed."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch_geometric.typing as pyg_typing
from torch_geometric.loader import LinkLoader, LinkNeighborLoader
from torch_geometric.sampler import NegativeSampling, NeighborSampler

from kgrec.sampler import HeteroNeighborSampler, pyg_lib_available

UI = ("user", "interacts", "item")
IU = ("item", "rev_interacts", "user")

needs_native = pytest.mark.skipif(
    not (pyg_typing.WITH_PYG_LIB or pyg_typing.WITH_TORCH_SPARSE),
    reason="PyG's native sampler needs pyg-lib or torch-sparse (pip install torch-sparse, or a pyg-lib wheel)",
)


def _triples(batch, edge_type):
    src_type, _, dst_type = edge_type
    ei = batch[edge_type].edge_index
    src, dst = batch[src_type].n_id[ei[0]], batch[dst_type].n_id[ei[1]]
    return set(zip(src.tolist(), dst.tolist(), batch[edge_type].e_id.tolist()))


def _layout(batch):
    """Store-by-store attribute names, dtypes and shapes that do not depend on randomness."""
    out = {}
    for store in batch.stores:
        key = getattr(store, "_key", None)
        for name, value in store.items():
            if name in ("num_sampled_nodes", "num_sampled_edges"):  # torch-sparse reports none
                continue
            out[(key, name)] = value.dtype if isinstance(value, torch.Tensor) else type(value)
    return out


def _pyg_loader(data, fanout, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinkNeighborLoader(data, fanout, **kwargs)


def test_auto_backend_defers_to_pyg_lib_when_installed(synthetic_graph, monkeypatch):
    data = synthetic_graph.data
    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", True)
    assert pyg_lib_available()
    reference = HeteroNeighborSampler(data, [2, 2], backend="kgrec", exclude_seed_edges=False)
    calls = []

    def fake_pyg_lib(self, seed, seed_time=None, **kwargs):
        # Stand-in for torch.ops.pyg.hetero_neighbor_sample: PyG reports edges
        # as positions in its own CSC, so map our edge ids through its perm.
        calls.append({k: v.clone() for k, v in seed.items()})
        out = reference.sample_neighbourhood(seed)
        for et, eid in out.edge.items():
            inverse = torch.empty_like(self.perm[et])
            inverse[self.perm[et]] = torch.arange(self.perm[et].numel())
            out.edge[et] = inverse[eid]
        return out

    monkeypatch.setattr(NeighborSampler, "_sample", fake_pyg_lib)
    sampler = HeteroNeighborSampler(data, [2, 2])
    assert sampler.backend == "pyg"
    assert HeteroNeighborSampler(data, [2, 2], backend="kgrec").backend == "kgrec"

    loader = LinkLoader(data, sampler, edge_label_index=(UI, None), batch_size=40,
                        neg_sampling=NegativeSampling("binary"))
    for batch in loader:
        for et in data.edge_types:
            for src, dst, eid in _triples(batch, et):
                assert data[et].edge_index[:, eid].tolist() == [src, dst]
        # kgrec's seed-edge exclusion still applies around PyG's sampler
        eli = batch[UI].edge_label_index[:, : int(batch[UI].edge_label.sum())]
        seeds = set(zip(batch["user"].n_id[eli[0]].tolist(), batch["item"].n_id[eli[1]].tolist()))
        assert not seeds & {(s, d) for s, d, _ in _triples(batch, UI)}
        assert not seeds & {(d, s) for s, d, _ in _triples(batch, IU)}
    assert len(calls) == len(loader)


@needs_native
def test_full_fanout_equals_pyg_link_neighbor_loader(synthetic_graph):
    data = synthetic_graph.data
    edges = data[UI].edge_index[:, :25]
    ours = LinkLoader(data, HeteroNeighborSampler(data, [-1, -1], exclude_seed_edges=False, backend="kgrec"),
                      edge_label_index=(UI, edges), batch_size=25)
    theirs = _pyg_loader(data, [-1, -1], edge_label_index=(UI, edges), batch_size=25)
    a, b = next(iter(ours)), next(iter(theirs))
    assert _layout(a) == _layout(b)
    for node_type in data.node_types:
        assert set(a[node_type].n_id.tolist()) == set(b[node_type].n_id.tolist())
        assert a[node_type].n_id.numel() == b[node_type].n_id.numel()
    for et in data.edge_types:
        assert _triples(a, et) == _triples(b, et), et
    for x in (a, b):
        eli = x[UI].edge_label_index
        assert torch.equal(torch.stack([x["user"].n_id[eli[0]], x["item"].n_id[eli[1]]]), edges)
    assert torch.equal(a[UI].input_id, b[UI].input_id)


@needs_native
@pytest.mark.parametrize("neg", [NegativeSampling("binary", 2), NegativeSampling("triplet", 3), None])
def test_batch_layout_equals_pyg_link_neighbor_loader(synthetic_graph, neg):
    data = synthetic_graph.data
    torch.manual_seed(0)
    ours = LinkLoader(data, HeteroNeighborSampler(data, [3, 2], backend="kgrec"), edge_label_index=(UI, None),
                      neg_sampling=neg, batch_size=32)
    theirs = _pyg_loader(data, [3, 2], edge_label_index=(UI, None), neg_sampling=neg, batch_size=32)
    for a, b in zip(ours, theirs):
        assert _layout(a) == _layout(b)
        for store_a, store_b in zip(a.stores, b.stores):
            for name in ("edge_label_index", "edge_label", "input_id", "src_index", "dst_pos_index", "dst_neg_index"):
                if name in store_b:
                    assert store_a[name].shape == store_b[name].shape, name
        if neg is not None and neg.is_binary():
            assert torch.equal(a[UI].edge_label, b[UI].edge_label)


@needs_native
def test_real_pyg_backend_matches_kgrec_backend(synthetic_graph):
    data = synthetic_graph.data
    seeds = data[UI].edge_index[:, 10:30]
    outs = []
    for backend in ("pyg", "kgrec"):
        sampler = HeteroNeighborSampler(data, [-1, -1], backend=backend)
        outs.append(next(iter(LinkLoader(data, sampler, edge_label_index=(UI, seeds), batch_size=20))))
    for et in data.edge_types:
        assert _triples(outs[0], et) == _triples(outs[1], et)

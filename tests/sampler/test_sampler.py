"""HeteroNeighborSampler / FullGraphSampler: invariants on the tiny synthetic graph."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import EdgeSamplerInput, NegativeSampling, NodeSamplerInput

from kgrec.graph import split_to_index
from kgrec.sampler import FullGraphSampler, HeteroNeighborSampler, NegativeSampler

UI = ("user", "interacts", "item")
IU = ("item", "rev_interacts", "user")


def _pairs(src, dst):
    return set(zip(src.tolist(), dst.tolist()))


def _global_edges(batch, edge_type):
    src_type, _, dst_type = edge_type
    ei = batch[edge_type].edge_index
    return batch[src_type].n_id[ei[0]], batch[dst_type].n_id[ei[1]]


def _loader(data, sampler, batch_size=32, neg=None, edge_type=UI, **kwargs):
    return LinkLoader(data, sampler, edge_label_index=(edge_type, None), neg_sampling=neg,
                      batch_size=batch_size, **kwargs)


@pytest.mark.parametrize(
    "fanout,replace", [([3, 2], False), ([3, 2], True), ([-1], False), ([100, 1], False), ([4, 0], False)]
)
def test_every_sampled_edge_exists_with_its_id(synthetic_graph, fanout, replace):
    data = synthetic_graph.data
    torch.manual_seed(0)
    sampler = HeteroNeighborSampler(data, fanout, replace=replace)
    seen_any = False
    for batch in _loader(data, sampler, neg=NegativeSampling("binary"), shuffle=True):
        for et in data.edge_types:
            src, dst = _global_edges(batch, et)
            assert batch[et].e_id.numel() == src.numel()
            expected = data[et].edge_index[:, batch[et].e_id]
            assert torch.equal(expected[0], src) and torch.equal(expected[1], dst), et
            if "edge_type" in data[et]:  # edge attributes follow the edge ids
                assert torch.equal(batch[et].edge_type, data[et].edge_type[batch[et].e_id])
            seen_any |= src.numel() > 0
    assert seen_any


def test_fanouts_respected_per_node_hop_and_edge_type(synthetic_graph):
    data = synthetic_graph.data
    fanout = {et: [2, 1] for et in data.edge_types}
    fanout[UI] = [3, 2]
    fanout[("item", "has_tag", "tag")] = [0, 1]
    torch.manual_seed(1)
    sampler = HeteroNeighborSampler(data, fanout, exclude_seed_edges=False)
    deg = {et: torch.bincount(data[et].edge_index[1], minlength=data[et[2]].num_nodes) for et in data.edge_types}
    for batch in _loader(data, sampler, batch_size=16, shuffle=True):
        for et in data.edge_types:
            counts = batch[et].num_sampled_edges
            assert len(counts) == 2 and sum(counts) == batch[et].edge_index.size(1)
            dst_type = et[2]
            node_counts = batch[dst_type].num_sampled_nodes
            assert sum(batch[et[0]].num_sampled_nodes) == batch[et[0]].n_id.numel()
            start = 0
            for hop, k in enumerate(fanout[et]):
                ei = batch[et].edge_index[:, start:start + counts[hop]]
                start += counts[hop]
                # destinations of hop h are exactly the nodes discovered in hop h - 1
                lo, hi = sum(node_counts[:hop]), sum(node_counts[:hop + 1])
                assert bool(((ei[1] >= lo) & (ei[1] < hi)).all())
                per_dst = torch.bincount(ei[1] - lo, minlength=hi - lo)
                frontier = batch[dst_type].n_id[lo:hi]
                assert torch.equal(per_dst, deg[et][frontier].clamp(max=k)), (et, hop)
            # without replacement no edge is drawn twice
            assert batch[et].e_id.unique().numel() == batch[et].e_id.numel()


def test_with_replacement_draws_exactly_k_per_node(synthetic_graph):
    data = synthetic_graph.data
    torch.manual_seed(2)
    sampler = HeteroNeighborSampler(data, [5], replace=True, exclude_seed_edges=False)
    batch = next(iter(_loader(data, sampler, batch_size=64)))
    deg = torch.bincount(data[IU].edge_index[1], minlength=data["user"].num_nodes)
    seeds = batch["user"].n_id[: batch["user"].num_sampled_nodes[0]]
    per_dst = torch.bincount(batch[IU].edge_index[1], minlength=seeds.numel())
    assert torch.equal(per_dst, torch.where(deg[seeds] > 0, 5, 0))


def test_deterministic_under_a_seed(synthetic_graph):
    data = synthetic_graph.data
    sampler = HeteroNeighborSampler(data, [4, 3])

    def run(seed):
        torch.manual_seed(seed)
        loader = _loader(data, sampler, neg=NegativeSampler("binary", popularity_exponent=0.5), shuffle=True)
        return [(b["user"].n_id, b["item"].n_id, b[UI].e_id, b[UI].edge_label_index) for b in loader]

    first, second, other = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for a, b in zip(first, second) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for a, b in zip(first, other) for x, y in zip(a, b))


def test_valid_and_test_edges_are_never_sampled(synthetic_graph, synthetic_split):
    data = synthetic_graph.data
    held_out = set()
    for frame in (synthetic_split.valid, synthetic_split.test):
        held_out |= _pairs(*split_to_index(synthetic_graph, frame))
    assert held_out
    samplers = [HeteroNeighborSampler(data, [-1, -1], exclude_seed_edges=False),
                FullGraphSampler(data, exclude_seed_edges=False)]
    for sampler in samplers:
        sampled = set()
        for batch in _loader(data, sampler, neg=NegativeSampling("binary")):
            sampled |= _pairs(*_global_edges(batch, UI))
            src, dst = _global_edges(batch, IU)
            sampled |= _pairs(dst, src)
        # the sampler reaches every train edge, and nothing else
        assert sampled == _pairs(*data[UI].edge_index)
        assert not sampled & held_out


@pytest.mark.parametrize("make", [lambda d: HeteroNeighborSampler(d, [-1, -1]), lambda d: FullGraphSampler(d)])
def test_seed_edges_are_held_out_of_their_batch(synthetic_graph, make):
    data = synthetic_graph.data
    for exclude in (True, False):
        sampler = make(data)
        sampler.exclude_seed_edges = exclude
        leaked = 0
        for batch in _loader(data, sampler, batch_size=50, neg=NegativeSampling("binary")):
            n_pos = int(batch[UI].edge_label.sum())
            eli = batch[UI].edge_label_index[:, :n_pos]
            seeds = _pairs(batch["user"].n_id[eli[0]], batch["item"].n_id[eli[1]])
            fwd = _pairs(*_global_edges(batch, UI))
            src, dst = _global_edges(batch, IU)
            rev = _pairs(dst, src)
            leaked += len(seeds & fwd) + len(seeds & rev)
        assert (leaked == 0) == exclude


def test_batch_layout_matches_pyg_link_loader_binary(synthetic_graph):
    data = synthetic_graph.data
    torch.manual_seed(3)
    sampler = HeteroNeighborSampler(data, [3, 2])
    loader = _loader(data, sampler, batch_size=20, neg=NegativeSampling("binary", amount=2))
    batch = next(iter(loader))
    assert set(batch.node_types) == set(data.node_types) and set(batch.edge_types) == set(data.edge_types)
    store = batch[UI]
    assert store.edge_label_index.shape == (2, 60) and store.edge_label_index.dtype == torch.long
    assert store.edge_label.dtype == torch.float and torch.equal(store.edge_label, torch.tensor([1.0] * 20 + [0.0] * 40))
    assert torch.equal(store.input_id, torch.arange(20))
    # positives map back to the loader's seed edges through n_id
    src = batch["user"].n_id[store.edge_label_index[0, :20]]
    dst = batch["item"].n_id[store.edge_label_index[1, :20]]
    assert torch.equal(torch.stack([src, dst]), data[UI].edge_index[:, :20])
    # seeds come first, as sorted unique ids (PyG's non-disjoint convention)
    n_seed_users = batch["user"].num_sampled_nodes[0]
    assert torch.equal(batch["user"].n_id[:n_seed_users], batch["user"].n_id[store.edge_label_index[0]].unique())
    for node_type in data.node_types:
        assert batch[node_type].n_id.dtype == torch.long
        assert batch[node_type].n_id.unique().numel() == batch[node_type].n_id.numel()
        assert len(batch[node_type].num_sampled_nodes) == 3
    for et in data.edge_types:
        assert batch[et].edge_index.dtype == torch.long and batch[et].e_id.dtype == torch.long


@pytest.mark.parametrize("amount", [1, 3])
def test_batch_layout_triplet(synthetic_graph, amount):
    data = synthetic_graph.data
    sampler = HeteroNeighborSampler(data, [2])
    batch = next(iter(_loader(data, sampler, batch_size=10, neg=NegativeSampling("triplet", amount=amount))))
    assert "edge_label_index" not in batch[UI]
    assert batch["user"].src_index.shape == (10,)
    assert batch["item"].dst_pos_index.shape == (10,)
    assert batch["item"].dst_neg_index.shape == ((10,) if amount == 1 else (10, amount))
    src = batch["user"].n_id[batch["user"].src_index]
    dst = batch["item"].n_id[batch["item"].dst_pos_index]
    assert torch.equal(torch.stack([src, dst]), data[UI].edge_index[:, :10])


def test_same_type_seed_edges(synthetic_graph):
    data = synthetic_graph.data
    et = ("item", "kg", "item")
    sampler = HeteroNeighborSampler(data, [-1])
    batch = next(iter(_loader(data, sampler, batch_size=8, edge_type=et, neg=NegativeSampling("binary"))))
    eli = batch[et].edge_label_index
    assert torch.equal(batch["item"].n_id[eli[:, :8]], data[et].edge_index[:, :8])
    fwd = _pairs(*_global_edges(batch, et))
    assert not fwd & _pairs(*data[et].edge_index[:, :8])


def test_node_loader_puts_seeds_first(synthetic_graph):
    data = synthetic_graph.data
    for sampler in (HeteroNeighborSampler(data, [3, 3]), FullGraphSampler(data)):
        loader = NodeLoader(data, sampler, input_nodes=("user", torch.arange(10, 30)), batch_size=8)
        batch = next(iter(loader))
        assert batch["user"].batch_size == 8
        assert torch.equal(batch["user"].n_id[:8], torch.arange(10, 18))
        src, dst = _global_edges(batch, IU)
        assert _pairs(src, dst) <= _pairs(*data[IU].edge_index)


def test_full_graph_returns_everything_but_the_seed_edges(synthetic_graph):
    data = synthetic_graph.data
    sampler = FullGraphSampler(data)
    batch = next(iter(_loader(data, sampler, batch_size=16, neg=NegativeSampling("binary"))))
    for node_type in data.node_types:
        assert torch.equal(batch[node_type].n_id, torch.arange(data[node_type].num_nodes))
    assert torch.equal(batch[UI].edge_label_index[:, :16], data[UI].edge_index[:, :16])  # global ids
    assert batch[UI].edge_index.size(1) == data[UI].edge_index.size(1) - 16
    assert batch[IU].edge_index.size(1) == data[IU].edge_index.size(1) - 16
    assert torch.equal(batch[("item", "has_tag", "tag")].edge_index, data["item", "has_tag", "tag"].edge_index)


def test_seed_exclusion_covers_parallel_edges(synthetic_graph):
    data = synthetic_graph.data.clone()
    ei = data[UI].edge_index
    data[UI].edge_index = torch.cat([ei, ei[:, :5]], dim=1)  # five pairs now twice
    data[IU].edge_index = data[UI].edge_index.flip(0)
    for sampler in (HeteroNeighborSampler(data, [-1]), FullGraphSampler(data)):
        inputs = EdgeSamplerInput(None, ei[0, :5], ei[1, :5], input_type=UI)
        out = sampler.sample_from_edges(inputs)
        pairs = _pairs(out.node["item"][out.row[IU]], out.node["user"][out.col[IU]])
        assert not pairs & _pairs(ei[1, :5], ei[0, :5])


def test_sampler_output_stays_on_its_device(synthetic_graph):
    data = synthetic_graph.data
    sampler = HeteroNeighborSampler(data, [2, 2], device="cpu")
    out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.arange(5), input_type="user"))
    assert all(v.device.type == "cpu" for v in list(out.node.values()) + list(out.row.values()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_runs_on_the_gpu(synthetic_graph):
    data = synthetic_graph.data
    sampler = HeteroNeighborSampler(data, [3, 3], device="cuda")
    batch = next(iter(_loader(data, sampler, neg=NegativeSampler("binary", reject_positives=True))))
    assert batch["user"].n_id.is_cuda and batch[UI].edge_label_index.is_cuda
    src, dst = _global_edges(batch, UI)
    expected = data[UI].edge_index[:, batch[UI].e_id.cpu()]
    assert torch.equal(expected, torch.stack([src, dst]).cpu())


def test_no_pyg_lib_warning_from_kgrec_sampler(synthetic_graph):
    """PyG warns when its own sampler runs without pyg-lib; kgrec's sampler must not set it off."""
    data = synthetic_graph.data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = HeteroNeighborSampler(data, [2, 2], backend="kgrec")
        batch = next(iter(_loader(data, sampler)))
    assert [str(w.message) for w in caught] == []
    assert batch[UI].edge_label_index.size(1) > 0  # it sampled a batch on its own


@pytest.mark.parametrize("make", [lambda d: HeteroNeighborSampler(d, [2, 2]), FullGraphSampler])
def test_empty_edge_types_and_isolated_seeds(make):
    from torch_geometric.data import HeteroData

    data = HeteroData()
    data["user"].num_nodes = 3
    data["item"].num_nodes = 3
    data[UI].edge_index = torch.tensor([[0, 1], [0, 1]])
    data[IU].edge_index = torch.empty(2, 0, dtype=torch.long)
    sampler = make(data)
    out = sampler.sample_from_edges(EdgeSamplerInput(None, torch.tensor([0, 2]), torch.tensor([0, 2]), input_type=UI),
                                    NegativeSampling("binary"))
    assert out.row[IU].numel() == 0
    assert set(out.node["user"].tolist()) >= {0, 2}
    eli = out.metadata[1]
    assert torch.equal(out.node["user"][eli[0, :2]], torch.tensor([0, 2]))


@pytest.mark.parametrize("deg,k", [(6, 2), (6, 5), (100, 70)])  # Floyd's algorithm and the random-key path
def test_without_replacement_draws_are_uniform(deg, k):
    from itertools import combinations

    from torch_geometric.data import HeteroData

    num_dst = 3000
    data = HeteroData()
    data["user"].num_nodes = deg
    data["item"].num_nodes = num_dst
    # every item has the same `deg` users as neighbours
    data[("user", "rates", "item")].edge_index = torch.stack(
        [torch.arange(deg).repeat(num_dst), torch.arange(num_dst).repeat_interleave(deg)])
    torch.manual_seed(4)
    out = HeteroNeighborSampler(data, [k]).sample_from_nodes(
        NodeSamplerInput(None, torch.arange(num_dst), input_type="item"))
    et = ("user", "rates", "item")
    assert torch.equal(torch.bincount(out.col[et], minlength=num_dst), torch.full((num_dst,), k))
    users = out.node["user"][out.row[et]]
    freq = torch.bincount(users, minlength=deg).double() / num_dst
    assert torch.allclose(freq, torch.full((deg,), k / deg, dtype=torch.float64), atol=0.05)
    if deg == 6 and k == 2:  # every pair of neighbours equally likely
        order = torch.argsort(out.col[et], stable=True)
        picked = users[order].view(num_dst, k).sort(1).values
        pairs = torch.bincount(picked[:, 0] * deg + picked[:, 1], minlength=deg * deg)
        counts = torch.stack([pairs[a * deg + b] for a, b in combinations(range(deg), 2)]).double()
        assert torch.allclose(counts / num_dst, torch.full_like(counts, 1 / 15), atol=0.02)

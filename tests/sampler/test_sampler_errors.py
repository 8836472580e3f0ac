"""Bad input to the samplers raises kgrec errors that name the value."""

from __future__ import annotations

import pytest
import torch
import torch_geometric.typing as pyg_typing
from torch_geometric.data import HeteroData
from torch_geometric.sampler import EdgeSamplerInput, NegativeSampling, NodeSamplerInput

from kgrec.errors import ConfigError, DataError
from kgrec.sampler import FullGraphSampler, HeteroNeighborSampler, NegativeSampler

UI = ("user", "interacts", "item")


@pytest.fixture
def data():
    d = HeteroData()
    d["user"].num_nodes = 5
    d["item"].num_nodes = 4
    ei = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 0]])
    d[UI].edge_index = ei
    d["item", "rev_interacts", "user"].edge_index = ei.flip(0)
    return d


def test_fanout_lengths_must_match_the_hops(data):
    with pytest.raises(ConfigError, match=r"one fanout per hop.*lengths"):
        HeteroNeighborSampler(data, {UI: [2, 2], ("item", "rev_interacts", "user"): [2]})
    with pytest.raises(ConfigError, match="at least one hop"):
        HeteroNeighborSampler(data, [])


def test_fanout_keys_must_be_edge_types(data):
    with pytest.raises(ConfigError, match=r"not edge types of the graph.*'user', 'likes', 'item'"):
        HeteroNeighborSampler(data, {("user", "likes", "item"): [2], UI: [2], ("item", "rev_interacts", "user"): [2]})
    with pytest.raises(ConfigError, match=r"no entry for edge types \[\('item', 'rev_interacts', 'user'\)\]"):
        HeteroNeighborSampler(data, {UI: [2]})
    with pytest.raises(ConfigError, match=r"integers >= -1.*-3"):
        HeteroNeighborSampler(data, [-3])
    with pytest.raises(ConfigError, match="list of fanouts per hop"):
        HeteroNeighborSampler(data, 5)
    # PyG's "src__rel__dst" strings are accepted as keys
    HeteroNeighborSampler(data, {"user__interacts__item": [1], "item__rev_interacts__user": [1]})


@pytest.mark.parametrize("amount", [0, -1, float("nan")])
def test_negative_amount_must_be_positive(data, amount):
    with pytest.raises(ConfigError, match="amount must be a positive number"):
        NegativeSampler("binary", amount=amount)
    neg = NegativeSampling("binary", 1)
    neg.amount = amount  # PyG checks at construction only
    sampler = HeteroNeighborSampler(data, [1])
    inputs = EdgeSamplerInput(None, torch.tensor([0]), torch.tensor([0]), input_type=UI)
    with pytest.raises(ConfigError, match="amount must be a positive number"):
        sampler.sample_from_edges(inputs, neg)


def test_other_negative_options_are_checked():
    with pytest.raises(ConfigError, match="whole number in 'triplet' mode"):
        NegativeSampler("triplet", amount=1.5)
    with pytest.raises(ConfigError, match=r"mode must be one of.*'pairs'"):
        NegativeSampler("pairs")
    with pytest.raises(ConfigError, match="popularity_exponent must be a finite number >= 0; got -1"):
        NegativeSampler(popularity_exponent=-1)
    with pytest.raises(ConfigError, match="rejection_rounds must be an integer >= 1; got 0"):
        NegativeSampler(rejection_rounds=0)


def test_dst_weight_must_match_the_node_count(data):
    sampler = HeteroNeighborSampler(data, [1])
    inputs = EdgeSamplerInput(None, torch.tensor([0]), torch.tensor([0]), input_type=UI)
    with pytest.raises(ConfigError, match=r"dst_weight must hold one weight per node \(4\); got 3"):
        sampler.sample_from_edges(inputs, NegativeSampling("binary", dst_weight=torch.ones(3)))


@pytest.mark.parametrize("make", [lambda d: HeteroNeighborSampler(d, [1]), FullGraphSampler])
def test_seed_edges_of_a_missing_type(data, make):
    inputs = EdgeSamplerInput(None, torch.tensor([0]), torch.tensor([0]), input_type=("user", "rates", "item"))
    with pytest.raises(ConfigError, match=r"edge type of the graph.*\('user', 'rates', 'item'\)"):
        make(data).sample_from_edges(inputs)
    with pytest.raises(ConfigError, match="node type of the graph.*'movie'"):
        make(data).sample_from_nodes(NodeSamplerInput(None, torch.tensor([0]), input_type="movie"))


@pytest.mark.parametrize("make", [lambda d: HeteroNeighborSampler(d, [1]), FullGraphSampler])
def test_node_ids_out_of_range(data, make):
    sampler = make(data)
    inputs = EdgeSamplerInput(None, torch.tensor([0, 1]), torch.tensor([0, 4]), input_type=UI)
    with pytest.raises(DataError, match=r"destination column holds 'item' ids in \[0, 4\].*4 'item' nodes"):
        sampler.sample_from_edges(inputs)
    inputs = EdgeSamplerInput(None, torch.tensor([-1]), torch.tensor([0]), input_type=UI)
    with pytest.raises(DataError, match=r"source column holds 'user' ids in \[-1, -1\]"):
        sampler.sample_from_edges(inputs)
    with pytest.raises(DataError, match=r"seed nodes holds 'user' ids in \[0, 9\]"):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([0, 9]), input_type="user"))


def test_graph_edges_out_of_range(data):
    data[UI].edge_index = torch.tensor([[0], [7]])
    with pytest.raises(DataError, match=r"outside \[0, num_nodes\).*\[7, 7\] for 4 'item' nodes"):
        HeteroNeighborSampler(data, [1])


def test_graph_too_large_for_the_device(data):
    with pytest.raises(ConfigError, match=r"too large for device 'cpu'.*need .*\(\d+ bytes\) but only .*\(100 bytes\)"):
        HeteroNeighborSampler(data, [1], max_bytes=100)
    with pytest.raises(ConfigError, match="too large for device 'cpu'"):
        FullGraphSampler(data, max_bytes=100)


def test_bad_backend_and_missing_native_libraries(data, monkeypatch):
    with pytest.raises(ConfigError, match=r"backend must be one of.*'cugraph'"):
        HeteroNeighborSampler(data, [1], backend="cugraph")
    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", False)
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    with pytest.raises(ConfigError, match="backend='pyg' needs pyg-lib or torch-sparse"):
        HeteroNeighborSampler(data, [1], backend="pyg")
    assert HeteroNeighborSampler(data, [1]).backend == "kgrec"


def test_not_a_hetero_graph():
    from torch_geometric.data import Data

    with pytest.raises(DataError, match="needs a torch_geometric HeteroData graph; got Data"):
        HeteroNeighborSampler(Data(edge_index=torch.zeros(2, 1, dtype=torch.long), num_nodes=1), [1])


def test_temporal_inputs_are_refused(data):
    sampler = HeteroNeighborSampler(data, [1])
    inputs = EdgeSamplerInput(None, torch.tensor([0]), torch.tensor([0]), time=torch.tensor([1.0]), input_type=UI)
    with pytest.raises(ConfigError, match="temporal sampling"):
        sampler.sample_from_edges(inputs)


def test_a_failed_batch_leaves_no_excluded_edges_behind(data):
    sampler = HeteroNeighborSampler(data, [-1])
    inputs = EdgeSamplerInput(None, torch.tensor([0]), torch.tensor([0]), input_type=UI)
    with pytest.raises(ConfigError):
        sampler.sample_from_edges(inputs, NegativeSampling("binary", dst_weight=torch.ones(3)))
    assert not any(flags.any() for flags in sampler.csc._edge_flags.values())
    # the next batch sees edge 0 -> 0 again once it is not a seed
    other = EdgeSamplerInput(None, torch.tensor([1]), torch.tensor([1]), input_type=UI)
    out = sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([0]), input_type="item"))
    assert 0 in out.edge[UI].tolist()
    out = sampler.sample_from_edges(other)
    assert not sampler.csc._edge_flags[UI].any()


def test_a_batch_that_fails_part_way_leaves_the_next_batch_correct(monkeypatch):
    # the sampler's global -> local id buffers are shared between batches: an error half-way
    # (out of memory, an interrupt) must not leave stale ids that relabel the next batch's edges
    from kgrec.testing import synthetic_world

    _, _, graph = synthetic_world()
    data, et = graph.data, ("user", "interacts", "item")
    sampler = HeteroNeighborSampler(data, [3, 3], backend="kgrec")
    ei = data[et].edge_index
    batch = lambda sl: EdgeSamplerInput(None, ei[0, sl], ei[1, sl], None, None, et)  # noqa: E731
    real, calls = sampler._choose, {"n": 0}

    def fails_on_the_third_call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(sampler, "_choose", fails_on_the_third_call)
    with pytest.raises(RuntimeError, match="simulated"):
        sampler.sample_from_edges(batch(slice(0, 16)))
    monkeypatch.setattr(sampler, "_choose", real)
    assert all(bool((local < 0).all()) for local in sampler.csc.local.values())
    out = sampler.sample_from_edges(batch(slice(16, 32)))
    checked = 0
    for edge_type in data.edge_types:
        rows, eids = out.row[edge_type], out.edge[edge_type]
        if rows.numel():
            assert torch.equal(out.node[edge_type[0]][rows], data[edge_type].edge_index[0, eids]), edge_type
            checked += 1
    assert checked >= 3


def test_cuda_free_memory_counts_what_the_caching_allocator_holds_unused(monkeypatch):
    from kgrec.sampler.hetero_csc import available_bytes

    # the driver reports 100 MiB free; PyTorch holds 300 MiB reserved of which 200 MiB are in use
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100 * 2**20, 1000 * 2**20))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 300 * 2**20)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 200 * 2**20)
    assert available_bytes(torch.device("cuda", 0)) == 200 * 2**20
    assert available_bytes(torch.device("meta")) is None

"""Negative sampling: uniform, popularity-weighted, rejection of train positives."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.sampler import EdgeSamplerInput, NegativeSampling

from kgrec.sampler import FullGraphSampler, HeteroNeighborSampler, NegativeSampler

UI = ("user", "interacts", "item")


def _dense_graph(num_users=4, num_items=10, per_user=8):
    """Each user has interacted with ``per_user`` of ``num_items`` items (80% density)."""
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    users = torch.arange(num_users).repeat_interleave(per_user)
    items = torch.cat([(torch.arange(per_user) + u) % num_items for u in range(num_users)])
    data[UI].edge_index = torch.stack([users, items])
    data["item", "rev_interacts", "user"].edge_index = torch.stack([items, users])
    return data


def _sample(sampler, data, neg, num=4):
    ei = data[UI].edge_index[:, :num]
    return sampler.sample_from_edges(EdgeSamplerInput(torch.arange(num), ei[0], ei[1], input_type=UI), neg)


def _neg_pairs_binary(out, num_pos):
    _, eli, label, _ = out.metadata
    assert torch.equal(label[:num_pos], torch.ones(num_pos)) and not label[num_pos:].any()
    return out.node["user"][eli[0, num_pos:]], out.node["item"][eli[1, num_pos:]]


@pytest.mark.parametrize("make", [lambda d: HeteroNeighborSampler(d, [1]), FullGraphSampler])
def test_reject_positives_binary_and_triplet(make):
    data = _dense_graph()
    positives = set(zip(*data[UI].edge_index.tolist()))
    sampler = make(data)
    torch.manual_seed(0)
    with_reject = NegativeSampler("binary", amount=50, reject_positives=True, rejection_rounds=40)
    users, items = _neg_pairs_binary(_sample(sampler, data, with_reject), 4)
    assert users.numel() == 200 and not set(zip(users.tolist(), items.tolist())) & positives
    # without rejection, an 80%-dense graph yields many false negatives: the check above can fail
    users, items = _neg_pairs_binary(_sample(sampler, data, NegativeSampler("binary", amount=50)), 4)
    assert len([p for p in zip(users.tolist(), items.tolist()) if p in positives]) > 50

    out = _sample(sampler, data, NegativeSampler("triplet", amount=30, reject_positives=True, rejection_rounds=40))
    _, src_index, dst_pos_index, dst_neg_index, _ = out.metadata
    assert dst_neg_index.shape == (4, 30)
    src = out.node["user"][src_index].unsqueeze(1).expand(-1, 30)
    neg = out.node["item"][dst_neg_index]
    assert not set(zip(src.flatten().tolist(), neg.flatten().tolist())) & positives


def test_uniform_negatives_cover_all_items():
    data = _dense_graph(num_items=10)
    sampler = HeteroNeighborSampler(data, [1])
    torch.manual_seed(1)
    _, items = _neg_pairs_binary(_sample(sampler, data, NegativeSampling("binary", amount=500)), 4)
    counts = torch.bincount(items, minlength=10)
    assert counts.sum() == 2000 and bool((counts > 120).all())  # 200 expected per item


def test_popularity_weighted_negatives_follow_train_degree():
    data = HeteroData()
    data["user"].num_nodes = 50
    data["item"].num_nodes = 4
    degrees = torch.tensor([1, 4, 16, 0])  # item 3 has no train interaction
    items = torch.repeat_interleave(torch.arange(4), degrees)
    users = torch.arange(items.numel())
    data[UI].edge_index = torch.stack([users, items])
    sampler = HeteroNeighborSampler(data, [1])
    torch.manual_seed(2)
    for exponent in (1.0, 0.5):
        out = _sample(sampler, data, NegativeSampler("binary", amount=5000, popularity_exponent=exponent), num=2)
        _, items_neg = _neg_pairs_binary(out, 2)
        freq = torch.bincount(items_neg, minlength=4).double() / items_neg.numel()
        expected = degrees.double().pow(exponent)
        expected[degrees == 0] = 0
        expected /= expected.sum()
        assert freq[3] == 0
        assert torch.allclose(freq, expected, atol=0.02), (exponent, freq, expected)


def test_explicit_dst_weight_is_honoured():
    data = _dense_graph(num_items=10)
    sampler = HeteroNeighborSampler(data, [1])
    weight = torch.zeros(10)
    weight[7] = 1.0
    _, items = _neg_pairs_binary(_sample(sampler, data, NegativeSampling("binary", amount=10, dst_weight=weight)), 4)
    assert bool((items == 7).all())


def test_fractional_binary_amount_rounds_up_as_pyg():
    data = _dense_graph()
    out = _sample(HeteroNeighborSampler(data, [1]), data, NegativeSampling("binary", amount=0.5), num=3)
    assert out.metadata[1].shape == (2, 3 + 2)

"""The training graph: schema, reverses, vocabularies, and no leakage."""

from __future__ import annotations

import pytest
import torch

from kgrec.errors import DataError, UnknownIdError
from kgrec.graph import INTERACTS, build_graph, build_vocabs, split_to_index
from kgrec.data.split import split_dataset


def edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


@pytest.mark.parametrize("strategy", ["random", "temporal", "leave_one_out", "cold_item"])
def test_no_valid_or_test_interaction_nor_its_reverse_in_the_graph(synthetic, strategy):
    split = split_dataset(synthetic, strategy, seed=1)
    graph = build_graph(synthetic, split)
    forward = edge_set(graph.data[INTERACTS].edge_index)
    reverse = {(u, i) for i, u in edge_set(graph.data["item", "rev_interacts", "user"].edge_index)}
    held_out = set()
    for part in ("valid", "test"):
        u, i = split_to_index(graph, split.part(part))
        held_out |= set(zip(u.tolist(), i.tolist()))
    u, i = split_to_index(graph, split.train)
    assert forward == set(zip(u.tolist(), i.tolist())) == reverse
    assert not forward & held_out
    # degrees come from train only
    deg = torch.bincount(graph.data[INTERACTS].edge_index[0], minlength=graph.num_users)
    assert deg.sum().item() == len(split.train)


def test_schema_reverses_and_validate(synthetic_graph):
    data = synthetic_graph.data
    assert set(data.node_types) == {"user", "item", "tag", "entity"}
    for src, rel, dst in data.edge_types:
        if rel.startswith("rev_"):
            continue
        fwd = data[src, rel, dst].edge_index
        rev = data[dst, f"rev_{rel}", src].edge_index
        assert torch.equal(fwd.flip(0), rev)
        assert fwd[0].max() < data[src].num_nodes and fwd[1].max() < data[dst].num_nodes
    for nt, vocab in synthetic_graph.vocabs.items():
        assert data[nt].num_nodes == len(vocab)
    assert data.validate()
    text = synthetic_graph.summary()
    assert "user-interacts-item" in text and "entity" in text


def test_tags_attributes_and_kg(synthetic, synthetic_graph):
    g = synthetic_graph
    assert "genre=Sci-Fi" in g.vocabs["tag"] and "occupation=writer" in g.vocabs["tag"]
    # i0 is a space film: it has the Sci-Fi tag edge
    i0 = g.vocabs["item"].encode(["i0"])[0]
    scifi = g.vocabs["tag"].encode(["genre=Sci-Fi"])[0]
    assert (i0, scifi) in edge_set(g.data["item", "has_tag", "tag"].edge_index)
    # linked entities are item nodes, not entity nodes
    assert not set(synthetic.links["entity"]) & set(g.vocabs["entity"].ids)
    assert g.relations == sorted(synthetic.kg["relation"].unique())
    total = 0
    for et in g.data.edge_types:
        if et[1] == "kg":
            et_ids = g.data[et].edge_type
            assert et_ids.min() >= 0 and et_ids.max() < len(g.relations)
            total += g.data[et].num_edges
    assert total == len(synthetic.kg)
    # sequel_of links two items: an item-kg-item edge exists
    assert g.data["item", "kg", "item"].num_edges > 0


def test_cold_items_have_no_interaction_edges_but_keep_side_edges(synthetic):
    split = split_dataset(synthetic, "cold_item", cold_fraction=0.25, seed=2)
    graph = build_graph(synthetic, split)
    cold = torch.from_numpy(graph.vocabs["item"].encode(sorted(split.cold_items)))
    assert not torch.isin(graph.data[INTERACTS].edge_index[1], cold).any()
    assert torch.isin(graph.data["item", "has_tag", "tag"].edge_index[0], cold).any()


def test_vocab_encode_decode_and_unknown_ids(synthetic):
    vocabs = build_vocabs(synthetic)
    idx = vocabs["item"].encode(["i3", "i0"])
    assert list(vocabs["item"].decode(idx)) == ["i3", "i0"]
    with pytest.raises(UnknownIdError, match="Unknown user id 'nobody'"):
        vocabs["user"].encode(["u0", "nobody"])
    with pytest.raises(UnknownIdError, match=r"index out of range \[0, 40\)"):
        vocabs["item"].decode([40])


def test_text_features_are_attached_and_checked(synthetic, synthetic_split):
    vocabs = build_vocabs(synthetic)
    feats = {"item": torch.randn(len(vocabs["item"]), 8), "tag": torch.randn(len(vocabs["tag"]), 8)}
    graph = build_graph(synthetic, synthetic_split, text_features=feats, feature_dtype=torch.float16)
    assert graph.data["item"].x.dtype == torch.float16 and graph.data["item"].x.shape == (40, 8)
    with pytest.raises(DataError, match=r"text_features\['user'\] must have shape \(60, dim\); got \(3, 8\)"):
        build_graph(synthetic, synthetic_split, text_features={"user": torch.randn(3, 8)})
    with pytest.raises(DataError, match="node type 'movie'"):
        build_graph(synthetic, synthetic_split, text_features={"movie": torch.randn(3, 8)})


def test_inputs_are_not_mutated(synthetic, synthetic_split):
    before = synthetic_split.train.copy()
    build_graph(synthetic, synthetic_split)
    assert synthetic_split.train.equals(before)


def test_prune_entities_drops_leaves_and_keeps_vocab_aligned(synthetic_graph):
    from kgrec.graph import prune_entities

    before = synthetic_graph.data["entity"].num_nodes
    pruned = prune_entities(synthetic_graph, 3)
    data = pruned.data
    assert synthetic_graph.data["entity"].num_nodes == before  # caller's graph untouched
    assert 0 < data["entity"].num_nodes < before
    assert len(pruned.vocabs["entity"]) == data["entity"].num_nodes
    assert data.validate()
    assert (_kg_degree(pruned) >= 3).all()
    # min_degree 1 keeps everything: the same graph comes back
    assert prune_entities(synthetic_graph, 1) is synthetic_graph


def _kg_degree(graph):
    """KG edges per entity (forward edges, each triple counted once per entity end)."""
    data = graph.data
    deg = torch.zeros(data["entity"].num_nodes, dtype=torch.long)
    for et in data.edge_types:
        if et[1] == "kg":
            if et[0] == "entity":
                deg += torch.bincount(data[et].edge_index[0], minlength=deg.numel())
            if et[2] == "entity":
                deg += torch.bincount(data[et].edge_index[1], minlength=deg.numel())
    return deg


def test_prune_entities_drops_hubs_above_max_degree(synthetic_graph):
    from kgrec.graph import prune_entities

    full = _kg_degree(synthetic_graph)
    cap = int(full.float().median())
    pruned = prune_entities(synthetic_graph, 1, max_degree=cap)
    kept = _kg_degree(pruned)
    assert kept.numel() == int((full <= cap).sum()) and (kept <= cap).all()
    assert list(pruned.vocabs["entity"].ids) == [e for e, d in zip(synthetic_graph.vocabs["entity"].ids, full) if d <= cap]
    from kgrec.errors import ConfigError

    with pytest.raises(ConfigError, match="max_degree=1 is below min_degree=2"):
        prune_entities(synthetic_graph, 2, max_degree=1)


def test_data_on_moves_a_copy_and_leaves_the_callers_graph(synthetic_graph):
    from kgrec.graph import data_on

    data = synthetic_graph.data
    before = {key: t for store in data.stores for key, t in store.items() if torch.is_tensor(t)}
    moved = data_on(data, "meta")
    assert moved is not data
    assert {t.device.type for store in moved.stores for t in store.values() if torch.is_tensor(t)} == {"meta"}
    after = {key: t for store in data.stores for key, t in store.items() if torch.is_tensor(t)}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert data_on(data, "cpu")[INTERACTS].edge_index is data[INTERACTS].edge_index  # no copy on the same device

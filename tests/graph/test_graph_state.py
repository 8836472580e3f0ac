"""A training graph as plain containers (what a checkpoint stores) and back."""

from __future__ import annotations

import re

import pytest
import torch

from helpers import text_world
from kgrec.errors import DataError
from kgrec.graph import edge_key, graph_from_state, graph_state, parse_edge_key, reverse, train_fingerprint
from kgrec.text import TextLayout


def test_a_graph_round_trips_with_everything_serving_needs():
    dataset, split, graph = text_world()
    graph.data["item"].x = graph.data["item"].x.half()  # features keep their dtype in the state
    state = graph_state(graph)
    assert state["x"]["item"].dtype == torch.float16
    assert not [k for k in state["edges"] if "|rev_" in k]  # each reverse is stored once, as its forward type
    back = graph_from_state(state, "this graph")
    assert back.data.edge_types == graph.data.edge_types and back.relations == graph.relations
    for et in graph.data.edge_types:
        assert torch.equal(back.data[et].edge_index, graph.data[et].edge_index), et
        if "edge_type" in graph.data[et]:
            assert torch.equal(back.data[et].edge_type, graph.data[et].edge_type), et
    assert back.data["item"].x.dtype == torch.float32
    assert back.display_names() == graph.display_names() and back.display_names()[0] != graph.vocabs["item"].ids[0]
    assert back.text_layout == TextLayout.of(dataset) and back.dataset_name == "synthetic"
    assert train_fingerprint(back) == train_fingerprint(graph)
    # what a new item's text looks like, written without the dataset
    assert back.text_layout.item_text("Orbit", ["genre=Sci-Fi", "genre=Drama"]).startswith("Orbit")


def test_edge_keys_and_reverses():
    assert parse_edge_key(edge_key(("item", "rev_has_tag", "tag"))) == ("item", "rev_has_tag", "tag")
    assert [parse_edge_key(k) for k in ("item|tag", "item||tag", "a|b|c|d", 7)] == [None] * 4
    assert reverse(("item", "has_tag", "tag")) == ("tag", "rev_has_tag", "item")
    assert reverse(reverse(("user", "interacts", "item"))) == ("user", "interacts", "item")


def test_a_state_that_is_not_one_is_named():
    with pytest.raises(DataError, match=re.escape("my graph is incomplete: its graph lacks ['x', 'item_names']")):
        graph_from_state({"vocabs": {}, "edges": {}}, "my graph")
    with pytest.raises(DataError, match="my graph holds no training graph"):
        graph_from_state([], "my graph")
    good = {"vocabs": {"item": ["a"], "tag": ["t"]}, "x": {}, "item_names": ["A"],
            "edges": {"item|has_tag|tag": torch.zeros(2, 1, dtype=torch.long)}}
    assert graph_from_state(good, "my graph").data["item", "has_tag", "tag"].edge_index.shape == (2, 1)
    with pytest.raises(DataError, match=r"my graph is corrupt: edges 'item\|has_tag\|person' name node type 'person'"):
        graph_from_state({**good, "edges": {"item|has_tag|person": torch.zeros(2, 1, dtype=torch.long)}}, "my graph")

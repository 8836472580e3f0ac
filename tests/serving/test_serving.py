"""Placing new nodes and explaining, on a model's graph (no training needed: the maths holds for any weights)."""

from __future__ import annotations

import torch

from helpers import text_world
from kgrec.graph import HAS_ATTRIBUTE, HAS_TAG, INTERACTS
from kgrec.nn import GNNConfig, KGRecModel, graph_info
from kgrec.serving import Explainer, NodePlacer, humanize_relation


def _model(graph, layers=2):
    torch.manual_seed(0)
    model = KGRecModel(graph_info(graph), GNNConfig(hidden_channels=8, num_layers=layers)).eval()
    with torch.no_grad():  # tag and entity ids start at zero: give every path something to carry
        for emb in model.id_emb.values():
            emb.weight.normal_()
    return model


def test_a_placed_node_gets_exactly_what_a_full_forward_pass_gives():
    _, _, graph = text_world()
    for layers in (1, 2, 3):
        model = _model(graph, layers)
        placer = NodePlacer(model, graph.data, torch.device("cpu"))
        new_user, new_item = graph.num_users, graph.num_items
        cases = [("user", {INTERACTS: ([new_user] * 3, [0, 3, 7], None), HAS_ATTRIBUTE: ([new_user], [0], None)}),
                 ("item", {HAS_TAG: ([new_item], [1], None), ("item", "kg", "entity"): ([new_item], [0], [1])})]
        for node_type, edges in cases:
            x = torch.randn(1, graph.data[node_type].x.size(1))
            data = placer.with_node(node_type, x, edges)
            with torch.no_grad():
                full = model(data)[node_type][-1]
            assert torch.allclose(placer.place(data, node_type), full, atol=1e-5), (layers, node_type)
        assert graph.num_users == new_user and graph.data["user"].num_nodes == new_user  # the graph is not edited


def test_explanations_walk_training_edges_only():
    _, _, graph = text_world()
    model = _model(graph)
    with torch.no_grad():
        items = model(graph.data)["item"]
    explainer = Explainer(graph, items)
    edges = {(et[0], s, et[2], d) for et in graph.data.edge_types
             for s, d in zip(*graph.data[et].edge_index.tolist())}
    found = 0
    for user in range(5):
        for item in range(0, graph.num_items, 7):
            for e in explainer.explain(user, item, k=4):
                found += 1
                ids = {nt: {str(v): i for i, v in enumerate(graph.vocabs[nt].ids)} for nt in graph.vocabs}
                hops = [(nt, ids[nt][raw]) for nt, raw in e.path]
                assert all((a[0], a[1], b[0], b[1]) in edges for a, b in zip(hops, hops[1:])), e
                assert e.text.startswith("Because you liked ")
    assert found


def test_humanized_relations():
    assert humanize_relation("film.film.directed_by") == "director"
    assert humanize_relation("film.director.film") == "director"
    assert humanize_relation("film.film.production_companies") == "production company"
    assert humanize_relation("sequel_of") == "sequel"
    assert humanize_relation("some_new_relation") == "some new relation"

"""The kgrec GNN (``kgrec.nn``): propagation, the cold view, inputs, losses, scoring."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from helpers import text_world
from kgrec.errors import ConfigError
from kgrec.nn import (GNNConfig, KGRecModel, alignment_loss, gramian_loss, graph_info, sampled_softmax_loss,
                      score_matrix, score_pairs)


# ------------------------------------------------------------------ layers
def test_propagation_equals_dense_normalised_adjacency(synthetic_graph):
    data = synthetic_graph.data
    model = KGRecModel(graph_info(synthetic_graph), GNNConfig(hidden_channels=8, num_layers=1,
                                                              learn_relation_weights=True))
    flat = model.flatten(data)
    x = torch.randn(flat.num_nodes, 8, requires_grad=True)
    with torch.no_grad():
        model.convs[0].logit[model.convs[0].learnable] = 1.3  # non-trivial relation weights
    out = model.convs[0](x, flat)
    alpha = model.convs[0].relation_weights()[flat.rel]
    dense = torch.zeros(flat.num_nodes, flat.num_nodes)
    dense.index_put_((flat.edge_index[1], flat.edge_index[0]), flat.edge_weight * alpha, accumulate=True)
    assert torch.allclose(out, dense @ x, atol=1e-5)
    grad_sparse = torch.autograd.grad((out ** 2).sum(), [x, model.convs[0].logit])
    ref = dense @ x
    grad_dense_x = torch.autograd.grad((ref ** 2).sum(), x)[0]
    assert torch.allclose(grad_sparse[0], grad_dense_x, atol=1e-4)
    # the relation-weight gradient (computed over (relation, source) pairs) equals the dense one
    logit = model.convs[0].logit.detach().clone().requires_grad_(True)
    alpha_d = torch.where(model.convs[0].learnable, torch.nn.functional.softplus(logit) / model.convs[0]._SOFTPLUS0,
                          torch.ones_like(logit))[flat.rel]
    dense_d = torch.zeros(flat.num_nodes, flat.num_nodes).index_put(
        (flat.edge_index[1], flat.edge_index[0]), flat.edge_weight * alpha_d, accumulate=True)
    grad_dense_logit = torch.autograd.grad(((dense_d @ x.detach()) ** 2).sum(), logit)[0]
    assert grad_sparse[1][model.convs[0].learnable].abs().sum() > 0  # KG relation weights learn
    assert torch.allclose(grad_sparse[1], grad_dense_logit, rtol=1e-4, atol=1e-4)
    assert grad_sparse[1][~model.convs[0].learnable].abs().sum() == 0


def test_a_graph_without_edges_flattens_on_the_device_of_its_edges(synthetic_graph):
    from kgrec.nn import flatten_graph

    data = synthetic_graph.data
    empty = HeteroData()
    for nt in data.node_types:
        empty[nt].num_nodes = data[nt].num_nodes
    for et in data.edge_types:  # "meta" stands in for a GPU; a sampled batch can draw no edge at all
        empty[et].edge_index = torch.empty(2, 0, dtype=torch.long, device="meta")
    flat = flatten_graph(empty, data.node_types, data.edge_types, len(synthetic_graph.relations))
    tensors = [flat.edge_index, flat.edge_weight, flat.rel, *flat.csr, *flat.csr_t]
    assert all(t.device.type == "meta" for t in tensors) and flat.edge_index.shape == (2, 0)


def test_fixed_relation_weights_propagate_over_a_cached_adjacency(synthetic_graph):
    data = synthetic_graph.data
    model = KGRecModel(graph_info(synthetic_graph), GNNConfig(hidden_channels=8, num_layers=2))
    flat = model.flatten(data)
    conv = model.convs[0]
    assert not conv.logit.requires_grad
    dense = torch.zeros(flat.num_nodes, flat.num_nodes)
    dense.index_put_((flat.edge_index[1], flat.edge_index[0]), flat.edge_weight, accumulate=True)
    mask = model.side_relations
    dense_side = torch.zeros_like(dense)
    dense_side.index_put_((flat.edge_index[1], flat.edge_index[0]), flat.edge_weight * mask[flat.rel],
                          accumulate=True)
    for _ in range(2):  # the second round runs on the cached adjacencies
        x = torch.randn(flat.num_nodes, 8, requires_grad=True)
        out, side = conv(x, flat), model.convs[1](x, flat, mask, mask_key="side")
        assert torch.allclose(out, dense @ x, atol=1e-5) and torch.allclose(side, dense_side @ x, atol=1e-5)
        grad = torch.autograd.grad((out ** 2).sum() + side.sum(), x)[0]
        ref = torch.autograd.grad(((dense @ x) ** 2).sum() + (dense_side @ x).sum(), x)[0]
        assert torch.allclose(grad, ref, atol=1e-4)
    # one adjacency pair per key, shared by both layers
    assert sorted(k for k, _ in flat._adjacency_cache) == ["all", "side"]


def test_side_messages_get_a_fixed_share(synthetic_graph):
    data = synthetic_graph.data
    info = graph_info(synthetic_graph)
    flats = {b: KGRecModel(info, GNNConfig(hidden_channels=4, num_layers=1, side_weight=b)).flatten(data)
             for b in (0.0, 1.0, 3.0)}
    flat = flats[1.0]
    ui = torch.isin(flat.rel, torch.tensor([i for i, et in enumerate(
        [et for et in data.edge_types if et[1] not in ("kg", "rev_kg")]) if et[1] in ("interacts", "rev_interacts")]))
    dst = flat.edge_index[1]
    has_ui = torch.zeros(flat.num_nodes, dtype=torch.bool)
    for nt in ("user", "item"):  # node types that receive user-item messages (cold items included)
        has_ui[flat.offsets[nt]:flat.offsets[nt] + flat.sizes[nt]] = True
    mixed = has_ui[dst]
    assert (~ui & mixed).any() and (~ui & ~mixed).any()
    # beta = 0: side messages vanish for users and items, stay for tags and entities
    assert (flats[0.0].edge_weight[~ui & mixed] == 0).all()
    assert (flats[0.0].edge_weight[~ui & ~mixed] > 0).all()
    # side share beta / (1 + beta), user-item share 1 / (1 + beta), relative to beta = 1 (1/2 each)
    assert torch.allclose(flats[3.0].edge_weight[~ui & mixed], flat.edge_weight[~ui & mixed] * 1.5)
    assert torch.allclose(flats[3.0].edge_weight[ui & mixed], flat.edge_weight[ui & mixed] * 0.5)
    assert torch.allclose(flats[3.0].edge_weight[~mixed], flat.edge_weight[~mixed])
    with pytest.raises(ConfigError, match=r"gnn.side_weight must be >= 0; got -1.0"):
        GNNConfig(side_weight=-1.0)


def test_losses_behave():
    u = torch.nn.functional.normalize(torch.randn(8, 4), dim=-1)
    good = sampled_softmax_loss(u, u, None, 0.1, torch.arange(8))
    bad = sampled_softmax_loss(u, u.roll(1, 0), None, 0.1, torch.arange(8))
    assert good < bad
    # a duplicate positive is never its own negative
    ids = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6])
    loss = sampled_softmax_loss(u, u, None, 0.1, ids)
    assert torch.isfinite(loss)
    assert alignment_loss(u, u, 0.1) < alignment_loss(u, u.roll(1, 0), 0.1)


def test_gramian_loss_is_the_ials_objective():
    torch.manual_seed(0)
    u, pos, items = torch.randn(6, 5), torch.randn(6, 5), torch.randn(11, 5)
    # brute force: squared error on the observed pairs, mean squared score over all (user, item) pairs
    observed = ((u * pos).sum(-1) - 1).pow(2).mean()
    unobserved = (u @ items.t()).pow(2).mean()
    assert torch.allclose(gramian_loss(u, pos, items, 0.0), observed)
    assert torch.allclose(gramian_loss(u, pos, items, 3.0), observed + 3.0 * unobserved)
    # the penalty pushes unobserved scores down: shrinking every item score lowers it
    assert gramian_loss(u, pos, 0.5 * items, 3.0) < gramian_loss(u, pos, items, 3.0)
    # per-row weights scale each row's unobserved term; all-ones weights change nothing
    w = torch.tensor([0.5, 2.0, 1.0, 0.0, 3.0, 1.5])
    weighted = ((u @ items.t()).pow(2).mean(-1) * w).mean()
    assert torch.allclose(gramian_loss(u, pos, items, 3.0, w), observed + 3.0 * weighted)
    assert torch.allclose(gramian_loss(u, pos, items, 3.0, torch.ones(6)), gramian_loss(u, pos, items, 3.0))
    # per-item weights scale each item's unobserved pairs (element-wise ALS's weighting)
    c = torch.tensor([0.0, 1.0, 2.0, 0.5, 1.0, 4.0, 1.0, 0.25, 3.0, 1.0, 1.0])
    item_weighted = ((u @ items.t()).pow(2) * c).mean()
    assert torch.allclose(gramian_loss(u, pos, items, 3.0, item_weight=c), observed + 3.0 * item_weighted)
    both = ((u @ items.t()).pow(2) * c * w.unsqueeze(-1)).mean()
    assert torch.allclose(gramian_loss(u, pos, items, 3.0, w, c), observed + 3.0 * both)


def test_kg_relation_weights_are_fixed_unless_learned(synthetic_graph):
    data = synthetic_graph.data
    info = graph_info(synthetic_graph)
    x = torch.randn(sum(data[nt].num_nodes for nt in data.node_types), 8)
    for learn in (False, True):
        model = KGRecModel(info, GNNConfig(hidden_channels=8, num_layers=1, learn_relation_weights=learn))
        flat = model.flatten(data)
        out = model.convs[0](x, flat)
        if learn:
            grad = torch.autograd.grad(out.pow(2).sum(), model.convs[0].logit)[0]
            assert grad[model.convs[0].learnable].abs().sum() > 0
        else:
            assert not out.requires_grad  # every relation weighs 1; nothing to learn
            assert torch.equal(model.convs[0].relation_weights(), torch.ones(model.convs[0].num_relations))
    # a checkpoint that learned its relation weights does not load silently into a fixed model
    learned = KGRecModel(info, GNNConfig(hidden_channels=8, num_layers=1, learn_relation_weights=True))
    with torch.no_grad():
        learned.convs[0].logit[learned.convs[0].learnable] = 0.7
    fixed = KGRecModel(info, GNNConfig(hidden_channels=8, num_layers=1))
    with pytest.raises(ConfigError, match="learn_relation_weights=True"):
        fixed.load_state_dict(learned.state_dict())
    fixed.load_state_dict(KGRecModel(info, GNNConfig(hidden_channels=8, num_layers=1)).state_dict())


def test_cold_view_is_what_a_cold_item_gets():
    dataset, split, graph = text_world("cold_item")
    # no item-item KG edges: through them a neighbour's users (whose degrees count the
    # removed edges) would reach the item; every other path is the same in both graphs
    data = graph.data.edge_type_subgraph([et for et in graph.data.edge_types if (et[0], et[2]) != ("item", "item")])
    model = KGRecModel(graph_info(graph), GNNConfig(hidden_channels=16, learn_relation_weights=True))
    with torch.no_grad():
        for conv in model.convs:  # non-trivial KG relation weights
            conv.logit[conv.learnable] = torch.linspace(-1, 1, int(conv.learnable.sum()))
    model.eval()
    ui = data["user", "interacts", "item"].edge_index
    trained = torch.bincount(ui[1], minlength=graph.num_items) > 0
    model.set_id_mask("item", trained)
    with torch.no_grad():
        view = model(data, cold_view=True)["item_cold"]
        warm_out = model(data)["item"]
    for w in torch.unique(ui[1])[:4].tolist():  # one at a time: the others stay warm in both
        cold_data = data.clone()
        for et in (("user", "interacts", "item"), ("item", "rev_interacts", "user")):
            ei = cold_data[et].edge_index
            cold_data[et].edge_index = ei[:, (ei[1] if et[2] == "item" else ei[0]) != w]
        model.set_id_mask("item", trained & (torch.arange(graph.num_items) != w))
        with torch.no_grad():
            real = model(cold_data)["item"][w]  # the item made really cold: no interactions, no id
        assert torch.allclose(view[w], real, atol=1e-5)
        assert (view[w] - warm_out[w]).norm() > 1e-3  # and not its warm embedding
    assert "item_cold" not in model(data)
    # a model without item text has no cold view to give
    textless = KGRecModel({**graph_info(graph), "text_dims": {}}, GNNConfig(hidden_channels=8))
    with pytest.raises(ConfigError, match="cold_view needs item text"):
        textless(data, cold_view=True)


def test_sampled_subgraph_with_full_fanout_reproduces_full_graph_embeddings(synthetic_graph):
    """Sampled training normalises by full-graph degrees, so it propagates like evaluation does."""
    from torch_geometric.loader import NodeLoader

    from kgrec.sampler import HeteroNeighborSampler

    data = synthetic_graph.data
    model = KGRecModel(graph_info(synthetic_graph), GNNConfig(hidden_channels=8, num_layers=2)).eval()
    with torch.no_grad():
        full = model(data)["user"]
        users = torch.arange(0, 20, 3)
        loader = NodeLoader(data, HeteroNeighborSampler(data, num_neighbors=[-1, -1]), input_nodes=("user", users),
                            batch_size=len(users))
        batch = next(iter(loader))
        unnormalised = model(batch)["user"][: len(users)]
        model.set_full_graph(data)
        sampled = model(batch)["user"][: len(users)]
    assert torch.allclose(sampled, full[batch["user"].n_id[: len(users)]], atol=1e-5)
    assert not torch.allclose(unnormalised, full[batch["user"].n_id[: len(users)]], atol=1e-3)


def test_warm_text_false_places_only_nodes_without_a_trained_id_by_text(synthetic_graph):
    data = synthetic_graph.data.clone()
    counts = {nt: data[nt].num_nodes for nt in data.node_types}
    data["item"].x = torch.randn(counts["item"], 4)
    info = {**graph_info(synthetic_graph), "text_dims": {"item": 4}}
    torch.manual_seed(0)
    adding = KGRecModel(info, GNNConfig(hidden_channels=8))
    torch.manual_seed(0)
    model = KGRecModel(info, GNNConfig(hidden_channels=8, warm_text=False))
    cold = torch.zeros(counts["item"], dtype=torch.bool)
    cold[:3] = True
    for m in (adding, model):
        m.set_id_mask("item", ~cold)
    ids = model.id_emb["item"].weight
    text = model.project_text("item", data["item"].x)
    h = model.input_embeddings(data)["item"]
    assert torch.allclose(h[~cold], ids[~cold])  # warm items: their id embedding alone
    assert torch.allclose(h[cold], text[cold])  # items without a trained id: their text
    assert torch.allclose(adding.input_embeddings(data)["item"][~cold], ids[~cold] + text[~cold])
    # the cold view still gives every item its text: it is what trains the projection
    out = model(data, cold_view=True)
    out["item_cold"].sum().backward()
    assert model.text_proj["item"].weight.grad.abs().sum() > 0


def test_id_dropout_trains_items_as_if_cold(synthetic_graph):
    data = synthetic_graph.data
    info = {**graph_info(synthetic_graph), "text_dims": {"item": 4}}
    with pytest.raises(ConfigError, match=r"gnn.id_dropout must be in \[0, 1\); got 1.0"):
        GNNConfig(id_dropout=1.0)
    model = KGRecModel(info, GNNConfig(hidden_channels=8, id_dropout=0.5))
    data = data.clone()
    data["item"].x = torch.zeros(data["item"].num_nodes, 4)  # text adds nothing: only ids are seen
    text = model.project_text("item", data["item"].x)
    torch.manual_seed(0)
    id_part = model.input_embeddings(data)["item"] - text
    dropped = (id_part.abs().sum(-1) < 1e-7).float().mean()
    assert 0.2 < dropped < 0.8  # about half the items lose their id embedding in a training step
    model.eval()
    assert ((model.input_embeddings(data)["item"] - text).abs().sum(-1) > 1e-7).all()  # never at evaluation


def test_gramian_loss_survives_float16_autocast():
    # 16-mixed precision: the d x d sums over a batch and a catalogue pass float16's 65504,
    # which made the default ials loss inf (and every step skipped by the gradient scaler)
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(16384, 64, generator=g) * 0.375, torch.randn(3700, 64, generator=g) * 0.375
    pos = items[torch.randint(0, 3700, (16384,), generator=g)]
    reference = gramian_loss(users, pos, items, 20.0)
    with torch.autocast("cpu", dtype=torch.float16):
        half = gramian_loss(users.half(), pos.half(), items.half(), 20.0, user_weight=torch.ones(16384).half())
    assert torch.isfinite(half)
    assert torch.allclose(half.float(), reference, rtol=1e-3)


def test_bad_model_arguments(synthetic_graph):
    info = graph_info(synthetic_graph)
    with pytest.raises(ConfigError, match=r"gnn.score must be one of \{'dot', 'cosine'\}; got 'l2'"):
        GNNConfig(score="l2")
    with pytest.raises(ConfigError, match="gnn.use_id_embeddings=False needs text features for users and items"):
        KGRecModel(info, GNNConfig(use_id_embeddings=False))
    with pytest.raises(ConfigError, match=r"graph_info lacks \['text_dims', 'edge_types', 'num_kg_relations'\]"):
        KGRecModel({"num_nodes": {}})
    for name, bad, message in (("hidden_channels", 0, "a positive integer"), ("num_layers", -1, "an integer >= 0"),
                               ("dropout", 1.0, r"in \[0, 1\)"), ("init_std", 0.0, "> 0")):
        with pytest.raises(ConfigError, match=rf"gnn.{name} must be {message}; got {bad!r}"):
            GNNConfig(**{name: bad})


@pytest.mark.parametrize("score", ["dot", "cosine"])
def test_every_score_is_the_one_scoring_function(synthetic_graph, score):
    model = KGRecModel(graph_info(synthetic_graph), GNNConfig(hidden_channels=8, score=score))
    users, items = torch.randn(5, 8), torch.randn(7, 8)
    full = score_matrix(users, items, score)
    assert torch.allclose(model.score_all(users, items), full)
    assert torch.allclose(model.score(users, items[:5]), full.diagonal())
    assert torch.allclose(score_pairs(users, items[:5], score), full.diagonal())
    if score == "cosine":  # scale-free: a longer user vector ranks the same and scores the same
        assert torch.allclose(score_matrix(3 * users, items, score), full, atol=1e-6)
        assert full.abs().max() <= 1 + 1e-6

"""The kgrec model: layers, losses, Lightning training, the CLI and the recommender contract."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from torch_geometric.data import HeteroData

from kgrec.data import make_synthetic
from kgrec.errors import ConfigError, DataError
from kgrec.graph import INTERACTS, build_graph, build_vocabs
from kgrec.lightning import KGRecDataModule, KGRecModule
from kgrec.models import KGRec
from kgrec.nn import KGRecModel, alignment_loss, gramian_loss, sampled_softmax_loss
from kgrec.split import split_dataset
from kgrec.testing import RecommenderChecks, synthetic_world
from kgrec.text import HashingTextEncoder, encode_node_texts

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"


def text_world(strategy="random", seed=0):
    dataset = make_synthetic(seed=seed)
    split = split_dataset(dataset, strategy, seed=seed)
    vocabs = build_vocabs(dataset)
    x = encode_node_texts(dataset, split, vocabs, HashingTextEncoder(dim=32), use_cache=False)
    return dataset, split, build_graph(dataset, split, text_features={k: v for k, v in x.items() if v is not None},
                                       vocabs=vocabs)


def make_module(graph, split, **kwargs):
    dm = KGRecDataModule.from_graph(graph, split, batch_size=64)
    args = dict(hidden_channels=16, num_layers=2, num_negatives=16, lr=0.01)
    args.update(kwargs)
    return dm, KGRecModule(dm.graph_info, **args)


# ------------------------------------------------------------------ layers
def test_propagation_equals_dense_normalised_adjacency(synthetic_graph):
    data = synthetic_graph.data
    model = KGRecModel({nt: data[nt].num_nodes for nt in data.node_types}, {}, data.edge_types,
                       len(synthetic_graph.relations), hidden_channels=8, num_layers=1, learn_relation_weights=True)
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
    model = KGRecModel({nt: data[nt].num_nodes for nt in data.node_types}, {}, data.edge_types,
                       len(synthetic_graph.relations), hidden_channels=8, num_layers=2)
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
    args = ({nt: data[nt].num_nodes for nt in data.node_types}, {}, data.edge_types, len(synthetic_graph.relations))
    flats = {b: KGRecModel(*args, hidden_channels=4, num_layers=1, side_weight=b).flatten(data) for b in (0.0, 1.0, 3.0)}
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
    with pytest.raises(ConfigError, match="side_weight"):
        KGRecModel(*args, side_weight=-1.0)


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


def test_unobserved_user_power_weights_each_user_by_its_degree(synthetic_graph, synthetic_split, monkeypatch):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=64)
    dm.setup("fit")
    with pytest.raises(ConfigError, match="'unobserved_user_power' parameter must be >= 0; got -0.5"):
        KGRecModule(dm.graph_info, unobserved_user_power=-0.5)
    with pytest.raises(ConfigError, match="'unobserved_user_power' parameter must be >= 0; got nan"):
        KGRecModule(dm.graph_info, unobserved_user_power=float("nan"))
    users, _ = dm.train_edges()
    degree = torch.bincount(users, minlength=synthetic_graph.num_users).float()
    weights = {}
    for power in (0.0, 0.5, 1.0):
        module = KGRecModule(dm.graph_info, hidden_channels=8, num_layers=1, unobserved_user_power=power)
        monkeypatch.setattr(module, "_datamodule", lambda: dm)
        module.on_fit_start()
        weights[power] = module._user_weight
    assert weights[0.0] is None  # every edge alike: no weights at all
    for power in (0.5, 1.0):
        w = weights[power]
        assert torch.allclose(w[users].mean(), torch.tensor(1.0))  # mean 1 over the training edges
        seen = degree > 0
        # a user's total unobserved weight over an epoch, degree x w, goes as degree^(1 - power)
        total = degree[seen] * w[seen]
        expected = degree[seen].pow(1 - power)
        assert torch.allclose(total / total.sum(), expected / expected.sum(), rtol=1e-4)


def _weights_of_one_step(module, dm, monkeypatch):
    """One training step; the ``user_weight`` and ``item_weight`` its first ranking loss got, and the batch."""
    seen = {}
    real = module._ranking_loss

    def spy(*args, user_weight=None, item_weight=None, **kwargs):
        seen.setdefault("user", user_weight)
        seen.setdefault("item", item_weight)
        return real(*args, user_weight=user_weight, item_weight=item_weight, **kwargs)

    monkeypatch.setattr(module, "_ranking_loss", spy)
    batch = next(iter(dm.train_dataloader()))
    module.training_step(batch, 0)
    return seen["user"], seen["item"], batch


@pytest.mark.parametrize("negative_items", ["trained", "all"])
def test_unobserved_item_power_weights_each_item_by_its_training_popularity(synthetic_graph, synthetic_split,
                                                                            monkeypatch, negative_items):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=64)
    dm.setup("fit")
    with pytest.raises(ConfigError, match="'unobserved_item_power' parameter must be a finite number; got inf"):
        KGRecModule(dm.graph_info, unobserved_item_power=float("inf"))
    with pytest.raises(ConfigError, match="'unobserved_item_power' parameter must be a finite number; got nan"):
        KGRecModule(dm.graph_info, unobserved_item_power=float("nan"))
    with pytest.raises(ConfigError, match="'unobserved_item_power' parameter must be a finite number; got 'x'"):
        KGRecModule(dm.graph_info, unobserved_item_power="x")
    _, items = dm.train_edges()  # train edges only: valid / test interactions never weigh
    degree = torch.bincount(items, minlength=synthetic_graph.num_items).double()
    assert len(degree[degree > 0].unique()) > 1
    for power in (0.0, 0.5, -0.5):
        module = KGRecModule(dm.graph_info, hidden_channels=8, num_layers=1, unobserved_item_power=power,
                             negative_items=negative_items)
        monkeypatch.setattr(module, "_datamodule", lambda: dm)
        monkeypatch.setattr(module, "log", lambda *a, **k: None)
        module.on_fit_start()
        if power == 0.0:
            assert module._item_weight is None  # every item alike: no weights at all
            continue
        expected = degree.clamp(min=1).pow(power)
        pool = degree > 0 if negative_items == "trained" else torch.ones_like(degree, dtype=torch.bool)
        expected = expected / expected[pool].mean()  # mean 1 over the items the penalty covers
        assert torch.allclose(module._item_weight.double(), expected, rtol=1e-5)
        # a full-graph step hands the unobserved term the weights of exactly its negative pool
        _, item_weight, _ = _weights_of_one_step(module, dm, monkeypatch)
        assert torch.allclose(item_weight.double(), expected[pool], rtol=1e-5)


def test_unobserved_weights_follow_global_user_and_item_ids_in_a_sampled_batch(synthetic, synthetic_split,
                                                                              monkeypatch):
    import dataclasses

    # every synthetic user has the same degree; thin some users' training rows so weights differ
    train = synthetic_split.train
    thinned = train[~train["user"].isin(train["user"].unique()[::2]) | (train.groupby("user").cumcount() < 3)]
    split = dataclasses.replace(synthetic_split, train=thinned)
    graph = build_graph(synthetic, split)
    dm = KGRecDataModule.from_graph(graph, split, sampling="neighbor", num_neighbors=[1, 1], batch_size=16)
    dm.setup("fit")
    module = KGRecModule(dm.graph_info, hidden_channels=8, unobserved_user_power=0.5, unobserved_item_power=0.5,
                         cold_weight=0.0)
    monkeypatch.setattr(module, "_datamodule", lambda: dm)
    monkeypatch.setattr(module, "log", lambda *a, **k: None)
    module.on_fit_start()
    user_weight, item_weight, batch = _weights_of_one_step(module, dm, monkeypatch)
    # the batch's users are local to the subgraph; their weights are those of their global ids
    users, items = dm.train_edges()
    degree = torch.bincount(users, minlength=graph.num_users).double()
    assert len(degree.unique()) > 1
    expected = degree.clamp(min=1).pow(-0.5)
    expected = expected * len(users) / (degree * expected).sum()
    local_users = batch[INTERACTS].edge_label_index[0]
    global_users = batch["user"].n_id[local_users]
    # a subgraph, so the two numberings differ, and so do the weights they would pick
    assert not torch.allclose(expected[global_users], expected[local_users])
    assert torch.allclose(user_weight, expected[global_users].float())
    # likewise the items: the subgraph's negative pool (local ids) weighs as its global items do
    item_degree = torch.bincount(items, minlength=graph.num_items).double()
    expected = item_degree.clamp(min=1).pow(0.5)
    expected = expected / expected[item_degree > 0].mean()
    pool = module._negative_pool(batch)
    global_pool = batch["item"].n_id[pool]
    assert len(expected[global_pool].unique()) > 1 and not torch.equal(global_pool, pool)
    assert torch.allclose(item_weight, expected[global_pool].float())


def test_weight_decay_penalises_each_batch_edge_s_user_and_item_inputs(synthetic_graph, synthetic_split, monkeypatch):
    torch.manual_seed(0)
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=64)
    dm.setup("fit")
    losses = {}
    for wd in (0.0, 0.5):
        torch.manual_seed(0)
        module = KGRecModule(dm.graph_info, hidden_channels=8, num_layers=1, weight_decay=wd, cold_weight=0.0)
        monkeypatch.setattr(module, "_datamodule", lambda: dm)
        monkeypatch.setattr(module, "log", lambda *a, **k: None)
        module.on_fit_start()
        users = torch.tensor([0, 0, 0, 3, 5])  # a repeated user counts once per edge
        items = torch.tensor([1, 2, 2, 2, 4])
        losses[wd] = module.training_step((users, items), 0)
        h0 = {}
        module.model(*module.full_graph(), inputs=h0)
    expected = (h0["user"][users].pow(2).sum() + h0["item"][items].pow(2).sum()) / len(users)
    assert torch.allclose(losses[0.5] - losses[0.0], 0.5 * expected, rtol=1e-5)


def test_bad_model_arguments(synthetic_graph):
    data = synthetic_graph.data
    counts = {nt: data[nt].num_nodes for nt in data.node_types}
    with pytest.raises(ConfigError, match="'score' parameter must be one of"):
        KGRecModel(counts, {}, data.edge_types, 4, score="l2")
    with pytest.raises(ConfigError, match="use_id_embeddings=False needs use_text=True"):
        KGRecModel(counts, {}, data.edge_types, 4, use_id_embeddings=False)
    dm = KGRecDataModule.from_graph(synthetic_graph, None)
    with pytest.raises(ConfigError, match="'loss' parameter must be one of"):
        KGRecModule(dm.graph_info, loss="hinge")
    with pytest.raises(ConfigError, match="'unobserved_weight' parameter must be >= 0; got -1"):
        KGRecModule(dm.graph_info, loss="ials", unobserved_weight=-1.0)
    with pytest.raises(ConfigError, match="graph_info lacks"):
        KGRecModule({"num_nodes": {}})
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ConfigError, match=rf"'val_max_users' parameter must be a positive integer or None \(null in YAML\); got {bad!r}"):
            KGRecModule(dm.graph_info, val_max_users=bad)


# ---------------------------------------------------------------- training
def fit(module, dm, epochs=3, accelerator="cpu", **trainer_kwargs):
    import lightning as L

    trainer = L.Trainer(max_epochs=epochs, accelerator=accelerator, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        **trainer_kwargs)
    trainer.fit(module, dm)
    return trainer


def test_alignment_loss_decreases_and_cold_items_land_near_their_tags():
    import lightning as L

    L.seed_everything(0, verbose=False)
    dataset, split, graph = text_world("cold_item")
    dm, module = make_module(graph, split, align_weight=1.0)
    with torch.no_grad():
        data, flat = graph.data, module.model.flatten(graph.data)
        out = module.model(data, flat)
        before = module._alignment(data, out, {"item": torch.arange(graph.num_items)}).item()
    fit(module, dm, epochs=15)
    module._full = None
    with torch.no_grad():
        module.model.eval()
        out = module.model(graph.data, module.model.flatten(graph.data))
        after = module._alignment(graph.data, out, {"item": torch.arange(graph.num_items)}).item()
    assert after < before
    # a cold item is nearer (cosine) to warm items sharing its genre than to other warm items
    items = torch.nn.functional.normalize(out["item"], dim=-1)
    genre = {i: set(g) for i, g in zip(dataset.items["item"], dataset.items["genre"])}
    vocab = graph.vocabs["item"]
    wins = 0
    cold = sorted(split.cold_items)
    for c in cold:
        ci = vocab.encode([c])[0]
        same = [vocab.encode([w])[0] for w in vocab.ids if w not in split.cold_items and genre[w] & genre[c]]
        other = [vocab.encode([w])[0] for w in vocab.ids if w not in split.cold_items and not genre[w] & genre[c]]
        sims = items @ items[ci]
        wins += sims[same].mean() > sims[other].mean()
    assert wins >= 0.75 * len(cold)


def test_alignment_contrasts_at_most_align_max_nodes(monkeypatch):
    import kgrec.lightning.module as module_file

    dataset, split, graph = text_world()
    _, module = make_module(graph, split, align_weight=1.0, align_max_nodes=5)
    sizes = []
    real = module_file.alignment_loss
    monkeypatch.setattr(module_file, "alignment_loss", lambda g, t, tau: sizes.append(len(g)) or real(g, t, tau))
    with torch.no_grad():
        data = graph.data
        out = module.model(data, module.model.flatten(data))
        ids = {"user": torch.arange(graph.num_users), "item": torch.tensor([0, 1, 1, 2])}
        assert torch.isfinite(module._alignment(data, out, ids))
    assert sizes == [5, 3]  # every user would be graph.num_users; duplicates count once
    assert graph.num_users > 5
    for bad in (1, 2.5, True):
        with pytest.raises(ConfigError, match=rf"'align_max_nodes' parameter must be an integer >= 2; got {bad!r}"):
            make_module(graph, split, align_max_nodes=bad)


def test_kg_relation_weights_are_fixed_unless_learned(synthetic_graph):
    data = synthetic_graph.data
    args = ({nt: data[nt].num_nodes for nt in data.node_types}, {}, data.edge_types, len(synthetic_graph.relations))
    x = torch.randn(sum(data[nt].num_nodes for nt in data.node_types), 8)
    for learn in (False, True):
        model = KGRecModel(*args, hidden_channels=8, num_layers=1, learn_relation_weights=learn)
        flat = model.flatten(data)
        out = model.convs[0](x, flat)
        if learn:
            grad = torch.autograd.grad(out.pow(2).sum(), model.convs[0].logit)[0]
            assert grad[model.convs[0].learnable].abs().sum() > 0
        else:
            assert not out.requires_grad  # every relation weighs 1; nothing to learn
            assert torch.equal(model.convs[0].relation_weights(), torch.ones(model.convs[0].num_relations))
    # a checkpoint that learned its relation weights does not load silently into a fixed model
    learned = KGRecModel(*args, hidden_channels=8, num_layers=1, learn_relation_weights=True)
    with torch.no_grad():
        learned.convs[0].logit[learned.convs[0].learnable] = 0.7
    fixed = KGRecModel(*args, hidden_channels=8, num_layers=1)
    with pytest.raises(ConfigError, match="learn_relation_weights=True"):
        fixed.load_state_dict(learned.state_dict())
    fixed.load_state_dict(KGRecModel(*args, hidden_channels=8, num_layers=1).state_dict())


def test_cold_detach_keeps_the_cold_view_loss_off_the_warm_embeddings():
    dataset, split, graph = text_world("random")
    grads = {}
    for detach in (True, False):
        torch.manual_seed(0)
        dm, module = make_module(graph, split, cold_detach=detach)
        model = module.model
        with torch.no_grad():  # tag and entity ids start at zero; give them something to carry
            for emb in model.id_emb.values():
                emb.weight.normal_()
        model(graph.data, cold_view=True)["item_cold"].pow(2).sum().backward()
        grads[detach] = {name: (p.grad is not None and p.grad.abs().sum() > 0) for name, p in model.named_parameters()}
    on = {name for name, g in grads[True].items() if g}
    assert on and all(name.startswith("text_proj.item") for name in on)  # only the item text projection
    assert grads[False]["id_emb.item.weight"] and grads[False]["id_emb.tag.weight"]  # the default: all of it


def test_cold_view_is_what_a_cold_item_gets():
    dataset, split, graph = text_world("cold_item")
    # no item-item KG edges: through them a neighbour's users (whose degrees count the
    # removed edges) would reach the item; every other path is the same in both graphs
    data = graph.data.edge_type_subgraph([et for et in graph.data.edge_types if (et[0], et[2]) != ("item", "item")])
    dm, module = make_module(graph, split, learn_relation_weights=True)
    model = module.model
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
    textless = KGRecModel({nt: data[nt].num_nodes for nt in data.node_types}, {}, data.edge_types,
                          len(graph.relations), hidden_channels=8)
    with pytest.raises(ConfigError, match="cold_view needs item text"):
        textless(data, cold_view=True)


@pytest.mark.parametrize("loss, weight", [("ials", 1.0), ("softmax", 3.0)])
def test_cold_weight_trains_the_cold_view(loss, weight):
    import lightning as L

    dataset, split, graph = text_world("cold_item")
    with pytest.raises(ConfigError, match="cold_weight"):
        make_module(graph, split, cold_weight=-1.0)

    def cold_loss_after_training(weight):
        L.seed_everything(0, verbose=False)
        dm, module = make_module(graph, split, loss=loss, cold_weight=weight, align_weight=0.0)
        trainer = fit(module, dm, epochs=15)
        users, items = dm.train_edges()
        module.model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            out = module.model(graph.data, cold_view=True)
            loss_value = module._ranking_loss(out, users, items, item_key="item_cold",
                                              pool=module._negative_pool(graph.data)).item()
        return loss_value, trainer.callback_metrics

    with_cold, metrics = cold_loss_after_training(weight)
    without, metrics0 = cold_loss_after_training(0.0)
    assert "train/cold_loss" in metrics and "train/cold_loss" not in metrics0
    # the cold views rank better when trained to (ials 0.873 vs 0.928, softmax 2.18 vs 2.41)
    assert with_cold < 0.97 * without
    # without item text there is no cold view to train: the option is inert, not an error
    _, notext = make_module(graph, split, cold_weight=1.0, use_text=False)
    assert not notext.cold_view


@pytest.mark.parametrize("score", ["dot", "cosine"])
def test_ials_loss_trains_a_ranker(score):
    import lightning as L

    from kgrec.eval import evaluate
    from kgrec.lightning.module import EmbeddingScorer

    dataset, split, graph = text_world()
    L.seed_everything(0, verbose=False)
    dm, module = make_module(graph, split, loss="ials", unobserved_weight=5.0, score=score, cold_weight=0.0,
                             weight_decay=0.0, dropout=0.2)
    users, items = dm.train_edges()

    def loss_and_recall():
        module.model.eval()
        with torch.no_grad():
            out = module.model(graph.data)
            loss = module._ranking_loss(out, users, items).item()
        scorer = EmbeddingScorer(out["user"], out["item"], cosine=score == "cosine")
        return loss, evaluate(scorer, split, graph, on="valid", ks=(20,)).metrics["recall@20"]

    loss0, recall0 = loss_and_recall()
    fit(module, dm, epochs=8)
    loss1, recall1 = loss_and_recall()
    assert loss1 < 0.8 * loss0
    assert recall1 > recall0 + 0.05  # 0.68 -> 0.85 (dot), 0.70 -> 0.77 (cosine)


@pytest.mark.parametrize("loss", ["ials", "softmax", "bpr"])
def test_trained_negative_items_leave_cold_items_alone(loss):
    dataset, split, graph = text_world("cold_item")
    with pytest.raises(ConfigError, match=r"'negative_items' parameter must be one of \{'all', 'trained'\}; got 'cold'"):
        make_module(graph, split, negative_items="cold")
    cold = torch.as_tensor(graph.vocabs["item"].encode(sorted(split.cold_items)))

    def item_grad(negative_items):
        torch.manual_seed(0)
        dm, module = make_module(graph, split, loss=loss, negative_items=negative_items, num_negatives=64)
        users, items = dm.train_edges()
        module.model.set_id_mask("item", torch.bincount(items, minlength=graph.num_items) > 0)
        pool = module._negative_pool(graph.data)
        out = module.model(graph.data)
        out["item"].retain_grad()
        module._ranking_loss(out, users, items, pool=pool).backward()
        return pool, out["item"].grad.abs().sum(-1)

    warm, grad = item_grad("trained")
    assert set(warm.tolist()) == set(range(graph.num_items)) - set(cold.tolist())
    assert torch.all(grad[cold] == 0) and torch.all(grad[warm] > 0)  # no cold item is pushed down
    pool, grad = item_grad("all")
    assert pool is None and grad[cold].sum() > 0
    # a sampled subgraph's pool holds the local indices of its trained items
    dm, module = make_module(graph, split, negative_items="trained")
    module.model.set_id_mask("item", torch.bincount(dm.train_edges()[1], minlength=graph.num_items) > 0)
    sub = HeteroData()
    sub["item"].n_id = torch.cat([cold[:3], warm[:5], cold[3:4]])
    sub["item"].num_nodes = 9
    assert module._negative_pool(sub).tolist() == [3, 4, 5, 6, 7]


def test_fanouts_must_match_layers(synthetic_graph, synthetic_split):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling="neighbor", num_neighbors=[5, 5, 5])
    module = KGRecModule(dm.graph_info, num_layers=2)
    with pytest.raises(ConfigError, match=r"num_neighbors has 3 hop\(s\) \[5, 5, 5\] but model.num_layers is 2"):
        module.check_fanouts(dm)


def test_neighbor_sampled_training_runs(synthetic_graph, synthetic_split):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling="neighbor",
                                    num_neighbors=[5, 5], batch_size=64)
    module = KGRecModule(dm.graph_info, hidden_channels=8, num_negatives=8)
    fit(module, dm, epochs=2)
    assert "ndcg@20" in module.last_eval["valid"]


def test_sampled_loader_and_module_share_one_graph_copy(synthetic_graph, synthetic_split):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling="neighbor",
                                    num_neighbors=[5, 5], batch_size=64)
    module = KGRecModule(dm.graph_info, hidden_channels=8)
    trainer = fit(module, dm, epochs=1)
    loader = trainer.train_dataloader
    copy = dm.graph_on("cpu")
    assert loader.data is copy and loader.link_sampler.device == torch.device("cpu")
    assert module.full_graph()[0] is copy  # evaluation reuses it: the graph sits on the device once
    assert dm.graph_on(torch.device("cpu")) is copy
    dm.graph = synthetic_world(seed=3)[2]  # a new graph gets a new copy, not the stale one
    assert dm.graph_on("cpu") is not copy and dm.graph_on("cpu").metadata() == dm.graph.data.metadata()


@pytest.mark.parametrize("sampling_device, workers, expected", [
    ("auto", 0, "cuda:0"),  # the whole sampling loop stays on the trainer's GPU
    ("auto", 2, "cpu"),  # forked workers cannot use CUDA: they sample on the host
    ("cpu", 0, "cpu"),
])
def test_neighbor_sampling_runs_on_the_trainers_device(synthetic_graph, synthetic_split, sampling_device, workers,
                                                       expected):
    from types import SimpleNamespace

    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling="neighbor",
                                    sampling_device=sampling_device, num_workers=workers)
    assert dm._sample_on() == torch.device("cpu")  # no trainer yet
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), world_size=1)
    assert dm._sample_on() == torch.device(expected)


@pytest.mark.parametrize("sampling", ["neighbor", "full"])
def test_full_graph_degrees_are_kept_on_the_training_device_only_for_sampled_training(
        synthetic_graph, synthetic_split, sampling, monkeypatch):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling=sampling, num_neighbors=[5, 5])
    module = KGRecModule(dm.graph_info, hidden_channels=8)
    module._datamodule = lambda: dm
    # "meta" stands in for a GPU: whatever on_fit_start keeps must land on the module's device
    monkeypatch.setattr(KGRecModule, "device", property(lambda self: torch.device("meta")))
    monkeypatch.setattr(module.model, "set_id_mask", lambda *a: None)  # its buffers live on the real device
    module.on_fit_start()
    degrees = module.model._degrees
    if sampling == "full":  # a full graph is normalised by its own degrees: none kept, none computed
        assert degrees is None
    else:
        assert set(degrees) == set(synthetic_graph.data.edge_types)
        assert all(d.device.type == "meta" for pair in degrees.values() for d in pair)


def test_a_graph_too_large_for_the_device_is_refused_by_size(synthetic_graph, synthetic_split, monkeypatch):
    import kgrec.sampler.hetero_csc as csc

    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split)
    need = sum(v.numel() * v.element_size() for store in synthetic_graph.data.stores for v in store.values()
               if isinstance(v, torch.Tensor))
    free = {"bytes": need - 1}
    monkeypatch.setattr(csc, "available_bytes", lambda device: free["bytes"])
    # "meta" stands in for a GPU with one byte too few
    with pytest.raises(ConfigError, match=rf"need [0-9.]+ MiB \({need} bytes\) on device 'meta', which has [0-9.]+ "
                                          r"MiB free\. kgrec evaluates .* the graph must fit there: use a device "
                                          r"with more memory, train on the CPU \(--trainer.accelerator cpu\)"):
        dm.graph_on("meta")
    assert dm._graph_copy is None
    free["bytes"] = need
    assert dm.graph_on("meta")[INTERACTS].edge_index.device.type == "meta"
    # the host copy is already there: nothing to move, nothing to check
    free["bytes"] = 0
    assert dm.graph_on("cpu")[INTERACTS].edge_index.device.type == "cpu"


def test_checkpoint_from_a_different_graph_is_refused(synthetic_graph, synthetic_split):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split)
    module = KGRecModule(dm.graph_info)
    other = make_synthetic(num_users=30, num_items=20, seed=1)
    other_split = split_dataset(other, "random", seed=1)
    dm_other = KGRecDataModule.from_graph(build_graph(other, other_split), other_split)
    with pytest.raises(ConfigError, match="trained on a different graph: num_nodes"):
        module.check_graph(dm_other.graph_info)


def test_missing_dataset_path_is_named(tmp_path):
    dm = KGRecDataModule(path=str(tmp_path / "absent"))
    with pytest.raises(DataError, match="data.path .*absent.* is neither a built-in dataset"):
        dm.prepare_data()


# --------------------------------------------------------------------- CLI
def test_cli_fit_then_test_round_trip(tmp_path, monkeypatch, caplog):
    from kgrec.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "2"]) == 0
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "best.ckpt").is_file()
    assert main(["test", "--config", str(CONFIG), "--ckpt_path", str(run / "checkpoints" / "best.ckpt")]) == 0
    # written in the test run's own directory and beside the checkpoint's training run
    written = sorted((tmp_path / "runs").rglob("test_metrics.json"))
    assert written == [run / "test_metrics.json", run.parent / "version_1" / "test_metrics.json"]
    metrics = json.loads(written[0].read_text())
    assert metrics == json.loads(written[1].read_text())
    assert 0.0 <= metrics["ndcg@20"] <= 1.0 and metrics["recall@20"] > 0

    # a trained run that cannot be written to (a read-only archive) costs a warning, not the result
    import kgrec.lightning.module as module_mod

    real_write = module_mod._write_json

    def refuse_trained_run(path, payload):
        if path.parent == run:
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, payload)

    monkeypatch.setattr(module_mod, "_write_json", refuse_trained_run)
    (run / "test_metrics.json").unlink()
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        assert main(["test", "--config", str(CONFIG), "--ckpt_path", str(run / "checkpoints" / "best.ckpt")]) == 0
    assert json.loads((run.parent / "version_2" / "test_metrics.json").read_text()) == metrics
    assert not (run / "test_metrics.json").exists()
    assert "could not write test metrics beside the checkpoint's run" in caplog.text and "Permission denied" in caplog.text


def test_cli_logs_metrics_to_csv_even_where_tensorboard_is_installed(tmp_path, monkeypatch):
    import lightning.pytorch.trainer.connectors.logger_connector.logger_connector as connector
    from lightning.pytorch.loggers import CSVLogger

    from kgrec.lightning.cli import run_cli

    # Lightning would pick TensorBoard as the default logger on a machine that has it (the GPU image does)
    monkeypatch.setattr(connector, "_TENSORBOARD_AVAILABLE", True)
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1", "--trainer.default_root_dir", "out"])
    assert isinstance(cli.trainer.logger, CSVLogger)
    assert (tmp_path / "out" / "lightning_logs" / "version_0" / "metrics.csv").is_file()
    # a logger the config names is kept, and so is none at all
    cli = run_cli(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1",
                   "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir",
                   "mine", "--trainer.logger.init_args.name", "named"])
    assert cli.trainer.logger.save_dir == "mine" and cli.trainer.logger.name == "named"
    cli = run_cli(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1", "--trainer.logger", "false"])
    assert cli.trainer.logger is None


def test_cli_predict_writes_every_users_top_k_as_the_recommender_ranks_them(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from kgrec import Recommender
    from kgrec.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "2"]) == 0
    ckpt = tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--predictions.k", "7"]) == 0
    frame = pd.read_parquet(tmp_path / "runs" / "lightning_logs" / "version_1" / "predictions.parquet")
    assert list(frame.columns) == ["user", "rank", "item", "name", "score"]
    # what the checkpoint serves, ranked by code written for serving, not by the writer
    rec = Recommender.from_checkpoint(ckpt, device="cpu")
    assert frame["user"].nunique() == rec.num_users and len(frame) == 7 * rec.num_users
    expected = rec.recommend(rec.vocabs["user"], k=7)
    assert frame[["user", "rank", "item"]].equals(expected[["user", "rank", "item"]])
    assert frame["score"].to_numpy() == pytest.approx(expected["score"].to_numpy(), abs=1e-5)
    # no user is recommended an item they trained on
    seen = set(zip(*(rec.data[INTERACTS].edge_index[i].tolist() for i in (0, 1))))
    users, items = ({v: i for i, v in enumerate(rec.vocabs[nt])} for nt in ("user", "item"))
    assert not any((users[u], items[i]) in seen for u, i in zip(frame["user"], frame["item"]))
    # in several chunks, seen items included: still what the Recommender ranks
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--predictions.k", "3",
                 "--predictions.chunk_users", "7", "--predictions.exclude_seen", "false"]) == 0
    chunked = pd.read_parquet(tmp_path / "runs" / "lightning_logs" / "version_2" / "predictions.parquet")
    expected = rec.recommend(rec.vocabs["user"], k=3, exclude_seen=False)
    assert chunked[["user", "rank", "item"]].equals(expected[["user", "rank", "item"]])
    assert any((users[u], items[i]) in seen for u, i in zip(chunked["user"], chunked["item"]))
    # a k past the catalogue is named
    capsys.readouterr()
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--predictions.k", "100000"]) == 2
    assert "predictions.k=100000 is larger than the catalogue" in capsys.readouterr().err
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--predictions.k", "0"]) == 2
    assert "predictions.k must be a positive integer; got 0" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, r"predictions.k must be a positive integer; got 0"),
    ({"chunk_users": True}, r"predictions.chunk_users must be a positive integer; got True"),
    ({"filename": "top.csv"}, r"predictions.filename must be a file name ending in .parquet; got 'top.csv'"),
    ({"filename": "../top.parquet"}, r"predictions.filename must be a file name ending in .parquet; got '../top.parquet'"),
])
def test_prediction_writer_names_a_bad_option(kwargs, message):
    from kgrec.lightning import TopKWriter

    with pytest.raises(ConfigError, match=message):
        TopKWriter(**kwargs)


def test_checkpoint_from_another_split_is_refused_for_test_validate_and_resume(tmp_path, monkeypatch, capsys):
    # the graph's shape does not depend on the split seed, so only the train fingerprint tells
    # a checkpoint trained on seed 2026's train pairs from data split with seed 7
    from kgrec.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1"]) == 0
    ckpt = str(tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt")
    assert "kgrec_train_fingerprint" in torch.load(ckpt, map_location="cpu", weights_only=True)
    capsys.readouterr()
    for command in (["test"], ["validate"], ["fit", "--trainer.max_epochs", "2"]):
        assert main([*command, "--config", str(CONFIG), "--data.seed", "7", "--ckpt_path", ckpt]) == 2
        err = capsys.readouterr().err
        assert "kgrec: error:" in err and "trained on other train interactions" in err and "data.seed" in err
        assert re.search(r"as many train pairs, [\d,]+, but not the same ones", err)
    assert not list((tmp_path / "runs").rglob("test_metrics.json"))
    # the refused runs leave no run directory behind (they recorded nothing), so the next is version_1
    assert sorted(p.name for p in (tmp_path / "runs" / "lightning_logs").iterdir()) == ["version_0"]
    assert main(["test", "--config", str(CONFIG), "--ckpt_path", ckpt]) == 0  # its own split still tests
    assert (tmp_path / "runs" / "lightning_logs" / "version_1" / "test_metrics.json").is_file()
    # without a numbering logger the run writes into a directory the user named: never removed
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text(CONFIG.read_text())
    assert main(["test", "--config", str(mine / "config.yaml"), "--data.seed", "7", "--ckpt_path", ckpt,
                 "--trainer.logger", "false", "--trainer.default_root_dir", str(mine)]) == 2
    assert (mine / "config.yaml").is_file()


def test_train_fingerprint_ignores_order_and_sees_one_changed_pair(synthetic_graph, synthetic_split):
    import dataclasses

    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split)
    shuffled = synthetic_split.train.sample(frac=1.0, random_state=0)
    other_order = build_graph(make_synthetic(), dataclasses.replace(synthetic_split, train=shuffled))
    assert KGRecDataModule.from_graph(other_order, synthetic_split).train_fingerprint() == dm.train_fingerprint()
    fewer = dataclasses.replace(synthetic_split, train=synthetic_split.train.iloc[1:])
    assert (KGRecDataModule.from_graph(build_graph(make_synthetic(), fewer), fewer).train_fingerprint()
            != dm.train_fingerprint())


def test_cli_config_errors_are_clear(tmp_path, monkeypatch, capsys):
    from kgrec.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIG), "--model.hidden_size", "8"])
    assert "hidden_size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIG), "--model.num_layers", "two"])
    assert "num_layers" in capsys.readouterr().err
    assert main(["fit", "--config", str(CONFIG), "--data.path", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_requested_without_gpu_says_so(tmp_path, monkeypatch, capsys):
    from kgrec.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--trainer.accelerator", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "kgrec: error:" in err and ("GPU" in err or "gpu" in err or "CUDA" in err)


# --------------------------------------------------------------- contract
class TestKGRec(RecommenderChecks):
    def make_recommender(self):
        return KGRec(hidden_channels=8, num_layers=1, max_epochs=2, patience=1, num_negatives=8, batch_size=64)

    def make_world(self):
        return synthetic_world()


import lightning as _L  # noqa: E402


class _RecordShard(_L.Callback):
    """Each rank writes how many training batches it ran (the main process cannot see them)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        users, items = batch
        if batch_idx == 0:
            Path(self.folder, f"rng{trainer.global_rank}.txt").write_text(str(torch.get_rng_state().tolist()))
        with open(Path(self.folder, f"edges{trainer.global_rank}.txt"), "a") as fh:
            fh.writelines(f"{u} {i}\n" for u, i in zip(users.tolist(), items.tolist()))

    def on_train_epoch_end(self, trainer, pl_module):
        Path(self.folder, f"rank{trainer.global_rank}.txt").write_text(str(trainer.num_training_batches))


def test_ddp_two_cpu_processes_train_on_shards(synthetic_graph, synthetic_split, tmp_path):
    """Lightning DDP over gloo: two ranks, each with its shard of the supervision edges."""
    import lightning as L

    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=32)
    module = KGRecModule(dm.graph_info, hidden_channels=8, num_negatives=8)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path,
                        callbacks=[_RecordShard(tmp_path)])
    trainer.fit(module, dm)
    assert trainer.world_size == 2
    # 480 training edges split over 2 ranks: 240 each, 7 full batches of 32 (one rank alone: 15)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["7", "7"]
    # the shards are disjoint: no training edge reached both ranks
    seen = [set((tmp_path / f"edges{r}.txt").read_text().split("\n")) - {""} for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 7 * 32 and not seen[0] & seen[1]
    # and each rank draws its own random numbers (negatives, dropout): not the same stream twice
    assert (tmp_path / "rng0.txt").read_text() != (tmp_path / "rng1.txt").read_text()
    after = module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained weights came back


def test_cli_fit_runs_ddp_over_two_processes(tmp_path):
    """`kgrec fit --trainer.devices 2`: Lightning's default DDP launcher starts rank 1 by re-running
    the command line, so the CLI must leave the real one in sys.argv (it once hid it, and rank 1
    started with no arguments while rank 0 waited for it forever)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "kgrec.cli", "fit", "--config", str(CONFIG), "--trainer.max_epochs", "1",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "metrics.csv").is_file()
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    # predict ranks every user in one step: on two processes it is refused by name, not by a traceback
    ckpt = run / "checkpoints" / "best.ckpt"
    predict = [*cmd[:3], "predict", *cmd[4:6], "--ckpt_path", str(ckpt), *cmd[8:]]
    proc = subprocess.run(predict, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2
    assert "kgrec predict ranks every user in one pass; run it on one device (--trainer.devices 1)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"sampling": "random-walk"}, r"'sampling' parameter must be one of \{'full', 'neighbor'\}; got 'random-walk'"),
    ({"batch_size": 0}, "'batch_size' parameter must be a positive integer; got 0"),
    ({"num_neighbors": [10, 0]}, r"num_neighbors must be positive \(or -1 for all\); got \[10, 0\]"),
    ({"sampling_device": "cuda"}, r"'sampling_device' parameter must be one of \{'auto', 'cpu'\}; got 'cuda'"),
])
def test_datamodule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        KGRecDataModule(path="synthetic", **kwargs)


def test_kgrec_keeps_its_history_and_restores_the_best_epoch(synthetic_graph, synthetic_split, tmp_path):
    import pandas as pd

    from kgrec.eval import evaluate

    model = KGRec(hidden_channels=8, num_layers=1, max_epochs=6, patience=2, batch_size=64).fit(
        synthetic_split, synthetic_graph)
    history = model.history_
    assert list(history["epoch"]) == list(range(len(history))) and len(history) == model.epochs_
    assert {"val/ndcg@20", "val/recall@20", "train/loss"} <= set(history.columns)
    best = history.loc[history["val/ndcg@20"].idxmax()]
    assert model.best_epoch_ == best["epoch"]
    # the embeddings kept are the best epoch's, not the last one's
    valid = evaluate(model, synthetic_split, synthetic_graph, on="valid").metrics["ndcg@20"]
    assert valid == pytest.approx(best["val/ndcg@20"], abs=1e-5)
    loaded = KGRec.load(model.save(tmp_path / "kgrec.pt"))
    pd.testing.assert_frame_equal(loaded.history_, history)


def test_val_max_users_validates_on_a_fixed_subset_and_tests_on_everyone(synthetic_graph, synthetic_split,
                                                                          monkeypatch, tmp_path):
    import kgrec.eval
    from kgrec.eval import evaluate

    calls = []

    def spy(*args, **kwargs):
        result = evaluate(*args, **kwargs)
        calls.append((kwargs.get("on"), kwargs.get("max_users"), result.num_users, result.metrics["ndcg@20"]))
        return result

    model = KGRec(hidden_channels=8, num_layers=1, max_epochs=2, patience=2, batch_size=64, val_max_users=9)
    monkeypatch.setattr(kgrec.eval, "evaluate", spy)
    model.fit(synthetic_split, synthetic_graph)
    assert [c[:3] for c in calls] == [("valid", 9, 9)] * 2
    # the logged validation is the 9-user subset's, as evaluate(max_users=9) measures it
    assert model.history_["val/ndcg@20"].iloc[model.best_epoch_] == pytest.approx(calls[model.best_epoch_][3], abs=1e-6)
    monkeypatch.undo()
    full = evaluate(model, synthetic_split, synthetic_graph, on="valid")
    assert full.num_users > 9
    sub = evaluate(model, synthetic_split, synthetic_graph, on="valid", max_users=9)
    assert sub.metrics["ndcg@20"] == pytest.approx(model.history_["val/ndcg@20"].iloc[model.best_epoch_], abs=1e-5)

    import lightning as L

    dm, module = KGRec(hidden_channels=8, num_layers=1, batch_size=64, val_max_users=9).build(
        synthetic_split, synthetic_graph)
    calls.clear()
    monkeypatch.setattr(kgrec.eval, "evaluate", spy)
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=tmp_path).test(module, dm, verbose=False)
    assert (tmp_path / "test_metrics.json").exists()  # where the test metrics go: not the working directory
    assert len(calls) == 1 and calls[0][:2] == ("test", None) and calls[0][2] > 9


def test_kgrec_rejects_non_positive_epochs(synthetic_graph, synthetic_split):
    with pytest.raises(ConfigError, match="max_epochs and patience must be positive; got 0, 5"):
        KGRec(max_epochs=0).fit(synthetic_split, synthetic_graph)


@pytest.mark.parametrize("learn_relation_weights", [False, True])
def test_bf16_mixed_precision_trains_and_validates_in_float32(learn_relation_weights):
    import lightning as L

    from kgrec.eval import evaluate
    from kgrec.lightning.module import EmbeddingScorer

    dataset, split, graph = text_world()
    L.seed_everything(0, verbose=False)
    dm, module = make_module(graph, split, learn_relation_weights=learn_relation_weights)
    # the sparse propagation runs in float32 under autocast (CPU sparse kernels have no bfloat16)
    trainer = fit(module, dm, epochs=2, precision="bf16-mixed")
    logged = float(trainer.callback_metrics["val/ndcg@20"])
    out = module.embeddings()
    assert out["user"].dtype == torch.float32
    # what was logged is the float32 ranking, not a bfloat16 one with ties
    ref = evaluate(EmbeddingScorer(out["user"], out["item"]), split, graph, on="valid").metrics["ndcg@20"]
    assert logged == pytest.approx(ref, abs=1e-6)
    if learn_relation_weights:  # the relation-weight gradient flowed through the float32 products
        assert module.model.convs[0].logit.abs().max() > 0


class _TrainingDevices(Callback):
    """The device types the module trained on. ``trainer.fit`` ends by moving the module back
    to the CPU (``Strategy.teardown``), so ``module.device`` after it says nothing about that."""

    def __init__(self):
        self.devices = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.devices.add(pl_module.device.type)


@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_precisions_that_cast_the_weights_are_refused_by_name(precision):
    dataset, split, graph = text_world()
    dm, module = make_module(graph, split)
    with pytest.raises(ConfigError, match=f"trainer.precision '{precision}' is not supported by kgrec; use one of "
                                          "32-true, 16-mixed, bf16-mixed"):
        fit(module, dm, epochs=1, precision=precision)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares a CUDA run with the CPU one; needs a GPU")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_training_on_cuda_matches_cpu(precision):
    import lightning as L

    dataset, split, graph = text_world()
    runs = {}
    for accelerator in ("cpu", "gpu"):
        L.seed_everything(0, verbose=False)
        dm, module = make_module(graph, split)
        seen = _TrainingDevices()
        trainer = L.Trainer(max_epochs=3, accelerator=accelerator, devices=1, logger=False,
                            precision=precision if accelerator == "gpu" else "32-true", callbacks=[seen],
                            enable_progress_bar=False, enable_checkpointing=False, num_sanity_val_steps=0)
        trainer.fit(module, dm)
        assert seen.devices == {"cuda" if accelerator == "gpu" else "cpu"}
        module.to(trainer.strategy.root_device)  # back where it trained, as KGRec.fit does
        runs[accelerator] = (float(trainer.callback_metrics["val/ndcg@20"]), module.embeddings()["item"].cpu())
    (cpu_ndcg, cpu_item), (gpu_ndcg, gpu_item) = runs["cpu"], runs["gpu"]
    if precision == "32-true":  # the same steps (the ials loss samples nothing): the same model
        assert torch.allclose(gpu_item, cpu_item, rtol=1e-3, atol=1e-3)
        assert gpu_ndcg == pytest.approx(cpu_ndcg, abs=0.01)
    else:  # bf16 matmuls train a slightly different model, not a broken one
        assert gpu_item.dtype == torch.float32 and gpu_ndcg > 0.5 * cpu_ndcg


@pytest.mark.skipif(not torch.cuda.is_available(), reason="samples on a CUDA device; needs a GPU")
def test_neighbor_sampling_on_cuda_keeps_the_graph_on_the_device(synthetic_graph, synthetic_split):
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling="neighbor",
                                    num_neighbors=[5, 5], batch_size=64)
    module = KGRecModule(dm.graph_info, hidden_channels=8)
    seen = _TrainingDevices()
    trainer = fit(module, dm, epochs=2, accelerator="gpu", devices=1, callbacks=[seen])
    assert seen.devices == {"cuda"}
    module.to(trainer.strategy.root_device)  # fit's teardown moved it to the CPU
    loader, copy = trainer.train_dataloader, dm.graph_on(module.device)
    assert module.device.type == "cuda" and loader.link_sampler.device == module.device
    assert loader.data is copy and module.full_graph()[0] is copy and copy.is_cuda
    batch = next(iter(loader))
    assert batch["user"].n_id.is_cuda and batch[INTERACTS].edge_index.is_cuda and batch[INTERACTS].edge_label_index.is_cuda
    assert synthetic_graph.data.is_cuda is False  # the caller's graph stays on the host
    assert module.last_eval["valid"]["ndcg@20"] > 0


def test_train_edges_are_the_split_train_rows(synthetic_graph, synthetic_split):
    from kgrec.graph import split_to_index

    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split)
    users, items = dm.train_edges()
    expected_users, expected_items = split_to_index(synthetic_graph, synthetic_split.train)
    assert torch.equal(users, expected_users) and torch.equal(items, expected_items)


def test_full_graph_batches_are_the_shuffled_loader_batches(synthetic_graph, synthetic_split):
    from torch.utils.data import DataLoader, TensorDataset

    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=64)
    users, items = dm.train_edges()
    torch.manual_seed(5)
    reference = list(DataLoader(TensorDataset(users, items), batch_size=64, shuffle=True, drop_last=True))
    torch.manual_seed(5)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(reference) == len(dm.train_dataloader()) == len(users) // 64
    for (u, i), (ref_u, ref_i) in zip(batches, reference):
        assert torch.equal(u, ref_u) and torch.equal(i, ref_i)
    # one batch only when the edges are fewer than a batch: nothing is dropped
    small = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=10 * len(users))
    (whole,) = list(small.train_dataloader())
    assert sorted(zip(whole[0].tolist(), whole[1].tolist())) == sorted(zip(users.tolist(), items.tolist()))


def test_kgrec_build_gives_the_module_fit_trains(synthetic_graph, synthetic_split):
    est = KGRec(hidden_channels=8, num_layers=1, align_weight=0.1, align_max_nodes=16, use_kg=False,
                batch_size=64)
    dm, module = est.build(synthetic_split, synthetic_graph)
    assert module.hparams.align_max_nodes == 16 and module.hparams.hidden_channels == 8
    assert "entity" not in dm.graph_info["num_nodes"] and dm.batch_size == 64
    with pytest.raises(ConfigError, match="align_max_nodes"):
        KGRec(align_max_nodes=1).build(synthetic_split, synthetic_graph)


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    from kgrec.io import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "sub" / "a.json", "{}")
    assert target.read_text() == "{}"

    def explode(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, explode)
    assert target.read_text() == "{}"  # the old content survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]  # no temp file left


def test_sampled_subgraph_with_full_fanout_reproduces_full_graph_embeddings(synthetic_graph):
    """Sampled training normalises by full-graph degrees, so it propagates like evaluation does."""
    from torch_geometric.loader import NodeLoader

    from kgrec.sampler import HeteroNeighborSampler

    data = synthetic_graph.data
    model = KGRecModel({nt: data[nt].num_nodes for nt in data.node_types}, {}, data.edge_types,
                       len(synthetic_graph.relations), hidden_channels=8, num_layers=2).eval()
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
    args = (counts, {"item": 4}, data.edge_types, len(synthetic_graph.relations))
    torch.manual_seed(0)
    adding = KGRecModel(*args, hidden_channels=8)
    torch.manual_seed(0)
    model = KGRecModel(*args, hidden_channels=8, warm_text=False)
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
    args = ({nt: data[nt].num_nodes for nt in data.node_types}, {"item": 4}, data.edge_types,
            len(synthetic_graph.relations))
    with pytest.raises(ConfigError, match="id_dropout"):
        KGRecModel(*args, id_dropout=1.0)
    model = KGRecModel(*args, hidden_channels=8, id_dropout=0.5)
    data = data.clone()
    data["item"].x = torch.zeros(data["item"].num_nodes, 4)  # text adds nothing: only ids are seen
    text = model.project_text("item", data["item"].x)
    torch.manual_seed(0)
    id_part = model.input_embeddings(data)["item"] - text
    dropped = (id_part.abs().sum(-1) < 1e-7).float().mean()
    assert 0.2 < dropped < 0.8  # about half the items lose their id embedding in a training step
    model.eval()
    assert ((model.input_embeddings(data)["item"] - text).abs().sum(-1) > 1e-7).all()  # never at evaluation


def test_final_embeddings_leave_the_callers_graph_where_it_is(synthetic_graph, synthetic_split):
    # KGRec.fit reads its final embeddings from the caller's own graph (no KG pruning to copy
    # it); on a GPU, PyG's in-place .to moved that graph to the device and broke the next CPU
    # model fitted on it. The meta device stands in for CUDA, a probe for the network.
    from types import SimpleNamespace

    from kgrec.models.kgrec import _embeddings

    class _Probe(torch.nn.Module):
        def flatten(self, data):
            return None

        def forward(self, data, flat):
            return {"item": data[INTERACTS].edge_index}

    module = SimpleNamespace(device=torch.device("meta"), model=_Probe(), eval=lambda: None)
    out = _embeddings(module, KGRecDataModule.from_graph(synthetic_graph, synthetic_split))
    assert out["item"].device.type == "meta"
    assert synthetic_graph.data[INTERACTS].edge_index.device.type == "cpu"


@pytest.mark.parametrize("device, expected", [("cpu", ("cpu", 1)), ("cuda", ("gpu", [0])),
                                              ("cuda:0", ("gpu", [0])), ("cuda:1", ("gpu", [1]))])
def test_kgrec_trains_on_the_gpu_its_device_names(device, expected):
    from kgrec.models.kgrec import trainer_devices

    assert trainer_devices(device) == expected


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


@pytest.mark.parametrize("sampling", ["full", "neighbor"])
def test_fewer_train_edges_than_a_batch_still_train(synthetic_graph, synthetic_split, sampling):
    # drop_last on a loader with less than one batch left an epoch with no step: Lightning only
    # warned, and KGRec.fit kept the untrained weights
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, sampling=sampling, num_neighbors=[5, 5],
                                    batch_size=100_000)
    module = KGRecModule(dm.graph_info, hidden_channels=8, num_negatives=8)
    trainer = fit(module, dm, epochs=2)
    assert trainer.global_step == 2


def test_drop_last_looks_at_each_ranks_shard(synthetic_graph, synthetic_split):
    from types import SimpleNamespace

    num_edges = synthetic_graph.data[INTERACTS].num_edges
    dm = KGRecDataModule.from_graph(synthetic_graph, synthetic_split, batch_size=num_edges // 2 + 1)
    assert dm._drop_last(num_edges)  # one process: one full batch and a remainder
    dm.trainer = SimpleNamespace(world_size=2)
    assert not dm._drop_last(num_edges)  # each of 2 ranks holds about one batch: keep it

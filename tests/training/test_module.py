"""Training in Lightning: the module's losses and hooks, the data module's loaders, precision and devices."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
from torch_geometric.data import HeteroData

from helpers import EmbeddingScorer, fit, groups, make_dm, make_module, text_world
from kgrec.data import make_synthetic, split_dataset
from kgrec.errors import ConfigError, DataError
from kgrec.graph import INTERACTS, build_graph
from kgrec.testing import synthetic_world
from kgrec.training import KGRecDataModule, KGRecModule
from kgrec.world import World


def test_unobserved_user_power_weights_each_user_by_its_degree(synthetic_graph, synthetic_split, monkeypatch):
    dm = make_dm(synthetic_graph, synthetic_split, batch_size=64)
    dm.setup("fit")
    with pytest.raises(ConfigError, match="loss.unobserved_user_power must be a number >= 0; got -0.5"):
        KGRecModule(dm.graph_info, **groups(unobserved_user_power=-0.5))
    with pytest.raises(ConfigError, match="loss.unobserved_user_power must be a number >= 0; got nan"):
        KGRecModule(dm.graph_info, **groups(unobserved_user_power=float("nan")))
    users, _ = dm.train_edges()
    degree = torch.bincount(users, minlength=synthetic_graph.num_users).float()
    weights = {}
    for power in (0.0, 0.5, 1.0):
        module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_layers=1, unobserved_user_power=power))
        module.attach(dm)
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
    dm = make_dm(synthetic_graph, synthetic_split, batch_size=64)
    dm.setup("fit")
    with pytest.raises(ConfigError, match="loss.unobserved_item_power must be a number; got inf"):
        KGRecModule(dm.graph_info, **groups(unobserved_item_power=float("inf")))
    with pytest.raises(ConfigError, match="loss.unobserved_item_power must be a number; got nan"):
        KGRecModule(dm.graph_info, **groups(unobserved_item_power=float("nan")))
    with pytest.raises(ConfigError, match="loss.unobserved_item_power must be a number; got 'x'"):
        KGRecModule(dm.graph_info, **groups(unobserved_item_power="x"))
    _, items = dm.train_edges()  # train edges only: valid / test interactions never weigh
    degree = torch.bincount(items, minlength=synthetic_graph.num_items).double()
    assert len(degree[degree > 0].unique()) > 1
    for power in (0.0, 0.5, -0.5):
        module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_layers=1, unobserved_item_power=power,
                                                     negative_items=negative_items))
        module.attach(dm)
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
    dm = make_dm(graph, split, sampling="neighbor", num_neighbors=(1, 1), batch_size=16)
    dm.setup("fit")
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, unobserved_user_power=0.5,
                                                 unobserved_item_power=0.5, cold_weight=0.0))
    module.attach(dm)
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
    dm = make_dm(synthetic_graph, synthetic_split, batch_size=64)
    dm.setup("fit")
    losses = {}
    for wd in (0.0, 0.5):
        torch.manual_seed(0)
        module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_layers=1, weight_decay=wd, cold_weight=0.0))
        module.attach(dm)
        monkeypatch.setattr(module, "log", lambda *a, **k: None)
        module.on_fit_start()
        users = torch.tensor([0, 0, 0, 3, 5])  # a repeated user counts once per edge
        items = torch.tensor([1, 2, 2, 2, 4])
        losses[wd] = module.training_step((users, items), 0)
        h0 = {}
        module.model(*module.full_graph(), inputs=h0)
    expected = (h0["user"][users].pow(2).sum() + h0["item"][items].pow(2).sum()) / len(users)
    assert torch.allclose(losses[0.5] - losses[0.0], 0.5 * expected, rtol=1e-5)


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
    import kgrec.training.module as module_file

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
        with pytest.raises(ConfigError, match=rf"loss.align_max_nodes must be an integer >= 2; got {bad!r}"):
            make_module(graph, split, align_max_nodes=bad)


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


@pytest.mark.parametrize("loss, weight", [("ials", 1.0), ("softmax", 3.0)])
def test_cold_weight_trains_the_cold_view(loss, weight):
    import lightning as L

    dataset, split, graph = text_world("cold_item")
    with pytest.raises(ConfigError, match="loss.cold_weight must be a number >= 0; got -1.0"):
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
    notext = KGRecModule({**make_dm(graph, split).graph_info, "text_dims": {}}, loss={"cold_weight": 1.0})
    assert not notext.cold_view


@pytest.mark.parametrize("score", ["dot", "cosine"])
def test_ials_loss_trains_a_ranker(score):
    import lightning as L

    from kgrec.eval import evaluate

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
        scorer = EmbeddingScorer(out["user"], out["item"], score)
        return loss, evaluate(scorer, split, graph, on="valid", ks=(20,)).metrics["recall@20"]

    loss0, recall0 = loss_and_recall()
    fit(module, dm, epochs=8)
    loss1, recall1 = loss_and_recall()
    assert loss1 < 0.8 * loss0
    assert recall1 > recall0 + 0.05  # 0.68 -> 0.85 (dot), 0.70 -> 0.77 (cosine)


@pytest.mark.parametrize("loss", ["ials", "softmax", "bpr"])
def test_trained_negative_items_leave_cold_items_alone(loss):
    dataset, split, graph = text_world("cold_item")
    with pytest.raises(ConfigError, match=r"loss.negative_items must be one of \{'trained', 'all'\}; got 'cold'"):
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
    dm = make_dm(synthetic_graph, synthetic_split, sampling="neighbor", num_neighbors=(5, 5, 5))
    module = KGRecModule(dm.graph_info, **groups(num_layers=2))
    with pytest.raises(ConfigError, match=r"data.loader.num_neighbors has 3 hop\(s\) \[5, 5, 5\] but model.gnn.num_layers "
                                          r"is 2; give one fanout per layer"):
        module.attach(dm)
    with pytest.raises(ConfigError, match=r"data.loader.num_neighbors has 3 hop\(s\)"):  # and so does training
        fit(module, dm, epochs=1)


def test_neighbor_sampled_training_learns_as_full_graph_training_does():
    """A sampled step normalises by full-graph degrees and ranks the batch's subgraph items: trained
    for the same epochs it learns (valid NDCG@20 well above the untrained model's) and lands near
    full-graph training."""
    import lightning as L

    _, split, graph = text_world()
    scores = {}
    for sampling in ("untrained", "full", "neighbor"):
        L.seed_everything(0, verbose=False)
        dm = make_dm(graph, split, batch_size=64, sampling="full" if sampling == "untrained" else sampling,
                      num_neighbors=(5, 5))
        module = KGRecModule(dm.graph_info, **groups(hidden_channels=16, lr=0.01, cold_weight=0.0))
        trainer = fit(module, dm, epochs=0 if sampling == "untrained" else 8)
        if sampling == "untrained":
            trainer.validate(module, dm, verbose=False)
        scores[sampling] = module.last_eval["valid"]["ndcg@20"]
        if sampling == "neighbor":  # every step saw a sampled subgraph, not the whole graph
            batch = next(iter(dm.train_dataloader()))
            assert isinstance(batch, HeteroData) and batch["item"].num_nodes <= graph.num_items
    assert scores["neighbor"] > scores["untrained"] + 0.05
    assert scores["neighbor"] > 0.85 * scores["full"], scores


def test_sampled_loader_and_module_share_one_graph_copy(synthetic_graph, synthetic_split):
    dm = make_dm(synthetic_graph, synthetic_split, sampling="neighbor",
                                    num_neighbors=(5, 5), batch_size=64)
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8))
    trainer = fit(module, dm, epochs=1)
    loader = trainer.train_dataloader
    copy = dm.graph_on("cpu")
    assert loader.data is copy and loader.link_sampler.device == torch.device("cpu")
    assert module.full_graph()[0] is copy  # evaluation reuses it: the graph sits on the device once
    assert dm.graph_on(torch.device("cpu")) is copy
    dm.world = World(synthetic_split, synthetic_world(seed=3)[2])  # a new graph gets a new copy, not the stale one
    assert dm.graph_on("cpu") is not copy and dm.graph_on("cpu").metadata() == dm.graph.data.metadata()


@pytest.mark.parametrize("sampling_device, workers, expected", [
    ("auto", 0, "cuda:0"),  # the whole sampling loop stays on the trainer's GPU
    ("auto", 2, "cpu"),  # forked workers cannot use CUDA: they sample on the host
    ("cpu", 0, "cpu"),
])
def test_neighbor_sampling_runs_on_the_trainers_device(synthetic_graph, synthetic_split, sampling_device, workers,
                                                       expected):
    from types import SimpleNamespace

    dm = make_dm(synthetic_graph, synthetic_split, sampling="neighbor",
                                    sampling_device=sampling_device, num_workers=workers)
    assert dm._sample_on() == torch.device("cpu")  # no trainer yet
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), world_size=1)
    assert dm._sample_on() == torch.device(expected)


@pytest.mark.parametrize("sampling", ["neighbor", "full"])
def test_full_graph_degrees_are_kept_on_the_training_device_only_for_sampled_training(
        synthetic_graph, synthetic_split, sampling, monkeypatch):
    dm = make_dm(synthetic_graph, synthetic_split, sampling=sampling, num_neighbors=(5, 5))
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8))
    module.attach(dm)
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
    import kgrec.training.loaders as loaders

    dm = make_dm(synthetic_graph, synthetic_split)
    need = sum(v.numel() * v.element_size() for store in synthetic_graph.data.stores for v in store.values()
               if isinstance(v, torch.Tensor))
    free = {"bytes": need - 1}
    monkeypatch.setattr(loaders, "available_bytes", lambda device: free["bytes"])
    # "meta" stands in for a GPU with one byte too few
    with pytest.raises(ConfigError, match=rf"need [0-9.]+ MiB \({need} bytes\) on device 'meta', which has [0-9.]+ "
                                          r"MiB free\. kgrec evaluates .* the graph must fit there: use a device "
                                          r"with more memory, train on the CPU \(--trainer.accelerator cpu\)"):
        dm.graph_on("meta")
    assert dm._device_graph._copy is None  # nothing half-copied is kept
    free["bytes"] = need
    assert dm.graph_on("meta")[INTERACTS].edge_index.device.type == "meta"
    # the host copy is already there: nothing to move, nothing to check
    free["bytes"] = 0
    assert dm.graph_on("cpu")[INTERACTS].edge_index.device.type == "cpu"


def test_checkpoint_from_a_different_graph_is_refused(synthetic_graph, synthetic_split):
    dm = make_dm(synthetic_graph, synthetic_split)
    module = KGRecModule(dm.graph_info)
    other = make_synthetic(num_users=30, num_items=20, seed=1)
    other_split = split_dataset(other, "random", seed=1)
    dm_other = make_dm(build_graph(other, other_split), other_split)
    with pytest.raises(ConfigError, match="trained on a different graph: num_nodes"):
        module.check_graph(dm_other.graph_info)
    with pytest.raises(ConfigError, match="trained on a different graph: num_nodes"):
        module.attach(dm_other)


def test_train_fingerprint_ignores_order_and_sees_one_changed_pair(synthetic_graph, synthetic_split):
    import dataclasses

    dm = make_dm(synthetic_graph, synthetic_split)
    shuffled = synthetic_split.train.sample(frac=1.0, random_state=0)
    other_order = build_graph(make_synthetic(), dataclasses.replace(synthetic_split, train=shuffled))
    assert make_dm(other_order, synthetic_split).train_fingerprint() == dm.train_fingerprint()
    fewer = dataclasses.replace(synthetic_split, train=synthetic_split.train.iloc[1:])
    assert (make_dm(build_graph(make_synthetic(), fewer), fewer).train_fingerprint()
            != dm.train_fingerprint())


@pytest.mark.parametrize("learn_relation_weights", [False, True])
def test_bf16_mixed_precision_trains_and_validates_in_float32(learn_relation_weights):
    import lightning as L

    from kgrec.eval import evaluate

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
    dm = make_dm(synthetic_graph, synthetic_split, sampling="neighbor",
                                    num_neighbors=(5, 5), batch_size=64)
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8))
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

    dm = make_dm(synthetic_graph, synthetic_split)
    users, items = dm.train_edges()
    expected_users, expected_items = split_to_index(synthetic_graph, synthetic_split.train)
    assert torch.equal(users, expected_users) and torch.equal(items, expected_items)


def test_full_graph_batches_are_the_shuffled_loader_batches(synthetic_graph, synthetic_split):
    from torch.utils.data import DataLoader, TensorDataset

    dm = make_dm(synthetic_graph, synthetic_split, batch_size=64)
    users, items = dm.train_edges()
    torch.manual_seed(5)
    reference = list(DataLoader(TensorDataset(users, items), batch_size=64, shuffle=True, drop_last=True))
    torch.manual_seed(5)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(reference) == len(dm.train_dataloader()) == len(users) // 64
    for (u, i), (ref_u, ref_i) in zip(batches, reference):
        assert torch.equal(u, ref_u) and torch.equal(i, ref_i)
    # one batch only when the edges are fewer than a batch: nothing is dropped
    small = make_dm(synthetic_graph, synthetic_split, batch_size=10 * len(users))
    (whole,) = list(small.train_dataloader())
    assert sorted(zip(whole[0].tolist(), whole[1].tolist())) == sorted(zip(users.tolist(), items.tolist()))


@pytest.mark.parametrize("sampling", ["full", "neighbor"])
def test_fewer_train_edges_than_a_batch_still_train(synthetic_graph, synthetic_split, sampling):
    # drop_last on a loader with less than one batch left an epoch with no step: Lightning only
    # warned, and KGRec.fit kept the untrained weights
    dm = make_dm(synthetic_graph, synthetic_split, sampling=sampling, num_neighbors=(5, 5),
                                    batch_size=100_000)
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_negatives=8))
    trainer = fit(module, dm, epochs=2)
    assert trainer.global_step == 2


def test_drop_last_looks_at_each_ranks_shard(synthetic_graph, synthetic_split):
    from types import SimpleNamespace

    num_edges = synthetic_graph.data[INTERACTS].num_edges
    dm = make_dm(synthetic_graph, synthetic_split, batch_size=num_edges // 2 + 1)
    assert dm._drop_last(num_edges)  # one process: one full batch and a remainder
    dm.trainer = SimpleNamespace(world_size=2)
    assert not dm._drop_last(num_edges)  # each of 2 ranks holds about one batch: keep it


@pytest.mark.parametrize("kwargs, message", [
    ({"sampling": "random-walk"}, r"loader.sampling must be one of \{'full', 'neighbor'\}; got 'random-walk'"),
    ({"batch_size": 0}, "loader.batch_size must be an integer >= 1; got 0"),
    ({"num_neighbors": [10, 0]}, r"loader.num_neighbors must be positive integers \(or -1 for all\), one per layer; "
                                 r"got \[10, 0\]"),
    ({"sampling_device": "cuda"}, r"loader.sampling_device must be one of \{'auto', 'cpu'\}; got 'cuda'"),
    ({"val_max_users": 0}, "loader.val_max_users must be an integer >= 1 or null; got 0"),
    ({"eval_batch_users": True}, "loader.eval_batch_users must be an integer >= 1 or null; got True"),
])
def test_datamodule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        KGRecDataModule(dataset={"path": "synthetic"}, loader=kwargs)
    with pytest.raises(ConfigError, match="data.loader has no field"):
        KGRecDataModule(loader={"batchsize": 5})


def test_missing_dataset_path_is_named(tmp_path):
    dm = KGRecDataModule(dataset={"path": str(tmp_path / "absent")})
    with pytest.raises(DataError, match="dataset.path .*absent.* is neither a built-in dataset"):
        dm.prepare_data()


def test_evaluation_runs_over_chunks_of_users_as_the_evaluator_ranks_them(synthetic_graph, synthetic_split):
    """Validation and test iterate real loaders of user chunks through the evaluator's kernel: any
    chunking gives the metrics ``kgrec.eval.evaluate`` gives, the cold loader included."""
    from kgrec.eval import evaluate

    split = split_dataset(make_synthetic(), "cold_item", seed=3)
    graph = build_graph(make_synthetic(), split)
    means = []
    for chunk in (None, 7):
        dm = make_dm(graph, split, batch_size=64, eval_batch_users=chunk)
        torch.manual_seed(0)
        module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_layers=1))
        trainer = fit(module, dm, epochs=1)
        assert trainer.num_val_batches == [1 if chunk is None else -(-len(dm.ranking_task("valid").users) // 7)]
        trainer.test(module, dm, verbose=False)
        means.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        out = module.embeddings()
        scorer = EmbeddingScorer(out["user"], out["item"])
        assert means[-1]["test/ndcg@20"] == pytest.approx(evaluate(scorer, split, graph)["ndcg@20"], abs=1e-6)
        cold = evaluate(scorer, split, graph, cold_only=True)
        assert means[-1]["test/cold_recall@20"] == pytest.approx(cold["recall@20"], abs=1e-6)
    assert means[0] == pytest.approx(means[1], abs=1e-6)


def test_predict_returns_each_chunks_top_k_unseen_items(synthetic_graph, synthetic_split):
    import lightning as L

    dm = make_dm(synthetic_graph, synthetic_split, batch_size=64, eval_batch_users=16)
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_layers=1))
    out = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).predict(module, dm)
    users = torch.cat([o["users"] for o in out])
    assert torch.equal(users, torch.arange(synthetic_graph.num_users)) and len(out) == -(-len(users) // 16)
    items = torch.cat([o["items"] for o in out])
    assert items.shape == (len(users), 20)
    seen = set(zip(*synthetic_graph.data[INTERACTS].edge_index.tolist()))
    assert not any((u, i) in seen for u, row in zip(users.tolist(), items.tolist()) for i in row)


def test_predict_k_past_the_catalogue_is_named(synthetic_graph, synthetic_split):
    import lightning as L

    dm = KGRecDataModule.from_world(World(synthetic_split, synthetic_graph), predict={"k": 10_000})
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_layers=1))
    with pytest.raises(ConfigError, match="predict.k=10000 is larger than the catalogue"):
        L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).predict(module, dm)
    with pytest.raises(ConfigError, match="predict.k must be an integer >= 1; got 0"):
        KGRecDataModule(predict={"k": 0})


def test_module_checks_its_groups_by_name():
    info = {"num_nodes": {"user": 3, "item": 2}, "text_dims": {}, "edge_types": [], "num_kg_relations": 0}
    with pytest.raises(ConfigError, match=r"loss.name must be one of \{'ials', 'softmax', 'bpr'\}; got 'hinge'"):
        KGRecModule(info, loss={"name": "hinge"})
    with pytest.raises(ConfigError, match="loss.unobserved_weight must be a number >= 0; got -1.0"):
        KGRecModule(info, loss={"unobserved_weight": -1.0})
    with pytest.raises(ConfigError, match="optim.lr must be a number > 0; got 0"):
        KGRecModule(info, optim={"lr": 0})
    with pytest.raises(ConfigError, match="model.gnn has no field.*'hidden'.*valid fields: hidden_channels"):
        KGRecModule(info, gnn={"hidden": 8})
    module = KGRecModule(info, gnn={"hidden_channels": 8}, loss={"name": "bpr"})
    # the checkpoint's hyper-parameters are plain containers: load_from_checkpoint rebuilds the groups
    assert module.hparams["gnn"]["hidden_channels"] == 8 and module.hparams["loss"]["name"] == "bpr"
    assert KGRecModule(**module.hparams).gnn_config == module.gnn_config


def test_module_without_a_datamodule_is_refused(synthetic_graph, synthetic_split, tmp_path):
    import lightning as L

    dm = make_dm(synthetic_graph, synthetic_split)
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8))
    with pytest.raises(ConfigError, match=r"KGRecModule needs a KGRecDataModule \(trainer.fit\(module, datamodule=...\)\)"):
        module.attach(None)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="KGRecModule needs a KGRecDataModule"):
        trainer.fit(module, train_dataloaders=dm.train_dataloader())

"""KGRec from the library: the recommender contract, fit, one checkpoint with `kgrec fit`, old checkpoints."""

from __future__ import annotations

import json

import lightning as L
import pandas as pd
import pytest
import torch

from helpers import ROOT
from kgrec.data import make_synthetic, split_dataset
from kgrec.errors import ConfigError, DataError
from kgrec.eval import evaluate
from kgrec.graph import build_graph
from kgrec.models import BaseRecommender, KGRec, load
from kgrec.testing import RecommenderChecks, synthetic_world
from kgrec.training import KGRecDataModule, KGRecModule, trainer_devices

FIXTURES = ROOT / "tests" / "fixtures"
TINY = dict(gnn={"hidden_channels": 8, "num_layers": 1}, loss={"num_negatives": 8}, loader={"batch_size": 64},
            schedule={"max_epochs": 2, "patience": 1})


class TestKGRec(RecommenderChecks):
    def make_recommender(self):
        return KGRec(**TINY)

    def make_world(self):
        return synthetic_world()


@pytest.fixture(scope="module")
def fitted():
    _, split, graph = synthetic_world()
    return KGRec(**{**TINY, "schedule": {"max_epochs": 6, "patience": 2}}).fit(split, graph), split, graph


def test_kgrec_keeps_its_history_and_restores_the_best_epoch(fitted, tmp_path):
    model, split, graph = fitted
    history = model.history_
    assert list(history["epoch"]) == list(range(len(history))) and len(history) == model.epochs_
    assert {"val/ndcg@20", "val/recall@20", "train/loss"} <= set(history.columns)
    best = history.loc[history["val/ndcg@20"].idxmax()]
    assert model.best_epoch_ == best["epoch"]
    # the embeddings kept are the best epoch's, not the last one's
    valid = evaluate(model, split, graph, on="valid").metrics["ndcg@20"]
    assert valid == pytest.approx(best["val/ndcg@20"], abs=1e-5)
    loaded = KGRec.load(model.save(tmp_path / "kgrec.ckpt"))
    pd.testing.assert_frame_equal(loaded.history_, history)


def test_save_and_load_give_the_same_model_anywhere_it_is_read(fitted, tmp_path):
    model, split, graph = fitted
    path = model.save(tmp_path / "kgrec.ckpt")
    for loaded in (KGRec.load(path), load(path), BaseRecommender.load(path)):
        assert isinstance(loaded, KGRec) and loaded.get_params() == model.get_params()
        users = torch.arange(graph.num_users)
        assert torch.allclose(loaded.score(users), model.score(users), atol=1e-6)
        assert evaluate(loaded, split, graph).metrics == pytest.approx(evaluate(model, split, graph).metrics)
    # the same file is a Lightning checkpoint: `kgrec test --ckpt_path` and load_from_checkpoint read it
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert {"state_dict", "hyper_parameters", "pytorch-lightning_version", "format", "graph", "params"} <= set(payload)
    module = KGRecModule.load_from_checkpoint(path, map_location="cpu")
    assert module.gnn_config == model.gnn
    dm = KGRecDataModule.from_world(_world(split, graph), inputs=model.inputs)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    fresh = KGRecModule(dm.graph_info, model.gnn, model.loss, model.optim)
    (metrics,) = trainer.test(fresh, dm, ckpt_path=str(path), verbose=False)
    assert metrics["test/ndcg@20"] == pytest.approx(evaluate(model, split, graph).metrics["ndcg@20"], abs=1e-6)
    # a baseline's file loads through the same function, as its own class
    from kgrec.baselines import MostPop

    assert isinstance(load(MostPop().fit(split, graph).save(tmp_path / "pop.ckpt")), MostPop)
    with pytest.raises(DataError, match="holds a kgrec.baselines.mostpop.MostPop, not a KGRec"):
        KGRec.load(tmp_path / "pop.ckpt")
    with pytest.raises(ConfigError, match=r"MostPop.load takes no options; got \['device'\]"):
        load(tmp_path / "pop.ckpt", device="cpu")
    with pytest.raises(ConfigError, match="it is a directory; give a file path such as"):
        model.save(tmp_path)


def _world(split, graph):
    from kgrec.world import World

    return World(split, graph)


def test_inputs_select_what_fit_reads(synthetic_split, synthetic_graph):
    model = KGRec(**{**TINY, "inputs": {"use_kg": False, "use_side_info": False}}).fit(synthetic_split,
                                                                                        synthetic_graph)
    assert set(model.graph_.data.node_types) == {"user", "item"}
    assert {"entity", "tag"} <= set(synthetic_graph.data.node_types)  # the caller's graph is untouched
    pruned = KGRec(**{**TINY, "inputs": {"kg_min_degree": 3}}).build(synthetic_split, synthetic_graph)[0]
    assert pruned.graph.num_items == synthetic_graph.num_items
    assert len(pruned.graph.vocabs["entity"]) < len(synthetic_graph.vocabs["entity"])


def test_kgrec_build_gives_the_module_fit_trains(synthetic_graph, synthetic_split):
    est = KGRec(gnn={"hidden_channels": 8, "num_layers": 1}, loss={"align_weight": 0.1, "align_max_nodes": 16},
                inputs={"use_kg": False}, loader={"batch_size": 64})
    dm, module = est.build(synthetic_split, synthetic_graph)
    assert module.loss_config.align_max_nodes == 16 and module.gnn_config.hidden_channels == 8
    assert "entity" not in dm.graph_info["num_nodes"] and dm.loader.batch_size == 64
    with pytest.raises(ConfigError, match="loss.align_max_nodes must be an integer >= 2; got 1"):
        KGRec(loss={"align_max_nodes": 1})


def test_kgrec_rejects_bad_groups_by_name(synthetic_graph, synthetic_split):
    with pytest.raises(ConfigError, match="schedule.max_epochs must be an integer >= 1; got 0"):
        KGRec(schedule={"max_epochs": 0})
    with pytest.raises(ConfigError, match=r"gnn has no field\(s\) \['hidden'\]; valid fields: hidden_channels"):
        KGRec(gnn={"hidden": 8})
    with pytest.raises(ConfigError, match="loss must be a LossConfig or a mapping of its fields; got str"):
        KGRec(loss="ials")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_kgrec_on_a_gpu_it_does_not_have(synthetic_graph, synthetic_split):
    with pytest.raises(ConfigError, match="'device' parameter is 'cuda' but CUDA is not available"):
        KGRec(device="cuda").fit(synthetic_split, synthetic_graph)


def test_val_max_users_validates_on_a_fixed_subset_and_tests_on_everyone(synthetic_graph, synthetic_split, tmp_path):
    model = KGRec(**{**TINY, "loader": {"batch_size": 64, "val_max_users": 9}}).fit(synthetic_split, synthetic_graph)
    # the logged validation is the 9-user subset's, as evaluate(max_users=9) measures it
    sub = evaluate(model, synthetic_split, synthetic_graph, on="valid", max_users=9)
    full = evaluate(model, synthetic_split, synthetic_graph, on="valid")
    assert sub.num_users == 9 < full.num_users
    assert sub.metrics["ndcg@20"] == pytest.approx(model.history_["val/ndcg@20"].iloc[model.best_epoch_], abs=1e-5)
    dm, module = model.build(synthetic_split, synthetic_graph)
    assert len(dm.ranking_task("valid").users) == 9 and len(dm.ranking_task("test").users) > 9
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.test(module, dm, verbose=False)  # every user with a test item is ranked
    assert trainer.num_test_batches == [1]


@pytest.mark.parametrize("device, expected", [("cpu", ("cpu", 1)), ("cuda", ("gpu", [0])),
                                              ("cuda:0", ("gpu", [0])), ("cuda:1", ("gpu", [1]))])
def test_kgrec_trains_on_the_gpu_its_device_names(device, expected):
    assert trainer_devices(device) == expected


def test_a_kgrec_0_1_fit_checkpoint_still_loads_and_serves_as_it_did():
    """`kgrec fit` of kgrec 0.1 (flat hyper-parameters, the serving bundle) loads as today's KGRec and
    recommends what kgrec 0.1's Recommender recommended from it."""
    rec = load(FIXTURES / "kgrec-0.1-fit.ckpt", device="cpu")
    assert isinstance(rec, KGRec) and rec.gnn.hidden_channels == 16 and rec.graph_.text_layout is not None
    expected = pd.DataFrame(json.loads((FIXTURES / "kgrec-0.1-fit.expected.json").read_text())["recommend"])
    got = rec.recommend(["u0", "u1", "u7"], k=5)
    assert got["item"].tolist() == expected["item"].tolist()
    assert got["score"].to_numpy() == pytest.approx(expected["score"].to_numpy(), abs=1e-6)
    assert rec.recommend_new_user(liked_items=["i0"], k=3)["item"].size == 3  # cold start works on it too


def test_a_kgrec_0_1_save_file_is_refused_with_what_to_do():
    with pytest.raises(DataError, match="written by KGRec.save of kgrec 0.1, which kept only the final embeddings.*"
                                        r"train again \(KGRec\(...\).fit\(split, graph\).save\(path\), or `kgrec fit`\)"):
        load(FIXTURES / "kgrec-0.1-save.pt")


def test_final_embeddings_come_from_the_callers_graph_left_where_it_was():
    dataset = make_synthetic()
    split = split_dataset(dataset, "random", seed=1)
    graph = build_graph(dataset, split)
    before = {et: graph.data[et].edge_index.clone() for et in graph.data.edge_types}
    model = KGRec(**TINY).fit(split, graph)
    assert all(torch.equal(graph.data[et].edge_index, before[et]) for et in before)
    assert model.user_embeddings_.shape == (graph.num_users, 8)
    assert {t.device.type for store in model.graph_.data.stores for t in store.values() if torch.is_tensor(t)} == {"cpu"}

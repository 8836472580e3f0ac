"""Every baseline passes the shared conformance suite, plus model-specific checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgrec.baselines import ALS, BPRMF, EASE, ItemKNN, LightGCN, MostPop, TextKNN
from kgrec.errors import ConfigError, DataError
from kgrec.eval import evaluate
from kgrec.testing import RecommenderChecks, synthetic_world


def _item_text(num_items: int = 30, dim: int = 8) -> torch.Tensor:
    return torch.randn(num_items, dim, generator=torch.Generator().manual_seed(0))


class TestMostPop(RecommenderChecks):
    def make_recommender(self):
        return MostPop()


class TestItemKNN(RecommenderChecks):
    def make_recommender(self):
        return ItemKNN(neighbors=10)


class TestEASE(RecommenderChecks):
    def make_recommender(self):
        return EASE(l2=10.0)


class TestBPRMF(RecommenderChecks):
    def make_recommender(self):
        return BPRMF(embedding_dim=8, batch_size=256, max_epochs=4, eval_every=2)


class TestALS(RecommenderChecks):
    def make_recommender(self):
        pytest.importorskip("implicit")
        return ALS(factors=8, iterations=3, num_threads=1)


class TestLightGCN(RecommenderChecks):
    def make_recommender(self):
        return LightGCN(embedding_dim=8, num_layers=2, batch_size=256, max_epochs=4, eval_every=2)


class TestTextKNN(RecommenderChecks):
    def make_recommender(self):
        return TextKNN(text_features={"item": _item_text()})


# ------------------------------------------------------------ model behaviour
@pytest.fixture(scope="module")
def world():
    return synthetic_world(num_users=60, num_items=40)


def test_mostpop_counts_train_only(world):
    _, split, graph = world
    model = MostPop().fit(split, graph)
    items = list(graph.vocabs["item"].ids)
    expected = split.train["item"].value_counts().reindex(items, fill_value=0).to_numpy()
    assert np.array_equal(model.popularity_.numpy(), expected.astype(np.float32))


def test_itemknn_matches_dense_cosine(world):
    _, split, graph = world
    model = ItemKNN(neighbors=1000).fit(split, graph)  # no pruning
    x = model.train_.toarray()
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(sim, 0)
    users = torch.arange(5)
    assert np.allclose(model.score(users).numpy(), x[:5] @ sim, atol=1e-5)


def test_itemknn_keeps_at_most_k_neighbours(world):
    _, split, graph = world
    model = ItemKNN(neighbors=3).fit(split, graph)
    per_item = np.diff(model.similarity_.tocsc().indptr)
    assert per_item.max() <= 3


def test_ease_is_the_constrained_ridge_solution(world):
    _, split, graph = world
    model = EASE(l2=7.0).fit(split, graph)
    x = model.train_.toarray().astype(np.float64)
    b = model.weights_.double().numpy()
    assert np.allclose(np.diag(b), 0.0)
    # stationarity of ||X - XB||^2 + l2 ||B||^2 under diag(B) = 0: each column's gradient
    # X^T X (B - I) + l2 B vanishes off the diagonal (the constraint's multiplier takes the diagonal)
    grad = x.T @ x @ (b - np.eye(b.shape[0])) + 7.0 * b
    off = ~np.eye(b.shape[0], dtype=bool)
    assert np.abs(grad[off]).max() < 1e-6 * np.abs(x.T @ x).max()
    users = torch.arange(5)
    assert np.allclose(model.score(users).numpy(), x[:5] @ b, atol=1e-5)


def test_ease_refuses_a_catalogue_above_max_items(world):
    _, split, graph = world
    with pytest.raises(ConfigError, match=r"dense 40 x 40 system .* above max_items=39; raise max_items"):
        EASE(max_items=39).fit(split, graph)


def test_trained_baselines_beat_popularity(world):
    _, split, graph = world
    pop = evaluate(MostPop().fit(split, graph), split, graph, on="valid").metrics["ndcg@20"]
    for model in (
        BPRMF(embedding_dim=16, batch_size=128, lr=0.01, max_epochs=40, eval_every=5),
        LightGCN(embedding_dim=16, batch_size=256, lr=0.01, max_epochs=40, eval_every=5),
        ItemKNN(neighbors=20),
        EASE(l2=10.0),
    ):
        valid = evaluate(model.fit(split, graph), split, graph, on="valid").metrics["ndcg@20"]
        assert valid > pop, type(model).__name__


def test_early_stopping_keeps_best_valid_epoch(world):
    _, split, graph = world
    model = BPRMF(embedding_dim=8, batch_size=128, lr=0.05, max_epochs=30, eval_every=2, patience=2)
    model.fit(split, graph)
    epochs, values = zip(*model.valid_history_)
    assert model.best_epoch_ == epochs[int(np.argmax(values))]
    final = evaluate(model, split, graph, on="valid", ks=(20,)).metrics["ndcg@20"]
    assert final == pytest.approx(max(values))


def test_textknn_is_mean_of_train_item_embeddings(world):
    _, split, graph = world
    emb = _item_text(40, 6)
    model = TextKNN(text_features={"item": emb}).fit(split, graph)
    user = str(split.train["user"].iloc[0])
    uidx = int(model.encode_users([user])[0])
    items = model.encode_items(list(split.train.loc[split.train["user"] == user, "item"]))
    unit = torch.nn.functional.normalize(emb, dim=1)
    mean = torch.nn.functional.normalize(unit[items].mean(0), dim=0)
    assert torch.allclose(model.score(torch.tensor([uidx]))[0], unit @ mean, atol=1e-5)


def test_textknn_reads_graph_item_features(world):
    _, split, graph = world
    emb = _item_text(40, 6)
    graph.data["item"].x = emb
    try:
        a = TextKNN().fit(split, graph).score(torch.arange(3))
    finally:
        del graph.data["item"].x
    b = TextKNN(text_features={"item": emb}).fit(split, graph).score(torch.arange(3))
    assert torch.equal(a, b)


def test_textknn_errors(world):
    _, split, graph = world
    with pytest.raises(ConfigError, match="TextKNN needs item text embeddings"):
        TextKNN().fit(split, graph)
    with pytest.raises(ConfigError, match="must map 'item'"):
        TextKNN(text_features={"user": _item_text(40)}).fit(split, graph)
    with pytest.raises(DataError, match=r"shape \(num_items=40, dim\); got \(7, 8\)"):
        TextKNN(text_features={"item": _item_text(7)}).fit(split, graph)


@pytest.mark.parametrize(
    "model, match",
    [
        (ItemKNN(neighbors=0), "'neighbors' parameter must be a positive integer; got 0"),
        (ItemKNN(shrink=-1.0), "'shrink' parameter must be >= 0"),
        (BPRMF(embedding_dim=2.5), "'embedding_dim' parameter must be a positive integer; got 2.5"),
        (BPRMF(lr=0), "'lr' parameter must be a number > 0; got 0"),
        (LightGCN(num_layers=0), "'num_layers' parameter must be a positive integer; got 0"),
        (ALS(alpha=-1.0), "'alpha' parameter must be a number > 0"),
        (EASE(l2=0), "'l2' parameter must be a number > 0; got 0"),
        (EASE(l2="big"), "'l2' parameter must be a number > 0; got 'big'"),
        (EASE(max_items=0), "'max_items' parameter must be a positive integer; got 0"),
    ],
)
def test_bad_hyper_parameters(world, model, match):
    _, split, graph = world
    with pytest.raises(ConfigError, match=match):
        model.fit(split, graph)


@pytest.mark.parametrize("make, names", [
    (lambda: BPRMF(embedding_dim=8, batch_size=256, max_epochs=2, eval_every=1), ("user_factors_", "item_factors_")),
    (lambda: TextKNN(text_features={"item": _item_text(40)}), ("user_embeddings_", "item_embeddings_")),
    (lambda: MostPop(), ("popularity_",)),
])
def test_scoring_moves_learned_tables_to_the_score_device_once(world, make, names, tmp_path):
    dataset, split, graph = world
    model = make().fit(split, graph)
    path = model.save(tmp_path / "m.pt")
    loaded = type(model).load(path)  # load maps every tensor to the CPU
    # "meta" stands in for a GPU: scoring must not copy the tables there once per call
    loaded.device_ = "meta"
    users = torch.arange(3, device="meta")
    first = loaded._score(users)
    assert first.device.type == "meta" and first.shape == (3, loaded.num_items)
    kept = [getattr(loaded, n) for n in names]
    assert all(t.device.type == "meta" for t in kept)
    loaded._score(users)
    assert all(getattr(loaded, n) is t for n, t in zip(names, kept))  # moved once, then reused


def test_cuda_device_without_cuda_is_refused(world):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the error path cannot occur")
    _, split, graph = world
    with pytest.raises(ConfigError, match="CUDA is not available"):
        MostPop(device="cuda").fit(split, graph)


# ------------------------------------------- the conformance suite can fail
class _LeakyPop(MostPop):
    """Counts test interactions into popularity: the suite must catch it."""

    def _fit(self, split, graph):
        super()._fit(split, graph)
        idx = graph.vocabs["item"].encode(split.test["item"].to_numpy())
        self.popularity_ = self.popularity_ + torch.bincount(
            torch.from_numpy(idx), minlength=self.num_items
        ).float()


class _MutatingPop(MostPop):
    def _fit(self, split, graph):
        super()._fit(split, graph)
        split.train.loc[split.train.index[0], "item"] = split.train["item"].iloc[-1]


def test_conformance_suite_catches_test_leakage():
    checks = type("C", (RecommenderChecks,), {"make_recommender": lambda self: _LeakyPop()})()
    with pytest.raises(AssertionError):
        checks.test_no_test_interaction_visible_after_fit(synthetic_world())


def test_conformance_suite_catches_input_mutation():
    checks = type("C", (RecommenderChecks,), {"make_recommender": lambda self: _MutatingPop()})()
    with pytest.raises(AssertionError):
        checks.test_inputs_not_mutated(synthetic_world())


def test_load_imports_only_kgrec_modules_on_the_files_say_so(tmp_path):
    import sys

    from kgrec.models.base import BaseRecommender

    _, split, graph = synthetic_world()
    path = MostPop().fit(split, graph).save(tmp_path / "pop.pt")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    sys.modules.pop("this", None)  # the stdlib module that prints on import: proof nothing ran
    torch.save(dict(payload, class_path="this.Recommender"), tmp_path / "foreign.pt")
    with pytest.raises(DataError, match=r"holds a this.Recommender; kgrec imports only its own modules .* "
                                        r"import 'this' first"):
        BaseRecommender.load(tmp_path / "foreign.pt")
    assert "this" not in sys.modules
    # a module the caller imported itself is trusted (a user's own subclass); a non-class is refused
    torch.save(dict(payload, class_path="numpy.pi"), tmp_path / "numpy.pt")
    with pytest.raises(DataError, match=r"names 'numpy.pi', which is not a kgrec recommender"):
        BaseRecommender.load(tmp_path / "numpy.pt")
    assert isinstance(BaseRecommender.load(path), MostPop)
    # a kgrec class other than the one asked for is named
    with pytest.raises(DataError, match=r"holds a kgrec.baselines.mostpop.MostPop, not a EASE"):
        EASE.load(path)

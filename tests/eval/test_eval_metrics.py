"""kgrec.eval against an independent implementation (ranx) and its error paths.

Definitional notes (none differ from ranx for binary relevance):
* NDCG@K: IDCG is cut at K, i.e. computed over min(#relevant, K) items (ranx does
  the same: it sorts the qrels and cuts the ideal list at K).
* Recall@K divides by the user's number of relevant items (not min(#relevant, K)).
* MRR without a cut-off uses the full ranking of the candidates (ranx: the whole run).
* Candidates exclude the user's train (and, for test, valid) items: the ranx run
  holds only the candidates.
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.models.base import BaseRecommender
from kgrec.errors import ConfigError, KGRecError
from kgrec.eval import evaluate, metrics_from_hits
from kgrec.data.split import Split

ranx = pytest.importorskip("ranx")


class _Vocab:
    def __init__(self, ids):
        self.ids = np.asarray(ids, dtype=object)
        self._index = pd.Index(self.ids)

    def __len__(self):
        return len(self.ids)

    def encode(self, raw):
        idx = self._index.get_indexer(np.asarray(raw, dtype=object))
        assert (idx >= 0).all()  # test helper, not library code
        return idx.astype(np.int64)


class FixedScores(BaseRecommender):
    """Returns a fixed (num_users, num_items) score matrix (test helper)."""

    def __init__(self, scores: torch.Tensor | None = None) -> None:
        self.scores = scores

    def _fit(self, split, graph):
        self.table_ = self.scores.clone()

    def _score(self, users):
        return self.table_[users]


def _world(num_users=30, num_items=80, seed=0):
    """Random train/valid/test interactions and a random score matrix."""
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(num_users)]
    items = [f"i{j}" for j in range(num_items)]
    parts = {"train": [], "valid": [], "test": []}
    for u in users:
        perm = rng.permutation(num_items)
        n_train, n_valid, n_test = rng.integers(0, 15), rng.integers(0, 4), rng.integers(1, 25)
        chunks = np.split(perm[: n_train + n_valid + n_test], [n_train, n_train + n_valid])
        for name, chunk in zip(("train", "valid", "test"), chunks):
            parts[name] += [(u, items[j]) for j in chunk]
    frames = {k: pd.DataFrame(v, columns=["user", "item"]) for k, v in parts.items()}
    split = Split(train=frames["train"], valid=frames["valid"], test=frames["test"], strategy="random", seed=seed)
    graph = types.SimpleNamespace(vocabs={"user": _Vocab(users), "item": _Vocab(items)})
    scores = torch.from_numpy(rng.standard_normal((num_users, num_items)).astype(np.float32))
    return split, graph, scores


def _ranx_metrics(split, graph, scores, on, ks):
    users = list(graph.vocabs["user"].ids)
    items = list(graph.vocabs["item"].ids)
    target = split.test if on == "test" else split.valid
    excluded = pd.concat([split.train] + ([split.valid] if on == "test" else []))
    seen = excluded.groupby("user")["item"].apply(set).to_dict()
    qrels, run = {}, {}
    for u, group in target.groupby("user"):
        qrels[u] = {it: 1 for it in group["item"]}
        row = scores[users.index(u)].tolist()
        run[u] = {it: float(row[j]) for j, it in enumerate(items) if it not in seen.get(u, set())}
    names = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "precision", "hit_rate", "mrr")] + ["mrr"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), names, make_comparable=True)
    return {name.replace("hit_rate", "hit"): float(v) for name, v in out.items()}


@pytest.mark.parametrize("on", ["test", "valid"])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_equal_ranx(on, seed):
    split, graph, scores = _world(seed=seed)
    model = FixedScores(scores).fit(split, graph)
    ks = (10, 20, 50)
    ours = evaluate(model, split, graph, on=on, ks=ks).metrics
    theirs = _ranx_metrics(split, graph, scores, on, ks)
    assert set(theirs) <= set(ours)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name


def test_metrics_from_hits_hand_computed():
    # ranks 1..4: relevant, no, relevant, no; 3 relevant items in total
    hits = torch.tensor([[True, False, True, False]])
    out = metrics_from_hits(hits, torch.tensor([3]), ks=(2, 4), first_rank=torch.tensor([1]))
    d = 1 / np.log2(np.arange(2, 6))
    assert out["recall@2"].item() == pytest.approx(1 / 3)
    assert out["precision@2"].item() == pytest.approx(1 / 2)
    assert out["ndcg@2"].item() == pytest.approx(d[0] / (d[0] + d[1]))
    assert out["ndcg@4"].item() == pytest.approx((d[0] + d[2]) / (d[0] + d[1] + d[2]))
    assert out["hit@2"].item() == 1.0 and out["mrr"].item() == 1.0


def test_chunking_does_not_change_results():
    split, graph, scores = _world(seed=3)
    model = FixedScores(scores).fit(split, graph)
    a = evaluate(model, split, graph, batch_size=1, per_user=True)
    b = evaluate(model, split, graph, batch_size=None, per_user=True)
    assert a.metrics == pytest.approx(b.metrics, abs=1e-12)
    pd.testing.assert_frame_equal(a.per_user, b.per_user)
    assert len(a.per_user) == a.num_users
    assert a.per_user["recall@20"].mean() == pytest.approx(a.metrics["recall@20"])


def test_max_users_evaluates_a_fixed_random_subset():
    split, graph, scores = _world(seed=4)
    model = FixedScores(scores).fit(split, graph)
    full = evaluate(model, split, graph, on="valid", per_user=True)
    sub = evaluate(model, split, graph, on="valid", per_user=True, max_users=7)
    assert sub.num_users == 7 and sub.counts["eligible_users"] == full.num_users > 7
    # the subset's metrics are the full run's per-user values averaged over those users
    rows = full.per_user.set_index("user").loc[sub.per_user["user"]]
    for name in ("recall@20", "ndcg@20", "mrr"):
        assert sub.metrics[name] == pytest.approx(rows[name].mean(), abs=1e-12)
    # the same subset on every call; another seed draws another one
    again = evaluate(model, split, graph, on="valid", per_user=True, max_users=7)
    pd.testing.assert_frame_equal(again.per_user, sub.per_user)
    other = evaluate(model, split, graph, on="valid", per_user=True, max_users=7, seed=1)
    assert set(other.per_user["user"]) != set(sub.per_user["user"])
    # at or above the number of eligible users nothing is dropped
    everyone = evaluate(model, split, graph, on="valid", max_users=full.num_users)
    assert everyone.metrics == full.metrics


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "10"])
def test_max_users_must_be_a_positive_integer(bad):
    split, graph, scores = _world(seed=4)
    model = FixedScores(scores).fit(split, graph)
    with pytest.raises(ConfigError, match=f"'max_users' parameter must be a positive integer or None; got {bad!r}"):
        evaluate(model, split, graph, max_users=bad)


@pytest.mark.parametrize("bad", [None, -1, 1.5, False])
def test_subset_seed_must_be_a_non_negative_integer(bad):
    split, graph, scores = _world(seed=4)
    model = FixedScores(scores).fit(split, graph)
    with pytest.raises(ConfigError, match=f"'seed' parameter must be a non-negative integer; got {bad!r}"):
        evaluate(model, split, graph, max_users=5, seed=bad)


def test_a_float64_default_dtype_changes_nothing():
    split, graph, scores = _world(seed=6)
    model = FixedScores(scores).fit(split, graph)
    expected = evaluate(model, split, graph).metrics
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert evaluate(model, split, graph).metrics == expected
    finally:
        torch.set_default_dtype(before)


def test_evaluate_never_writes_into_the_scores_a_model_hands_it():
    class Memoised(FixedScores):  # hands out the same tensor object again for the same users
        def _score(self, users):
            key = tuple(users.tolist())
            if key not in self.handed_:
                self.handed_[key] = self.table_[users]
            return self.handed_[key]

    split, graph, scores = _world(seed=5)
    model = Memoised(scores).fit(split, graph)
    model.handed_ = {}
    first = evaluate(model, split, graph, batch_size=4)
    assert model.handed_ and all(torch.equal(t, model.table_[list(k)]) for k, t in model.handed_.items())
    assert evaluate(model, split, graph, batch_size=4).metrics == first.metrics
    assert first.metrics == evaluate(FixedScores(scores).fit(split, graph), split, graph).metrics


def test_seen_items_are_excluded_from_candidates():
    split, graph, scores = _world(seed=4)
    # give every train and valid item the highest score: if they were not removed
    # from the candidates they would fill the top of every list
    boosted = scores.clone()
    users = list(graph.vocabs["user"].ids)
    items = list(graph.vocabs["item"].ids)
    for frame in (split.train, split.valid):
        for u, it in zip(frame["user"], frame["item"]):
            boosted[users.index(u), items.index(it)] = 100.0
    base = evaluate(FixedScores(scores).fit(split, graph), split, graph).metrics
    boost = evaluate(FixedScores(boosted).fit(split, graph), split, graph).metrics
    assert boost == pytest.approx(base, abs=1e-12)
    # ranking for valid excludes train but not valid items: boosting valid items helps
    v_base = evaluate(FixedScores(scores).fit(split, graph), split, graph, on="valid").metrics
    v_boost = evaluate(FixedScores(boosted).fit(split, graph), split, graph, on="valid").metrics
    assert v_boost["recall@10"] == pytest.approx(1.0)
    assert v_base["recall@10"] < 1.0


def test_users_without_test_items_are_skipped_and_counted():
    split, graph, scores = _world(num_users=10, seed=5)
    test = split.test[split.test["user"] != "u3"]
    split2 = Split(split.train, split.valid, test, "random", 5)
    result = evaluate(FixedScores(scores).fit(split2, graph), split2, graph)
    assert result.num_users == 9 and result.skipped_users == 1
    empty = Split(split.train, split.valid, split.test.iloc[:0], "random", 5)
    result = evaluate(FixedScores(scores).fit(empty, graph), empty, graph)
    assert result.num_users == 0 and result.skipped_users == 10 and result.metrics == {}


def test_unknown_and_coldless_target_items_are_counted():
    split, graph, scores = _world(num_users=8, seed=6)
    extra = pd.DataFrame({"user": ["u0", "nobody"], "item": ["not-in-catalogue", "i1"]})
    split2 = Split(split.train, split.valid, pd.concat([split.test, extra]), "random", 6)
    result = evaluate(FixedScores(scores).fit(split2, graph), split2, graph)
    assert result.counts["unknown_item_interactions"] == 1
    assert result.counts["unknown_user_interactions"] == 1
    never_trained = set(graph.vocabs["item"].ids) - set(split.train["item"])
    expected = int(split.test["item"].isin(never_trained).sum())
    assert result.counts["target_items_without_train"] == expected


def test_cold_only_ranks_only_cold_items():
    split, graph, scores = _world(seed=7)
    cold = frozenset(f"i{j}" for j in range(60, 80))
    split2 = Split(split.train[~split.train["item"].isin(cold)], split.valid[~split.valid["item"].isin(cold)],
                   split.test, "cold_item", 7, cold)
    sub_items = [f"i{j}" for j in range(60, 80)]
    graph_sub = types.SimpleNamespace(vocabs={"user": graph.vocabs["user"], "item": _Vocab(sub_items)})
    sub_split = Split(split2.train.iloc[:0], split2.valid.iloc[:0], split.test[split.test["item"].isin(cold)],
                      "random", 7)
    ours = evaluate(FixedScores(scores).fit(split2, graph), split2, graph, cold_only=True).metrics
    # the same ranking computed on a catalogue that only holds the cold items
    ref = evaluate(FixedScores(scores[:, 60:]).fit(sub_split, graph_sub), sub_split, graph_sub).metrics
    assert ours == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ConfigError, match="cold_only=True needs a split with cold items"):
        evaluate(FixedScores(scores).fit(split, graph), split, graph, cold_only=True)


@pytest.mark.parametrize("bad", [0, -5, 2.5, "10", True, None])
def test_bad_k_is_refused(bad):
    split, graph, scores = _world(num_users=4, seed=8)
    model = FixedScores(scores).fit(split, graph)
    with pytest.raises(ConfigError, match=r"The 'ks' parameter must be a positive integer; got"):
        evaluate(model, split, graph, ks=(10, bad))
    with pytest.raises(ConfigError, match=r"The 'k' parameter must be a positive integer"):
        model.recommend(["u0"], k=bad)


def test_empty_ks_and_bad_on_and_batch_size():
    split, graph, scores = _world(num_users=4, seed=8)
    model = FixedScores(scores).fit(split, graph)
    with pytest.raises(ConfigError, match="at least one positive integer"):
        evaluate(model, split, graph, ks=())
    with pytest.raises(ConfigError, match=r"'on' parameter must be one of .*got 'train'"):
        evaluate(model, split, graph, on="train")
    with pytest.raises(ConfigError, match="'batch_size' parameter must be a positive integer"):
        evaluate(model, split, graph, batch_size=0)
    with pytest.raises(ConfigError, match="is not fitted"):
        evaluate(FixedScores(scores), split, graph)


def test_nan_scores_name_the_model():
    split, graph, scores = _world(num_users=6, seed=9)
    scores[2, 5] = float("nan")
    model = FixedScores(scores).fit(split, graph)
    with pytest.raises(KGRecError, match="FixedScores.score returned NaN scores"):
        evaluate(model, split, graph)


def test_wrong_score_shape_is_reported():
    split, graph, scores = _world(num_users=6, seed=9)
    model = FixedScores(scores[:, :10]).fit(split, graph)
    with pytest.raises(KGRecError, match=r"expected \(\d+, 80\) = \(batch, num_items\)"):
        evaluate(model, split, graph)


class _RecordingScores(FixedScores):
    def _score(self, users):
        self.calls_.append(len(users))
        return super()._score(users)


def test_scores_are_requested_in_bounded_chunks(monkeypatch):
    split, graph, scores = _world(num_users=30, seed=10)
    model = _RecordingScores(scores).fit(split, graph)
    model.calls_ = []
    evaluate(model, split, graph, batch_size=7)
    assert max(model.calls_) <= 7 and sum(model.calls_) == 30
    # default chunking keeps a (batch, num_items) block under the element budget
    import kgrec.eval.evaluator as ev

    monkeypatch.setattr(ev, "_SCORE_BLOCK", 80 * 4)  # 4 users x 80 items
    model.calls_ = []
    evaluate(model, split, graph)
    assert max(model.calls_) == 4


def test_tied_scores_get_no_mrr_credit():
    split, graph, scores = _world(num_users=10, seed=11)
    constant = torch.zeros_like(scores)
    result = evaluate(FixedScores(constant).fit(split, graph), split, graph, per_user=True)
    # every candidate ties: the first relevant item ranks after all non-relevant candidates
    frame = result.per_user
    seen = pd.concat([split.train, split.valid]).groupby("user").size()
    candidates = 80 - frame["user"].map(seen).fillna(0).to_numpy()
    expected = 1.0 / (candidates - frame["num_relevant"].to_numpy() + 1)
    assert np.allclose(frame["mrr"].to_numpy(), expected)


def test_evaluate_names_a_wrongly_shaped_score():
    from kgrec import BaseRecommender, evaluate
    from kgrec.errors import KGRecError
    from kgrec.testing import synthetic_world

    class OneTooMany(BaseRecommender):
        def _fit(self, split, graph):
            pass

        def _score(self, users):
            return torch.zeros(len(users), self.num_items + 1)

    _, split, graph = synthetic_world(num_users=15, num_items=12)
    model = OneTooMany().fit(split, graph)
    n = model.num_items
    with pytest.raises(KGRecError, match=rf"OneTooMany\.score returned shape \(\d+, {n + 1}\); "
                                         rf"expected \(\d+, {n}\) = \(batch, num_items\)"):
        evaluate(model, split, graph, on="test")

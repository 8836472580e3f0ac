"""Conformance checks every kgrec recommender opts into by subclassing.

Use in a test module::

    from kgrec.testing import RecommenderChecks

    class TestMostPop(RecommenderChecks):
        def make_recommender(self):
            return MostPop()

pytest then runs every ``test_*`` method below against that recommender on the
tiny :func:`kgrec.data.make_synthetic` dataset (CPU, seconds). Keep the
recommender's training short in ``make_recommender`` (few epochs): the checks are
about the contract, not about quality. Set ``deterministic = False`` for a model
whose fit is not reproducible under a fixed seed (the test-isolation check then
compares fitted state instead of being skipped).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.data import make_synthetic, split_dataset
from kgrec.graph import build_graph
from kgrec.models.base import BaseRecommender, NotFittedError
from kgrec.errors import UnknownIdError

__all__ = ["RecommenderChecks", "synthetic_world", "write_atomic"]


def synthetic_world(strategy: str = "random", seed: int = 0, num_users: int = 40, num_items: int = 30):
    """``(dataset, split, graph)`` on :func:`kgrec.data.make_synthetic` data."""
    dataset = make_synthetic(num_users=num_users, num_items=num_items, seed=seed)
    split = split_dataset(dataset, strategy, seed=seed)
    return dataset, split, build_graph(dataset, split)


def _frames(split) -> dict[str, pd.DataFrame]:
    return {"train": split.train.copy(), "valid": split.valid.copy(), "test": split.test.copy()}


def _graph_tensors(graph) -> dict[str, torch.Tensor]:
    out = {}
    for store in graph.data.stores:
        key = getattr(store, "_key", None)
        for name, value in store.items():
            if isinstance(value, torch.Tensor):
                out[f"{key}/{name}"] = value.clone()
    return out


class RecommenderChecks:
    """Mix-in test class: subclass it as ``Test<Model>`` and implement :meth:`make_recommender`."""

    #: Whether two fits with the same seed give identical scores.
    deterministic: bool = True

    def make_recommender(self) -> BaseRecommender:
        raise NotImplementedError("return an unfitted recommender with short training")

    def make_world(self):
        """``(dataset, split, graph)`` the checks fit on; override to add e.g. text features."""
        return synthetic_world()

    # -------------------------------------------------------------- fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def world(cls):
        return cls().make_world()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, world):
        _, split, graph = world
        return cls().make_recommender().fit(split, graph)

    # ---------------------------------------------------------------- checks
    def test_init_only_stores_params(self):
        model = self.make_recommender()
        assert isinstance(model, BaseRecommender)
        assert not model.is_fitted
        assert not [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
        assert set(model.get_params()) == set(model._param_names())

    def test_fit_returns_self(self, world):
        _, split, graph = world
        model = self.make_recommender()
        assert model.fit(split, graph) is model
        assert model.is_fitted

    def test_score_shape_dtype_finite(self, fitted, world):
        _, _, graph = world
        users = torch.arange(min(5, len(graph.vocabs["user"])))
        scores = fitted.score(users)
        assert scores.shape == (len(users), len(graph.vocabs["item"]))
        assert scores.dtype == torch.float32
        assert not torch.isnan(scores).any()

    def test_inputs_not_mutated(self, world):
        _, split, graph = world
        before_frames = _frames(split)
        before_graph = _graph_tensors(graph)
        before_vocab = {k: np.array(v.ids, copy=True) for k, v in graph.vocabs.items()}
        self.make_recommender().fit(split, graph)
        for name, frame in before_frames.items():
            pd.testing.assert_frame_equal(getattr(split, name), frame)
        after_graph = _graph_tensors(graph)
        assert before_graph.keys() == after_graph.keys()
        for key, value in before_graph.items():
            assert torch.equal(after_graph[key], value), key
        for key, ids in before_vocab.items():
            assert np.array_equal(graph.vocabs[key].ids, ids)

    def test_no_test_interaction_visible_after_fit(self, world):
        """Fitting with a different test set must give exactly the same model."""
        _, split, graph = world
        rng = np.random.default_rng(123)
        items = np.asarray(graph.vocabs["item"].ids)
        fake = split.test.copy()
        fake["item"] = rng.choice(items, size=len(fake))
        other = dataclasses.replace(split, test=fake)
        empty = dataclasses.replace(split, test=split.test.iloc[:0])
        users = torch.arange(len(graph.vocabs["user"]))
        a = self.make_recommender().fit(split, graph).score(users)
        b = self.make_recommender().fit(other, graph).score(users)
        c = self.make_recommender().fit(empty, graph).score(users)
        if self.deterministic:
            assert torch.equal(a, b) and torch.equal(a, c)
        else:  # at least the shapes and finiteness must not depend on test
            assert a.shape == b.shape == c.shape

    def test_save_load_round_trip(self, fitted, world, tmp_path):
        _, _, graph = world
        path = fitted.save(tmp_path / "model.pt")
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        loaded = type(fitted).load(path)
        assert type(loaded) is type(fitted)
        assert loaded.get_params().keys() == fitted.get_params().keys()
        users = torch.arange(len(graph.vocabs["user"]))
        assert torch.allclose(loaded.score(users), fitted.score(users))
        user = str(graph.vocabs["user"].ids[0])
        pd.testing.assert_frame_equal(loaded.recommend([user], k=5), fitted.recommend([user], k=5))
        assert type(BaseRecommender.load(path)) is type(fitted)

    def test_recommend_excludes_seen_and_is_ranked(self, fitted, world):
        _, split, graph = world
        user = str(split.train["user"].iloc[0])
        seen = set(split.train.loc[split.train["user"] == user, "item"])
        recs = fitted.recommend([user], k=10)
        assert list(recs.columns) == ["user", "rank", "item", "name", "score"]
        assert not seen & set(recs["item"])
        assert recs["rank"].tolist() == list(range(1, len(recs) + 1))
        assert recs["score"].is_monotonic_decreasing
        recs_all = fitted.recommend([user], k=len(graph.vocabs["item"]), exclude_seen=False)
        assert len(recs_all) == len(graph.vocabs["item"])

    def test_recommend_restricted_to_candidates(self, fitted, world):
        _, _, graph = world
        user = str(graph.vocabs["user"].ids[0])
        candidates = [str(i) for i in graph.vocabs["item"].ids[:4]]
        recs = fitted.recommend([user], k=10, exclude_seen=False, items=candidates)
        assert set(recs["item"]) == set(candidates)

    def test_unknown_user_and_item_give_clear_errors(self, fitted, world):
        _, _, graph = world
        with pytest.raises(UnknownIdError, match="unknown user id 'no-such-user'"):
            fitted.recommend(["no-such-user"], k=3)
        user = str(graph.vocabs["user"].ids[0])
        with pytest.raises(UnknownIdError, match="unknown item id 'no-such-item'"):
            fitted.recommend([user], k=3, items=["no-such-item"])
        with pytest.raises(UnknownIdError, match="user index .* is outside the vocabulary"):
            fitted.score(torch.tensor([len(graph.vocabs["user"]) + 7]))
        with pytest.raises(UnknownIdError, match="user index -1 is outside the vocabulary"):
            fitted.score(torch.tensor([-1]))

    def test_unfitted_use_is_refused(self):
        model = self.make_recommender()
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            model.score(torch.tensor([0]))
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            model.save("never-written.pt")

    def test_params_round_trip_through_copy(self):
        model = self.make_recommender()
        clone = type(model)(**copy.deepcopy(model.get_params()))
        assert repr(clone) == repr(model)


def write_atomic(dataset, folder: Path, name: str, split=None, kg: pd.DataFrame | None = None) -> Path:
    """Write ``dataset`` as RecBole atomic files ``folder/name.*``, for tests that read data
    from disk (``split`` given: ``name.train/valid/test.inter``; ``kg``: other triples than
    the dataset's). Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)

    def inter_text(frame):
        lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
        lines += [f"{r.user}\t{r.item}\t{r.rating}\t{r.timestamp}" for r in frame.itertuples()]
        return "\n".join(lines) + "\n"

    if split is None:
        (folder / f"{name}.inter").write_text(inter_text(dataset.interactions))
    else:
        for part in ("train", "valid", "test"):
            (folder / f"{name}.{part}.inter").write_text(inter_text(split.part(part)))
    items = ["item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq"]
    items += [f"{r.item}\t{r.title}\t{r.year}\t{' '.join(r.genre)}" for r in dataset.items.itertuples()]
    (folder / f"{name}.item").write_text("\n".join(items) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token"]
    users += [f"{r.user}\t{r.age}\t{r.gender}\t{r.occupation}" for r in dataset.users.itertuples()]
    (folder / f"{name}.user").write_text("\n".join(users) + "\n")
    triples = ["head_id:token\trelation_id:token\ttail_id:token"]
    triples += [f"{r.head}\t{r.relation}\t{r.tail}" for r in (dataset.kg if kg is None else kg).itertuples()]
    (folder / f"{name}.kg").write_text("\n".join(triples) + "\n")
    links = ["item_id:token\tentity_id:token"] + [f"{r.item}\t{r.entity}" for r in dataset.links.itertuples()]
    (folder / f"{name}.link").write_text("\n".join(links) + "\n")
    return folder

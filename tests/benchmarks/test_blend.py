"""benchmarks.blend: score blends of fitted models, scored by the one evaluator and chosen on valid."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmarks.blend import ScoreBlend, main
from kgrec.models.base import BaseRecommender
from kgrec.baselines import ItemKNN, MostPop
from kgrec.errors import ConfigError
from kgrec.testing import synthetic_world


@pytest.fixture(scope="module")
def world():
    return synthetic_world(num_users=50, num_items=30)


def _standardised(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Per-row standardisation over the unseen items, one user at a time."""
    rows = []
    for row, mask in zip(scores, seen):
        rest = row[~mask]
        rows.append((row - rest.mean()) / rest.std())
    return torch.stack(rows)


class _SeenBoost(BaseRecommender):
    """Scores like ``inner`` but puts every train item ``boost`` higher, as reconstruction models do."""

    def __init__(self, inner=None, boost: float = 0.0) -> None:
        self.inner = inner
        self.boost = boost

    def _fit(self, split, graph) -> None:
        pass

    def _score(self, users):
        seen = torch.from_numpy(self.train_[users.numpy()].toarray()).float()
        return self.inner.score(users) + self.boost * seen


def test_score_blend_is_the_weighted_sum_of_standardised_scores(world):
    _, split, graph = world
    knn, pop = ItemKNN(neighbors=10).fit(split, graph), MostPop().fit(split, graph)
    users = torch.arange(6)
    blend = ScoreBlend([knn, pop], [1.0, 0.5]).fit(split, graph)
    seen = torch.from_numpy(blend.train_[users.numpy()].toarray() > 0)
    assert seen.any(1).all()  # every user has seen items, so the unseen-only statistics matter
    expected = _standardised(knn.score(users), seen) + 0.5 * _standardised(pop.score(users), seen)
    assert torch.allclose(blend.score(users), expected, atol=1e-5)
    # the weights are relative: only their ratio changes a ranking
    scaled = ScoreBlend([knn, pop], [2.0, 1.0]).fit(split, graph).score(users)
    assert torch.allclose(scaled, 2.0 * expected, atol=1e-5)
    other = ScoreBlend([knn, pop], [1.0, 2.0]).fit(split, graph).score(users)
    assert not torch.allclose(other, expected, atol=1e-3)


def test_score_blend_ignores_how_a_part_scores_seen_items(world):
    # the standardisation runs over unseen items only: boosting seen items must leave every
    # unseen item's blended score where it was
    _, split, graph = world
    knn, pop = ItemKNN(neighbors=10).fit(split, graph), MostPop().fit(split, graph)
    boosted = _SeenBoost(pop, boost=1e3).fit(split, graph)
    users = torch.arange(10)
    plain = ScoreBlend([knn, pop], [1.0, 1.0]).fit(split, graph).score(users)
    with_boost = ScoreBlend([knn, boosted], [1.0, 1.0]).fit(split, graph).score(users)
    unseen = torch.from_numpy(knn.train_[users.numpy()].toarray() == 0)
    assert torch.allclose(plain[unseen], with_boost[unseen], atol=1e-4)
    assert not torch.allclose(plain[~unseen], with_boost[~unseen], atol=1.0)


def test_score_blend_refuses_parts_fitted_on_another_split(world):
    _, split, graph = world
    knn = ItemKNN(neighbors=10).fit(split, graph)
    # the same users and items (so the same shape), one train interaction fewer
    pop = MostPop().fit(dataclasses.replace(split, train=split.train.iloc[1:]), graph)
    with pytest.raises(ConfigError, match=r"MostPop was fitted on another train split"):
        ScoreBlend([knn, pop], [1.0, 1.0]).fit(split, graph)


def test_score_blend_refuses_mismatched_parts_and_weights(world):
    _, split, graph = world
    knn = ItemKNN(neighbors=10).fit(split, graph)
    with pytest.raises(ConfigError, match=r"one weight per part; got 1 part\(s\) and 2 weight\(s\)"):
        ScoreBlend([knn], [1.0, 1.0]).fit(split, graph)
    _, other_split, other_graph = synthetic_world(num_users=20, num_items=30)
    small = MostPop().fit(other_split, other_graph)
    with pytest.raises(ConfigError, match=r"MostPop scores \d+ users x \d+ items; the split has"):
        ScoreBlend([knn, small], [1.0, 1.0]).fit(split, graph)


def test_blend_writes_every_candidate_sorted_by_valid_and_names_the_pick(tmp_path):
    out = tmp_path / "blend"
    assert main(["--data", "synthetic", "--models", "itemknn,mostpop,bprmf", "--weights", "0.5,1",
                 "--ensemble", "bprmf=7,8", "--seed", "3", "--out", str(out)]) == 0
    payload = json.loads((out / "results.json").read_text())
    rows = payload["rows"]
    names = [r["candidate"] for r in rows]
    # 3 singles, the seed ensemble, 3 pairs x 2 weights
    assert sorted(names) == sorted(["itemknn", "mostpop", "bprmf", "bprmf x 3 seeds",
                                    "itemknn + 0.5 mostpop", "itemknn + 1 mostpop", "itemknn + 0.5 bprmf",
                                    "itemknn + 1 bprmf", "mostpop + 0.5 bprmf", "mostpop + 1 bprmf"])
    valid = [r["valid"]["ndcg@20"] for r in rows]
    assert valid == sorted(valid, reverse=True)
    ensemble = next(r for r in rows if r["candidate"] == "bprmf x 3 seeds")
    assert ensemble["parts"] == ["bprmf", "bprmf@7", "bprmf@8"]
    # a pair's training time is its parts' sum
    singles = {r["candidate"]: r for r in rows if len(r["parts"]) == 1}
    pair = next(r for r in rows if r["candidate"] == "itemknn + 1 bprmf")
    assert pair["train_s"] == pytest.approx(singles["itemknn"]["train_s"] + singles["bprmf"]["train_s"], abs=0.11)
    md = (out / "results.md").read_text()
    assert f"Validation picks **{rows[0]['candidate']}**" in md
    assert md.count("\n| ") == len(rows) + 1  # header + one line per candidate
    assert (out / "COMMAND.txt").read_text().startswith("python -m benchmarks.blend --data synthetic")
    assert payload["meta"]["split"] == "random" and payload["meta"]["seed"] == 3


@pytest.mark.parametrize("args, message", [
    (["--models", "itemknn", "--ensemble", "itemknn"], "--ensemble must be NAME=SEED[,SEED...]"),
    (["--models", "itemknn", "--ensemble", "bprmf=2"], "--ensemble names 'bprmf', which is not in --models"),
    (["--models", "itemknn", "--ensemble", "itemknn=a"], "--ensemble seeds must be comma-separated integers"),
    (["--models", "itemknn,mostpop", "--weights", "0,1"], "--weights must be positive numbers; got [0.0, 1.0]"),
    (["--models", "itemknn,mostpop", "--weights", "x"], "--weights must be comma-separated numbers; got 'x'"),
    (["--models", "itemknn,itemknn"], "--models must name distinct models"),
    (["--models", "itemknn", "--ensemble", "itemknn=2"], "--ensemble itemknn: ItemKNN has no seed parameter"),
    (["--models", "nope"], "Unknown model 'nope'"),
])
def test_bad_blend_arguments_name_the_argument(tmp_path, capsys, args, message):
    out = tmp_path / "o"
    assert main(["--data", "synthetic", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_blend_refuses_a_split_without_validation_interactions(tmp_path, monkeypatch, capsys):
    import dataclasses

    import benchmarks.run

    real = benchmarks.run.split_dataset
    monkeypatch.setattr(benchmarks.run, "split_dataset",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), valid=real(*a, **k).valid.iloc[:0]))
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path / "o")]) == 2
    assert "the 'random' split of 'synthetic' has no validation interactions" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

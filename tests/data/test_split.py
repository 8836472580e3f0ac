"""Splits: disjoint, covering, reproducible, and honest per strategy."""

from __future__ import annotations

import pandas as pd
import pytest

from kgrec.data import Dataset
from kgrec.errors import ConfigError, DataError
from kgrec.data.split import split_dataset

STRATEGIES = ("random", "temporal", "leave_one_out", "cold_item")


def pairs(frame):
    return list(zip(frame["user"], frame["item"]))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parts_are_disjoint_and_cover_everything(synthetic, strategy):
    split = split_dataset(synthetic, strategy, seed=3)
    tr, va, te = (set(pairs(split.part(p))) for p in ("train", "valid", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == set(pairs(synthetic.interactions))
    assert len(split.train) + len(split.valid) + len(split.test) == len(synthetic.interactions)
    assert list(split.train.columns) == list(synthetic.interactions.columns)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reproducible_by_seed(synthetic, strategy):
    a, b = split_dataset(synthetic, strategy, seed=11), split_dataset(synthetic, strategy, seed=11)
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(a.part(part), b.part(part))


def test_random_seed_changes_the_split_and_ratios_hold(synthetic):
    a, b = split_dataset(synthetic, "random", seed=1), split_dataset(synthetic, "random", seed=2)
    assert set(pairs(a.test)) != set(pairs(b.test))
    per_user = synthetic.interactions.groupby("user").size()
    assert (per_user == 10).all()  # synthetic users have 10 interactions: 8 / 1 / 1
    assert (a.train.groupby("user").size() == 8).all() and (a.test.groupby("user").size() == 1).all()


def test_random_small_users_keep_a_train_item():
    inter = pd.DataFrame({"user": ["a", "b", "b", "c", "c", "c"], "item": list("xxyxyz")})
    split = split_dataset(Dataset.from_frames(inter), "random", seed=0)
    assert set(split.train["user"]) == {"a", "b", "c"}
    assert len(split.test[split.test["user"] == "c"]) == 1


def test_temporal_train_precedes_test(synthetic):
    split = split_dataset(synthetic, "temporal")
    last_train = split.train.groupby("user")["timestamp"].max()
    first_test = split.test.groupby("user")["timestamp"].min()
    assert (last_train.loc[first_test.index] <= first_test).all()


def test_leave_one_out_holds_the_last_item(synthetic):
    split = split_dataset(synthetic, "leave_one_out")
    assert (split.test.groupby("user").size() == 1).all()
    assert (split.valid.groupby("user").size() == 1).all()
    last = synthetic.interactions.sort_values("timestamp").groupby("user").tail(1)
    assert set(pairs(last)) == set(pairs(split.test))


def test_cold_items_never_reach_train_or_valid(synthetic):
    split = split_dataset(synthetic, "cold_item", cold_fraction=0.25, seed=5)
    assert len(split.cold_items) == 10
    assert not (set(split.train["item"]) | set(split.valid["item"])) & split.cold_items
    cold_rows = synthetic.interactions[synthetic.interactions["item"].isin(split.cold_items)]
    assert set(pairs(cold_rows)) <= set(pairs(split.test))
    other = split_dataset(synthetic, "cold_item", cold_fraction=0.25, seed=6)
    assert other.cold_items != split.cold_items


def test_rating_threshold_keeps_only_positives(synthetic):
    split = split_dataset(synthetic, "random", rating_threshold=5)
    for part in ("train", "valid", "test"):
        assert (split.part(part)["rating"] >= 5).all()
    assert len(split.train) + len(split.valid) + len(split.test) == int((synthetic.interactions["rating"] >= 5).sum())


@pytest.mark.parametrize("ratios, message", [
    ((0.8, 0.1), "three positive numbers"),
    ((0.8, 0.2, 0.0), "three positive numbers"),
    ((0.8, -0.1, 0.3), "three positive numbers"),
    ((0.7, 0.1, 0.1), "must sum to 1"),
])
def test_bad_ratios(synthetic, ratios, message):
    with pytest.raises(ConfigError, match=message):
        split_dataset(synthetic, "random", ratios=ratios)


def test_bad_strategy_and_arguments(synthetic):
    with pytest.raises(ConfigError, match=r"must be one of .*'random'.*; got 'rnd'"):
        split_dataset(synthetic, "rnd")
    with pytest.raises(ConfigError, match=r"'cold_fraction' argument must be in \(0, 1\); got 1.5"):
        split_dataset(synthetic, "cold_item", cold_fraction=1.5)
    with pytest.raises(ConfigError, match="needs a dataset read from a pre-split directory"):
        split_dataset(synthetic, "presplit")


def test_temporal_needs_timestamps_and_threshold_needs_ratings():
    ds = Dataset.from_frames(pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"]}))
    with pytest.raises(ConfigError, match="needs a 'timestamp' column"):
        split_dataset(ds, "temporal")
    with pytest.raises(ConfigError, match="has no 'rating' column"):
        split_dataset(ds, "random", rating_threshold=4)


def test_empty_after_rating_filter(synthetic):
    with pytest.raises(DataError, match="No interaction of dataset 'synthetic' has rating >= 99"):
        split_dataset(synthetic, "random", rating_threshold=99)

"""``dataset.path: synthetic-scale``: the tensor-built graph, its split, and the CLI config that trains it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.data import DataConfig
from kgrec.data.scale import SCALE_KEYS, check_scale, powerlaw_pairs
from kgrec.errors import ConfigError
from kgrec.eval import evaluate
from kgrec.graph import INTERACTS, InputConfig, Vocab, categorical_codes, make_scale_world
from kgrec.training import KGRecDataModule
from kgrec.world import build_world

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic_scale.yaml"
TINY = {"users": 300, "items": 80, "edges": 6000, "text_dim": 16, "communities": 4}


def test_split_is_disjoint_and_only_train_reaches_the_graph():
    split, graph = make_scale_world(**TINY, ratios=(0.8, 0.1, 0.1), seed=3)
    assert (len(split.train), len(split.valid), len(split.test)) == (4800, 600, 600)
    pairs = {name: set(zip(part["user"].astype(str), part["item"].astype(str)))
             for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test))}
    assert sum(map(len, pairs.values())) == 6000  # distinct pairs, none in two parts
    ei = graph.data[INTERACTS].edge_index
    in_graph = set(zip(graph.vocabs["user"].decode(ei[0].numpy()), graph.vocabs["item"].decode(ei[1].numpy())))
    assert in_graph == pairs["train"]
    assert graph.data["user"].x.shape == (300, 16) and graph.data["item"].x.dtype == torch.float16
    # stand-ins are unit-norm like MiniLM's embeddings (longer ones swamped early training)
    norms = graph.data["item"].x.float().norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-2)
    assert {"tag", "entity"} <= set(graph.data.node_types) and graph.relations == ["r0", "r1", "r2", "r3"]
    # the same seed gives the same world
    again, _ = make_scale_world(**TINY, ratios=(0.8, 0.1, 0.1), seed=3)
    pd.testing.assert_frame_equal(again.valid, split.valid)


def test_powerlaw_pairs_are_distinct_with_skewed_degrees():
    users, items = powerlaw_pairs(1000, 500, 20_000, seed=1)
    assert users.numel() == 20_000 and torch.unique(users * 500 + items).numel() == 20_000
    for ids, n in ((users, 1000), (items, 500)):
        degree = torch.bincount(ids, minlength=n).sort(descending=True).values
        # a head: the top 1% of ids hold far more than 1% of the edges (uniform: 1%; here 10-15%)
        assert degree[: n // 100].sum() > 0.08 * 20_000
        assert degree[0] > 10 * degree[n // 2]


def test_exponent_one_is_the_logarithmic_law():
    users, items = powerlaw_pairs(500, 200, 5000, seed=2, exponent=1.0)
    assert users.numel() == 5000 and int(items.max()) < 200 and int(users.min()) >= 0
    degree = torch.bincount(items, minlength=200).sort(descending=True).values
    assert degree[0] > 10 * degree[100]


def test_categorical_ids_encode_like_strings():
    split, graph = make_scale_world(**TINY, seed=0)
    vocab = graph.vocabs["user"]
    column = split.train["user"]
    fast = vocab.encode(column)
    assert categorical_codes(column, vocab._index) is not None
    np.testing.assert_array_equal(fast, vocab.encode(column.astype(str).to_numpy()))
    # a Categorical over other categories is looked up, not trusted
    other = pd.Series(pd.Categorical(["u2", "u1"], categories=["u1", "u2"]))
    assert categorical_codes(other, vocab._index) is None
    np.testing.assert_array_equal(vocab.encode(other), [2, 1])
    assert categorical_codes(np.array(["u1"], dtype=object), vocab._index) is None
    # and the evaluator reads the same matrices either way
    from kgrec.baselines import MostPop
    from kgrec.data.split import Split

    from kgrec.models.base import train_matrix

    model = MostPop().fit(split, graph)
    as_strings = Split(*(part.astype(str) for part in (split.train, split.valid, split.test)), strategy="random")
    assert (train_matrix(split, graph) != train_matrix(as_strings, graph)).nnz == 0
    assert evaluate(model, split, graph, on="test").metrics == evaluate(model, as_strings, graph, on="test").metrics


@pytest.mark.parametrize("scale, message", [
    ({"user": 10}, r"unknown key\(s\) \['user'\]; valid keys: \['users', 'items', 'edges', 'text_dim', 'communities'\]"),
    ({"users": 0}, r"dataset.scale.users must be a positive integer; got 0"),
    ({"items": 2.5}, r"dataset.scale.items must be a positive integer; got 2.5"),
    ({"users": 10, "items": 10, "edges": 60}, r"dataset.scale.edges=60 is more than half of all 10 x 10"),
])
def test_bad_scale_is_named(scale, message):
    with pytest.raises(ConfigError, match=message):
        check_scale(scale)
    with pytest.raises(ConfigError, match=message):
        KGRecDataModule(dataset={"path": "synthetic-scale", "scale": scale})


def test_scale_options_that_do_not_apply_are_refused():
    with pytest.raises(ConfigError, match="dataset.scale sizes the 'synthetic-scale' graph only; dataset.path is 'ml-100k'"):
        DataConfig(path="ml-100k", scale={"users": 10})
    with pytest.raises(ConfigError, match="split at random; got dataset.split='temporal'"):
        KGRecDataModule(dataset={"path": "synthetic-scale", "split": "temporal"})
    for flag in ("use_kg", "use_side_info"):
        with pytest.raises(ConfigError, match=r"dataset.path 'synthetic-scale' always has tags and KG edges; "
                                              r"inputs.use_kg and inputs.use_side_info must stay true"):
            build_world(DataConfig("synthetic-scale", scale=TINY), InputConfig(**{flag: False}))
    with pytest.raises(ConfigError, match="'ratios' argument must sum to 1"):
        make_scale_world(**TINY, ratios=(0.9, 0.2, 0.1))
    with pytest.raises(ConfigError, match="'ratios' argument must be three positive numbers"):
        DataConfig(path="synthetic-scale", ratios=(0.5, float("nan"), 0.5))  # at construction, not setup
    with pytest.raises(ConfigError, match="dataset.rating_threshold does not apply"):
        DataConfig(path="synthetic-scale", rating_threshold=4.0)
    from kgrec.text import HashingTextEncoder

    with pytest.raises(ConfigError, match="data.text_encoder does not apply"):
        KGRecDataModule(dataset={"path": "synthetic-scale"}, text_encoder=HashingTextEncoder(dim=8))
    with pytest.raises(ConfigError, match="text_encoder does not apply"):
        build_world(DataConfig("synthetic-scale", scale=TINY), text_encoder=HashingTextEncoder(dim=8))
    assert check_scale(None) == SCALE_KEYS
    assert check_scale({"users": np.int64(7), "items": 10, "edges": 20})["users"] == 7  # numpy ints are ints


def test_a_world_whose_pairs_saturate_is_refused(monkeypatch):
    import kgrec.graph.scale as scale

    # dense worlds still fill up (49% of all pairs, the heads saturated long before) ...
    split, _ = make_scale_world(users=100, items=100, edges=4900, communities=2, seed=0)
    assert len(split.train) + len(split.valid) + len(split.test) == 4900
    # ... and one that does not (the draw gives up after 20 rounds) names the count it reached
    full = scale.powerlaw_pairs
    monkeypatch.setattr(scale, "powerlaw_pairs", lambda *a, **k: tuple(t[:-7] for t in full(*a, **k)))
    with pytest.raises(ConfigError, match=r"dataset.scale.edges=6,000 distinct pairs could not be drawn: .* saturate at 5,993"):
        make_scale_world(**TINY)


def test_datamodule_builds_the_world_without_loading_a_dataset():
    dm = KGRecDataModule(dataset={"path": "synthetic-scale", "scale": TINY, "ratios": (0.9, 0.05, 0.05)},
                         inputs={"use_text": False})
    dm.prepare_data()  # nothing to fetch
    info = dm.graph_info
    assert info["num_nodes"]["user"] == 300 and info["text_dims"] == {}
    assert dm.train_edges()[0].numel() == len(dm.split.train) == 5400


def test_cli_fits_and_tests_the_scale_config_at_a_small_size(tmp_path, monkeypatch):
    from kgrec.baselines import MostPop
    from kgrec.cli import main

    monkeypatch.chdir(tmp_path)
    small = ["--data.dataset.scale", json.dumps(TINY), "--data.dataset.ratios", "[0.8, 0.1, 0.1]",
             "--data.loader.batch_size", "1024",
             "--trainer.accelerator", "cpu", "--trainer.precision", "32", "--trainer.max_epochs", "4",
             "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--config", str(CONFIG), *small]) == 0
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    saved = (run / "config.yaml").read_text()
    assert "synthetic-scale" in saved and "users: 300" in saved
    assert main(["test", "--config", str(CONFIG), *small, "--ckpt_path", str(run / "checkpoints" / "best.ckpt")]) == 0
    metrics = json.loads(next((tmp_path / "runs").rglob("test_metrics.json")).read_text())
    # the communities carry taste: the trained model ranks above popularity on the same split
    split, graph = make_scale_world(**TINY, ratios=(0.8, 0.1, 0.1), seed=2026)
    popular = evaluate(MostPop().fit(split, graph), split, graph, on="test").metrics
    assert metrics["recall@20"] > popular["recall@20"] + 0.03


def test_vocab_of_strings_is_unchanged():
    vocab = Vocab(["a", "b", "c"], "item")
    np.testing.assert_array_equal(vocab.encode(["c", "a"]), [2, 0])


def test_a_scale_world_records_no_text_encoder():
    # its text features are random stand-ins: MiniLM (the default encoder) would place new text
    # in a space the model never saw
    graph = build_world(DataConfig("synthetic-scale", scale=TINY)).graph
    assert any("x" in graph.data[nt] for nt in graph.data.node_types)
    assert graph.text_encoder is None

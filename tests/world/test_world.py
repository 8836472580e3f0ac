"""One way to build the world: ``build_world`` (dataset -> split -> text -> graph), used by every entry point."""

from __future__ import annotations

import pytest
import torch

from kgrec.data import DataConfig, make_synthetic, split_dataset
from kgrec.errors import ConfigError, DataError
from kgrec.graph import INTERACTS, InputConfig, select_inputs
from kgrec.testing import write_atomic
from kgrec.text import HashingTextEncoder, encoder_spec
from kgrec.world import build_world


@pytest.fixture()
def presplit_dir(tmp_path):
    dataset = make_synthetic(num_users=20, num_items=15)
    return write_atomic(dataset, tmp_path / "given", "given", split=split_dataset(dataset, "random", seed=1))


def test_the_world_is_split_first_and_holds_train_edges_only():
    world = build_world(DataConfig("synthetic", split="random", split_seed=3), text_encoder=HashingTextEncoder(dim=8))
    again = split_dataset(world.dataset, "random", seed=3)
    assert world.split.seed == 3 and world.split.train.equals(again.train) and world.split.test.equals(again.test)
    ui = world.graph.data[INTERACTS].edge_index
    pairs = set(zip(world.graph.vocabs["user"].ids[ui[0].numpy()], world.graph.vocabs["item"].ids[ui[1].numpy()]))
    assert pairs == set(zip(world.split.train["user"], world.split.train["item"]))
    assert world.graph.data["item"].x.shape[1] == 8
    assert world.graph.text_encoder == encoder_spec(HashingTextEncoder(dim=8))
    assert world.graph.item_names[0] != world.graph.vocabs["item"].ids[0]  # display names, not ids
    assert "Split[random, seed=3]" in world.summary() and "Graph of 'synthetic'" in world.summary()


def test_inputs_are_applied_in_one_place_and_text_is_encoded_only_when_read():
    inputs = InputConfig(use_text=False, use_kg=False, kg_min_degree=1)
    world = build_world(DataConfig("synthetic"), inputs)
    assert "entity" not in world.graph.data.node_types and not world.graph.relations
    assert not any("x" in world.graph.data[nt] for nt in world.graph.data.node_types)
    assert world.graph.text_encoder is None
    # the same graph as selecting those inputs from the full one
    full = build_world(DataConfig("synthetic"), InputConfig(kg_min_degree=1), text_encoder=HashingTextEncoder(dim=8))
    selected = select_inputs(full.graph, inputs)
    assert selected.data.edge_types == world.graph.data.edge_types
    assert all(torch.equal(selected.data[et].edge_index, world.graph.data[et].edge_index)
               for et in selected.data.edge_types)
    assert select_inputs(selected, inputs).data.edge_types == selected.data.edge_types  # idempotent


def test_presplit_dir_refuses_another_split_strategy(presplit_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"Dataset 'given' was read already split; .*"
                                          r"split strategy 'temporal' cannot apply\. Use strategy='presplit'"):
        build_world(DataConfig(str(presplit_dir), split="temporal", cache_dir=str(tmp_path)), InputConfig(use_text=False))


def test_presplit_dir_refuses_rating_threshold(presplit_dir, tmp_path):
    with pytest.raises(ConfigError, match="rating_threshold cannot re-filter a pre-split dataset"):
        build_world(DataConfig(str(presplit_dir), rating_threshold=4.0, cache_dir=str(tmp_path)),
                    InputConfig(use_text=False))


def test_a_presplit_dir_is_used_as_given(presplit_dir, tmp_path):
    world = build_world(DataConfig(str(presplit_dir), cache_dir=str(tmp_path)), InputConfig(use_text=False))
    assert world.split.strategy == "presplit" and len(world.split.train) == world.graph.data[INTERACTS].num_edges


def test_an_unknown_source_is_named(tmp_path):
    with pytest.raises(DataError, match=r"dataset.path '.*nowhere' is neither a built-in dataset \(ml-100k, ml-1m, "
                                        r"synthetic, synthetic-scale\) nor an existing directory"):
        build_world(DataConfig(str(tmp_path / "nowhere")))


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "rnd"}, "dataset.split must be one of random, temporal, leave_one_out, cold_item, presplit"),
    ({"split_seed": 1.5}, "dataset.split_seed must be an integer; got 1.5"),
    ({"ratios": (0.5, 0.5)}, "'ratios' argument must be three positive numbers"),
    ({"cold_fraction": 1.0}, "dataset.cold_fraction must be between 0 and 1; got 1.0"),
    ({"rating_threshold": "high"}, "dataset.rating_threshold must be a number or null; got 'high'"),
    ({"path": ""}, "dataset.path must be a dataset name or a directory; got ''"),
])
def test_data_config_names_a_bad_value(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(**kwargs)

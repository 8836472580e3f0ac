"""User-facing error messages, each triggered through the entry point a user calls."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from kgrec.cli import main
from kgrec.data import make_synthetic
from kgrec.errors import ConfigError, DataError, KGRecError
from kgrec.split import split_dataset
from kgrec.testing import write_atomic

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"


# ------------------------------------------------------------------ pre-split data
@pytest.fixture()
def presplit_dir(tmp_path):
    dataset = make_synthetic(num_users=20, num_items=15)
    return write_atomic(dataset, tmp_path / "given", "given", split=split_dataset(dataset, "random", seed=1))


def test_presplit_dir_refuses_another_split_strategy(presplit_dir, tmp_path):
    from kgrec.lightning import KGRecDataModule

    dm = KGRecDataModule(path=str(presplit_dir), split="temporal", encode_text=False, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"Dataset 'given' was read already split; .*"
                                          r"split strategy 'temporal' cannot apply\. Use strategy='presplit'"):
        dm.setup("fit")


def test_presplit_dir_refuses_rating_threshold(presplit_dir, tmp_path):
    from kgrec.lightning import KGRecDataModule

    dm = KGRecDataModule(path=str(presplit_dir), rating_threshold=4.0, encode_text=False, cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="rating_threshold cannot re-filter a pre-split dataset"):
        dm.setup("fit")


# ------------------------------------------------------------------ synthetic-scale
@pytest.mark.parametrize("flag", ["use_kg", "use_side_info"])
def test_synthetic_scale_keeps_tags_and_kg(flag):
    from kgrec.lightning import KGRecDataModule

    with pytest.raises(ConfigError, match=r"data\.path 'synthetic-scale' always has tags and KG edges; "
                                          r"use_kg and use_side_info must stay true"):
        KGRecDataModule(path="synthetic-scale", scale={"users": 20, "items": 10, "edges": 50}, **{flag: False})


def test_synthetic_scale_keeps_tags_and_kg_cli(capsys):
    rc = main(["fit", "--config", str(CONFIG), "--data.path", "synthetic-scale", "--data.use_side_info", "false"])
    assert rc == 2
    assert "'synthetic-scale' always has tags and KG edges" in capsys.readouterr().err


# ------------------------------------------------------------------ lightning module
@pytest.fixture(scope="module")
def module_and_dm(tmp_path_factory):
    from kgrec.lightning import KGRecDataModule, KGRecModule
    from kgrec.text import HashingTextEncoder

    dm = KGRecDataModule(path="synthetic", text_encoder=HashingTextEncoder(dim=8), batch_size=256,
                         cache_dir=str(tmp_path_factory.mktemp("cache")))
    dm.setup("fit")
    return KGRecModule(graph_info=dm.graph_info, hidden_channels=8, num_layers=1), dm


def test_module_without_trainer_needs_datamodule(module_and_dm):
    module, _ = module_and_dm
    with pytest.raises(ConfigError, match=r"KGRecModule needs a KGRecDataModule \(trainer\.fit\(module, datamodule="):
        module.full_graph()


def test_fit_with_plain_dataloader_needs_datamodule(module_and_dm, tmp_path):
    import lightning as L

    module, dm = module_and_dm
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"KGRecModule needs a KGRecDataModule \(trainer\.fit\(module, datamodule="):
        trainer.fit(module, train_dataloaders=dm.train_dataloader())


# ------------------------------------------------------------------ evaluator
def test_evaluate_names_a_wrongly_shaped_score():
    from kgrec import BaseRecommender, evaluate
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


# ------------------------------------------------------------------ serving
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A real `kgrec fit` checkpoint on the synthetic data whose only item-to-item KG relation
    (sequel_of) was dropped: the model has item -> entity KG edges but no item -> item ones."""
    dataset = make_synthetic()
    kg = dataset.kg[dataset.kg["relation"] != "sequel_of"]
    data = write_atomic(dataset, tmp_path_factory.mktemp("data") / "nosequel", "nosequel", kg=kg)
    run = tmp_path_factory.mktemp("fit")
    old = os.getcwd()
    os.chdir(run)
    try:
        assert main(["fit", "--config", str(CONFIG), "--data.path", str(data),
                     "--data.cache_dir", str(run / "cache"), "--trainer.max_epochs", "1"]) == 0
    finally:
        os.chdir(old)
    path = run / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def rec(ckpt):
    from kgrec import Recommender

    return Recommender.from_checkpoint(ckpt, device="cpu")


def _edited(ckpt: Path, tmp_path: Path, edit) -> Path:
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    edit(checkpoint["kgrec_serving"])
    out = tmp_path / "edited.ckpt"
    torch.save(checkpoint, out)
    return out


def test_add_item_kg_link_to_item_without_item_item_kg_edges(rec):
    assert "directed_by" in rec.relations and ("item", "kg", "item") not in rec.data.edge_types
    with pytest.raises(ConfigError, match=re.escape("the model was trained without ('item', 'kg', 'item') edges; "
                                                    "cannot add them (its KG links go to entities only)")):
        rec.add_item("new-2", name="Orbit II", kg=[("directed_by", "i3")])
    assert "new-2" not in rec.item_ids


def test_text_encoder_of_another_width(ckpt):
    from kgrec import Recommender
    from kgrec.text import HashingTextEncoder

    rec = Recommender.from_checkpoint(ckpt, device="cpu", text_encoder=HashingTextEncoder(dim=8))
    with pytest.raises(ConfigError, match="the text encoder gives 8-d vectors but the model was trained on 32-d text"):
        rec.add_item("new-3", text="A space opera about a comet.")


def test_checkpoint_without_text_encoder_spec(ckpt, tmp_path):
    """Only a hand-edited bundle gets here: `kgrec fit` records an encoder whenever there is text."""
    from kgrec import Recommender

    path = _edited(ckpt, tmp_path, lambda b: b.update(text_encoder=None))
    rec = Recommender.from_checkpoint(path, device="cpu")
    with pytest.raises(ConfigError, match=r"this checkpoint records no text encoder; pass text_encoder=\.\.\."):
        rec.add_item("new-4", text="A space opera about a comet.")


def test_incomplete_bundle_names_missing_keys(ckpt, tmp_path):
    from kgrec import Recommender

    path = _edited(ckpt, tmp_path, lambda b: b.pop("item_names"))
    where = re.escape(f"checkpoint {str(path)!r}")
    with pytest.raises(DataError, match=rf"{where} is incomplete \(serving data lacks \['item_names'\]\)"):
        Recommender.from_checkpoint(path, device="cpu")


def test_bundle_edges_not_2_by_e(ckpt, tmp_path):
    from kgrec import Recommender

    def flatten(bundle):
        bundle["edges"]["user|interacts|item"] = bundle["edges"]["user|interacts|item"].reshape(-1)

    path = _edited(ckpt, tmp_path, flatten)
    where = re.escape(f"checkpoint {str(path)!r}")
    with pytest.raises(DataError, match=rf"{where} is corrupt: edges 'user\|interacts\|item' "
                                        r"is not a \(2, E\) tensor"):
        Recommender.from_checkpoint(path, device="cpu")


def test_check_bundle_names_where():
    from kgrec.serving import SERVING_FORMAT, check_bundle

    with pytest.raises(DataError, match=r"my bundle is incomplete \(serving data lacks \['item_names', 'x'\]\)"):
        check_bundle({"format": SERVING_FORMAT, "vocabs": {}, "edges": {}}, "my bundle")
    bad = {"format": SERVING_FORMAT, "vocabs": {}, "x": {}, "item_names": [],
           "edges": {"item|has_tag|tag": torch.zeros(3, 4, dtype=torch.long)}}
    with pytest.raises(DataError, match=r"my bundle is corrupt: edges 'item\|has_tag\|tag' is not a \(2, E\) tensor"):
        check_bundle(bad, "my bundle")
    good = torch.zeros(2, 4, dtype=torch.long)
    for key in ["item|tag", "item||tag", "a|b|c|d", 7]:
        for where_bad in ("edges", "edge_types"):
            bundle = {**bad, "edges": {"item|has_tag|tag": good}, "edge_types": ["item|has_tag|tag"]}
            if where_bad == "edges":
                bundle["edges"] = {**bundle["edges"], key: good}
            else:
                bundle["edge_types"] = [*bundle["edge_types"], key]
            with pytest.raises(DataError, match=rf"my bundle is corrupt: edge type key {re.escape(repr(key))} "
                                                r"is not 'source\|relation\|destination'"):
                check_bundle(bundle, "my bundle")


def test_parse_edge_key_inverts_edge_key():
    from kgrec.serving import edge_key, parse_edge_key

    assert parse_edge_key(edge_key(("item", "rev_has_tag", "tag"))) == ("item", "rev_has_tag", "tag")
    assert [parse_edge_key(k) for k in ("item|tag", "item||tag", "a|b|c|d", 7)] == [None] * 4


def test_tags_and_attributes_of_a_model_trained_without_side_info(tmp_path, monkeypatch):
    # build_graph keeps an empty tag node type: the check must look at the count, and name
    # what the caller passed (tags for add_item, attributes for recommend_new_user)
    from kgrec import Recommender

    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--data.use_side_info", "false", "--trainer.max_epochs", "1"]) == 0
    rec = Recommender.from_checkpoint(tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt",
                                      device="cpu")
    with pytest.raises(ConfigError, match=r"trained without tags \(0 tag nodes\), so item tags cannot place a new "
                                          r"item; leave them out"):
        rec.add_item("new-1", name="Orbit", tags={"genre": ["Sci-Fi"]})
    with pytest.raises(ConfigError, match=r"trained without tags \(0 tag nodes\), so user attributes cannot place "
                                          r"a new user; leave them out"):
        rec.recommend_new_user(liked_items=[rec.item_ids[0]], attributes={"age": "25-34"})
    assert len(rec.recommend_new_user(liked_items=[rec.item_ids[0]], k=3)) == 3  # without them it serves


def test_a_synthetic_scale_checkpoint_records_no_text_encoder():
    # its text features are random stand-ins: MiniLM (the default spec) would place new text
    # in a space the model never saw
    from kgrec.lightning import KGRecDataModule
    from kgrec.serving import serving_bundle

    dm = KGRecDataModule(path="synthetic-scale", scale={"users": 300, "items": 80, "edges": 6000, "text_dim": 16,
                                                        "communities": 4})
    dm.prepare_data()
    dm.setup("fit")
    assert any("x" in dm.graph.data[nt] for nt in dm.graph.data.node_types)
    assert serving_bundle(dm)["text_encoder"] is None

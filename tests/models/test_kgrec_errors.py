"""Cold start on models that lack what a request needs: each refusal names what is missing."""

from __future__ import annotations

import os
import re

import pytest
import torch

from helpers import CONFIG
from kgrec.cli import main
from kgrec.data import make_synthetic
from kgrec.errors import ConfigError
from kgrec.models import load
from kgrec.testing import write_atomic
from kgrec.text import HashingTextEncoder


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
        assert main(["fit", "--config", str(CONFIG), "--data.dataset.path", str(data),
                     "--data.dataset.cache_dir", str(run / "cache"), "--trainer.max_epochs", "1"]) == 0
    finally:
        os.chdir(old)
    path = run / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert path.is_file()
    return path


def test_add_item_kg_link_to_item_without_item_item_kg_edges(ckpt):
    rec = load(ckpt, device="cpu")
    assert "directed_by" in rec.graph_.relations and ("item", "kg", "item") not in rec.graph_.data.edge_types
    with pytest.raises(ConfigError, match=re.escape("the model was trained without ('item', 'kg', 'item') edges; "
                                                    "cannot add them (its KG links go to entities only)")):
        rec.add_item("new-2", name="Orbit II", kg=[("directed_by", "i3")])
    assert "new-2" not in set(rec.item_ids_)  # a refused item leaves nothing behind


def test_text_encoder_of_another_width(ckpt):
    rec = load(ckpt, device="cpu", text_encoder=HashingTextEncoder(dim=8))
    with pytest.raises(ConfigError, match="the text encoder gives 8-d vectors but the model was trained on 32-d text"):
        rec.add_item("new-3", text="A space opera about a comet.")


def test_checkpoint_without_text_encoder_spec(ckpt, tmp_path):
    """Only a hand-edited file gets here: `kgrec fit` records an encoder whenever there is text."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["graph"]["text_encoder"] = None
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    rec = load(tmp_path / "edited.ckpt", device="cpu")
    with pytest.raises(ConfigError, match=r"this model records no text encoder; pass text_encoder=\.\.\. to kgrec.load"):
        rec.add_item("new-4", text="A space opera about a comet.")
    assert len(rec.add_item("new-5", text="", tags=["genre=Sci-Fi"]))  # tags alone still place it


def test_tags_and_attributes_of_a_model_trained_without_side_info(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--data.inputs.use_side_info", "false",
                 "--trainer.max_epochs", "1"]) == 0
    rec = load(tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt", device="cpu")
    with pytest.raises(ConfigError, match=r"trained without tags \(no tag nodes\), so item tags cannot place a new "
                                          r"item; leave them out"):
        rec.add_item("new-1", name="Orbit", tags={"genre": ["Sci-Fi"]})
    with pytest.raises(ConfigError, match=r"trained without tags \(no tag nodes\), so user attributes cannot place "
                                          r"a new user; leave them out"):
        rec.recommend_new_user(liked_items=[rec.item_ids_[0]], attributes={"age": "25-34"})
    assert len(rec.recommend_new_user(liked_items=[rec.item_ids_[0]], k=3)) == 3  # without them it serves

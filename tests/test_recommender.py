"""Serving a trained model: kgrec.Recommender and `kgrec recommend|similar|explain|export|ids`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kgrec.cli import main
from kgrec.errors import ConfigError, DataError, UnknownIdError
from kgrec.explain import humanize_relation
from kgrec.recommender import Recommender
from kgrec.serving import SERVING_FORMAT

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"


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
    return Recommender.from_checkpoint(ckpt, device="cpu")


def _train_items(rec, user):
    from kgrec.graph import INTERACTS

    ui = rec.data[INTERACTS].edge_index
    u = rec.user_ids.index(user)
    return {rec.item_ids[i] for i in ui[1][ui[0] == u].tolist()}


# ----------------------------------------------------------------- library
def test_recommend_ranks_unseen_items_by_score(rec):
    out = rec.recommend(["u1", "u2"], k=5)
    assert list(out.columns) == ["user", "rank", "item", "name", "score"]
    for user, rows in out.groupby("user"):
        assert rows["rank"].tolist() == [1, 2, 3, 4, 5]
        assert rows["score"].is_monotonic_decreasing
        assert not set(rows["item"]) & _train_items(rec, user)
        # the scores are the model's own: score() agrees, and nothing unseen scores higher
        assert np.allclose(rec.score(user, rows["item"].tolist()).to_numpy(), rows["score"].to_numpy(), atol=1e-6)
        unseen = [i for i in rec.item_ids if i not in _train_items(rec, user)]
        assert rec.score(user, unseen).max() == pytest.approx(rows["score"].iloc[0], abs=1e-6)
    names = dict(zip(rec.item_ids, rec.item_names))
    assert all(names[i] == n for i, n in zip(out["item"], out["name"]))
    with_seen = rec.recommend("u1", k=rec.num_items, exclude_seen=False)
    assert len(with_seen) == rec.num_items


def test_similar_items_are_nearest_by_cosine(rec):
    out = rec.similar_items("i0", k=4)
    assert len(out) == 4 and "i0" not in set(out["item"])
    emb = torch.nn.functional.normalize(rec.item_embeddings, dim=-1)
    sims = (emb @ emb[rec.item_ids.index("i0")]).numpy()
    sims[rec.item_ids.index("i0")] = -np.inf
    assert out["item"].tolist() == [rec.item_ids[j] for j in np.argsort(-sims)[:4]]


def test_new_user_is_placed_from_liked_items_and_attributes(rec):
    liked = ["i0", "i3"]
    out = rec.recommend_new_user(liked_items=liked, attributes={"gender": "F"}, k=5)
    assert len(out) == 5 and not set(out["item"]) & set(liked)
    other = rec.recommend_new_user(liked_items=["i1", "i2", "i5"], k=5)
    assert out["item"].tolist() != other["item"].tolist()  # what they liked changes the list
    assert rec.num_users == 60  # the new user was not kept
    with pytest.raises(ConfigError, match="liked_items and/or attributes"):
        rec.recommend_new_user()
    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        rec.recommend_new_user(liked_items=["nope"])
    with pytest.raises(UnknownIdError, match="tag id 'gender=X'"):
        rec.recommend_new_user(attributes={"gender": "X"})


def test_new_item_lands_near_items_sharing_its_tags(rec):
    genre = next(t for t in rec.vocabs["tag"] if t.startswith("genre="))
    rec.add_item("new-1", name="Brand New", tags=[genre])
    assert rec.num_items == 41 and rec.item_ids[-1] == "new-1"
    from kgrec.recommender import HAS_TAG

    ei = rec.data[HAS_TAG].edge_index
    tag = rec.vocabs["tag"].index(genre)
    sharing = set(ei[0][ei[1] == tag].tolist()) - {40}
    emb = torch.nn.functional.normalize(rec.item_embeddings, dim=-1)
    sims = emb[:40] @ emb[40]
    inside = sims[sorted(sharing)].mean()
    outside = sims[[j for j in range(40) if j not in sharing]].mean()
    assert inside > outside
    # it is now in the catalogue of every query
    assert "new-1" in set(rec.recommend("u1", k=41).item)
    assert len(rec.similar_items("new-1", k=3)) == 3 and len(rec.top_users("new-1", k=3)) == 3
    with pytest.raises(ConfigError, match="already exists"):
        rec.add_item("new-1", text="again")
    with pytest.raises(UnknownIdError, match="KG relation 'no_such'"):
        rec.add_item("new-2", text="x", kg=[("no_such", "a.00")])
    with pytest.raises(UnknownIdError, match="KG entity 'zz'"):
        rec.add_item("new-2", text="x", kg=[(rec.relations[0], "zz")])
    with pytest.raises(ConfigError, match="needs text, tags or KG links"):
        rec.add_item("new-3", text="")


def test_new_item_with_kg_link_is_placed_and_explained(rec):
    entity = rec.vocabs["entity"][0]
    rec.add_item("new-kg", text="A film", kg=[(rec.relations[0], entity)])
    assert torch.isfinite(rec.item_embeddings[-1]).all() and rec.item_embeddings[-1].abs().sum() > 0


def test_every_hop_of_every_explanation_is_a_graph_edge(rec):
    data = rec.data
    edges = set()
    for (src_t, _, dst_t) in data.edge_types:
        ei = data[(src_t, _, dst_t)].edge_index
        edges |= {((src_t, rec.vocabs[src_t][a]), (dst_t, rec.vocabs[dst_t][b]))
                  for a, b in zip(ei[0].tolist(), ei[1].tolist())}
    kinds = set()
    checked = 0
    for user in rec.user_ids[:12]:
        for item in rec.recommend(user, k=3).item:
            found = rec.explain(user, item, k=50)
            assert [e.score for e in found] == sorted((e.score for e in found), reverse=True)
            for e in found:
                kinds.add(e.kind)
                assert e.path[0] == ("user", user) and e.path[-1] == ("item", item)
                assert len(e.relations) == len(e.path) - 1
                for a, b in zip(e.path, e.path[1:]):
                    assert (a, b) in edges, (e.text, a, b)
                assert e.text.startswith("Because you liked ") and item in rec.item_ids
                checked += 1
    assert checked > 20 and {"co_interaction", "tag", "kg_entity"} <= kinds
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        rec.explain("u1", "i0", k=0)


def test_export_round_trips(rec, tmp_path):
    files = rec.export_embeddings(tmp_path / "pq")
    items = pd.read_parquet(tmp_path / "pq" / "items.parquet")
    assert [p.name for p in files] == ["users.parquet", "items.parquet"]
    assert items["item"].tolist() == rec.item_ids
    assert np.allclose(items.drop(columns="item").to_numpy(), rec.item_embeddings.numpy())
    rec.export_embeddings(tmp_path / "np", fmt="npy")
    users = np.load(tmp_path / "np" / "users.npy")
    ids = (tmp_path / "np" / "user_ids.txt").read_text().split()
    assert users.shape == tuple(rec.user_embeddings.shape) and ids == rec.user_ids
    assert not list((tmp_path / "np").glob("*.tmp*"))
    with pytest.raises(ConfigError, match="'parquet' or 'npy'"):
        rec.export_embeddings(tmp_path, fmt="h5")


def test_humanized_relations():
    assert humanize_relation("film.film.directed_by") == "director"
    assert humanize_relation("film.director.film") == "director"
    assert humanize_relation("film.film.production_companies") == "production company"
    assert humanize_relation("sequel_of") == "sequel"
    assert humanize_relation("some_new_relation") == "some new relation"


# ----------------------------------------------------------------- bad input
def test_bad_queries_name_the_problem(rec):
    with pytest.raises(UnknownIdError, match=r"unknown user id 'ghost'.*kgrec ids --ckpt PATH --type user.*recommend_new_user"):
        rec.recommend("ghost")
    with pytest.raises(ConfigError, match="k must be a positive integer; got 0"):
        rec.recommend("u1", k=0)
    with pytest.raises(ConfigError, match="larger than the catalogue"):
        rec.recommend("u1", k=10_000)
    with pytest.raises(UnknownIdError, match="unknown item id 'zz'"):
        rec.similar_items("zz")
    with pytest.raises(ConfigError, match="1..60"):
        rec.top_users("i0", k=0)
    with pytest.raises(ConfigError, match="node_type must be 'user' or 'item'; got 'tag'"):
        rec.embeddings("tag")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu(ckpt):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Recommender.from_checkpoint(ckpt, device="cuda")


def test_a_cuda_index_past_the_machines_gpus_is_refused(ckpt, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"device='cuda:1' but this machine has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        Recommender.from_checkpoint(ckpt, device="cuda:1")


def test_bad_checkpoints_are_refused_clearly(ckpt, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Recommender.from_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:2000])
    with pytest.raises(DataError, match="corrupt or not a kgrec checkpoint"):
        Recommender.from_checkpoint(truncated)
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    old = dict(payload)
    del old["kgrec_serving"]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(DataError, match="not written by `kgrec fit`"):
        Recommender.from_checkpoint(tmp_path / "old.ckpt")
    future = dict(payload)
    future["kgrec_serving"] = dict(payload["kgrec_serving"], format="kgrec-serving-v99")
    torch.save(future, tmp_path / "future.ckpt")
    with pytest.raises(DataError, match=f"incompatible kgrec version.*{SERVING_FORMAT}"):
        Recommender.from_checkpoint(tmp_path / "future.ckpt")
    other = dict(payload)
    other["hyper_parameters"] = dict(payload["hyper_parameters"], hidden_channels=7)
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="does not match"):
        Recommender.from_checkpoint(tmp_path / "other.ckpt")


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
    torch.save({"state_dict": {}, "hyper_parameters": {}, "kgrec_serving": _Payload()}, path)
    with pytest.raises(DataError, match="corrupt or not a kgrec checkpoint") as info:
        Recommender.from_checkpoint(path)
    assert not _Payload.built
    # torch's long explanation is cut at a word, not mid-word, and says it was cut
    message = str(info.value)
    assert message.endswith(" …).") and len(message) < 200 + len(str(path)) + 80
    assert "\x1b" not in message and "\n" not in message  # no terminal colour codes, one line


def test_long_reasons_are_cut_at_a_word_boundary():
    from kgrec.recommender import _reason

    assert _reason(ValueError("short reason")) == "short reason"
    cut = _reason(ValueError("word " * 100), limit=23)
    assert cut == "word word word word …"


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
    top = Recommender.from_checkpoint(ckpt).recommend("u1", k=1).item[0]
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


@pytest.mark.parametrize("argv, message", [
    (["--user", "ghost"], "unknown user id 'ghost'"),
    (["--user", "u1", "--k", "0"], "k must be a positive integer"),
    (["--user", "u1", "--k", "100000"], "larger than the catalogue"),
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


def test_new_node_placement_equals_a_full_graph_forward_pass(rec):
    """The L-hop subgraph used to place a new node gives the full-graph embedding exactly."""
    from kgrec.graph import INTERACTS
    from kgrec.recommender import HAS_ATTRIBUTE

    liked = [rec.item_ids.index(i) for i in ("i0", "i3", "i7")]
    tag = rec.vocabs["tag"].index("gender=F")
    new = rec.num_users
    data = rec._with_node("user", rec._encode_text("user", "Gender: F. Liked: a film."), {
        INTERACTS: ([new] * 3, liked, None), HAS_ATTRIBUTE: ([new], [tag], None)})
    full = rec._forward(data)["user"][new]
    assert torch.allclose(rec._place(data, "user"), full, atol=1e-5)
    genre = rec.vocabs["tag"].index(next(t for t in rec.vocabs["tag"] if t.startswith("genre=")))
    data = rec._with_node("item", rec._encode_text("item", "A film"), {
        ("item", "has_tag", "tag"): ([rec.num_items], [genre], None),
        ("item", "kg", "entity"): ([rec.num_items], [0], [1])})
    assert torch.allclose(rec._place(data, "item"), rec._forward(data)["item"][rec.num_items], atol=1e-5)


def test_forward_leaves_the_serving_graph_on_the_cpu(ckpt):
    # PyG's HeteroData.to moves the object it is called on; on a GPU that left self.data on
    # the device and broke add_item / recommend_new_user, which edit it with CPU tensors.
    # The meta device stands in for CUDA (a stand-in model, as meta tensors cannot run the
    # real one): the forward's input lives there, self.data must not move.
    rec = Recommender.from_checkpoint(ckpt, device="cpu")
    rec.device = torch.device("meta")

    class _Probe(torch.nn.Module):
        def flatten(self, data):
            return None

        def forward(self, data, flat):
            return {nt: data[nt].x for nt in data.node_types if "x" in data[nt]}

    rec.model = _Probe()
    out = rec._forward(rec.data)
    assert out["item"].device.type == "meta"
    assert {t.device.type for store in rec.data.stores for t in store.values() if torch.is_tensor(t)} == {"cpu"}


@pytest.mark.parametrize("spec, message", [
    ({"class_path": "os.system", "init_args": {}}, "'os.system', which kgrec does not import from a checkpoint"),
    ({"class_path": "kgrec.text.encoder.render_segments"}, "is not a kgrec text encoder"),
    ({"class_path": "kgrec.text.encoder.TextEncoder",
      "init_args": {"model": "someone/model", "trust_remote_code": True}},
     r"'someone/model'\) asks for trust_remote_code=True, which kgrec never takes from a file"),
])
def test_a_checkpoints_text_encoder_spec_cannot_run_foreign_code(spec, message):
    from kgrec.serving import encoder_from_spec

    with pytest.raises(ConfigError, match=message):
        encoder_from_spec(spec)


def test_bundle_stores_forward_edges_once_and_serves_the_training_graph(ckpt):
    from kgrec.lightning import KGRecDataModule
    from kgrec.serving import bundle_graph, serving_bundle
    from kgrec.text import HashingTextEncoder

    bundle = torch.load(ckpt, map_location="cpu", weights_only=True)["kgrec_serving"]
    assert bundle["edges"] and not [k for k in bundle["edges"] if "|rev_" in k]
    assert any("|rev_" in k for k in bundle["edge_types"])
    # the graph the checkpoint's data module trained on (configs/synthetic.yaml's data settings)
    dm = KGRecDataModule(path="synthetic", split="random", text_encoder=HashingTextEncoder(dim=32))
    dm.prepare_data()
    dm.setup("fit")
    trained = dm.graph.data
    assert serving_bundle(dm)["edge_types"] == bundle["edge_types"]
    served = bundle_graph(bundle)
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


def test_a_v1_bundle_with_every_reverse_stored_still_loads(ckpt, tmp_path):
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    bundle = payload["kgrec_serving"]
    served = Recommender(Recommender.from_checkpoint(ckpt, device="cpu").model, bundle, device="cpu").data
    v1 = {k: v for k, v in bundle.items() if k != "edge_types"}
    v1.update(format="kgrec-serving-v1",
              edges={"|".join(et): served[et].edge_index for et in served.edge_types},
              edge_relations={"|".join(et): served[et].edge_type for et in served.edge_types
                              if "edge_type" in served[et]})
    torch.save(dict(payload, kgrec_serving=v1), tmp_path / "v1.ckpt")
    old = Recommender.from_checkpoint(tmp_path / "v1.ckpt", device="cpu")
    assert old.data.edge_types == served.edge_types
    assert all(torch.equal(old.data[et].edge_index, served[et].edge_index) for et in served.edge_types)
    new = Recommender.from_checkpoint(ckpt, device="cpu")
    assert torch.allclose(old.item_embeddings, new.item_embeddings)


def test_a_bundle_missing_a_forward_edge_type_is_corrupt(ckpt, tmp_path):
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    bundle = dict(payload["kgrec_serving"])
    edges = dict(bundle["edges"])
    edges.pop("user|interacts|item")
    torch.save(dict(payload, kgrec_serving=dict(bundle, edges=edges)), tmp_path / "cut.ckpt")
    with pytest.raises(DataError, match=r"is corrupt: edge type 'user\|interacts\|item' has no stored edges"):
        Recommender.from_checkpoint(tmp_path / "cut.ckpt")

"""The on-disk embedding cache: hits, atomic writes, refusal of foreign caches."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from kgrec.errors import ConfigError
from kgrec.text import EmbeddingCache, HashingTextEncoder, default_cache_dir, encode_node_texts
from kgrec.graph import build_vocabs

TEXTS = ["Toy Story (1995). Genres: Animation", "Heat (1995). Genres: Action", "Fargo (1996)", "Heat (1995). Genres: Action"]


def test_second_run_encodes_nothing(tmp_path):
    cache = EmbeddingCache(tmp_path)
    enc = HashingTextEncoder(dim=16)
    first = cache.encode(enc, TEXTS)
    assert (first.num_encoded, first.num_cached, enc.num_encoded) == (3, 0, 3)  # duplicate encoded once
    again = EmbeddingCache(tmp_path).encode(HashingTextEncoder(dim=16), TEXTS)
    assert (again.num_encoded, again.num_cached) == (0, 3)
    assert torch.equal(first.embeddings, again.embeddings)
    assert torch.allclose(first.embeddings, enc.encode(TEXTS))


def test_only_new_texts_are_encoded(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.encode(HashingTextEncoder(dim=16), TEXTS[:2])
    enc = HashingTextEncoder(dim=16)
    out = cache.encode(enc, TEXTS)
    assert (out.num_cached, out.num_encoded, enc.num_encoded) == (2, 1, 1)
    assert torch.allclose(out.embeddings, enc.encode(TEXTS))


def test_truncation_flags_survive_the_cache(tmp_path):
    texts = ["a b c", "w " * 30]
    enc = HashingTextEncoder(dim=8, max_length=10)
    EmbeddingCache(tmp_path).encode(enc, texts)
    assert EmbeddingCache(tmp_path).encode(enc, texts).truncated.tolist() == [False, True]


def test_node_features_second_run_encodes_nothing(synthetic, synthetic_split, tmp_path):
    vocabs = build_vocabs(synthetic)
    first = encode_node_texts(synthetic, synthetic_split, vocabs, HashingTextEncoder(dim=16), cache_dir=tmp_path)
    enc = HashingTextEncoder(dim=16)
    second = encode_node_texts(synthetic, synthetic_split, vocabs, enc, cache_dir=tmp_path)
    assert enc.num_encoded == 0 and second.report.num_encoded == 0 and second.report.num_cached > 0
    for nt in first:
        assert torch.equal(first[nt], second[nt])


def test_other_encoders_get_other_directories(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a, b = HashingTextEncoder(dim=16, seed=0), HashingTextEncoder(dim=16, seed=1)
    assert cache.path_for(a) != cache.path_for(b)
    assert cache.path_for(a) != cache.path_for(HashingTextEncoder(dim=16, max_length=5))
    cache.encode(a, TEXTS)
    out = cache.encode(b, TEXTS)
    assert out.num_cached == 0 and torch.allclose(out.embeddings, b.encode(TEXTS))


def test_cache_of_another_model_is_refused_and_reencoded(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path)
    a, b = HashingTextEncoder(dim=16, seed=0), HashingTextEncoder(dim=16, seed=1)
    cache.encode(a, TEXTS)
    # Put a's cache where b's belongs (what a key collision or a copied folder would do).
    shutil.rmtree(cache.path_for(b), ignore_errors=True)
    shutil.copytree(cache.path_for(a), cache.path_for(b))
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        out = cache.encode(b, TEXTS)
    assert "was made by another encoder" in caplog.text
    assert out.num_cached == 0 and torch.allclose(out.embeddings, b.encode(TEXTS))
    meta = json.loads((cache.path_for(b) / "meta.json").read_text())
    assert meta["fingerprint"]["seed"] == 1


def test_cache_with_another_dimension_is_refused(tmp_path, caplog):
    enc = HashingTextEncoder(dim=16)
    cache = EmbeddingCache(tmp_path)
    cache.encode(enc, TEXTS)
    folder = cache.path_for(enc)
    meta = json.loads((folder / "meta.json").read_text())
    meta["dim"] = 8  # shards and meta now disagree with the encoder's 16-d output
    (folder / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        out = cache.encode(enc, TEXTS)
    assert "holds 8-d embeddings but the encoder makes 16-d ones" in caplog.text
    assert out.embeddings.shape == (4, 16) and out.num_cached == 0


def test_shards_with_wrong_dimension_are_refused(tmp_path, caplog):
    enc = HashingTextEncoder(dim=16)
    cache = EmbeddingCache(tmp_path)
    cache.encode(enc, TEXTS[:1])
    folder = cache.path_for(enc)
    shard = next(folder.glob("shard-*.npz"))
    with np.load(shard) as npz:
        arrays = dict(npz)
    arrays["embeddings"] = arrays["embeddings"][:, :8]
    np.savez(shard, **arrays)
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        out = cache.encode(enc, TEXTS)
    assert "refusing the cache" in caplog.text and out.num_cached == 0
    assert torch.allclose(out.embeddings, enc.encode(TEXTS))


def test_corrupt_shard_is_dropped(tmp_path, caplog):
    enc = HashingTextEncoder(dim=16)
    cache = EmbeddingCache(tmp_path)
    cache.encode(enc, TEXTS)
    shard = next(cache.path_for(enc).glob("shard-*.npz"))
    shard.write_bytes(b"not a zip")
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        out = cache.encode(enc, TEXTS)
    assert "unreadable" in caplog.text and out.num_encoded == 3


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    enc = HashingTextEncoder(dim=16)
    cache = EmbeddingCache(tmp_path)
    cache.encode(enc, TEXTS[:1])

    def boom(fh, **arrays):
        fh.write(b"half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        cache.encode(enc, TEXTS)
    monkeypatch.undo()
    folder = cache.path_for(enc)
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".tmp") == []
    assert len(list(folder.glob("shard-*.npz"))) == 1
    out = cache.encode(HashingTextEncoder(dim=16), TEXTS)
    assert out.num_cached == 1 and out.num_encoded == 2


def test_chunked_encode_writes_shards_and_compacts(tmp_path):
    enc = HashingTextEncoder(dim=8)
    texts = [f"text number {k}" for k in range(25)]
    cache = EmbeddingCache(tmp_path, chunk_size=4, max_shards=3)
    first = cache.encode(enc, texts)
    assert len(list(cache.path_for(enc).glob("shard-*.npz"))) == 7
    again = cache.encode(HashingTextEncoder(dim=8), texts)  # loading compacts 7 shards into 1
    assert len(list(cache.path_for(enc).glob("shard-*.npz"))) == 1
    assert again.num_encoded == 0 and torch.equal(first.embeddings, again.embeddings)


def test_default_directory_follows_kgrec_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KGREC_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "text"
    assert EmbeddingCache().directory == tmp_path / "text"


def test_clear(tmp_path):
    enc = HashingTextEncoder(dim=8)
    cache = EmbeddingCache(tmp_path)
    cache.encode(enc, TEXTS)
    cache.clear(enc)
    assert cache.encode(enc, TEXTS).num_cached == 0
    cache.clear()
    assert not list(cache.path_for(enc).glob("shard-*.npz"))


@pytest.mark.parametrize(("kwargs", "match"), [({"chunk_size": 0}, "'chunk_size' must be a positive int; got 0"),
                                               ({"max_shards": -1}, "'max_shards' must be a positive int; got -1")])
def test_cache_arguments_are_validated(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EmbeddingCache(tmp_path, **kwargs)


class _OpaqueEncoder(HashingTextEncoder):
    """Knows its dimension only after encoding, and leaves it out of its fingerprint."""

    def fingerprint(self):
        fp = super().fingerprint()
        del fp["dim"]
        return fp

    def expected_dim(self):
        return None


def test_dimension_change_seen_only_while_encoding_is_refused(tmp_path, caplog):
    cache = EmbeddingCache(tmp_path)
    cache.encode(_OpaqueEncoder(dim=8), TEXTS[:2])
    enc = _OpaqueEncoder(dim=16)
    assert cache.path_for(enc) == cache.path_for(_OpaqueEncoder(dim=8))
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        out = cache.encode(enc, TEXTS)  # two hits of the wrong width, one miss
    assert "holds 8-d embeddings" in caplog.text
    assert out.embeddings.shape == (4, 16) and out.num_cached == 0
    assert torch.allclose(out.embeddings, enc.encode(TEXTS))
    assert cache.encode(_OpaqueEncoder(dim=16), TEXTS).num_cached == 3


def test_compaction_keeps_a_shard_another_process_wrote_meanwhile(tmp_path, monkeypatch):
    # two processes share a cache (DDP ranks, two notebooks): compacting must delete only the
    # shards it merged, not one another process wrote after this one listed the folder
    enc = HashingTextEncoder(dim=8)
    texts = [f"text number {k}" for k in range(25)]
    cache = EmbeddingCache(tmp_path, chunk_size=4, max_shards=3)
    cache.encode(enc, texts)
    others = ["written by another rank", "while this one compacted"]
    real_compact = EmbeddingCache._compact

    def another_writes_before_the_merge(self, *args, **kwargs):
        # after this process listed and read the shards, before it merges them
        monkeypatch.setattr(EmbeddingCache, "_compact", real_compact)
        EmbeddingCache(tmp_path, max_shards=100).encode(HashingTextEncoder(dim=8), others)  # the other process
        return real_compact(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingCache, "_compact", another_writes_before_the_merge)
    again = cache.encode(HashingTextEncoder(dim=8), texts)  # loading compacts
    assert again.num_encoded == 0
    assert len(list(cache.path_for(enc).glob("shard-*.npz"))) == 2  # the merged one and the other's
    assert EmbeddingCache(tmp_path).encode(HashingTextEncoder(dim=8), others).num_encoded == 0

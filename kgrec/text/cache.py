"""On-disk cache of text embeddings, keyed by encoder fingerprint and text hash."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from kgrec.data.builtin import cache_dir
from kgrec.io import atomic_write
from kgrec.errors import ConfigError
from kgrec.text.base import BaseTextEncoder

__all__ = ["CachedEncoding", "EmbeddingCache", "default_cache_dir", "text_hash"]

log = logging.getLogger("kgrec")

_FORMAT = 1
_META = "meta.json"
_SHARD_GLOB = "shard-*.npz"


def default_cache_dir() -> Path:
    """``<kgrec cache>/text``: ``$KGREC_CACHE_DIR/text``, else ``~/.cache/kgrec/text``."""
    return cache_dir() / "text"


def text_hash(text: str) -> str:
    """128-bit hex SHA-256 prefix of a text's UTF-8 bytes (the cache's per-text key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    atomic_write(path, write)


class CachedEncoding(NamedTuple):
    """What :meth:`EmbeddingCache.encode` returns.

    Attributes:
        embeddings: ``float32`` ``(n, dim)``, rows in input order.
        truncated: ``bool`` ``(n,)``: the text was longer than the encoder's limit.
        num_cached: Distinct texts found in the cache.
        num_encoded: Distinct texts the encoder had to encode.
    """

    embeddings: Tensor
    truncated: np.ndarray
    num_cached: int
    num_encoded: int


class EmbeddingCache:
    """Text embeddings on disk, one directory per encoder fingerprint.

    Layout: ``<directory>/<key>/meta.json`` (format, the encoder's full fingerprint,
    dimension) and ``shard-*.npz`` files holding text hashes, ``float32`` embeddings and
    truncation flags. ``key`` hashes the fingerprint (model, revision, pooling, max length,
    normalisation, dtype), and each text is found by the SHA-256 of its bytes, so a second
    run over the same texts encodes nothing and a changed text is re-encoded alone.

    Every file is written to a temp file in the same directory and moved into place with
    :func:`os.replace`; concurrent writers add distinct shards, so a crash or a race never
    leaves a half-written entry. A directory whose ``meta.json`` names another fingerprint or
    dimension, or whose shards disagree with it, is refused (a warning), emptied and
    re-encoded — a cache made by another model is never reused.

    Args:
        directory: Cache root; ``None``: :func:`default_cache_dir` (``$KGREC_CACHE_DIR/text``
            or ``~/.cache/kgrec/text``).
        chunk_size: Texts encoded between two shard writes (an interrupted long encode
            keeps what was done) and between progress-bar updates.
        max_shards: When a directory holds more shards than this they are merged into one.
    """

    def __init__(self, directory: str | os.PathLike | None = None, chunk_size: int = 1024,
                 max_shards: int = 32) -> None:
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"EmbeddingCache 'chunk_size' must be a positive int; got {chunk_size!r}.")
        if not isinstance(max_shards, int) or max_shards < 1:
            raise ConfigError(f"EmbeddingCache 'max_shards' must be a positive int; got {max_shards!r}.")
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.chunk_size = chunk_size
        self.max_shards = max_shards

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r})"

    # ------------------------------------------------------------------ layout
    @staticmethod
    def _canonical(fingerprint: dict[str, Any]) -> str:
        return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)

    def path_for(self, encoder: BaseTextEncoder) -> Path:
        """The directory holding ``encoder``'s embeddings."""
        fp = self._canonical(encoder.fingerprint())
        return self.directory / hashlib.sha256(fp.encode()).hexdigest()[:24]

    def _wipe(self, folder: Path) -> None:
        for file in list(folder.glob(_SHARD_GLOB)) + [folder / _META]:
            try:
                file.unlink()
            except FileNotFoundError:
                pass

    def _write_meta(self, folder: Path, fingerprint: dict[str, Any], dim: int) -> None:
        meta = {"format": _FORMAT, "fingerprint": json.loads(self._canonical(fingerprint)), "dim": dim,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _atomic_write(folder / _META, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))

    def _write_shard(self, folder: Path, hashes: Sequence[str], emb: np.ndarray, truncated: np.ndarray) -> None:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        arrays = {"hashes": np.asarray(hashes, dtype="U32"), "embeddings": emb.astype(np.float32, copy=False),
                  "truncated": truncated.astype(bool, copy=False)}
        _atomic_write(folder / name, lambda fh: np.savez(fh, **arrays))

    def _load(self, folder: Path, fingerprint: dict[str, Any], expected_dim: int | None
              ) -> tuple[int | None, dict[str, tuple[int, int]], list[tuple[np.ndarray, np.ndarray]]]:
        """``(dim or None, hash -> (shard, row), [(embeddings, truncated)])``; refuses bad caches."""
        meta_path = folder / _META
        if not meta_path.is_file():
            if any(folder.glob(_SHARD_GLOB)):
                log.warning("Embedding cache %s has shards but no meta.json; refusing it and re-encoding.", folder)
                self._wipe(folder)
            return None, {}, []
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            dim = int(meta["dim"])
            stored = self._canonical(meta["fingerprint"])
            fmt = meta.get("format")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Embedding cache %s has an unreadable meta.json (%s); refusing it and re-encoding.",
                        folder, exc)
            self._wipe(folder)
            return None, {}, []
        if fmt != _FORMAT or stored != self._canonical(fingerprint):
            log.warning(
                "Embedding cache %s was made by another encoder (%s), not %s; refusing it and re-encoding.",
                folder, stored, self._canonical(fingerprint),
            )
            self._wipe(folder)
            return None, {}, []
        if expected_dim is not None and expected_dim != dim:
            log.warning("Embedding cache %s holds %d-d embeddings but the encoder makes %d-d ones; "
                        "refusing it and re-encoding.", folder, dim, expected_dim)
            self._wipe(folder)
            return None, {}, []
        index: dict[str, tuple[int, int]] = {}
        shards: list[tuple[np.ndarray, np.ndarray]] = []
        loaded: list[Path] = []
        for file in sorted(folder.glob(_SHARD_GLOB)):
            try:
                with np.load(file, allow_pickle=False) as npz:
                    hashes, emb, trunc = npz["hashes"], npz["embeddings"], npz["truncated"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("Embedding cache shard %s is unreadable (%s); dropping it.", file, exc)
                file.unlink(missing_ok=True)
                continue
            if emb.ndim != 2 or emb.shape[1] != dim or len(hashes) != len(emb) or len(trunc) != len(emb):
                log.warning("Embedding cache shard %s holds embeddings of shape %s, not (n, %d); refusing the "
                            "cache and re-encoding.", file, emb.shape, dim)
                self._wipe(folder)
                return None, {}, []
            shard_id = len(shards)
            shards.append((emb, trunc))
            loaded.append(file)
            index.update((h, (shard_id, row)) for row, h in enumerate(hashes.tolist()))
        if len(shards) > self.max_shards:
            self._compact(folder, index, shards, loaded)
        return dim, index, shards

    def _compact(self, folder: Path, index: dict[str, tuple[int, int]], shards, loaded: Sequence[Path]) -> None:
        """Merge the ``loaded`` shards into one. Only those are deleted: a shard another
        process (a DDP rank, a second notebook) wrote meanwhile is not in ``index`` and stays."""
        hashes = list(index)
        emb = np.stack([shards[s][0][r] for s, r in index.values()])
        trunc = np.array([shards[s][1][r] for s, r in index.values()], dtype=bool)
        self._write_shard(folder, hashes, emb, trunc)
        for file in loaded:
            file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ encode
    def encode(self, encoder: BaseTextEncoder, texts: Sequence[str],
               show_progress: bool | None = None) -> CachedEncoding:
        """Embeddings of ``texts``, encoding only those not in the cache.

        Args:
            encoder: Any :class:`~kgrec.text.BaseTextEncoder`.
            texts: Non-empty strings (duplicates are encoded once), length ``n``.
            show_progress: Progress bar over the texts to encode; ``None``: when ≥ 1000.

        Returns:
            :class:`CachedEncoding` with ``(n, dim)`` embeddings.
        """
        return self._encode(encoder, list(texts), show_progress, retry=True)

    def _encode(self, encoder: BaseTextEncoder, texts: list[str], show_progress: bool | None,
                retry: bool) -> CachedEncoding:
        fingerprint = encoder.fingerprint()
        folder = self.path_for(encoder)
        folder.mkdir(parents=True, exist_ok=True)
        dim, index, shards = self._load(folder, fingerprint, encoder.expected_dim())

        hashes = [text_hash(t) for t in texts]
        unique: dict[str, str] = {}
        for h, t in zip(hashes, texts):
            unique.setdefault(h, t)
        missing = sorted((h for h in unique if h not in index), key=lambda h: -len(unique[h]))
        found: dict[str, tuple[np.ndarray, bool]] = {}
        if missing:
            from tqdm.auto import tqdm

            show = len(missing) >= 1000 if show_progress is None else show_progress
            with tqdm(total=len(missing), desc="Encoding texts", unit="text", disable=not show) as bar:
                for start in range(0, len(missing), self.chunk_size):
                    chunk = missing[start:start + self.chunk_size]
                    chunk_texts = [unique[h] for h in chunk]
                    emb = encoder.encode(chunk_texts, show_progress=False).float().cpu().numpy()
                    trunc = np.asarray(encoder.truncated(chunk_texts), dtype=bool)
                    if dim is None:
                        dim = int(emb.shape[1])
                        self._write_meta(folder, fingerprint, dim)
                    elif emb.shape[1] != dim:
                        if not retry:  # pragma: no cover - the encoder changed its own dimension
                            raise ConfigError(f"{encoder!r} returned {emb.shape[1]}-d embeddings after {dim}-d ones.")
                        log.warning("Embedding cache %s holds %d-d embeddings but %r makes %d-d ones; "
                                    "refusing it and re-encoding.", folder, dim, encoder, emb.shape[1])
                        self._wipe(folder)
                        return self._encode(encoder, texts, show_progress, retry=False)
                    self._write_shard(folder, chunk, emb, trunc)
                    found.update((h, (emb[i], bool(trunc[i]))) for i, h in enumerate(chunk))
                    bar.update(len(chunk))
        if dim is None:  # nothing cached and nothing to encode
            dim = encoder.dim
        out = np.empty((len(texts), dim), dtype=np.float32)
        truncated = np.empty(len(texts), dtype=bool)
        for row, h in enumerate(hashes):
            if h in found:
                out[row], truncated[row] = found[h]
            else:
                s, r = index[h]
                out[row], truncated[row] = shards[s][0][r], shards[s][1][r]
        return CachedEncoding(torch.from_numpy(out), truncated, len(unique) - len(missing), len(missing))

    def clear(self, encoder: BaseTextEncoder | None = None) -> None:
        """Delete ``encoder``'s cached embeddings, or every encoder's when ``None``."""
        folders = [self.path_for(encoder)] if encoder is not None else \
            [p for p in self.directory.glob("*") if (p / _META).is_file() or any(p.glob(_SHARD_GLOB))]
        for folder in folders:
            if folder.is_dir():
                self._wipe(folder)

"""The contract every kgrec recommender follows (baselines and the GNN alike).

A recommender is scikit-learn shaped: ``__init__`` only stores its typed
hyper-parameters, :meth:`BaseRecommender.fit` learns from a
:class:`~kgrec.data.split.Split` and the :class:`~kgrec.graph.GraphData` built from
``split.train`` and returns ``self``, and learned state lives in attributes whose
names end in ``_``. Everything the evaluator needs is :meth:`BaseRecommender.score`:
one dense row of item scores per user index, higher is better.

Subclasses implement two hooks, :meth:`BaseRecommender._fit` and
:meth:`BaseRecommender._score`; the public methods around them validate inputs,
keep the vocabularies and the train interactions (for ``exclude_seen``), and
make checkpoints that round-trip through :meth:`save` / :meth:`load`.

Checkpoints are a ``torch.save`` of plain containers (tensors, lists, numbers,
strings) so :meth:`load` can use ``torch.load(..., weights_only=True)``: loading
a file never runs code from it. Every recommender's file names its class; a subclass
that needs its own layout (:class:`~kgrec.models.KGRec`, whose file is also a Lightning
checkpoint) overrides :meth:`BaseRecommender._checkpoint` and
:meth:`BaseRecommender._from_checkpoint`, and :func:`kgrec.load` reads any of them.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from kgrec.errors import ConfigError, DataError, KGRecError, UnknownIdError
from kgrec.eval.metrics import check_k
from kgrec.eval.topk import ranking_frame, top_k
from kgrec.io import CHECKPOINT_FORMAT, READABLE_FORMATS, atomic_write, one_line

if TYPE_CHECKING:  # pragma: no cover
    from typing import Self

    from kgrec.graph import GraphData
    from kgrec.data.split import Split

__all__ = ["BaseRecommender", "NotFittedError", "train_matrix", "load", "read_checkpoint", "CHECKPOINT_FORMAT"]



class NotFittedError(KGRecError, RuntimeError):
    """A method that needs a fitted recommender was called before :meth:`fit`."""


def train_matrix(split: "Split", graph: "GraphData") -> sp.csr_matrix:
    """The binary ``(num_users, num_items)`` CSR matrix of ``split.train``.

    Rows and columns follow ``graph.vocabs["user"]`` / ``graph.vocabs["item"]``;
    duplicate (user, item) rows count once. This is the only interaction data a
    baseline may learn from.
    """
    num_users = len(graph.vocabs["user"])
    num_items = len(graph.vocabs["item"])
    train = split.train
    if len(train) == 0:
        return sp.csr_matrix((num_users, num_items), dtype=np.float32)
    rows = graph.vocabs["user"].encode(train["user"])  # a Series: Categorical ids are read as codes
    cols = graph.vocabs["item"].encode(train["item"])
    mat = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(num_users, num_items)
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _encode_state(value: Any) -> Any:
    """Turn learned state into containers ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        return {
            "__kind__": "csr",
            "shape": list(csr.shape),
            "indptr": torch.from_numpy(csr.indptr.astype(np.int64)),
            "indices": torch.from_numpy(csr.indices.astype(np.int64)),
            "data": torch.from_numpy(np.asarray(csr.data, dtype=np.float32)),
        }
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "US":
            return {"__kind__": "strings", "values": [str(v) for v in value.tolist()]}
        return {"__kind__": "ndarray", "values": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, torch.nn.Module):
        return {
            "__kind__": "module",
            "class_path": f"{type(value).__module__}.{type(value).__qualname__}",
            "state": {k: v.detach().cpu() for k, v in value.state_dict().items()},
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a config group: its fields
        return _encode_state(dataclasses.asdict(value))
    if isinstance(value, pd.DataFrame):  # e.g. a training history: plain columns only
        return {"__kind__": "frame",
                "columns": {str(c): _encode_state(value[c].to_numpy()) for c in value.columns}}
    if isinstance(value, dict):
        return {"__kind__": "dict", "items": {str(k): _encode_state(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [_encode_state(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot checkpoint learned attribute of type {type(value).__name__}")


def _decode_state(value: Any) -> Any:
    if isinstance(value, dict) and "__kind__" in value:
        kind = value["__kind__"]
        if kind == "csr":
            return sp.csr_matrix(
                (value["data"].numpy(), value["indices"].numpy(), value["indptr"].numpy()),
                shape=tuple(value["shape"]),
            )
        if kind == "strings":
            return np.asarray(value["values"], dtype=object)
        if kind == "ndarray":
            return value["values"].numpy()
        if kind == "dict":
            return {k: _decode_state(v) for k, v in value["items"].items()}
        if kind == "frame":
            return pd.DataFrame({c: _decode_state(v) for c, v in value["columns"].items()})
        if kind == "module":  # rebuilt by the owning class in _after_load
            return value
    if isinstance(value, list):
        return [_decode_state(v) for v in value]
    return value


class BaseRecommender:
    """Base class of every kgrec recommender.

    Subclasses implement :meth:`_fit` (learn from ``split.train`` / ``graph``;
    ``split.valid`` only for early stopping) and :meth:`_score` (dense scores).

    Learned attributes set by :meth:`fit` for every recommender:

    * ``user_ids_`` / ``item_ids_``: ``(num_users,)`` / ``(num_items,)`` raw ids in
      index order (the graph's vocabularies).
    * ``train_`` : ``(num_users, num_items)`` binary CSR of ``split.train``
      (what ``exclude_seen`` masks).

    .. warning::
        :meth:`fit` must never read ``split.test``; the conformance suite in
        :mod:`kgrec.testing` checks that replacing it changes nothing.
    """

    # ------------------------------------------------------------------ hooks
    def _fit(self, split: "Split", graph: "GraphData") -> None:
        raise NotImplementedError

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores ``(len(users), num_items)`` for validated user indices on :attr:`score_device`."""
        raise NotImplementedError

    def _after_load(self) -> None:
        """Rebuild derived objects (e.g. ``torch.nn.Module``) after :meth:`load`."""

    # ------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored by ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if not isinstance(v, (dict, torch.Tensor)))
        return f"{type(self).__name__}({args})"

    def _on_score_device(self, name: str) -> torch.Tensor:
        """The learned tensor ``self.<name>``, moved to :attr:`score_device` once and kept there.

        Scoring runs chunk by chunk: a table left on the host (fitted on the CPU, as ALS is, or
        read by :meth:`load`, which maps everything to the CPU) would otherwise be copied to the
        GPU whole for every chunk. :meth:`save` writes tensors from the CPU wherever they are.
        """
        value = getattr(self, name)
        if value.device != self.score_device:
            value = value.to(self.score_device)
            setattr(self, name, value)
        return value

    @property
    def score_device(self) -> torch.device:
        """The device :meth:`score` returns tensors on (the fitted ``device_``, default CPU).

        The evaluator runs its chunked top-K there.
        """
        return torch.device(getattr(self, "device_", None) or "cpu")

    @property
    def num_users(self) -> int:
        self._check_fitted()
        return len(self.user_ids_)

    @property
    def num_items(self) -> int:
        self._check_fitted()
        return len(self.item_ids_)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "train_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "train_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(split, graph) first."
            )

    # ------------------------------------------------------------------ fit
    def fit(self, split: "Split", graph: "GraphData") -> "Self":
        """Learn from ``split.train`` (and the graph built from it).

        Args:
            split: The split; ``train`` is learned from, ``valid`` may drive early
                stopping, ``test`` is never read.
            graph: :func:`kgrec.graph.build_graph` output for this split; its user and
                item vocabularies fix the index order of :meth:`score`.

        Returns:
            ``self``.
        """
        for name in ("user", "item"):
            if name not in getattr(graph, "vocabs", {}):
                raise DataError(
                    f"graph.vocabs has no {name!r} vocabulary; build the graph with "
                    "kgrec.graph.build_graph(dataset, split)."
                )
        requested = getattr(self, "device", None)
        if requested is not None:
            requested = str(requested)
            if requested.startswith("cuda") and not torch.cuda.is_available():
                raise ConfigError(
                    f"The 'device' parameter is {requested!r} but CUDA is not available; "
                    "use device='cpu'."
                )
        self.device_ = requested or "cpu"
        self.user_ids_ = np.asarray(graph.vocabs["user"].ids, dtype=object)
        self.item_ids_ = np.asarray(graph.vocabs["item"].ids, dtype=object)
        self.train_ = train_matrix(split, graph)
        self.item_names_ = [str(n) for n in graph.display_names()] if hasattr(graph, "display_names") else None
        self._index_cache = None
        self._fit(split, graph)
        return self

    # ---------------------------------------------------------------- score
    def _check_users(self, users: torch.Tensor | Sequence[int]) -> torch.Tensor:
        self._check_fitted()
        users = torch.as_tensor(users)
        if users.dim() != 1 or users.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ConfigError(
                f"users must be a 1-D integer tensor of user indices; got dtype {users.dtype} "
                f"and shape {tuple(users.shape)}."
            )
        if users.numel():
            lo, hi = int(users.min()), int(users.max())
            if lo < 0 or hi >= self.num_users:
                bad = lo if lo < 0 else hi
                raise UnknownIdError(
                    f"user index {bad} is outside the vocabulary of {type(self).__name__} "
                    f"(valid indices 0..{self.num_users - 1})."
                )
        return users.long()

    @torch.no_grad()
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for a batch of users.

        Args:
            users: ``(batch,)`` user indices (``graph.vocabs["user"]`` order).

        Returns:
            ``(batch, num_items)`` ``float32`` scores on :attr:`score_device`, higher is better.
            Seen items are *not* masked here; the evaluator and :meth:`recommend` do it.
        """
        users = self._check_users(users).to(self.score_device)
        out = self._score(users)
        return out.float()

    # ------------------------------------------------------------ recommend
    def _index(self) -> tuple[dict[str, int], dict[str, int]]:
        if getattr(self, "_index_cache", None) is None:
            self._index_cache = (
                {u: i for i, u in enumerate(self.user_ids_.tolist())},
                {it: i for i, it in enumerate(self.item_ids_.tolist())},
            )
        return self._index_cache

    def _encode(self, raw_ids: Sequence[str], which: int, kind: str, where: str) -> torch.Tensor:
        self._check_fitted()
        index = self._index()[which]
        missing = next((r for r in raw_ids if r not in index), None)
        if missing is not None:
            raise UnknownIdError(f"unknown {kind} id {missing!r}: it is not in the {where}.")
        return torch.tensor([index[r] for r in raw_ids], dtype=torch.long)

    def encode_users(self, user_ids: Sequence[str]) -> torch.Tensor:
        """Raw user ids to indices; :class:`~kgrec.errors.UnknownIdError` names an unknown id."""
        return self._encode(user_ids, 0, "user", "training vocabulary")

    def encode_items(self, item_ids: Sequence[str]) -> torch.Tensor:
        """Raw item ids to indices; :class:`~kgrec.errors.UnknownIdError` names an unknown id."""
        return self._encode(item_ids, 1, "item", "item catalogue")

    def recommend(
        self,
        user_ids: str | Sequence[str],
        k: int = 10,
        exclude_seen: bool = True,
        items: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Top-``k`` items for each user.

        Args:
            user_ids: A raw user id or a sequence of them.
            k: Items per user, ``1 <= k <= num_items``.
            exclude_seen: Drop each user's train items from the candidates.
            items: Restrict candidates to these raw item ids (e.g. new cold items);
                ``None`` ranks the whole catalogue.

        Returns:
            Columns ``user``, ``rank`` (1-based), ``item``, ``name``, ``score``; at most ``k``
            rows per user (fewer when fewer candidates remain).
        """
        k = check_k(k, "k", self.num_items, "items in the catalogue")
        users_raw = [user_ids] if isinstance(user_ids, str) else [str(u) for u in user_ids]
        users = self.encode_users(users_raw)
        allow = None if items is None else self.encode_items([str(i) for i in items])
        scores = self.score(users)
        if torch.isnan(scores).any():
            raise KGRecError(f"{type(self).__name__}.score returned NaN scores.")
        exclude = self._seen_pairs(users) if exclude_seen else None
        values, indices = top_k(scores, k, exclude, allow)
        return ranking_frame(users_raw, values, indices, self.item_ids_, self.item_names)

    @property
    def item_names(self) -> Sequence[str]:
        """Display name of every item, in index order (the raw ids where none is known)."""
        self._check_fitted()
        names = getattr(self, "item_names_", None)
        return self.item_ids_ if names is None else names

    def _seen_pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(row, item)`` pairs of ``users``' train items, ``row`` counted within ``users``."""
        sub = self.train_[users.cpu().numpy()].tocoo()
        return torch.from_numpy(sub.row.astype(np.int64)), torch.from_numpy(sub.col.astype(np.int64))

    # ------------------------------------------------------------ persistence
    def _learned_state(self) -> dict[str, Any]:
        return {
            k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")
        }

    def _checkpoint(self) -> dict[str, Any]:
        """The checkpoint as plain containers: format, class, parameters, learned state."""
        return {
            "format": CHECKPOINT_FORMAT,
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": _encode_state(self.get_params()),
            "state": {k: _encode_state(v) for k, v in self._learned_state().items()},
        }

    @classmethod
    def _from_checkpoint(cls, payload: dict[str, Any], where: str, **options: Any) -> "BaseRecommender":
        """Rebuild a recommender from :meth:`_checkpoint`'s payload (``where`` names the file in errors)."""
        if options:
            raise ConfigError(f"{cls.__qualname__}.load takes no options; got {sorted(options)}.")
        obj = cls(**_decode_state(payload["params"]))
        for k, v in payload["state"].items():
            setattr(obj, k, _decode_state(v))
        obj._index_cache = None
        if str(getattr(obj, "device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            obj.device_ = "cpu"
        obj._after_load()
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (temp file in the same directory, then rename).

        Returns:
            The checkpoint path.
        """
        self._check_fitted()
        path = Path(path).expanduser()
        if path.is_dir():
            raise ConfigError(f"cannot save to {str(path)!r}: it is a directory; give a file path such as "
                              f"{str(path / 'model.ckpt')!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = self._checkpoint()
        return atomic_write(path, lambda fh: torch.save(payload, fh))

    @classmethod
    def load(cls, path: str | os.PathLike, **options: Any) -> "BaseRecommender":
        """Read a checkpoint written by :meth:`save` or ``kgrec fit`` (``weights_only=True``:
        no code runs from the file).

        Calling ``load`` on a subclass checks the checkpoint holds that class; options (such
        as :meth:`kgrec.models.KGRec.load`'s ``device``) go to that class.
        """
        payload, where = read_checkpoint(path)
        klass = _checkpoint_class(payload, where)
        if not issubclass(klass, cls):
            raise DataError(f"{where} holds a {klass.__module__}.{klass.__qualname__}, not a {cls.__qualname__}.")
        return klass._from_checkpoint(payload, where, **options)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The payload of a kgrec checkpoint file and a name for it in errors (``"checkpoint 'x.ckpt'"``).

    Raises:
        DataError: the file is missing, a directory, unreadable, or not a kgrec checkpoint.
    """
    path = Path(path).expanduser()
    where = f"checkpoint {str(path)!r}"
    if path.is_dir():
        raise DataError(f"{where} is a directory; give the checkpoint file inside it "
                        "(`kgrec fit` writes <run>/checkpoints/best.ckpt).")
    if not path.is_file():
        raise DataError(f"{where} does not exist; `kgrec fit` writes runs/lightning_logs/version_N/checkpoints/best.ckpt.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holding arbitrary objects
        raise DataError(f"{where} is corrupt or not a kgrec checkpoint ({one_line(exc)}).") from None
    if not isinstance(payload, dict):
        raise DataError(f"{where} is not a kgrec checkpoint.")
    return payload, where


def _checkpoint_class(payload: dict[str, Any], where: str) -> type:
    """The recommender class a checkpoint names (kgrec 0.1 Lightning checkpoints name none: KGRec)."""
    fmt = payload.get("format")
    if fmt is None and "kgrec_serving" in payload:  # kgrec 0.1 `kgrec fit`
        path = "kgrec.models.kgrec.KGRec"
    elif fmt in READABLE_FORMATS and isinstance(payload.get("class_path"), str):
        path = payload["class_path"]
    elif fmt is None and "state_dict" in payload and "hyper_parameters" in payload:
        raise DataError(f"{where} is a Lightning checkpoint without kgrec's model data: it was not written by "
                        "`kgrec fit`. Train with `kgrec fit --config ...` and load its checkpoints/best.ckpt.")
    else:
        raise DataError(f"{where} is not a kgrec checkpoint this version reads (format {fmt!r}; this kgrec "
                        f"reads {', '.join(READABLE_FORMATS)}).")
    module, _, name = path.rpartition(".")
    if not (module == "kgrec" or module.startswith("kgrec.")) and module not in sys.modules:
        # importing runs a module's code: only kgrec's own are imported on a file's say-so
        raise DataError(
            f"{where} holds a {path}; kgrec imports only its own modules "
            f"when loading, so import {module!r} first (then load again)."
        )
    klass = getattr(importlib.import_module(module), name, None)
    if not (isinstance(klass, type) and issubclass(klass, BaseRecommender)):
        raise DataError(f"{where} names {path!r}, which is not a kgrec recommender.")
    return klass


def load(path: str | os.PathLike, **options: Any) -> BaseRecommender:
    """Load any kgrec checkpoint: ``kgrec fit``'s ``best.ckpt``, or a recommender's :meth:`~BaseRecommender.save`.

    ``options`` go to the class's loader (for :class:`~kgrec.models.KGRec`: ``device``,
    ``text_encoder``). ``torch.load(..., weights_only=True)``: no code runs from the file.
    """
    return BaseRecommender.load(path, **options)

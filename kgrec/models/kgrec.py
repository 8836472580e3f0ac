"""``KGRec``: the kgrec model as one trained object — fit, evaluate, recommend, cold start, explain, save."""

from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from kgrec.config import coerce_config
from kgrec.errors import ConfigError, DataError, UnknownIdError
from kgrec.eval import check_k, ranking_frame, top_k
from kgrec.graph import (HAS_ATTRIBUTE, HAS_TAG, INTERACTS, GraphData, InputConfig, Vocab, data_on, graph_from_state,
                         graph_state)
from kgrec.io import atomic_write
from kgrec.models.base import BaseRecommender, _decode_state, _encode_state
from kgrec.nn import GNNConfig, score_matrix
from kgrec.serving import Explainer, NodePlacer
from kgrec.text import encoder_from_spec
from kgrec.training import (KGRecDataModule, KGRecModule, LoaderConfig, LossConfig, OptimConfig, ScheduleConfig,
                            checkpoint_fields, fit_module, lightning_fields, load_module)
from kgrec.training.checkpoint import migrate_params
from kgrec.world import World

__all__ = ["KGRec"]

#: kgrec 0.1 `kgrec fit` checkpoints' serving data formats (read, then kept in today's layout).
_OLD_SERVING_FORMATS = ("kgrec-serving-v1", "kgrec-serving-v2")


class KGRec(BaseRecommender):
    """The text-aligned heterogeneous GNN: one object from training to serving.

    ``fit`` trains :class:`~kgrec.training.KGRecModule` on ``split.train`` with early
    stopping on valid NDCG@20 and keeps the best epoch; ``save`` writes the one kgrec
    checkpoint (also what ``kgrec fit`` writes, and a Lightning checkpoint ``kgrec test``
    reads), :func:`kgrec.load` reads it back without the dataset. A fitted or loaded model
    is a :class:`~kgrec.models.BaseRecommender` (:func:`kgrec.eval.evaluate` scores it like
    every baseline) and serves: :meth:`recommend`, :meth:`score_items`, :meth:`similar_items`,
    :meth:`top_users`, cold start (:meth:`add_item`, :meth:`recommend_new_user`),
    :meth:`explain` and :meth:`export_embeddings`.

    Args:
        gnn: The architecture (:class:`~kgrec.nn.GNNConfig`, or a mapping of its fields).
        loss: The objective (:class:`~kgrec.training.LossConfig`).
        optim: The optimiser (:class:`~kgrec.training.OptimConfig`).
        inputs: What the model reads: text, tags, KG (:class:`~kgrec.graph.InputConfig`),
            applied to the graph ``fit`` is given.
        loader: Batches (:class:`~kgrec.training.LoaderConfig`).
        schedule: Epoch cap and early-stopping patience (:class:`~kgrec.training.ScheduleConfig`).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (``None``: the CPU).
        seed: Seed of the model's initial weights and of its training (the split has its own).

    After ``fit``: ``history_`` (one row per validation: ``epoch``, ``val/ndcg@20``, ...),
    ``best_epoch_``, ``epochs_``, and the trained ``module_`` and ``graph_``.
    """

    uses_text_features = True
    #: Named variants for the benchmark runner: the ablations, each a change to one group.
    benchmark_variants = {
        "kgrec-notext": {"inputs": {"use_text": False}},
        "kgrec-nokg": {"inputs": {"use_kg": False}},
        "kgrec-idonly": {"inputs": {"use_text": False, "use_kg": False, "use_side_info": False}},
        "kgrec-align": {"loss": {"align_weight": 0.1}},
        "kgrec-noalign": {"loss": {"align_weight": 0.0}},
        "kgrec-nocold": {"loss": {"cold_weight": 0.0}},
        "kgrec-learnrel": {"gnn": {"learn_relation_weights": True}},
        "kgrec-nodetach": {"gnn": {"cold_detach": False}},
        "kgrec-colddetach": {"gnn": {"cold_detach": True}},
        "kgrec-coldtext": {"gnn": {"warm_text": False}},
        "kgrec-upow": {"loss": {"unobserved_user_power": 0.5}},
        "kgrec-softmax": {"loss": {"name": "softmax", "weight_decay": 0.0, "cold_weight": 0.5, "align_weight": 0.1},
                          "gnn": {"dropout": 0.2}},
    }

    def __init__(
        self,
        gnn: GNNConfig | Mapping[str, Any] = GNNConfig(),
        loss: LossConfig | Mapping[str, Any] = LossConfig(),
        optim: OptimConfig | Mapping[str, Any] = OptimConfig(),
        inputs: InputConfig | Mapping[str, Any] = InputConfig(),
        loader: LoaderConfig | Mapping[str, Any] = LoaderConfig(),
        schedule: ScheduleConfig | Mapping[str, Any] = ScheduleConfig(),
        device: str | None = None,
        seed: int = 2026,
    ) -> None:
        self.gnn = coerce_config(GNNConfig, gnn, "gnn")
        self.loss = coerce_config(LossConfig, loss, "loss")
        self.optim = coerce_config(OptimConfig, optim, "optim")
        self.inputs = coerce_config(InputConfig, inputs, "inputs")
        self.loader = coerce_config(LoaderConfig, loader, "loader")
        self.schedule = coerce_config(ScheduleConfig, schedule, "schedule")
        self.device = device
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def build(self, split, graph) -> tuple[KGRecDataModule, KGRecModule]:
        """The data module and the untrained module :meth:`fit` trains (for code that drives
        its own :class:`lightning.Trainer` over exactly that model, e.g. ``benchmarks.train_speed``)."""
        dm = KGRecDataModule.from_world(World(split, graph), inputs=self.inputs, loader=self.loader)
        return dm, KGRecModule(dm.graph_info, self.gnn, self.loss, self.optim)

    def _fit(self, split, graph) -> None:
        L.seed_everything(self.seed, verbose=False)
        dm, module = self.build(split, graph)
        result = fit_module(module, dm, self.schedule, self.device_)
        self.history_, self.best_epoch_, self.epochs_ = result.history, result.best_epoch, result.epochs
        self._set_trained(module, dm.graph, dm.train_fingerprint())

    def _set_trained(self, module: KGRecModule, graph: GraphData, fingerprint: str) -> None:
        """Keep the trained module and its graph; compute every node's final embedding."""
        self.module_ = module.to(self.device_).eval()
        self.graph_ = graph
        self.train_fingerprint_ = fingerprint
        self.user_ids_ = np.asarray(graph.vocabs["user"].ids, dtype=object)
        self.item_ids_ = np.asarray(graph.vocabs["item"].ids, dtype=object)
        self.item_names_ = graph.display_names()
        if not hasattr(self, "train_"):
            ui = graph.data[INTERACTS].edge_index.numpy()
            train = sp.csr_matrix((np.ones(ui.shape[1], dtype=np.float32), (ui[0], ui[1])),
                                  shape=(len(self.user_ids_), len(self.item_ids_)))
            train.sum_duplicates()
            train.data[:] = 1.0
            self.train_ = train
        self._placer = NodePlacer(self.module_.model, graph.data, torch.device(self.device_))
        self._explainer = None
        self._index_cache = None
        with torch.no_grad():
            data = data_on(graph.data, self.device_)
            out = self.module_.model(data, self.module_.model.flatten(data))
        self.user_embeddings_, self.item_embeddings_ = out["user"], out["item"]

    # ---------------------------------------------------------------- score
    def _score(self, users: Tensor) -> Tensor:
        return score_matrix(self._on_score_device("user_embeddings_")[users],
                            self._on_score_device("item_embeddings_"), self.gnn.score)

    # ------------------------------------------------------------ persistence
    def params(self) -> dict[str, Any]:
        """The constructor arguments as plain containers (what the checkpoint keeps)."""
        return {k: asdict(v) if is_dataclass(v) else v for k, v in self.get_params().items()}

    def _checkpoint(self) -> dict[str, Any]:
        payload = checkpoint_fields(graph_state(self.graph_), self.train_fingerprint_, self.params())
        payload.update(lightning_fields(self.module_, epoch=int(getattr(self, "best_epoch_", 0) or 0)))
        payload["state"] = {k: _encode_state(getattr(self, k)) for k in ("history_", "best_epoch_", "epochs_")
                            if hasattr(self, k)}
        return payload

    @classmethod
    def _from_checkpoint(cls, payload: dict[str, Any], where: str, device: str | None = None,
                         text_encoder=None) -> "KGRec":
        """Rebuild a trained model from a kgrec checkpoint (or a kgrec 0.1 ``kgrec fit`` one)."""
        if payload.get("format") == "kgrec-recommender-v1":
            raise DataError(f"{where} was written by KGRec.save of kgrec 0.1, which kept only the final "
                            "embeddings (no weights, no graph), so it cannot be served or converted; train "
                            "again (KGRec(...).fit(split, graph).save(path), or `kgrec fit`).")
        state = payload.get("graph")
        if state is None and isinstance(payload.get("kgrec_serving"), Mapping):  # kgrec 0.1 `kgrec fit`
            state = payload["kgrec_serving"]
            if state.get("format") not in _OLD_SERVING_FORMATS:
                raise DataError(f"{where} was written by an incompatible kgrec version (serving format "
                                f"{state.get('format')!r}); retrain with this version.")
        if state is None:
            raise DataError(f"{where} holds no training graph: it was not written by `kgrec fit` or KGRec.save.")
        module = load_module(KGRecModule, payload, where)
        graph = graph_from_state(state, where)
        params = payload.get("params")
        if params is None:  # kgrec 0.1: the module's groups, today's defaults for the rest
            hp = migrate_params(payload["hyper_parameters"])
            params = {"gnn": hp["gnn"], "loss": hp["loss"], "optim": hp["optim"]}
        obj = cls(**{k: v for k, v in params.items() if k != "device"})
        obj.device_ = _serving_device(device)
        for name, value in (payload.get("state") or {}).items():
            setattr(obj, name, _decode_state(value))
        obj._encoder = text_encoder
        obj._set_trained(module, graph, payload.get("train_fingerprint") or payload.get("kgrec_train_fingerprint"))
        return obj

    # ------------------------------------------------------------ lookups
    def _lookup(self, node_type: str, raw_ids, hint: str) -> list[int]:
        vocab = self.graph_.vocabs.get(node_type)
        raw = [str(r) for r in raw_ids]
        if vocab is None:
            if raw:
                raise UnknownIdError(f"unknown {node_type} id {raw[0]!r}: the model has no {node_type} nodes.")
            return []
        try:
            return vocab.encode(raw).tolist()
        except UnknownIdError:  # the same error, told in serving terms: what to do about it
            bad = next(r for r in raw if r not in vocab)
            sample = ", ".join(repr(str(v)) for v in vocab.ids[:3])
            raise UnknownIdError(
                f"unknown {node_type} id {bad!r}: the model knows {len(vocab):,} {node_type}s "
                f"(e.g. {sample}){'; ' + hint if hint else '.'}"
            ) from None

    def encode_users(self, user_ids: Sequence[str]) -> Tensor:
        self._check_fitted()
        return torch.tensor(self._lookup("user", user_ids, "list them with `kgrec ids --ckpt PATH --type user`; "
                                         "for a user the model has never seen use recommend_new_user(...) "
                                         "(CLI: `kgrec recommend --ckpt PATH --liked ITEM,...`)."), dtype=torch.long)

    def encode_items(self, item_ids: Sequence[str]) -> Tensor:
        self._check_fitted()
        return torch.tensor(self._lookup("item", item_ids, "list them with `kgrec ids --ckpt PATH --type item`; "
                                         "add a new item with add_item(...)."), dtype=torch.long)

    # ------------------------------------------------------------ serving
    @torch.no_grad()
    def score_items(self, user: str, items: Sequence[str]) -> pd.Series:
        """Scores of ``items`` for one known user, indexed by item id (higher is better)."""
        u = self.encode_users([user])
        idx = self.encode_items([str(i) for i in items]).to(self.score_device)
        scores = self.score(u)[0, idx].cpu().numpy()
        return pd.Series(scores, index=pd.Index([str(i) for i in items], name="item"), name="score")

    def _item_unit(self) -> Tensor:
        return F.normalize(self._on_score_device("item_embeddings_"), dim=-1)

    @torch.no_grad()
    def similar_items(self, item: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` items nearest to ``item`` by cosine of their embeddings (``item`` itself excluded).

        Returns:
            Columns ``rank``, ``item``, ``name``, ``score``.
        """
        k = check_k(k, "k", self.num_items - 1, "other items in the catalogue")
        i = int(self.encode_items([item])[0])
        unit = self._item_unit()
        sims = (unit[i] @ unit.t()).unsqueeze(0)
        values, indices = top_k(sims, k, (torch.zeros(1, dtype=torch.long), torch.tensor([i])))
        return ranking_frame([str(item)], values, indices, self.item_ids_, self.item_names).drop(columns="user")

    @torch.no_grad()
    def top_users(self, item: str, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """The ``k`` users who score ``item`` highest (e.g. the audience of a new item).

        Returns:
            Columns ``rank``, ``user``, ``score``.
        """
        k = check_k(k, "k", self.num_users, "users")
        i = int(self.encode_items([item])[0])
        scores = score_matrix(self._on_score_device("item_embeddings_")[[i]],
                              self._on_score_device("user_embeddings_"), self.gnn.score)
        exclude = None
        if exclude_seen:
            seen = torch.from_numpy(self.train_[:, i].tocoo().row.astype(np.int64))
            exclude = (torch.zeros_like(seen), seen)
        values, indices = top_k(scores, k, exclude)
        frame = ranking_frame([""], values, indices, self.user_ids_)
        return frame.drop(columns=["user", "name"]).rename(columns={"item": "user"})[["rank", "user", "score"]]

    # ------------------------------------------------------------ cold start
    def _encode_text(self, node_type: str, text: str | None) -> Tensor | None:
        data = self.graph_.data
        if node_type not in data.node_types or "x" not in data[node_type]:
            return None
        dim = data[node_type].x.size(1)
        if not text or node_type not in self.module_.model.text_proj:  # no text, or a model that reads none
            return torch.zeros(1, dim)
        if getattr(self, "_encoder", None) is None:
            self._encoder = encoder_from_spec(self.graph_.text_encoder)
        if self._encoder is None:
            raise ConfigError("this model records no text encoder; pass text_encoder=... to kgrec.load.")
        x = self._encoder.encode([text], show_progress=False).float().cpu()
        if x.size(1) != dim:
            raise ConfigError(f"the text encoder gives {x.size(1)}-d vectors but the model was trained on {dim}-d text.")
        return x

    def _tags(self, tags, node_type: str) -> list[int]:
        """Tag indices from ``{"genre": ["Comedy"]}`` or ``["genre=Comedy"]``."""
        if tags is None:
            return []
        if isinstance(tags, Mapping):
            raw = []
            for field, values in tags.items():
                values = [values] if isinstance(values, str) else list(values)
                raw += [f"{field}={v}" for v in values]
        else:
            raw = [str(t) for t in tags]
        if raw and not len(self.graph_.vocabs.get("tag", ())):
            what = "item tags" if node_type == "item" else "user attributes"
            raise ConfigError(f"the model was trained without tags (no tag nodes), so {what} cannot place "
                              f"a new {node_type}; leave them out.")
        return self._lookup("tag", raw, f"{node_type} tags are written field=value, as in the training data.")

    @torch.no_grad()
    def recommend_new_user(self, liked_items: Sequence[str] = (), attributes: Mapping[str, str] | None = None,
                           k: int = 10, exclude_seen: bool = True, user_id: str = "new-user") -> pd.DataFrame:
        """Recommendations for a user the model has never seen, without retraining.

        The user joins the training graph as a new node with edges to ``liked_items`` and
        to its attribute tags (``{"age": "25-34", "gender": "F"}``), and with a text
        profile written like the training ones; one forward pass places it.

        Returns:
            The :meth:`recommend` columns, ``user`` set to ``user_id``.
        """
        self._check_fitted()
        k = check_k(k, "k", self.num_items, "items in the catalogue")
        liked = self.encode_items([str(i) for i in liked_items]).tolist()
        attrs = self._tags({f: [v] for f, v in (attributes or {}).items()}, "user")
        if not liked and not attrs:
            raise ConfigError("a new user needs liked_items and/or attributes to be placed.")
        new = self.num_users
        data = self._placer.with_node("user", self._encode_text("user", self._user_text(liked, attributes or {})), {
            INTERACTS: ([new] * len(liked), liked, None),
            HAS_ATTRIBUTE: ([new] * len(attrs), attrs, None),
        })
        vec = self._placer.place(data, "user").unsqueeze(0)
        scores = score_matrix(vec, self._on_score_device("item_embeddings_"), self.gnn.score)
        exclude = (torch.zeros(len(liked), dtype=torch.long), torch.tensor(liked, dtype=torch.long)) \
            if exclude_seen else None
        values, indices = top_k(scores, k, exclude)
        return ranking_frame([user_id], values, indices, self.item_ids_, self.item_names)

    def _user_text(self, liked: list[int], attributes: Mapping[str, str]) -> str | None:
        layout = self.graph_.text_layout
        if layout is None:
            return None
        counts: dict[str, int] = {}
        data = self.graph_.data
        if liked and HAS_TAG in data.edge_types:
            tag_ids = self.graph_.vocabs["tag"].ids
            ei = data[HAS_TAG].edge_index
            for t in ei[1][torch.isin(ei[0], torch.tensor(liked))].tolist():
                value = str(tag_ids[t]).split("=", 1)[-1]
                counts[value] = counts.get(value, 0) + 1
        top = sorted(counts, key=lambda v: (-counts[v], v))[:3]
        return layout.user_text(attributes, top, [self.item_names[i] for i in liked[:3]])

    @torch.no_grad()
    def add_item(self, item_id: str, text: str | None = None, name: str | None = None,
                 tags: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
                 kg: Sequence[tuple[str, str]] = ()) -> pd.Series:
        """Add an item the model has never seen, placed by its text, tags and KG links.

        Args:
            item_id: Its raw id (must be new).
            text: Its description; ``None``: written from ``name`` and ``tags`` with the
                training item template (e.g. ``"Orbit. Genres: Sci-Fi"``).
            name: Display name (default: ``item_id``).
            tags: ``{"genre": ["Sci-Fi", "Drama"]}`` or ``["genre=Sci-Fi"]``.
            kg: ``(relation, entity)`` pairs, the item as the head (``("film.film.directed_by", "m.0abc")``);
                the entity may be a KG entity or another item.

        Returns:
            Its embedding row as a Series (also stored: the item is now in the catalogue of
            :meth:`recommend`, :meth:`score_items`, :meth:`similar_items`, :meth:`explain` and
            :meth:`save`).
        """
        self._check_fitted()
        item_id = str(item_id)
        if item_id in self.graph_.vocabs["item"]:
            raise ConfigError(f"item id {item_id!r} already exists; choose a new id.")
        tag_idx = self._tags(tags, "item")
        new = self.num_items
        kg_entity: tuple[list, list, list] = ([], [], [])
        kg_item: tuple[list, list, list] = ([], [], [])
        relations = self.graph_.relations
        for relation, entity in kg:
            if relation not in relations:
                raise UnknownIdError(f"unknown KG relation {relation!r}; known relations: {', '.join(relations[:8])}"
                                     f"{', ...' if len(relations) > 8 else ''}.")
            if "entity" in self.graph_.vocabs and str(entity) in self.graph_.vocabs["entity"]:
                target, index = kg_entity, self._lookup("entity", [entity], "")[0]
            elif str(entity) in self.graph_.vocabs["item"]:
                target, index = kg_item, self._lookup("item", [entity], "")[0]
            else:
                raise UnknownIdError(f"unknown KG entity {entity!r}: not an entity or item of the training graph.")
            target[0].append(new)
            target[1].append(index)
            target[2].append(relations.index(relation))
        name = name or item_id
        if text is None:
            tag_names = [str(self.graph_.vocabs["tag"].ids[t]) for t in tag_idx]
            text = self.graph_.text_layout.item_text(name, tag_names) if self.graph_.text_layout else name
        if not text and not tag_idx and not kg_entity[0] and not kg_item[0]:
            raise ConfigError(f"item {item_id!r} needs text, tags or KG links to be placed.")
        data = self._placer.with_node("item", self._encode_text("item", text), {
            HAS_TAG: ([new] * len(tag_idx), tag_idx, None),
            ("item", "kg", "entity"): kg_entity,
            ("item", "kg", "item"): kg_item,
        })
        vec = self._placer.place(data, "item")
        self._grow_catalogue(data, item_id, name, vec)
        return pd.Series(vec.cpu().numpy(), name=item_id)

    def _grow_catalogue(self, data, item_id: str, name: str, vec: Tensor) -> None:
        """Make the placed item part of the model: graph, vocabulary, names, embeddings, train matrix."""
        vocabs = dict(self.graph_.vocabs)
        vocabs["item"] = Vocab([*vocabs["item"].ids, item_id], "item")
        self.graph_ = replace(self.graph_, data=data, vocabs=vocabs, item_names=[*self.graph_.display_names(), name])
        self.item_ids_ = np.asarray(vocabs["item"].ids, dtype=object)
        self.item_names_ = self.graph_.display_names()
        self.item_embeddings_ = torch.cat([self._on_score_device("item_embeddings_"),
                                           vec.to(self.score_device).unsqueeze(0)])
        self.train_ = sp.hstack([self.train_, sp.csr_matrix((self.train_.shape[0], 1), dtype=np.float32)]).tocsr()
        self._placer = NodePlacer(self.module_.model, data, torch.device(self.device_))
        self._explainer = None
        self._index_cache = None

    # ------------------------------------------------------------ explain / export
    def explain(self, user: str, item: str, k: int = 3):
        """The ``k`` strongest graph paths from ``user`` to ``item`` as :class:`~kgrec.serving.Explanation`.

        See :class:`kgrec.serving.Explainer` for the paths and how they are ranked.
        """
        k = check_k(k, "k")
        u, i = int(self.encode_users([user])[0]), int(self.encode_items([item])[0])
        if getattr(self, "_explainer", None) is None:
            self._explainer = Explainer(self.graph_, self.item_embeddings_)
        return self._explainer.explain(u, i, k)

    def embeddings(self, node_type: str = "item") -> pd.DataFrame:
        """Final embeddings of ``user`` or ``item`` nodes, one row per raw id (columns ``e0..e{d-1}``)."""
        self._check_fitted()
        if node_type not in ("user", "item"):
            raise ConfigError(f"node_type must be 'user' or 'item'; got {node_type!r}.")
        emb = (self.user_embeddings_ if node_type == "user" else self.item_embeddings_).cpu().numpy()
        frame = pd.DataFrame(emb, columns=[f"e{j}" for j in range(emb.shape[1])])
        frame.insert(0, node_type, [str(i) for i in (self.user_ids_ if node_type == "user" else self.item_ids_)])
        return frame

    def export_embeddings(self, path: str | os.PathLike, fmt: str | None = None) -> list[Path]:
        """Write user and item embeddings atomically.

        ``fmt="parquet"`` (default for a ``.parquet`` path or a directory): ``users.parquet``
        and ``items.parquet`` with an id column; ``fmt="npy"``: ``users.npy``/``items.npy`` plus
        ``user_ids.txt``/``item_ids.txt`` (one id per line, row order).

        Returns:
            The files written.
        """
        out = Path(path).expanduser()
        fmt = fmt or ("npy" if out.suffix == ".npy" else "parquet")
        if fmt not in ("parquet", "npy"):
            raise ConfigError(f"export format must be 'parquet' or 'npy'; got {fmt!r}.")
        if out.suffix in (".parquet", ".npy"):
            out = out.parent
        if out.exists() and not out.is_dir():
            raise ConfigError(f"export target {str(out)!r} is a file; give a directory.")
        written = []
        for nt, plural in (("user", "users"), ("item", "items")):
            frame = self.embeddings(nt)
            if fmt == "parquet":
                written.append(atomic_write(out / f"{plural}.parquet", lambda fh, f=frame: f.to_parquet(fh, index=False)))
            else:
                arr = frame.drop(columns=nt).to_numpy(np.float32)
                written.append(atomic_write(out / f"{plural}.npy", lambda fh, a=arr: np.save(fh, a)))
                ids = "\n".join(frame[nt]) + "\n"
                written.append(atomic_write(out / f"{nt}_ids.txt", lambda fh, s=ids: fh.write(s.encode())))
        return written

    def __repr__(self) -> str:
        if not self.is_fitted:
            return super().__repr__()
        return (f"KGRec(dataset={self.graph_.dataset_name!r}, users={self.num_users:,}, items={self.num_items:,}, "
                f"dim={self.item_embeddings_.size(1)}, device={str(self.device_)!r})")


def _serving_device(device: str | None) -> str:
    """The device a loaded model serves on: as asked (checked), else CUDA when available."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available; use device='cpu'.")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
    return device

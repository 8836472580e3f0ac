"""Serve a trained kgrec model: recommend, score, similar items, cold start, explain, export.

::

    from kgrec import Recommender

    rec = Recommender.from_checkpoint("runs/lightning_logs/version_0/checkpoints/best.ckpt")
    rec.recommend(["1"], k=5)                          # user, rank, item, name, score
    rec.similar_items("50", k=5)                       # Star Wars (1977) -> nearest items
    rec.recommend_new_user(liked_items=["50", "172"], attributes={"age": "25-34"})
    rec.add_item("new-1", name="Orbit", text="A space opera ...", tags={"genre": ["Sci-Fi"]})
    rec.explain("1", "172")                            # ranked graph paths as sentences

Everything comes from the checkpoint written by ``kgrec fit`` (weights plus the serving
bundle of :mod:`kgrec.serving`); nothing is re-read from the dataset.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from kgrec.errors import ConfigError, DataError, UnknownIdError
from kgrec.graph import INTERACTS, Vocab, data_on
from kgrec.io import atomic_write
from kgrec.serving import bundle_graph, check_bundle, encoder_from_spec

__all__ = ["Recommender"]


def _reason(exc: BaseException, limit: int = 200) -> str:
    """An exception's message as one line of at most ``limit`` characters: terminal colour codes
    dropped, whitespace collapsed and the text cut at a word (``textwrap.shorten``)."""
    text = textwrap.shorten(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)), width=limit, placeholder=" …")
    return text or type(exc).__name__

HAS_TAG = ("item", "has_tag", "tag")
HAS_ATTRIBUTE = ("user", "has_attribute", "tag")


class Recommender:
    """A trained kgrec model ready to answer queries (CPU or GPU).

    Build it with :meth:`from_checkpoint`. On construction it runs one full-graph
    forward pass and keeps the final user and item embeddings; :meth:`recommend` is then
    one matrix–vector product and a top-k per user. New users and items are placed by a
    forward pass over the training graph plus the new node and its edges (text, tags,
    KG links, liked items) — no retraining.

    Args:
        model: A :class:`~kgrec.nn.KGRecModel` with trained weights.
        bundle: The serving bundle (:func:`kgrec.serving.serving_bundle`).
        text_encoder: Encoder for new users' and items' text (``None``: the one the
            bundle names, created on first use).
        device: Where to compute (``None``: CUDA when available, else CPU).
    """

    def __init__(self, model, bundle: Mapping[str, Any], text_encoder=None, device: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.bundle = dict(bundle)
        self._encoder = text_encoder
        self.relations: list[str] = list(bundle.get("relations", []))
        self.vocabs = {nt: list(ids) for nt, ids in bundle["vocabs"].items()}
        self._vocab = {nt: Vocab(ids, nt) for nt, ids in self.vocabs.items()}  # raw id -> index
        self.item_names: list[str] = list(bundle["item_names"])
        self.data = bundle_graph(bundle)
        self.cosine = model.score_fn == "cosine"
        self._refresh()

    # ----------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | None = None,
                        text_encoder=None) -> "Recommender":
        """Load a ``kgrec fit`` checkpoint (``weights_only=True``: loading runs no code from the file).

        Args:
            path: A ``.ckpt`` written by ``kgrec fit`` (e.g. ``.../checkpoints/best.ckpt``).
            device: ``cpu``, ``cuda``... (``None``: CUDA when available, else CPU; a
                checkpoint trained on a GPU loads on a CPU-only machine).
            text_encoder: Override the text encoder named in the checkpoint (used only to
                embed new users' and items' text).

        Raises:
            DataError: the file is missing, unreadable, not a kgrec checkpoint, or from an
                incompatible version.
        """
        from kgrec.lightning.module import KGRecModule

        path = Path(path).expanduser()
        where = f"checkpoint {str(path)!r}"
        if not path.is_file():
            raise DataError(f"{where} does not exist; `kgrec fit` writes runs/lightning_logs/version_N/checkpoints/best.ckpt.")
        if device is not None and str(device).startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"device={device!r} but CUDA is not available; use device='cpu'.")
            index = torch.device(device).index
            if index is not None and index >= torch.cuda.device_count():
                raise ConfigError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA "
                                  f"device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1}).")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, not a torch file, or holding arbitrary objects
            raise DataError(f"{where} is corrupt or not a kgrec checkpoint ({_reason(exc)}).") from None
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
            raise DataError(f"{where} is not a kgrec training checkpoint (no state_dict / hyper_parameters).")
        bundle = check_bundle(ckpt.get("kgrec_serving"), where)
        hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
        # checkpoints written before the option existed always learned their KG relation weights
        hparams.setdefault("learn_relation_weights", True)
        try:
            module = KGRecModule(**hparams)
            module.load_state_dict(ckpt["state_dict"])
        except (TypeError, RuntimeError, ConfigError) as exc:
            raise DataError(f"{where} does not match this kgrec version's model ({_reason(exc)}).") from None
        return cls(module.model, bundle, text_encoder=text_encoder, device=device)

    @torch.no_grad()
    def _forward(self, data: HeteroData) -> dict[str, Tensor]:
        data = data_on(data, self.device)  # self.data stays on the CPU, where its edits happen
        return self.model(data, self.model.flatten(data))

    def _refresh(self) -> None:
        out = self._forward(self.data)
        self.user_embeddings = out["user"]
        self.item_embeddings = out["item"]
        ui = self.data[INTERACTS].edge_index
        order = torch.argsort(ui[0] * self.num_items + ui[1])
        users, items = ui[0][order], ui[1][order]
        self._seen_ptr = torch.zeros(self.num_users + 1, dtype=torch.long)
        self._seen_ptr[1:] = torch.cumsum(torch.bincount(users, minlength=self.num_users), 0)
        self._seen_items = items.to(self.device)
        self._item_unit = F.normalize(self.item_embeddings, dim=-1)
        self._explainer = None

    # ----------------------------------------------------------- ids
    @property
    def num_users(self) -> int:
        return len(self.vocabs["user"])

    @property
    def num_items(self) -> int:
        return len(self.vocabs["item"])

    @property
    def user_ids(self) -> list[str]:
        return list(self.vocabs["user"])

    @property
    def item_ids(self) -> list[str]:
        return list(self.vocabs["item"])

    def _lookup(self, node_type: str, raw_ids: Iterable, hint: str) -> list[int]:
        vocab = self._vocab[node_type]
        raw = [str(r) for r in raw_ids]
        try:
            return vocab.encode(raw).tolist()
        except UnknownIdError:  # the same error, told in serving terms: what to do about it
            bad = next(r for r in raw if r not in vocab)
            sample = ", ".join(repr(v) for v in self.vocabs[node_type][:3])
            raise UnknownIdError(
                f"unknown {node_type} id {bad!r}: the model knows {len(vocab):,} {node_type}s "
                f"(e.g. {sample}); {hint}"
            ) from None

    def _user_index(self, users: Iterable) -> list[int]:
        return self._lookup("user", users, "list them with `kgrec ids --ckpt PATH --type user`; "
                            "for a user the model has never seen use recommend_new_user(...) "
                            "(CLI: `kgrec recommend --ckpt PATH --liked ITEM,...`).")

    def _item_index(self, items: Iterable) -> list[int]:
        return self._lookup("item", items, "list them with `kgrec ids --ckpt PATH --type item`; "
                            "add a new item with add_item(...).")

    def _check_k(self, k: int, available: int | None = None) -> int:
        available = self.num_items if available is None else available
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ConfigError(f"k must be a positive integer; got {k!r}.")
        if k > available:
            raise ConfigError(f"k={k} is larger than the catalogue ({available:,} items); use k <= {available}.")
        return int(k)

    # ----------------------------------------------------------- scoring
    def _scores(self, user_vectors: Tensor) -> Tensor:
        if self.cosine:
            return F.normalize(user_vectors, dim=-1) @ self._item_unit.t()
        return user_vectors @ self.item_embeddings.t()

    def _top(self, scores: Tensor, k: int, exclude: list[Tensor]) -> tuple[Tensor, Tensor]:
        for row, items in enumerate(exclude):
            if items.numel():
                scores[row, items] = float("-inf")
        top = torch.topk(scores, min(k, scores.size(1)), dim=1)
        return top.values.cpu(), top.indices.cpu()

    def _seen(self, user: int) -> Tensor:
        return self._seen_items[self._seen_ptr[user]:self._seen_ptr[user + 1]]

    def _frame(self, users: Sequence[str], values: Tensor, indices: Tensor) -> pd.DataFrame:
        rows = []
        for r, user in enumerate(users):
            for rank, (score, item) in enumerate(zip(values[r].tolist(), indices[r].tolist()), 1):
                if score == float("-inf"):
                    break
                rows.append((user, rank, self.vocabs["item"][item], self.item_names[item], score))
        return pd.DataFrame(rows, columns=["user", "rank", "item", "name", "score"])

    @torch.no_grad()
    def recommend(self, user_ids: str | Sequence[str], k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` items per user.

        Args:
            user_ids: A raw user id or a sequence of them.
            k: Items per user, ``1 <= k <= num_items``.
            exclude_seen: Leave out each user's training items.

        Returns:
            Columns ``user``, ``rank`` (1-based), ``item``, ``name``, ``score``.

        Raises:
            UnknownIdError: an id the model has not seen (use :meth:`recommend_new_user`).
        """
        k = self._check_k(k)
        users = [user_ids] if isinstance(user_ids, str) else [str(u) for u in user_ids]
        index = self._user_index(users)
        scores = self._scores(self.user_embeddings[index])
        exclude = [self._seen(u) for u in index] if exclude_seen else []
        return self._frame(users, *self._top(scores, k, exclude))

    @torch.no_grad()
    def score(self, user: str, items: Sequence[str]) -> pd.Series:
        """Scores of ``items`` for one known user, indexed by item id (higher is better)."""
        u = self._user_index([user])[0]
        idx = self._item_index(items)
        scores = self._scores(self.user_embeddings[[u]])[0, idx].cpu().numpy()
        return pd.Series(scores, index=pd.Index([str(i) for i in items], name="item"), name="score")

    @torch.no_grad()
    def similar_items(self, item: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` items nearest to ``item`` by cosine of their embeddings (``item`` itself excluded).

        Returns:
            Columns ``rank``, ``item``, ``name``, ``score``.
        """
        k = self._check_k(k, self.num_items - 1)
        i = self._item_index([item])[0]
        sims = (self._item_unit[i] @ self._item_unit.t()).unsqueeze(0)
        values, indices = self._top(sims, k, [torch.tensor([i], device=sims.device)])
        return self._frame([str(item)], values, indices).drop(columns="user")

    @torch.no_grad()
    def top_users(self, item: str, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """The ``k`` users who score ``item`` highest (e.g. the audience of a new item).

        Returns:
            Columns ``rank``, ``user``, ``score``.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= self.num_users:
            raise ConfigError(f"k must be an integer in 1..{self.num_users} (the number of users); got {k!r}.")
        i = self._item_index([item])[0]
        item_vec = self._item_unit[i] if self.cosine else self.item_embeddings[i]
        users = F.normalize(self.user_embeddings, dim=-1) if self.cosine else self.user_embeddings
        scores = users @ item_vec
        if exclude_seen:
            ui = self.data[INTERACTS].edge_index
            scores[ui[0][ui[1] == i].to(scores.device)] = float("-inf")
        top = torch.topk(scores, int(k))
        rows = [(r, self.vocabs["user"][u], s) for r, (s, u) in
                enumerate(zip(top.values.tolist(), top.indices.tolist()), 1) if s != float("-inf")]
        return pd.DataFrame(rows, columns=["rank", "user", "score"])

    # ----------------------------------------------------------- cold start
    def _text_encoder(self):
        if self._encoder is None:
            self._encoder = encoder_from_spec(self.bundle.get("text_encoder"))
        return self._encoder

    def _encode_text(self, node_type: str, text: str | None) -> Tensor | None:
        if node_type not in self.data.node_types or "x" not in self.data[node_type]:
            return None
        dim = self.data[node_type].x.size(1)
        if not text:
            return torch.zeros(1, dim)
        encoder = self._text_encoder()
        if encoder is None:
            raise ConfigError("this checkpoint records no text encoder; pass text_encoder=... to from_checkpoint.")
        x = encoder.encode([text], show_progress=False).float().cpu()
        if x.size(1) != dim:
            raise ConfigError(f"the text encoder gives {x.size(1)}-d vectors but the model was trained on {dim}-d text.")
        return x

    def _with_node(self, node_type: str, x: Tensor | None,
                   edges: Mapping[tuple[str, str, str], tuple[list[int], list[int], list[int] | None]]) -> HeteroData:
        """A copy of the graph plus one ``node_type`` node (index ``n``) with ``edges`` and their reverses."""
        data = self.data.clone()
        new = int(data[node_type].num_nodes)
        data[node_type].num_nodes = new + 1
        if x is not None:
            data[node_type].x = torch.cat([data[node_type].x, x.to(data[node_type].x)], 0)
        for et, (src, dst, rel) in edges.items():
            if not src:
                continue
            rev = (et[2], "rev_" + et[1], et[0])
            ei = torch.tensor([src, dst], dtype=torch.long)
            for etype, index in ((et, ei), (rev, ei.flip(0))):
                if etype not in data.edge_types:
                    raise ConfigError(f"the model was trained without {etype} edges; cannot add them"
                                      f"{' (its KG links go to entities only)' if etype[1] == 'kg' else ''}.")
                data[etype].edge_index = torch.cat([data[etype].edge_index, index], 1)
                if rel is not None:
                    data[etype].edge_type = torch.cat([data[etype].edge_type, torch.tensor(rel, dtype=torch.long)])
        return data

    @torch.no_grad()
    def _place(self, data: HeteroData, node_type: str) -> Tensor:
        """Final embedding of the last ``node_type`` node of ``data`` (a graph with one new node).

        Exact, but computed on the node's ``L``-hop in-neighbourhood only: every node
        closer than ``L`` hops keeps all its in-edges, and the subgraph is normalised with
        ``data``'s full degrees (see :func:`kgrec.nn.flatten_graph`), so the result equals
        a forward pass over the whole graph at a fraction of the cost (ml-1m: the whole
        graph is 1.6M edges; 722 ms -> 49 ms p50 per new user, benchmarks/latency.py).

        Why not :class:`kgrec.sampler.HeteroNeighborSampler` with fanout ``-1``: it builds
        the CSC layout of the whole graph on construction, i.e. once per query here; this
        keeps the training graph's in-edge index (:meth:`_base_layout`) and adds the few
        new edges by a scan.
        """
        base = self._base_layout()  # in-edge index and degrees of self.data, built once
        # ``data`` is self.data plus edges appended at the end of each edge store
        extra = {et: torch.arange(base[et][2], data[et].num_edges) for et in data.edge_types}
        new = int(data[node_type].num_nodes) - 1
        nodes = {nt: [] for nt in data.node_types}
        seen = {nt: {} for nt in data.node_types}

        def add(nt, i):
            if i not in seen[nt]:
                seen[nt][i] = len(nodes[nt])
                nodes[nt].append(i)

        add(node_type, new)
        frontier = [(node_type, new)]
        edges = {et: [] for et in data.edge_types}
        for _ in range(len(self.model.convs)):
            nxt = []
            for nt, v in frontier:
                for et in data.edge_types:
                    if et[2] != nt:
                        continue
                    ptr, order, _, _ = base[et]
                    eids = order[ptr[v]:ptr[v + 1]] if v < ptr.numel() - 1 else order[:0]
                    more = extra[et]
                    if more.numel():
                        eids = torch.cat([eids, more[data[et].edge_index[1][more] == v]])
                    edges[et].append(eids)
                    for u in data[et].edge_index[0][eids].tolist():
                        if u not in seen[et[0]]:
                            nxt.append((et[0], u))
                        add(et[0], u)
            frontier = nxt
        sub = HeteroData()
        for nt in data.node_types:
            n_id = torch.tensor(nodes[nt], dtype=torch.long)
            sub[nt].n_id = n_id
            sub[nt].num_nodes = len(n_id)
            if "x" in data[nt]:
                sub[nt].x = data[nt].x[n_id]
        for et, parts in edges.items():
            eids = torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)
            ei = data[et].edge_index[:, eids]
            src_map, dst_map = seen[et[0]], seen[et[2]]
            sub[et].edge_index = torch.tensor([[src_map[a] for a in ei[0].tolist()],
                                               [dst_map[b] for b in ei[1].tolist()]], dtype=torch.long).view(2, -1)
            if "edge_type" in data[et]:
                sub[et].edge_type = data[et].edge_type[eids]
        degrees = {}
        for et in data.edge_types:
            d_out, d_in = (torch.cat([d, d.new_zeros(int(data[t].num_nodes) - d.numel())])
                           for d, t in ((base[et][3][0], et[0]), (base[et][3][1], et[2])))
            ei = data[et].edge_index[:, extra[et]]
            d_out.index_add_(0, ei[0], torch.ones(ei.size(1)))
            d_in.index_add_(0, ei[1], torch.ones(ei.size(1)))
            degrees[et] = (d_out.to(self.device), d_in.to(self.device))
        saved = getattr(self.model, "_degrees", None)
        self.model._degrees = degrees
        try:
            sub = sub.to(self.device)
            out = self.model(sub, self.model.flatten(sub))
        finally:
            self.model._degrees = saved
        return out[node_type][0]

    def _base_layout(self) -> dict:
        """Per edge type of the current graph: ``(ptr, order, num_edges, (d_out, d_in))``;
        ``order[ptr[v]:ptr[v+1]]`` are the edge ids into node ``v``."""
        if getattr(self, "_layout", None) is None or self._layout[0] is not self.data:
            from kgrec.nn import full_degrees

            degrees = full_degrees(self.data)
            layout = {}
            for et in self.data.edge_types:
                ei = self.data[et].edge_index
                n = int(self.data[et[2]].num_nodes)
                ptr = torch.zeros(n + 1, dtype=torch.long)
                ptr[1:] = torch.cumsum(torch.bincount(ei[1], minlength=n), 0)
                layout[et] = (ptr, torch.argsort(ei[1], stable=True), ei.size(1),
                              tuple(d.cpu() for d in degrees[et]))
            self._layout = (self.data, layout)
        return self._layout[1]

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
        if raw and not len(self._vocab.get("tag", ())):
            # build_graph always makes the tag node type, empty when trained without side info
            what = "item tags" if node_type == "item" else "user attributes"
            raise ConfigError(f"the model was trained without tags (0 tag nodes), so {what} cannot place "
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
        k = self._check_k(k)
        liked = self._item_index(liked_items)
        attrs = self._tags({f: [v] for f, v in (attributes or {}).items()}, "user")
        if not liked and not attrs:
            raise ConfigError("a new user needs liked_items and/or attributes to be placed.")
        new = self.num_users
        text = self._user_text(liked, attributes or {})
        data = self._with_node("user", self._encode_text("user", text), {
            INTERACTS: ([new] * len(liked), liked, None),
            HAS_ATTRIBUTE: ([new] * len(attrs), attrs, None),
        })
        vec = self._place(data, "user").unsqueeze(0)
        exclude = [torch.tensor(liked, dtype=torch.long, device=self.device)] if exclude_seen else []
        return self._frame([user_id], *self._top(self._scores(vec), k, exclude))

    def _user_text(self, liked: list[int], attributes: Mapping[str, str]) -> str | None:
        from kgrec.text.templates import render_segments

        segments = self.bundle.get("user_segments") or []
        if not segments:
            return None
        values: dict[str, str | None] = {c: None for c in self.bundle.get("user_attribute_columns", [])}
        values.update({str(k): str(v) for k, v in attributes.items()})
        values["user"] = None
        counts: dict[str, int] = {}
        tag_ids = self.vocabs.get("tag", [])
        if liked and HAS_TAG in self.data.edge_types:
            ei = self.data[HAS_TAG].edge_index
            for t in ei[1][torch.isin(ei[0], torch.tensor(liked))].tolist():
                value = tag_ids[t].split("=", 1)[-1]
                counts[value] = counts.get(value, 0) + 1
        top = sorted(counts, key=lambda v: (-counts[v], v))[:3]
        values["top_tags"] = ", ".join(top) or None
        values["liked_items"] = ", ".join(self.item_names[i] for i in liked[:3]) or None
        return render_segments(segments, values, what="user")

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
            kg: ``(relation, entity)`` pairs, the item as the head (``("film.film.directed_by", "m.0abc")``).

        Returns:
            Its embedding row as a Series (also stored: the item is now in the catalogue of
            :meth:`recommend`, :meth:`score`, :meth:`similar_items` and :meth:`explain`).
        """
        item_id = str(item_id)
        if item_id in self._vocab["item"]:
            raise ConfigError(f"item id {item_id!r} already exists; choose a new id.")
        tag_idx = self._tags(tags, "item")
        kg_src, kg_dst, kg_rel, kg_item = [], [], [], ([], [], [])
        for relation, entity in kg:
            if relation not in self.relations:
                raise UnknownIdError(f"unknown KG relation {relation!r}; known relations: {', '.join(self.relations[:8])}"
                                     f"{', ...' if len(self.relations) > 8 else ''}.")
            rel = self.relations.index(relation)
            if "entity" in self._vocab and str(entity) in self._vocab["entity"]:
                kg_src.append(self.num_items)
                kg_dst.append(self._lookup("entity", [entity], "")[0])
                kg_rel.append(rel)
            elif str(entity) in self._vocab["item"]:
                kg_item[0].append(self.num_items)
                kg_item[1].append(self._lookup("item", [entity], "")[0])
                kg_item[2].append(rel)
            else:
                raise UnknownIdError(f"unknown KG entity {entity!r}: not an entity or item of the training graph.")
        name = name or item_id
        if text is None:
            text = self._item_text(name, tag_idx)
        if not text and not tag_idx and not kg_rel and not kg_item[0]:
            raise ConfigError(f"item {item_id!r} needs text, tags or KG links to be placed.")
        new = self.num_items
        data = self._with_node("item", self._encode_text("item", text), {
            HAS_TAG: ([new] * len(tag_idx), tag_idx, None),
            ("item", "kg", "entity"): (kg_src, kg_dst, kg_rel),
            ("item", "kg", "item"): (kg_item[0], kg_item[1], kg_item[2]),
        })
        vec = self._place(data, "item")
        self.data = data
        self.vocabs["item"].append(item_id)
        self._vocab["item"] = Vocab(self.vocabs["item"], "item")
        self.item_names.append(name)
        self.item_embeddings = torch.cat([self.item_embeddings, vec.unsqueeze(0)])
        self._item_unit = F.normalize(self.item_embeddings, dim=-1)
        self._explainer = None
        return pd.Series(vec.cpu().numpy(), name=item_id)

    def _item_text(self, name: str, tag_idx: list[int]) -> str:
        from kgrec.text.templates import render_segments

        segments = self.bundle.get("item_segments") or ["{title}"]
        values: dict[str, str | None] = {f: None for segment in segments for f in _fields(segment)}
        first = _fields(segments[0])
        values[first[0] if first else "title"] = name
        tag_ids = self.vocabs.get("tag", [])
        for col in self.bundle.get("item_tag_columns", []):
            chosen = [tag_ids[t].split("=", 1)[1] for t in tag_idx if tag_ids[t].startswith(col + "=")]
            values[col] = ", ".join(chosen) or None
        return render_segments(segments, values, what="item") or name

    # ----------------------------------------------------------- explain / export
    def explain(self, user: str, item: str, k: int = 3):
        """The ``k`` strongest graph paths from ``user`` to ``item`` as :class:`~kgrec.explain.Explanation`.

        See :class:`kgrec.explain.Explainer` for the paths and how they are ranked.
        """
        from kgrec.explain import Explainer

        if self._explainer is None:
            self._explainer = Explainer(self)
        return self._explainer.explain(user, item, k)

    def embeddings(self, node_type: str = "item") -> pd.DataFrame:
        """Final embeddings of ``user`` or ``item`` nodes, one row per raw id (columns ``e0..e{d-1}``)."""
        if node_type not in ("user", "item"):
            raise ConfigError(f"node_type must be 'user' or 'item'; got {node_type!r}.")
        emb = (self.user_embeddings if node_type == "user" else self.item_embeddings).cpu().numpy()
        frame = pd.DataFrame(emb, columns=[f"e{j}" for j in range(emb.shape[1])])
        frame.insert(0, node_type, self.vocabs[node_type])
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
        out.mkdir(parents=True, exist_ok=True)
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
        return (f"Recommender(dataset={self.bundle.get('dataset')!r}, users={self.num_users:,}, "
                f"items={self.num_items:,}, dim={self.item_embeddings.size(1)}, device={str(self.device)!r})")


def _fields(segment: str) -> list[str]:
    import string

    return [f[1] for f in string.Formatter().parse(segment) if f[1]]

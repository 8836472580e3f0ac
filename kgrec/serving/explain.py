"""Why was an item recommended? Graph paths from the user to the item, ranked and put in words.

For a (user, item) pair the :class:`Explainer` builds a small :mod:`networkx` graph over
the pair's neighbourhood — the user, the items the user interacted with in training,
and the target item's tags, KG entities, KG-linked items and co-users — and enumerates
the simple paths of up to three hops from the user to the item:

* ``user → liked item → tag → item`` ("Because you liked Heat (1995), which shares its
  genre Thriller with Ronin (1998).")
* ``user → liked item → KG entity → item`` ("... which shares its director with ...")
* ``user → liked item → item`` over a KG relation ("... whose sequel is ...")
* ``user → liked item → other user → item`` (co-interaction: "... 37 people who liked it
  also liked ...", one path shown — through the least active of those people — and the
  count reported; counted with tensor ops, so a popular item's thousands of co-users
  cost one path in the networkx graph).

Every hop is an edge of the training graph. A path's strength is the cosine of the
liked item's and the target item's final embeddings (how close the model put them),
divided by :math:`\\log_2(2 + \\deg(c))` of the connecting node :math:`c`, so a shared
director counts more than a shared "Drama" and a niche co-user more than a hub. The
co-interaction count multiplies a co-interaction path's strength by
:math:`\\log_2(1 + n)`. The top ``k`` hold the best path of each kind found, then
the strongest others (one per liked item and kind), ordered by strength.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

import networkx as nx
import torch
import torch.nn.functional as F

from kgrec.eval.metrics import check_k
from kgrec.graph import INTERACTS, GraphData, reverse

__all__ = ["Explanation", "Explainer", "humanize_relation"]

#: Freebase-style relation names to words (anything else: last dotted part, underscores to spaces).
_RELATION_WORDS = {
    "directed_by": "director", "director": "director", "written_by": "writer", "writer": "writer",
    "produced_by": "producer", "producer": "producer", "actor": "actor", "starring": "actor",
    "genre": "genre", "films_in_this_genre": "genre", "film_genre": "genre",
    "award_won": "award", "award_nomination": "award nomination", "language": "language",
    "country": "country", "production_companies": "production company", "production_company": "production company",
    "rating": "content rating", "content_rating": "content rating", "subjects": "subject", "film_subject": "subject",
    "cinematography": "cinematographer", "cinematographer": "cinematographer", "sequel": "sequel",
    "prequel": "prequel",
}


def humanize_relation(name: str) -> str:
    """``"film.film.directed_by"`` -> ``"director"``; ``"film.director.film"`` -> ``"director"``.

    Freebase names read ``domain.type.property``; when the property is the item type
    itself (``film.director.film``: director -> film) the type names the role.
    """
    parts = [p for p in str(name).split(".") if p]
    if not parts:
        return str(name)
    word = parts[-1]
    if len(parts) >= 2 and word == parts[0]:  # film.director.film, film.writer.film
        word = parts[-2]
    if word in _RELATION_WORDS:
        return _RELATION_WORDS[word]
    for suffix in ("_of", "_by", "_in"):  # sequel_of -> sequel, born_in -> born
        if word.endswith(suffix) and len(word) > len(suffix):
            word = word[: -len(suffix)]
            break
    return _RELATION_WORDS.get(word, word.replace("_", " "))


@dataclass
class Explanation:
    """One path from a user to a recommended item.

    Attributes:
        kind: ``tag``, ``kg_entity``, ``kg_item`` or ``co_interaction``.
        path: The hops as ``(node_type, raw_id)`` from the user to the item.
        relations: The edge label of each hop (``interacts``, ``has_tag``, KG relation names...).
        via: The liked item the path goes through (raw id).
        score: Path strength (higher first).
        text: The path as a sentence.
        support: How many parallel paths this one stands for (co-interaction: co-users).
    """

    kind: str
    path: list[tuple[str, str]]
    relations: list[str]
    via: str
    score: float
    text: str
    support: int = 1
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "score": self.score, "via": self.via,
                "support": self.support, "path": [f"{t}:{i}" for t, i in self.path], "relations": self.relations}


class Explainer:
    """Path explanations over a trained model's graph (see the module docs).

    Args:
        graph: The training graph (every hop of a path is one of its edges).
        item_embeddings: ``(num_items, d)`` final item embeddings: a path is as strong as the
            cosine of its liked item and the target item.
    """

    def __init__(self, graph: GraphData, item_embeddings: torch.Tensor) -> None:
        self.graph = graph
        self.vocabs = {nt: [str(i) for i in v.ids] for nt, v in graph.vocabs.items()}
        self.item_names = graph.display_names()
        self.item_unit = F.normalize(item_embeddings.detach().float().cpu(), dim=-1)
        data = graph.data
        self.adj: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        for et in data.edge_types:
            ei = data[et].edge_index.cpu()
            rel = data[et].edge_type.cpu() if "edge_type" in data[et] else None
            self.adj[et] = (ei[0], ei[1], rel)
        self.degree = {nt: torch.zeros(int(data[nt].num_nodes)) for nt in data.node_types}
        for et, (src, _, _) in self.adj.items():
            self.degree[et[0]] += torch.bincount(src, minlength=self.degree[et[0]].numel()).float()

    def _out(self, et, node: int):
        if et not in self.adj:
            return torch.empty(0, dtype=torch.long), None
        src, dst, rel = self.adj[et]
        mask = src == node
        return dst[mask], (rel[mask] if rel is not None else None)

    def _name(self, node_type: str, index: int) -> str:
        if node_type == "item":
            return self.item_names[index]
        raw = self.vocabs[node_type][index]
        return raw.split("=", 1)[1] if node_type == "tag" and "=" in raw else raw

    def neighbourhood(self, user: int, item: int) -> nx.MultiDiGraph:
        """The pair's neighbourhood as a directed multigraph; edge attribute ``label``."""
        g = nx.MultiDiGraph()
        u, t = ("user", user), ("item", item)
        liked, _ = self._out(INTERACTS, user)
        liked_set = set(liked.tolist())
        for j in liked_set:
            g.add_edge(u, ("item", j), label="interacts")
        # connectors of the target item, then which liked items reach them
        for et in self.adj:
            if et[0] != "item" or et[2] == "user":
                continue
            if et[1] == "rev_interacts":
                continue
            conn, rel = self._out(et, item)  # item -> connector; the reverse edge connector -> item exists
            if reverse(et) not in self.adj:
                continue
            for c, r in zip(conn.tolist(), (rel.tolist() if rel is not None else [None] * len(conn))):
                label = self.graph.relations[r] if r is not None else et[1]
                if et[2] == "item" and c in liked_set:  # a direct KG link between a liked item and the target
                    # target --et--> c, so c --reverse--> target; forward: "c's <relation> is target"
                    g.add_edge(("item", c), t, label=label, kind="kg_item", forward=et[1].startswith("rev_"))
                    continue
                if et[2] == "item":
                    continue
                # liked items with the same connector: liked --et--> c --rev--> target
                src, dst, srel = self.adj[et]
                hit = (dst == c) & torch.isin(src, liked) if liked.numel() else torch.zeros_like(dst, dtype=torch.bool)
                if srel is not None:
                    hit &= srel == r
                for j in src[hit].unique().tolist():
                    g.add_edge(("item", j), (et[2], c), label=label)
                    g.add_edge((et[2], c), t, label=label, kind="tag" if et[2] == "tag" else "kg_entity")
        # co-interaction: users of the target who also liked one of the user's items
        ui_src, ui_dst, _ = self.adj[INTERACTS]
        co_users = ui_src[ui_dst == item]
        co_users = co_users[co_users != user]
        if co_users.numel() and liked.numel():
            # one representative path per liked item (through its least active co-user);
            # the number of co-users travels on the edge as ``support``
            pairs = torch.isin(ui_src, co_users) & torch.isin(ui_dst, liked)
            vs, js = ui_src[pairs], ui_dst[pairs]
            if vs.numel():
                order = torch.argsort(self.degree["user"][vs] * (vs.max() + 1) + vs, stable=True)
                vs, js = vs[order], js[order]
                uniq, inverse, counts = torch.unique(js, return_inverse=True, return_counts=True)
                first = torch.full((uniq.numel(),), len(js), dtype=torch.long)
                first.scatter_reduce_(0, inverse, torch.arange(len(js)), reduce="amin")
                for j, v, n in zip(uniq.tolist(), vs[first].tolist(), counts.tolist()):
                    g.add_edge(("item", j), ("user", v), label="rev_interacts", support=n)
                    g.add_edge(("user", v), t, label="interacts", kind="co_interaction")
        return g

    def explain(self, user: int, item: int, k: int = 3) -> list[Explanation]:
        """The ``k`` strongest explanations of ``item`` for ``user`` (indices; fewer when fewer
        paths exist)."""
        k = check_k(k, "k")
        u, t = int(user), int(item)
        g = self.neighbourhood(u, t)
        src, dst = ("user", u), ("item", t)
        if src not in g or dst not in g:
            return []
        unit = self.item_unit
        co: dict[int, list] = {}
        found: list[Explanation] = []
        seen_keys = set()
        for path in nx.all_simple_paths(g, src, dst, cutoff=3):
            if len(path) < 3 or path[1][0] != "item":
                continue
            via = path[1][1]
            labels = [next(iter(g.get_edge_data(a, b).values()))["label"] for a, b in zip(path, path[1:])]
            closeness = float(unit[via] @ unit[t])
            if len(path) == 4 and path[2][0] == "user":  # co-interaction, grouped per liked item
                co.setdefault(via, []).append((path, labels))
                continue
            key = tuple(path)
            if key in seen_keys:
                continue
            seen_keys.add(key)
            if len(path) == 3:  # liked item --KG relation--> target
                forward = next(iter(g.get_edge_data(path[1], path[2]).values())).get("forward", True)
                found.append(self._make("kg_item", path, labels, via, closeness, 1, forward=forward))
            else:
                c_type, c = path[2]
                strength = closeness / math.log2(2 + float(self.degree[c_type][c]))
                found.append(self._make("tag" if c_type == "tag" else "kg_entity", path, labels, via, strength, 1))
        for via, paths in co.items():
            closeness = float(unit[via] @ unit[t])
            path, labels = paths[0]
            support = int(next(iter(g.get_edge_data(path[1], path[2]).values()))["support"])
            hub = math.log2(2 + float(self.degree["user"][path[2][1]]))
            found.append(self._make("co_interaction", path, labels, via,
                                    closeness * math.log2(1 + support) / hub, support))
        found.sort(key=lambda e: -e.score)
        # varied top-k: the best path of each kind first, one per (liked item, kind), then by score
        out, used, kinds = [], set(), set()
        for e in found:
            if e.kind not in kinds:
                kinds.add(e.kind)
                used.add((e.via, e.kind))
                out.append(e)
        out = out[:k]
        for e in found:
            if len(out) == k:
                break
            if (e.via, e.kind) not in used:
                used.add((e.via, e.kind))
                out.append(e)
        return sorted(out, key=lambda e: -e.score)

    def _make(self, kind, path, labels, via, score, support, forward: bool = True) -> Explanation:
        names = {"liked": self._name("item", via), "target": self._name("item", path[-1][1])}
        if kind == "kg_item":
            rel = humanize_relation(labels[1])
            text = (f"Because you liked {names['liked']}, whose {rel} is {names['target']}." if forward else
                    f"Because you liked {names['liked']}, which is the {rel} of {names['target']}.")
        elif kind == "tag":
            field_name = self.vocabs["tag"][path[2][1]].split("=", 1)[0].replace("_", " ")
            text = (f"Because you liked {names['liked']}, which shares its {field_name} "
                    f"{self._name('tag', path[2][1])} with {names['target']}.")
        elif kind == "kg_entity":
            role = humanize_relation(labels[1])
            entity = self._name("entity", path[2][1])
            article = "an" if role[:1] in "aeiou" else "a"
            text = (f"Because you liked {names['liked']}, which shares {article} {role} ({entity}) "
                    f"with {names['target']}.")
        else:
            people = "person" if support == 1 else "people"
            text = (f"Because you liked {names['liked']}: {support} {people} who liked it "
                    f"also liked {names['target']}.")
        hops = [(nt, self.vocabs[nt][i]) for nt, i in path]
        return Explanation(kind, hops, labels, self.vocabs["item"][via], float(score), text, int(support))

"""``KGRecModule``: one training step of the kgrec model; Lightning owns the loop."""

from __future__ import annotations

import json
import logging
import math
import numbers
from pathlib import Path
from typing import Any, Literal, Optional

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from kgrec.errors import ConfigError
from kgrec.graph import INTERACTS
from kgrec.io import atomic_write_text
from kgrec.nn import KGRecModel, alignment_loss, bpr_loss, gramian_loss, sampled_softmax_loss

__all__ = ["KGRecModule", "EmbeddingScorer"]

log = logging.getLogger("kgrec")


class EmbeddingScorer:
    """Scores users against all items from precomputed embeddings (what :func:`kgrec.eval.evaluate` calls).

    Args:
        user: ``(num_users, d)`` user embeddings.
        item: ``(num_items, d)`` item embeddings.
        cosine: Score by cosine instead of dot product.
    """

    is_fitted = True

    def __init__(self, user: Tensor, item: Tensor, cosine: bool = False) -> None:
        if cosine:
            user, item = F.normalize(user, dim=-1), F.normalize(item, dim=-1)
        self.user, self.item = user, item

    @property
    def score_device(self) -> torch.device:
        return self.user.device

    def score(self, users: Tensor) -> Tensor:
        return self.user[users.to(self.user.device)] @ self.item.t()


class KGRecModule(L.LightningModule):
    """Trains :class:`~kgrec.nn.KGRecModel` for link prediction; validates by full ranking.

    Each step takes a batch of TRAIN (user, item) edges — with the whole training graph
    (``sampling="full"``) or a sampled k-hop subgraph around them (``"neighbor"``) —
    and minimises a ranking loss plus ``align_weight`` times the text–graph alignment
    loss. Validation and test run :func:`kgrec.eval.evaluate` (the protocol every
    baseline is scored by) on full-graph embeddings and log ``val/ndcg@20`` etc.

    Args:
        graph_info: Derived from the data (linked from ``data.graph_info`` by the CLI):
            ``num_nodes``, ``text_dims``, ``edge_types``, ``num_kg_relations``.
        hidden_channels: Embedding width.
        num_layers: Message-passing layers.
        use_id_embeddings: Learn id embeddings for users, items and tags.
        use_text: Use text features as node inputs.
        score: ``dot`` or ``cosine`` scores.
        loss: ``ials`` (squared error on the batch's edges plus ``unobserved_weight`` times
            every batch user's squared scores over all items, through the items' Gramian —
            :func:`kgrec.nn.gramian_loss`), ``softmax`` (sampled softmax / InfoNCE over sampled
            and optionally in-batch negatives) or ``bpr``. ``ials`` is the default: on ml-100k
            (random split, valid NDCG@20) it reaches 0.302 where the best softmax setting
            reached 0.292; cold items (dev cold_item split, strict Recall@20, trained negatives,
            ``cold_weight`` 1) 0.266 against softmax's 0.292.
        temperature: Softmax temperature of the ranking loss.
        num_negatives: Uniformly sampled negative items shared by a batch (softmax), or
            one per positive (bpr); unused by ``ials``, which covers every item. Under
            neighbour sampling "every item" and "uniformly" mean over the items of the batch's
            sampled subgraph, which lean towards items the batch's users can reach (popular
            ones); full-graph training covers the whole trained catalogue.
        unobserved_weight: ``ials`` only: weight of the unobserved (user, item) pairs.
        unobserved_user_power: ``ials`` only: each training edge's unobserved term is weighted
            by its user's training degree to the power ``-unobserved_user_power``, normalised to
            mean 1 over the edges. 0: every edge alike, so a user's unobserved pairs weigh in
            proportion to their interactions; 1: every user alike, as in iALS. 0 by default.
            Measured on ml-100k (valid NDCG@20, seed 2026, 0 -> 0.5, batch 1,024; test rows:
            ``kgrec-upow`` in the ml-100k benchmark results): random 0.3029 -> 0.3055, temporal 0.1603 ->
            0.1624, but cold_item 0.2991 -> 0.2873 with strict cold-start Recall@20 (test)
            0.2793 -> 0.2548. At batch 4,096 (the ml-100k default since 2026-12-06), and on
            ml-1m (its suite settings, lr 0.01, batch 16,384), 0.5 trains unstably (ml-100k
            random valid 0.3049 -> 0.2739): valid NDCG@20 falls after the first epochs and early stopping ends it
            (valid 0.1676, test 0.1819 / 0.1969 against valid 0.2606, test 0.3064 / 0.3147 at
            0); before ``cold_detach`` was the default, waiting longer (patience 20) recovered
            it noisily to test 0.2918 / 0.3022, still below 0. Power 1 fell on both warm splits
            (temporal valid 0.1488, random 0.1778). So 0 stays the default.
        unobserved_item_power: ``ials`` only: each negative item's unobserved pairs are weighted
            by its training popularity (interaction count, at least 1) to this power, normalised
            to mean 1 over the negative pool — the popularity-aware weighting of missing data of
            element-wise ALS (He et al., 2016): with a positive power a popular item a user
            skipped counts as stronger evidence of dislike than a rare one. 0 (every item alike)
            by default: on ml-100k random (valid NDCG@20, seed 2026,
            ``benchmarks/suites/ml100k_sweep.yaml``) powers 0.5 / 0.25 / 0 / -0.25 / -0.5 reach
            0.2451 / 0.2928 / 0.3029 / 0.3033 / 0.2920 — on MovieLens popularity is signal.
        in_batch_negatives: Softmax loss also uses the batch's other positives as
            negatives (popularity-biased; see :func:`kgrec.nn.sampled_softmax_loss`).
        align_weight: Weight of the text–graph alignment loss (0 disables it). Off by default:
            with the ``ials`` loss and the cold-view loss, which trains the text pathway to rank,
            the alignment only pulled the shared text projection elsewhere. Measured on
            ml-100k (dev cold_item split, seed 7): strict-cold Recall@20 0.291 without it, 0.266
            with weight 0.1, warm valid NDCG@20 0.306 both; random split valid NDCG@20 0.302
            without, 0.301 with. (Under the softmax loss without the cold view it had helped
            cold items: 0.193 -> 0.227.)
        align_temperature: Temperature of the alignment loss.
        align_max_nodes: The alignment contrasts each node of a batch with every other one of its
            type (``B x B`` logits); above this many distinct nodes per type it uses a random
            subset of them. Bounds its cost: at ml-1m's 16,384-edge steps (~5,000 distinct
            users) the uncapped loss made CPU epochs ~60 s against ~23 s without alignment;
            capped at 2,048, 31 s against 21 s (1 thread, three epochs each).
        align_stop_graph: Stop the alignment gradient at the graph embeddings, so alignment
            teaches the text projection to land where the graph puts a node (what places a
            cold node) without pulling the ranking space toward the text. Measured on
            ml-100k random (valid NDCG@20): with the gradient flowing into the graph side
            the alignment cost accuracy (weight 1.0: 0.29 -> 0.14).
        lr: Adam learning rate.
        weight_decay: L2 penalty on the batch's input embeddings (0.01 suits ``ials``;
            ``softmax`` did best with 0 and ``dropout`` 0.2).
        dropout: Dropout on input embeddings.
        side_weight: Weight of tag/attribute/KG messages relative to user–item messages
            (see :func:`kgrec.nn.flatten_graph`).
        id_dropout: Share of items trained without their id embedding per step (cold-start
            robustness; see :class:`kgrec.nn.KGRecModel`).
        learn_relation_weights: Learn a weight per KG relation (see :class:`kgrec.nn.KGRecModel`;
            off by default, it hurt cold items).
        cold_weight: Weight of the cold-view ranking loss: each batch item is also scored as
            if it were cold (its projected text and its tag/KG messages only, see
            ``KGRecModel.forward(cold_view=True)``) against the batch users, with the same
            loss as the main ranking loss and the users' query vectors detached. This trains what
            places a cold item on every training edge (0 disables it; it needs item text).
            Measured on ml-100k's cold_item split with the KG (strict cold Recall@20), softmax
            loss: 0.216 without it, 0.269 with weight 0.5. With ``ials`` and trained negatives
            (dev split, seed 7): weight 0.5 0.246, 1.0 0.266, 2.0 0.274, while valid NDCG@20
            fell 0.309, 0.306, 0.303.
        cold_detach: The cold-view loss trains the item text projection only, not the id
            embeddings and tag / entity states the warm ranking shares with it (see
            :class:`kgrec.nn.KGRecModel`). On by default: it gained valid accuracy on every
            ml-100k split and on ml-1m, for some strict cold-start accuracy (``kgrec-nodetach``
            switches it off).
        warm_text: Users and items with a trained id embedding add their projected text to it
            (``False``: text places only those without one; see :class:`kgrec.nn.KGRecModel`,
            ``kgrec-coldtext``). On by default: without it strict cold-start accuracy fell.
        negative_items: Which items the ranking losses push down as negatives (softmax and
            bpr samples, the ``ials`` penalty): ``all`` catalogue items, or only the
            ``trained`` ones — items with at least one training interaction. An item nobody
            could interact with in training (a cold item) is no evidence of dislike; with
            ``all`` the loss buries such items through the text and side pathways that
            place cold items. Measured on ml-100k's cold_item split (dev seed 7, strict cold
            Recall@20): ``ials`` 0.149 with ``all``, 0.246 with ``trained``; ``softmax`` 0.273
            and 0.292; warm valid NDCG@20 unchanged (0.308 / 0.309, 0.299 / 0.300). On a split
            without cold items it changes little: only items with no training interaction leave
            the pool.
        eval_ks: Cut-offs logged at validation / test.
        val_max_users: Validate on at most this many users, a fixed random subset of those
            with a valid item (the same every epoch; see ``max_users`` of
            :func:`kgrec.eval.evaluate`); ``None`` validates on all of them. For large graphs,
            where the full ranking costs in proportion to the users ranked (a synthetic 300k-user
            / 60k-item world on the 2-core CPU: 80 s for its 151k validation users, 43 s for
            100k of them, 12 s for 30k, against 11 s per training step). Test always ranks for
            every user.
    """

    def __init__(
        self,
        graph_info: dict[str, Any],
        hidden_channels: int = 64,
        num_layers: int = 2,
        use_id_embeddings: bool = True,
        use_text: bool = True,
        score: Literal["dot", "cosine"] = "dot",
        loss: Literal["softmax", "bpr", "ials"] = "ials",
        temperature: float = 1.0,
        num_negatives: int = 1024,
        unobserved_weight: float = 20.0,
        unobserved_user_power: float = 0.0,
        unobserved_item_power: float = 0.0,
        in_batch_negatives: bool = False,
        align_weight: float = 0.0,
        align_temperature: float = 0.2,
        align_stop_graph: bool = True,
        align_max_nodes: int = 2048,
        lr: float = 5e-3,
        weight_decay: float = 0.01,
        dropout: float = 0.0,
        side_weight: float = 0.1,
        id_dropout: float = 0.0,
        learn_relation_weights: bool = False,
        cold_weight: float = 1.0,
        negative_items: Literal["all", "trained"] = "trained",
        cold_detach: bool = True,
        warm_text: bool = True,
        eval_ks: tuple[int, ...] = (10, 20, 50),
        val_max_users: Optional[int] = None,
    ) -> None:
        super().__init__()
        if loss not in ("softmax", "bpr", "ials"):
            raise ConfigError(f"The 'loss' parameter must be one of {{'softmax', 'bpr', 'ials'}}; got {loss!r}.")
        if unobserved_weight < 0:
            raise ConfigError(f"The 'unobserved_weight' parameter must be >= 0; got {unobserved_weight}.")
        if temperature <= 0 or align_temperature <= 0:
            raise ConfigError(f"temperatures must be > 0; got {temperature} and {align_temperature}.")
        if not unobserved_user_power >= 0:
            raise ConfigError(f"The 'unobserved_user_power' parameter must be >= 0; got {unobserved_user_power}.")
        if (isinstance(unobserved_item_power, bool) or not isinstance(unobserved_item_power, numbers.Real)
                or not math.isfinite(unobserved_item_power)):
            raise ConfigError(f"The 'unobserved_item_power' parameter must be a finite number; "
                              f"got {unobserved_item_power!r}.")
        if num_negatives <= 0:
            raise ConfigError(f"The 'num_negatives' parameter must be a positive integer; got {num_negatives}.")
        if align_weight < 0:
            raise ConfigError(f"The 'align_weight' parameter must be >= 0; got {align_weight}.")
        if isinstance(align_max_nodes, bool) or not isinstance(align_max_nodes, int) or align_max_nodes < 2:
            raise ConfigError(f"The 'align_max_nodes' parameter must be an integer >= 2; got {align_max_nodes!r}.")
        if cold_weight < 0:
            raise ConfigError(f"The 'cold_weight' parameter must be >= 0; got {cold_weight}.")
        if negative_items not in ("all", "trained"):
            raise ConfigError(
                f"The 'negative_items' parameter must be one of {{'all', 'trained'}}; got {negative_items!r}."
            )
        if val_max_users is not None and (
            isinstance(val_max_users, bool) or not isinstance(val_max_users, numbers.Integral) or val_max_users < 1
        ):
            raise ConfigError(f"The 'val_max_users' parameter must be a positive integer or None (null in YAML); "
                              f"got {val_max_users!r}.")
        missing = {"num_nodes", "text_dims", "edge_types", "num_kg_relations"} - set(graph_info)
        if missing:
            raise ConfigError(f"graph_info lacks {sorted(missing)}; it is derived from the data module.")
        self.save_hyperparameters()
        use_text = use_text and bool(graph_info["text_dims"])
        self.model = KGRecModel(
            num_nodes=dict(graph_info["num_nodes"]),
            text_dims=dict(graph_info["text_dims"]),
            edge_types=[tuple(et) for et in graph_info["edge_types"]],
            num_kg_relations=int(graph_info["num_kg_relations"]),
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            use_id_embeddings=use_id_embeddings,
            use_text=use_text,
            score=score,
            dropout=dropout,
            side_weight=side_weight,
            id_dropout=id_dropout,
            learn_relation_weights=learn_relation_weights,
            cold_detach=cold_detach,
            warm_text=warm_text,
        )
        self.align = align_weight > 0 and use_text
        self.cold_view = cold_weight > 0 and use_text and "item" in graph_info["text_dims"]
        self._full: HeteroData | None = None
        self._flat = None
        self._user_weight: Tensor | None = None  # per-user weight of the ials unobserved term (on_fit_start)
        self._item_weight: Tensor | None = None  # per-item weight of the ials unobserved term (on_fit_start)
        self.last_eval: dict[str, dict] = {}

    # ---------------------------------------------------------------- graph
    def _datamodule(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or getattr(dm, "graph", None) is None:
            raise ConfigError("KGRecModule needs a KGRecDataModule (trainer.fit(module, datamodule=...)).")
        return dm

    def check_graph(self, graph_info: dict) -> None:
        """Refuse a graph whose shape differs from the one this module was built for."""
        mine = self.hparams.graph_info
        for key in ("num_nodes", "text_dims", "edge_types", "num_kg_relations"):
            if _canon(mine.get(key)) != _canon(graph_info.get(key)):
                raise ConfigError(
                    f"this model was trained on a different graph: {key} was {mine.get(key)!r}, "
                    f"the data gives {graph_info.get(key)!r}. Use the same data settings as at training."
                )

    def full_graph(self) -> tuple[HeteroData, Any]:
        """The training graph on this module's device and its flattened propagation layout."""
        if self._full is None or self._full_device != self.device:
            self._full = self._datamodule().graph_on(self.device)
            self._flat = self.model.flatten(self._full)
            self._full_device = self.device
        return self._full, self._flat

    def check_fanouts(self, datamodule) -> None:
        """Neighbour sampling needs one fanout per message-passing layer."""
        if getattr(datamodule, "sampling", "full") == "neighbor":
            fanouts = list(datamodule.num_neighbors)
            if len(fanouts) != self.hparams.num_layers:
                raise ConfigError(
                    f"data.num_neighbors has {len(fanouts)} hop(s) {fanouts} but model.num_layers is "
                    f"{self.hparams.num_layers}; give one fanout per layer."
                )

    #: Trainer precisions the module runs under: float32, or float32 weights with half-precision
    #: autocast. ``*-true`` half (or double) precision casts the weights themselves, against the
    #: float32 text features, sparse propagation and embeddings the model is written around.
    PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")

    def setup(self, stage: str) -> None:
        if stage == "predict" and self.trainer.world_size > 1:
            # one step ranks every user; Lightning's predict sampler cannot split a single step
            raise ConfigError(f"kgrec predict ranks every user in one pass; run it on one device "
                              f"(--trainer.devices 1), not {self.trainer.world_size}.")
        precision = str(getattr(self.trainer, "precision", "32-true"))
        if precision not in self.PRECISIONS:
            raise ConfigError(
                f"trainer.precision {precision!r} is not supported by kgrec; use one of "
                f"{', '.join(self.PRECISIONS)} (on a GPU, 'bf16-mixed' gives the half-precision speed: "
                "weights stay float32, matrix products run in bfloat16)."
            )

    def on_fit_start(self) -> None:
        dm = self._datamodule()
        self.check_graph(dm.graph_info)
        self.check_split(dm)  # resuming on another split would train on its valid / test pairs
        self.check_fanouts(dm)
        users, items = dm.train_edges()  # TRAIN edges only: the degrees below never see valid / test
        user_degree = torch.bincount(users, minlength=dm.graph.num_users)
        self.model.set_id_mask("user", user_degree > 0)
        item_degree = torch.bincount(items, minlength=dm.graph.num_items)
        self.model.set_id_mask("item", item_degree > 0)
        sampled = getattr(dm, "sampling", "full") == "neighbor"
        self.model.set_full_graph(dm.graph.data if sampled else None, device=self.device)
        self._full = self._full_pool = None
        self._user_weight = None
        power = self.hparams.unobserved_user_power
        if self.hparams.loss == "ials" and power:
            degree = user_degree.double()
            weight = degree.clamp(min=1).pow(-power)
            self._user_weight = (weight * len(users) / (degree * weight).sum()).float().to(self.device)
        self._item_weight = None
        power = self.hparams.unobserved_item_power
        if self.hparams.loss == "ials" and power:
            weight = item_degree.double().clamp(min=1).pow(power)
            pool = item_degree > 0 if self.hparams.negative_items == "trained" else slice(None)
            self._item_weight = (weight / weight[pool].mean()).float().to(self.device)

    # ---------------------------------------------------------------- steps
    def forward(self, data: HeteroData, flat=None) -> dict[str, Tensor]:
        return self.model(data, flat)

    def _negative_pool(self, data: HeteroData) -> Tensor | None:
        """Local indices of the items of ``data`` that may serve as negatives (``None``: all)."""
        if self.hparams.negative_items == "all":
            return None
        store = data["item"]
        if "n_id" in store:  # a sampled subgraph: its own items
            return self.model.id_mask_item[store.n_id].nonzero().view(-1)
        # the full graph: the same pool every step, found once (nonzero waits for the GPU)
        pool = getattr(self, "_full_pool", None)
        if pool is None or pool.device != self.device:
            pool = self._full_pool = self.model.id_mask_item.nonzero().view(-1).to(self.device)
        return pool

    def _ranking_loss(self, out: dict[str, Tensor], users: Tensor, items: Tensor,
                      item_key: str = "item", fixed_users: bool = False, pool: Tensor | None = None,
                      user_weight: Tensor | None = None, item_weight: Tensor | None = None) -> Tensor:
        hp = self.hparams
        # index_select rather than x[idx]: its backward is an index_add, where indexing's is an
        # accumulating index_put that took a fifth of an ml-1m CPU step
        u, catalogue = out["user"].index_select(0, users), out[item_key]
        if fixed_users:
            u = u.detach()
        if hp.score == "cosine":  # every loss below then works on dot products of unit vectors
            u, catalogue = F.normalize(u, dim=-1), F.normalize(catalogue, dim=-1)
        i = catalogue.index_select(0, items)
        if hp.loss == "ials":
            items_all = catalogue if pool is None else catalogue.index_select(0, pool)
            return gramian_loss(u, i, items_all, hp.unobserved_weight, user_weight, item_weight)
        size = catalogue.size(0) if pool is None else pool.numel()
        neg = torch.randint(0, size, (len(items) if hp.loss == "bpr" else hp.num_negatives,), device=items.device)
        if pool is not None:
            neg = pool[neg]
        if hp.loss == "bpr":
            return bpr_loss((u * i).sum(-1), (u * catalogue[neg]).sum(-1))
        return sampled_softmax_loss(u, i, catalogue[neg], hp.temperature, items, neg,
                                    in_batch=hp.in_batch_negatives)

    def _alignment(self, data: HeteroData, out: dict[str, Tensor], ids: dict[str, Tensor]) -> Tensor:
        losses = []
        for nt, idx in ids.items():
            if nt not in self.model.text_proj or "x" not in data[nt]:
                continue
            idx = torch.unique(idx)
            if idx.numel() > self.hparams.align_max_nodes:
                idx = idx[torch.randperm(idx.numel(), device=idx.device)[: self.hparams.align_max_nodes]]
            text = self.model.project_text(nt, data[nt].x[idx])
            graph = out[nt][idx].detach() if self.hparams.align_stop_graph else out[nt][idx]
            losses.append(alignment_loss(graph, text, self.hparams.align_temperature))
        return torch.stack(losses).mean() if losses else out["user"].new_zeros(())

    def training_step(self, batch, batch_idx: int) -> Tensor:
        if isinstance(batch, HeteroData):  # sampled k-hop subgraph around the seed edges
            data, flat = batch, None
            label_index = batch[INTERACTS].edge_label_index
            users, items = label_index[0], label_index[1]
        else:
            data, flat = self.full_graph()
            users, items = batch
        h0: dict[str, Tensor] | None = {} if self.hparams.weight_decay else None
        out = self.model(data, flat, cold_view=self.cold_view, inputs=h0)
        pool = self._negative_pool(data)
        user_weight = None
        if self._user_weight is not None:
            global_users = data["user"].n_id[users] if "n_id" in data["user"] else users
            user_weight = self._user_weight[global_users]  # on the module's device since on_fit_start
        item_weight = None
        if self._item_weight is not None:  # one weight per item the unobserved term covers
            local = pool if pool is not None else torch.arange(out["item"].size(0), device=items.device)
            item_weight = self._item_weight[data["item"].n_id[local] if "n_id" in data["item"] else local]
        loss = rank = self._ranking_loss(out, users, items, pool=pool, user_weight=user_weight,
                                         item_weight=item_weight)
        self.log("train/rank_loss", rank, prog_bar=False, batch_size=len(users))
        if self.cold_view:
            cold = self._ranking_loss(out, users, items, item_key="item_cold", fixed_users=True, pool=pool,
                                      user_weight=user_weight, item_weight=item_weight)
            loss = loss + self.hparams.cold_weight * cold
            self.log("train/cold_loss", cold, batch_size=len(users))
        if self.align:
            align = self._alignment(data, out, {"user": users, "item": items})
            loss = loss + self.hparams.align_weight * align
            self.log("train/align_loss", align, batch_size=len(users))
        if self.hparams.weight_decay:  # on the inputs of this forward pass (before dropout)
            # each batch edge's user and item once: a node's squared norm times its edge count,
            # not a gather of (batch, d) rows
            reg = sum((torch.bincount(idx, minlength=h0[nt].size(0)).to(h0[nt].dtype)
                       * h0[nt].pow(2).sum(-1)).sum() for nt, idx in (("user", users), ("item", items)))
            loss = loss + self.hparams.weight_decay * reg / len(users)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(users))
        return loss

    @torch.no_grad()
    def embeddings(self) -> dict[str, Tensor]:
        """Full-graph embeddings of every node type (eval mode, float32 even under mixed precision)."""
        was_training = self.training
        self.eval()
        data, flat = self.full_graph()
        with torch.autocast(self.device.type, enabled=False):
            out = self.model(data, flat)
        self.train(was_training)
        return out

    def _evaluate(self, on: str) -> dict[str, float]:
        from kgrec.eval import evaluate

        dm = self._datamodule()
        out = self.embeddings()
        scorer = EmbeddingScorer(out["user"], out["item"], cosine=self.hparams.score == "cosine")
        # Scores in float32 whatever the trainer's precision: bfloat16 scores tie items that
        # differ below its 8-bit mantissa, and ties would change the ranking being measured.
        with torch.autocast(self.device.type, enabled=False):
            sample = self.hparams.get("val_max_users") if on == "valid" else None
            result = evaluate(scorer, dm.split, dm.graph, on=on, ks=self.hparams.eval_ks, max_users=sample)
            metrics = dict(result.metrics)
            self.last_eval[on] = metrics
            if on == "test" and dm.split.cold_items:
                cold = evaluate(scorer, dm.split, dm.graph, on=on, ks=self.hparams.eval_ks, cold_only=True)
                self.last_eval["cold"] = dict(cold.metrics)
                metrics.update({f"cold_{k}": v for k, v in cold.metrics.items()})
        stage = "val" if on == "valid" else "test"
        log.info("epoch %d %s: ndcg@20 %.4f recall@20 %.4f", self.current_epoch, on,
                 metrics.get("ndcg@20", float("nan")), metrics.get("recall@20", float("nan")))
        for name, value in metrics.items():
            # every rank evaluates the same full ranking; sync_dist keeps DDP logging consistent
            self.log(f"{stage}/{name}", float(value), prog_bar=name == "ndcg@20", batch_size=1,
                     sync_dist=self._trainer is not None and self.trainer.world_size > 1)
        return metrics

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate("valid")

    def test_step(self, batch, batch_idx: int) -> None:
        metrics = self._evaluate("test")
        if self._trainer is None:
            return
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank asks, rank zero writes
        if not self.trainer.is_global_zero:
            return
        payload = {k: float(v) for k, v in metrics.items()}
        targets = [Path(log_dir)] if log_dir else []
        # `kgrec test --ckpt_path <run>/checkpoints/best.ckpt` runs in a new logger version; the
        # metrics also go beside the run that trained the checkpoint, where a user looks for them
        trained_run = None
        ckpt = self.trainer.ckpt_path
        if ckpt and Path(ckpt).parent.name == "checkpoints":
            trained_run = Path(ckpt).resolve().parent.parent
            if all(trained_run != t.resolve() for t in targets):
                targets.append(trained_run)
        for directory in targets:
            try:
                _write_json(directory / "test_metrics.json", payload)
            except OSError as err:
                if directory != trained_run:
                    raise
                # a read-only archive of a trained run must not cost the test run its result
                log.warning("could not write test metrics beside the checkpoint's run (%s): %s", directory, err)
                continue
            log.info("test metrics written to %s", directory / "test_metrics.json")

    def predict_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        return {k: v.cpu() for k, v in self.embeddings().items()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["kgrec_graph_info"] = dict(self.hparams.graph_info)
        # what kgrec.Recommender needs to serve without the dataset (built once per fit)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and getattr(dm, "graph", None) is not None:
            checkpoint["kgrec_train_fingerprint"] = dm.train_fingerprint()
            if getattr(self, "_serving", None) is None:
                from kgrec.serving import serving_bundle

                self._serving = serving_bundle(dm)
            checkpoint["kgrec_serving"] = self._serving

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._full = self._full_pool = None
        self._trained_on = checkpoint.get("kgrec_train_fingerprint")  # None: saved before kgrec recorded it

    def check_split(self, datamodule) -> None:
        """Refuse data whose TRAIN interactions differ from the loaded checkpoint's.

        The vocabularies, and so the graph's shape, do not depend on the split: a checkpoint
        trained with another seed, ratio or strategy would load and score without complaint,
        and its test metrics would count interactions it trained on.
        """
        trained_on = getattr(self, "_trained_on", None)
        if trained_on is None:  # a fresh module, or a checkpoint saved before kgrec recorded it
            return
        given = datamodule.train_fingerprint()
        if trained_on != given:
            then, now = int(trained_on.split(":")[0]), int(given.split(":")[0])
            counts = (f"{then:,} train pairs then, {now:,} now" if then != now
                      else f"as many train pairs, {now:,}, but not the same ones")
            raise ConfigError(
                f"this checkpoint was trained on other train interactions than the data gives ({counts}); "
                "its valid / test metrics here could count interactions it trained on. Use the data "
                "settings it was trained with (data.split, data.seed, data.ratios, data.path)."
            )

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:
            # every rank was seeded alike (seed_everything, or a spawned process's default): left
            # so, each draws the same negatives and dropout masks and DDP adds no negatives
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def on_validation_start(self) -> None:
        self.check_split(self._datamodule())

    def on_test_start(self) -> None:
        self.check_split(self._datamodule())

    def on_predict_start(self) -> None:
        self.check_split(self._datamodule())


def _canon(value):
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2))

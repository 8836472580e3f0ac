"""``KGRecModule``: one training step of the kgrec model and one evaluation chunk; Lightning owns the loop."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import asdict
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from kgrec.config import coerce_config
from kgrec.errors import ConfigError
from kgrec.eval import DEFAULT_KS, mean_over_users, rank_batch, top_k
from kgrec.graph import INTERACTS, GraphData, graph_state
from kgrec.nn import GNNConfig, KGRecModel, alignment_loss, bpr_loss, gramian_loss, sampled_softmax_loss, score_matrix
from kgrec.nn.scoring import score_space
from kgrec.training.checkpoint import checkpoint_fields
from kgrec.training.config import LossConfig, OptimConfig

__all__ = ["KGRecModule"]

log = logging.getLogger("kgrec")

#: What ``graph_info`` must agree on between a trained module and the data it meets.
_SHAPE_KEYS = ("num_nodes", "text_dims", "edge_types", "num_kg_relations")


class KGRecModule(L.LightningModule):
    """Trains :class:`~kgrec.nn.KGRecModel` for link prediction; validates and tests by full ranking.

    A training step takes a batch of TRAIN (user, item) edges — with the whole training
    graph (``loader.sampling: full``) or a sampled k-hop subgraph around them
    (``neighbor``) — and minimises the ranking loss, the cold-view loss and the optional
    alignment loss (:class:`~kgrec.training.LossConfig`). A validation, test or predict step
    takes a chunk of users from the data module and ranks every item for them with the
    evaluator's kernel (:func:`kgrec.eval.rank_batch`, the protocol every baseline is
    scored by); per-user metrics are gathered across processes at the epoch's end and
    logged as ``val/ndcg@20``, ``test/recall@20``, ``test/cold_ndcg@20`` and so on.

    Args:
        graph_info: Derived from the data (linked from ``data.graph_info`` by the CLI):
            ``num_nodes``, ``text_dims``, ``edge_types``, ``num_kg_relations``.
        gnn: The architecture (:class:`~kgrec.nn.GNNConfig`).
        loss: The objective (:class:`~kgrec.training.LossConfig`).
        optim: The optimiser (:class:`~kgrec.training.OptimConfig`).
    """

    #: Trainer precisions the module runs under: float32, or float32 weights with half-precision
    #: autocast. ``*-true`` half (or double) precision casts the weights themselves, against the
    #: float32 text features, sparse propagation and embeddings the model is written around.
    PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")

    def __init__(self, graph_info: Mapping[str, Any], gnn: GNNConfig = GNNConfig(), loss: LossConfig = LossConfig(),
                 optim: OptimConfig = OptimConfig()) -> None:
        super().__init__()
        self.gnn_config = coerce_config(GNNConfig, gnn, "model.gnn")
        self.loss_config = coerce_config(LossConfig, loss, "model.loss")
        self.optim_config = coerce_config(OptimConfig, optim, "model.optim")
        # plain containers: the checkpoint loads with weights_only=True, load_from_checkpoint rebuilds
        self.save_hyperparameters({"graph_info": dict(graph_info), "gnn": asdict(self.gnn_config),
                                   "loss": asdict(self.loss_config), "optim": asdict(self.optim_config)})
        self.model = KGRecModel(graph_info, self.gnn_config)
        text = bool(graph_info["text_dims"])
        self.align = self.loss_config.align_weight > 0 and text
        self.cold_view = self.loss_config.cold_weight > 0 and "item" in graph_info["text_dims"]
        self.graph: GraphData | None = None
        self._graph_on = None
        self._full: tuple | None = None
        self._full_pool: Tensor | None = None
        self._user_weight: Tensor | None = None  # per-user weight of the ials unobserved term (on_fit_start)
        self._item_weight: Tensor | None = None  # per-item weight of the ials unobserved term (on_fit_start)
        self._trained_on: str | None = None
        self._sampled = False
        self._fingerprint = None
        self._graph_state: tuple | None = None
        self._ranked: dict[int, list] = defaultdict(list)
        self._emb: dict[str, Tensor] | None = None
        self.last_eval: dict[str, dict] = {}

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        """Take the graph from the data module (once) and check it fits this model."""
        precision = str(getattr(self.trainer, "precision", "32-true"))
        if precision not in self.PRECISIONS:
            raise ConfigError(
                f"trainer.precision {precision!r} is not supported by kgrec; use one of "
                f"{', '.join(self.PRECISIONS)} (on a GPU, 'bf16-mixed' gives the half-precision speed: "
                "weights stay float32, matrix products run in bfloat16)."
            )
        self.attach(getattr(self.trainer, "datamodule", None))

    def attach(self, datamodule) -> None:
        """Take the training graph (and its shared device copy) from ``datamodule``; what
        :meth:`setup` does. Checks that the graph fits this model and the fanouts its layers."""
        if datamodule is None or not hasattr(datamodule, "graph_on"):
            raise ConfigError("KGRecModule needs a KGRecDataModule (trainer.fit(module, datamodule=...)).")
        self.check_graph(datamodule.graph_info)
        self._sampled = datamodule.loader.sampling == "neighbor"
        if self._sampled and len(datamodule.loader.num_neighbors) != self.gnn_config.num_layers:
            fanouts = list(datamodule.loader.num_neighbors)
            raise ConfigError(
                f"data.loader.num_neighbors has {len(fanouts)} hop(s) {fanouts} but model.gnn.num_layers is "
                f"{self.gnn_config.num_layers}; give one fanout per layer."
            )
        self.graph, self._graph_on = datamodule.graph, datamodule.graph_on
        self._fingerprint = datamodule.train_fingerprint
        self._full = self._full_pool = None

    def check_graph(self, graph_info: Mapping[str, Any]) -> None:
        """Refuse a graph whose shape differs from the one this module was built for."""
        mine = self.hparams.graph_info
        for key in _SHAPE_KEYS:
            if _canon(mine.get(key)) != _canon(graph_info.get(key)):
                raise ConfigError(
                    f"this model was trained on a different graph: {key} was {mine.get(key)!r}, "
                    f"the data gives {graph_info.get(key)!r}. Use the same data settings as at training."
                )

    def check_split(self) -> None:
        """Refuse data whose TRAIN interactions differ from the loaded checkpoint's
        (its valid / test metrics would count interactions it trained on)."""
        if self._trained_on is None:  # a fresh module, or a checkpoint saved before kgrec recorded it
            return
        given = self._fingerprint()
        if self._trained_on != given:
            then, now = int(self._trained_on.split(":")[0]), int(given.split(":")[0])
            counts = (f"{then:,} train pairs then, {now:,} now" if then != now
                      else f"as many train pairs, {now:,}, but not the same ones")
            raise ConfigError(
                f"this checkpoint was trained on other train interactions than the data gives ({counts}); "
                "its valid / test metrics here could count interactions it trained on. Use the data "
                "settings it was trained with (data.dataset: path, split, split_seed, ratios)."
            )

    def full_graph(self) -> tuple[HeteroData, Any]:
        """The training graph on this module's device and its flattened propagation layout."""
        if self._full is None or self._full[0] != self.device:
            data = self._graph_on(self.device)
            self._full = (self.device, data, self.model.flatten(data))
        return self._full[1], self._full[2]

    def on_fit_start(self) -> None:
        self.check_split()  # resuming on another split would train on its valid / test pairs
        users, items = self.graph.data[INTERACTS].edge_index  # TRAIN edges only: no valid / test degree
        user_degree = torch.bincount(users, minlength=self.graph.num_users)
        self.model.set_id_mask("user", user_degree > 0)
        item_degree = torch.bincount(items, minlength=self.graph.num_items)
        self.model.set_id_mask("item", item_degree > 0)
        self.model.set_full_graph(self.graph.data if self._sampled else None, device=self.device)
        self._full = self._full_pool = None
        loss = self.loss_config
        self._user_weight = self._item_weight = None
        if loss.name == "ials" and loss.unobserved_user_power:
            degree = user_degree.double()
            weight = degree.clamp(min=1).pow(-loss.unobserved_user_power)
            self._user_weight = (weight * len(users) / (degree * weight).sum()).float().to(self.device)
        if loss.name == "ials" and loss.unobserved_item_power:
            weight = item_degree.double().clamp(min=1).pow(loss.unobserved_item_power)
            pool = item_degree > 0 if loss.negative_items == "trained" else slice(None)
            self._item_weight = (weight / weight[pool].mean()).float().to(self.device)

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:
            # every rank was seeded alike (seed_everything, or a spawned process's default): left
            # so, each draws the same negatives and dropout masks and DDP adds no negatives
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    # ---------------------------------------------------------------- training
    def forward(self, data: HeteroData, flat=None) -> dict[str, Tensor]:
        return self.model(data, flat)

    def _negative_pool(self, data: HeteroData) -> Tensor | None:
        """Local indices of the items of ``data`` that may serve as negatives (``None``: all)."""
        if self.loss_config.negative_items == "all":
            return None
        store = data["item"]
        if "n_id" in store:  # a sampled subgraph: its own items
            return self.model.id_mask_item[store.n_id].nonzero().view(-1)
        # the full graph: the same pool every step, found once (nonzero waits for the GPU)
        pool = self._full_pool
        if pool is None or pool.device != self.device:
            pool = self._full_pool = self.model.id_mask_item.nonzero().view(-1).to(self.device)
        return pool

    def _ranking_loss(self, out: dict[str, Tensor], users: Tensor, items: Tensor,
                      item_key: str = "item", fixed_users: bool = False, pool: Tensor | None = None,
                      user_weight: Tensor | None = None, item_weight: Tensor | None = None) -> Tensor:
        loss = self.loss_config
        # index_select rather than x[idx]: its backward is an index_add, where indexing's is an
        # accumulating index_put that took a fifth of an ml-1m CPU step
        u, catalogue = out["user"].index_select(0, users), out[item_key]
        if fixed_users:
            u = u.detach()
        u, catalogue = score_space(self.gnn_config.score, u, catalogue)  # every loss below: dot products
        i = catalogue.index_select(0, items)
        if loss.name == "ials":
            items_all = catalogue if pool is None else catalogue.index_select(0, pool)
            return gramian_loss(u, i, items_all, loss.unobserved_weight, user_weight, item_weight)
        size = catalogue.size(0) if pool is None else pool.numel()
        neg = torch.randint(0, size, (len(items) if loss.name == "bpr" else loss.num_negatives,), device=items.device)
        if pool is not None:
            neg = pool[neg]
        if loss.name == "bpr":
            return bpr_loss((u * i).sum(-1), (u * catalogue[neg]).sum(-1))
        return sampled_softmax_loss(u, i, catalogue[neg], loss.temperature, items, neg,
                                    in_batch=loss.in_batch_negatives)

    def _alignment(self, data: HeteroData, out: dict[str, Tensor], ids: dict[str, Tensor]) -> Tensor:
        loss = self.loss_config
        losses = []
        for nt, idx in ids.items():
            if nt not in self.model.text_proj or "x" not in data[nt]:
                continue
            idx = torch.unique(idx)
            if idx.numel() > loss.align_max_nodes:
                idx = idx[torch.randperm(idx.numel(), device=idx.device)[: loss.align_max_nodes]]
            text = self.model.project_text(nt, data[nt].x[idx])
            graph = out[nt][idx].detach() if loss.align_stop_graph else out[nt][idx]
            losses.append(alignment_loss(graph, text, loss.align_temperature))
        return torch.stack(losses).mean() if losses else out["user"].new_zeros(())

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self.loss_config
        if isinstance(batch, HeteroData):  # sampled k-hop subgraph around the seed edges
            data, flat = batch, None
            label_index = batch[INTERACTS].edge_label_index
            users, items = label_index[0], label_index[1]
        else:
            data, flat = self.full_graph()
            users, items = batch
        h0: dict[str, Tensor] | None = {} if loss.weight_decay else None
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
        total = rank = self._ranking_loss(out, users, items, pool=pool, user_weight=user_weight,
                                          item_weight=item_weight)
        self.log("train/rank_loss", rank, prog_bar=False, batch_size=len(users))
        if self.cold_view:
            cold = self._ranking_loss(out, users, items, item_key="item_cold", fixed_users=True, pool=pool,
                                      user_weight=user_weight, item_weight=item_weight)
            total = total + loss.cold_weight * cold
            self.log("train/cold_loss", cold, batch_size=len(users))
        if self.align:
            align = self._alignment(data, out, {"user": users, "item": items})
            total = total + loss.align_weight * align
            self.log("train/align_loss", align, batch_size=len(users))
        if loss.weight_decay:  # on the inputs of this forward pass (before dropout)
            # each batch edge's user and item once: a node's squared norm times its edge count,
            # not a gather of (batch, d) rows
            reg = sum((torch.bincount(idx, minlength=h0[nt].size(0)).to(h0[nt].dtype)
                       * h0[nt].pow(2).sum(-1)).sum() for nt, idx in (("user", users), ("item", items)))
            total = total + loss.weight_decay * reg / len(users)
        self.log("train/loss", total, prog_bar=True, batch_size=len(users))
        return total

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.optim_config.lr)

    # ---------------------------------------------------------------- ranking
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

    def _start_ranking(self) -> None:
        self._emb = self.embeddings()
        self._ranked = defaultdict(list)

    def _scores(self, users: Tensor) -> Tensor:
        # float32 whatever the trainer's precision: bfloat16 scores tie items that differ below
        # its 8-bit mantissa, and ties would change the ranking being measured
        with torch.autocast(self.device.type, enabled=False):
            return score_matrix(self._emb["user"][users], self._emb["item"], self.gnn_config.score)

    def _rank(self, batch: dict, dataloader_idx: int) -> None:
        values = rank_batch(self._scores(batch["users"]), batch, DEFAULT_KS)
        self._ranked[dataloader_idx].append((batch["users"], values))

    def _metrics(self, dataloader_idx: int) -> dict[str, float]:
        """Mean per-user metrics of one loader, gathered from every process (each user once)."""
        ranked = self._ranked.get(dataloader_idx, [])
        if not ranked:
            return {}
        users = torch.cat([u for u, _ in ranked])
        values = {k: torch.cat([v[k] for _, v in ranked]) for k in ranked[0][1]}
        if self.trainer.world_size > 1:
            users = self.all_gather(users).reshape(-1)
            values = {k: self.all_gather(v).reshape(-1) for k, v in values.items()}
        _, per_user = mean_over_users(users.cpu().numpy(), {k: v.cpu().numpy() for k, v in values.items()})
        return {k: float(np.mean(v)) for k, v in per_user.items()}

    def _log_metrics(self, stage: str, metrics: dict[str, float]) -> None:
        distributed = self.trainer.world_size > 1
        for name, value in metrics.items():
            # every process holds the same gathered value; sync_dist keeps Lightning's epoch logging consistent
            self.log(f"{stage}/{name}", value, prog_bar=name == "ndcg@20", batch_size=1, sync_dist=distributed)

    def on_validation_epoch_start(self) -> None:
        self.check_split()
        self._start_ranking()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._rank(batch, 0)

    def on_validation_epoch_end(self) -> None:
        metrics = self._metrics(0)
        self.last_eval["valid"] = metrics
        log.info("epoch %d valid: ndcg@20 %.4f recall@20 %.4f", self.current_epoch,
                 metrics.get("ndcg@20", float("nan")), metrics.get("recall@20", float("nan")))
        self._log_metrics("val", metrics)
        self._emb, self._ranked = None, defaultdict(list)

    def on_test_epoch_start(self) -> None:
        self.check_split()
        self._start_ranking()

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._rank(batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        metrics = self._metrics(0)
        self.last_eval["test"] = metrics
        cold = self._metrics(1)
        if cold:
            self.last_eval["cold"] = cold
            metrics = {**metrics, **{f"cold_{k}": v for k, v in cold.items()}}
        log.info("test: ndcg@20 %.4f recall@20 %.4f", metrics.get("ndcg@20", float("nan")),
                 metrics.get("recall@20", float("nan")))
        self._log_metrics("test", metrics)
        self._emb, self._ranked = None, defaultdict(list)

    def on_predict_epoch_start(self) -> None:
        self.check_split()
        self._start_ranking()

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Tensor]:
        """The top-``k`` items of a chunk of users: ``users`` ``(B,)``, ``items`` and ``scores``
        ``(B, k)`` (``-inf`` where fewer than ``k`` items were left)."""
        values, indices = top_k(self._scores(batch["users"]), batch["k"], tuple(batch["excluded"]))
        return {"users": batch["users"], "items": indices, "scores": values}

    def on_predict_epoch_end(self) -> None:
        self._emb = None

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Add what :func:`kgrec.load` needs beside the weights: the training graph, the train
        fingerprint and the parameters of the run (:func:`kgrec.training.checkpoint_fields`)."""
        if self.graph is None:
            return
        if self._graph_state is None or self._graph_state[0] is not self.graph:
            self._graph_state = (self.graph, graph_state(self.graph))  # once per fit, not per save
        checkpoint.update(checkpoint_fields(self._graph_state[1], self._fingerprint(), self._run_params()))

    def _run_params(self) -> dict[str, Any]:
        """The :class:`~kgrec.models.KGRec` parameters of this run, as plain containers."""
        params: dict[str, Any] = {"gnn": asdict(self.gnn_config), "loss": asdict(self.loss_config),
                                  "optim": asdict(self.optim_config)}
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            params["inputs"], params["loader"] = asdict(dm.inputs), asdict(dm.loader)
        seed = os.environ.get("PL_GLOBAL_SEED")  # what seed_everything (the CLI's seed_everything) set
        if seed is not None:
            params["seed"] = int(seed)
        if self._trainer is not None:
            params["schedule"] = {"max_epochs": int(self.trainer.max_epochs or 1)}
            stopper = getattr(self.trainer, "early_stopping_callback", None)
            if stopper is not None:
                params["schedule"]["patience"] = int(stopper.patience)
        return params

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._full = self._full_pool = None
        # None: saved before kgrec recorded it
        self._trained_on = checkpoint.get("train_fingerprint", checkpoint.get("kgrec_train_fingerprint"))


def _canon(value):
    if isinstance(value, dict):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value

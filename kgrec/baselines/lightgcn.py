"""LightGCN (He et al., 2020) on the full user-item train graph, via PyG."""

from __future__ import annotations

import time

import torch
from torch_geometric.nn.models import LightGCN as PyGLightGCN
from torch_geometric.utils import to_torch_csr_tensor

from kgrec.baselines._training import (
    BPRTripletSampler,
    FactorScorer,
    check_positive_float,
    check_positive_int,
)
from kgrec.eval.early_stopping import EarlyStopping

__all__ = ["LightGCN"]


class LightGCN(FactorScorer):
    r"""LightGCN through :class:`torch_geometric.nn.models.LightGCN`, full-graph, BPR loss.

    Users and items are one homogeneous node set (users ``0..U-1``, items
    ``U..U+I-1``) joined by the *train* interactions in both directions. Every step
    propagates the whole graph (``num_layers`` parameter-free symmetric-normalised
    convolutions, layer mean) and applies PyG's ``recommendation_loss`` (BPR +
    ``lambda_reg`` L2 on the layer-0 embeddings of the batch) to a batch of
    (user, positive, sampled negative) triples. Early-stopped on validation ``ndcg@20``.

    Args:
        embedding_dim: Embedding width.
        num_layers: Propagation layers.
        lr: Adam learning rate.
        lambda_reg: L2 weight of ``recommendation_loss``.
        batch_size: Triples per optimiser step (large batches suit full-graph training).
        max_epochs: Upper bound on passes over the train pairs.
        eval_every: Epochs between validation checks.
        patience: Checks without improvement before stopping.
        seed: Seed of initialisation and sampling.
        device: Training and scoring device.

    After ``fit``: ``epoch_seconds_``, the wall time of each training epoch (sampling and
    optimiser steps; validation excluded), which ``benchmarks.train_speed`` reports.

    .. warning::
        The propagation graph is built from ``split.train`` only; passing a graph that
        contains valid or test interactions would leak them into every embedding.
    """

    def __init__(
        self,
        embedding_dim: int = 64,
        num_layers: int = 3,
        lr: float = 1e-3,
        lambda_reg: float = 1e-4,
        batch_size: int = 8192,
        max_epochs: int = 1000,
        eval_every: int = 10,
        patience: int = 5,
        seed: int = 2026,
        device: str = "cpu",
    ) -> None:
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.lr = lr
        self.lambda_reg = lambda_reg
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.patience = patience
        self.seed = seed
        self.device = device

    def _fit(self, split, graph) -> None:
        check_positive_int(self, "embedding_dim", "num_layers", "batch_size", "max_epochs", "eval_every", "patience")
        check_positive_float(self, "lr")
        check_positive_float(self, "lambda_reg", allow_zero=True)
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        dev = self.device_
        n_users = self.num_users
        coo = self.train_.tocoo()
        src = torch.from_numpy(coo.row.astype("int64"))
        dst = torch.from_numpy(coo.col.astype("int64")) + n_users
        edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
        # a sparse CSR adjacency makes PyG propagate with one SpMM per layer instead of
        # gather/scatter over edges (about 10x faster on CPU); the graph is symmetric, so
        # it is its own transpose (PyG's adj_t convention)
        n_nodes = n_users + self.num_items
        edge_index = to_torch_csr_tensor(edge_index, size=(n_nodes, n_nodes)).to(dev)
        model = PyGLightGCN(n_nodes, self.embedding_dim, self.num_layers).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        sampler = BPRTripletSampler(self.train_, gen)
        stopper = EarlyStopping("ndcg@20", patience=self.patience)
        use_valid = len(split.valid) > 0

        def refresh() -> None:
            model.eval()
            with torch.no_grad():
                emb = model.get_embedding(edge_index)
            self.user_factors_, self.item_factors_ = emb[:n_users], emb[n_users:]
            model.train()

        refresh()
        self.epoch_seconds_ = []
        for epoch in range(1, self.max_epochs + 1):
            started = time.perf_counter()
            for u, i, j in sampler.epoch(self.batch_size):
                u, i, j = u.to(dev), i.to(dev) + n_users, j.to(dev) + n_users
                emb = model.get_embedding(edge_index)
                eu = emb[u]
                pos, neg = (eu * emb[i]).sum(-1), (eu * emb[j]).sum(-1)
                loss = model.recommendation_loss(
                    pos, neg, node_id=torch.cat([u, i, j]), lambda_reg=self.lambda_reg
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
            if str(dev).startswith("cuda"):
                torch.cuda.synchronize(dev)
            self.epoch_seconds_.append(time.perf_counter() - started)
            if use_valid and (epoch % self.eval_every == 0 or epoch == self.max_epochs):
                refresh()
                stop = stopper.step(
                    self, split, graph, epoch,
                    state=lambda: (self.user_factors_.clone(), self.item_factors_.clone()),
                )
                if stop:
                    break
        if stopper.best_state is not None:
            self.user_factors_, self.item_factors_ = stopper.best_state
        else:
            refresh()
        self.best_epoch_ = stopper.best_epoch if use_valid else self.max_epochs
        self.epochs_trained_ = epoch
        self.valid_history_ = [[e, v] for e, v in stopper.history]

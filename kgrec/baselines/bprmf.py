"""Matrix factorisation trained with the BPR pairwise loss."""

from __future__ import annotations

import torch

from kgrec.baselines._training import (
    BPRTripletSampler,
    FactorScorer,
    check_positive_float,
    check_positive_int,
)
from kgrec.eval.early_stopping import EarlyStopping

__all__ = ["BPRMF"]


class BPRMF(FactorScorer):
    r"""BPR-MF (Rendle et al., 2009): :math:`\hat y_{ui} = p_u^\top q_i`, trained on
    :math:`-\log \sigma(\hat y_{ui} - \hat y_{uj})` for a train pair :math:`(u, i)` and a
    uniformly drawn item :math:`j` the user has not interacted with, plus an L2 penalty
    on the embeddings of the batch.

    Training is early-stopped on validation ``ndcg@20`` (checked every ``eval_every``
    epochs); the embeddings of the best check are kept. ``split.test`` is never read.

    Args:
        embedding_dim: Width ``d`` of user and item embeddings.
        lr: Adam learning rate.
        reg_weight: L2 weight on the batch's embeddings (mean over the batch).
        batch_size: Train pairs per optimiser step.
        max_epochs: Upper bound on passes over the train pairs.
        eval_every: Epochs between validation checks.
        patience: Checks without improvement before stopping.
        seed: Seed of initialisation and sampling.
        device: Training and scoring device.
    """

    def __init__(
        self,
        embedding_dim: int = 64,
        lr: float = 1e-3,
        reg_weight: float = 1e-5,
        batch_size: int = 2048,
        max_epochs: int = 300,
        eval_every: int = 5,
        patience: int = 5,
        seed: int = 2026,
        device: str = "cpu",
    ) -> None:
        self.embedding_dim = embedding_dim
        self.lr = lr
        self.reg_weight = reg_weight
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.patience = patience
        self.seed = seed
        self.device = device

    def _fit(self, split, graph) -> None:
        check_positive_int(self, "embedding_dim", "batch_size", "max_epochs", "eval_every", "patience")
        check_positive_float(self, "lr")
        check_positive_float(self, "reg_weight", allow_zero=True)
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        dev = self.device_
        user_emb = torch.nn.Embedding(self.num_users, self.embedding_dim).to(dev)
        item_emb = torch.nn.Embedding(self.num_items, self.embedding_dim).to(dev)
        torch.nn.init.xavier_normal_(user_emb.weight)
        torch.nn.init.xavier_normal_(item_emb.weight)
        opt = torch.optim.Adam([user_emb.weight, item_emb.weight], lr=self.lr)
        sampler = BPRTripletSampler(self.train_, gen)
        stopper = EarlyStopping("ndcg@20", patience=self.patience)
        self.user_factors_ = user_emb.weight.detach()  # live views while training
        self.item_factors_ = item_emb.weight.detach()
        use_valid = len(split.valid) > 0
        for epoch in range(1, self.max_epochs + 1):
            for u, i, j in sampler.epoch(self.batch_size):
                u, i, j = u.to(dev), i.to(dev), j.to(dev)
                pu, qi, qj = user_emb(u), item_emb(i), item_emb(j)
                diff = (pu * qi).sum(-1) - (pu * qj).sum(-1)
                reg = (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / len(u)
                loss = -torch.nn.functional.logsigmoid(diff).mean() + self.reg_weight * reg
                opt.zero_grad()
                loss.backward()
                opt.step()
            if use_valid and (epoch % self.eval_every == 0 or epoch == self.max_epochs):
                stop = stopper.step(
                    self, split, graph, epoch,
                    state=lambda: (self.user_factors_.clone(), self.item_factors_.clone()),
                )
                if stop:
                    break
        if stopper.best_state is not None:
            self.user_factors_, self.item_factors_ = stopper.best_state
        else:
            self.user_factors_ = self.user_factors_.clone()
            self.item_factors_ = self.item_factors_.clone()
        self.best_epoch_ = stopper.best_epoch if use_valid else self.max_epochs
        self.epochs_trained_ = epoch
        self.valid_history_ = [[e, v] for e, v in stopper.history]

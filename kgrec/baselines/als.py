"""Implicit-feedback ALS through the ``implicit`` package (optional extra ``kgrec[als]``)."""

from __future__ import annotations

import numpy as np
import torch

from kgrec.baselines._training import FactorScorer, check_positive_float, check_positive_int
from kgrec.errors import ConfigError
from kgrec.eval.early_stopping import EarlyStopping

__all__ = ["ALS"]


class ALS(FactorScorer):
    r"""Weighted matrix factorisation for implicit feedback (Hu, Koren & Volinsky, 2008),
    fitted by :class:`implicit.cpu.als.AlternatingLeastSquares`.

    The confidence of a train pair is ``alpha`` (unobserved pairs have confidence 1 and
    preference 0). After each ALS sweep the factors are checked on validation
    ``ndcg@20``; the best sweep's factors are kept (early stopping).

    Args:
        factors: Latent dimension.
        regularization: L2 regularisation of the least-squares solves.
        alpha: Confidence weight of observed pairs.
        iterations: Maximum ALS sweeps.
        patience: Sweeps without validation improvement before stopping.
        seed: Random state of the factor initialisation.
        use_cg: Solve each least-squares step approximately by conjugate gradient
            (``implicit``'s default, fast) instead of exactly (Cholesky). With strong
            ``regularization`` the exact solver converges in far fewer sweeps.
        num_threads: Threads for ``implicit`` (0 = all cores).
        device: Scoring device (fitting runs on the CPU).
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 30,
        patience: int = 5,
        seed: int = 2026,
        use_cg: bool = True,
        num_threads: int = 0,
        device: str = "cpu",
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.patience = patience
        self.seed = seed
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.device = device

    def _fit(self, split, graph) -> None:
        check_positive_int(self, "factors", "iterations", "patience")
        check_positive_float(self, "alpha")
        check_positive_float(self, "regularization", allow_zero=True)
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as exc:  # optional dependency
            raise ConfigError(
                "The ALS baseline needs the 'implicit' package: pip install 'kgrec[als]' "
                "(or pip install implicit)."
            ) from exc
        als = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.seed,
            use_cg=self.use_cg,
            num_threads=self.num_threads,
        )
        stopper = EarlyStopping("ndcg@20", patience=self.patience)
        use_valid = len(split.valid) > 0

        class _Stop(Exception):
            pass

        def refresh() -> None:
            self.user_factors_ = torch.from_numpy(np.array(als.user_factors, dtype=np.float32))
            self.item_factors_ = torch.from_numpy(np.array(als.item_factors, dtype=np.float32))

        def callback(iteration, *_):
            refresh()
            if use_valid and stopper.step(
                self, split, graph, iteration + 1,
                state=lambda: (self.user_factors_.clone(), self.item_factors_.clone()),
            ):
                raise _Stop

        from threadpoolctl import threadpool_limits

        # implicit runs its own threads; a BLAS thread pool inside them oversubscribes
        with threadpool_limits(1, "blas"):
            try:
                als.fit(self.train_.astype(np.float32), show_progress=False, callback=callback)
            except _Stop:
                pass
        refresh()
        if stopper.best_state is not None:
            self.user_factors_, self.item_factors_ = stopper.best_state
        self.best_epoch_ = stopper.best_epoch if use_valid else self.iterations
        self.valid_history_ = [[e, v] for e, v in stopper.history]

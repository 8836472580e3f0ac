"""Paired comparison of two recommenders' per-user metrics on the same split.

Two models ranked for the same users on the same split give two values per user;
the question a benchmark table cannot answer is whether their difference in means is
larger than the spread of that difference over users. :func:`compare_paired` answers it
with the standard paired tools of :mod:`scipy.stats`: a bootstrap confidence interval of
the mean difference (BCa), the paired t-test and the Wilcoxon signed-rank test, plus the
smallest difference the split could detect at all.

.. warning::
    The users are the unit of resampling: the interval says how the difference would
    move with another draw of *users* from the same population, not with another split
    seed or model seed (run several seeds for that). p-values are per comparison;
    comparing one model with many, correct them for multiplicity (:func:`holm_adjust`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from kgrec.errors import ConfigError

__all__ = ["PairedComparison", "compare_paired", "holm_adjust"]


@dataclass(frozen=True)
class PairedComparison:
    """The result of :func:`compare_paired` (``a`` minus ``b``, over the same users).

    Attributes:
        metric: The compared column, e.g. ``"ndcg@20"``.
        num_users: Users in both frames.
        mean_a, mean_b: Mean of the metric over those users.
        difference: ``mean_a - mean_b``.
        relative: ``difference / mean_b`` (NaN when ``mean_b`` is 0).
        ci_low, ci_high: Bootstrap confidence interval of ``difference`` (BCa; the percentile
            interval above 20,000 users).
        confidence: Level of that interval, e.g. 0.95.
        p_value: Two-sided paired t-test of a zero mean difference.
        p_wilcoxon: Two-sided Wilcoxon signed-rank test (users whose values tie are dropped,
            as ``zero_method="wilcox"`` does); 1.0 when every user ties.
        detectable: The smallest absolute mean difference a two-sided paired t-test at level
            ``1 - confidence`` finds with 80% power, given this pair's per-user spread:
            :math:`(z_{1-\\alpha/2} + z_{0.8})\\, s_d / \\sqrt{n}`. A goal below it cannot be
            shown on this split, whatever the models.
    """

    metric: str
    num_users: int
    mean_a: float
    mean_b: float
    difference: float
    relative: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    p_wilcoxon: float
    detectable: float

    def __str__(self) -> str:
        return (f"{self.metric}: a - b = {self.difference:+.4f} ({self.relative:+.1%}; {self.confidence:.0%} interval "
                f"{self.ci_low:+.4f} to {self.ci_high:+.4f}), paired t p = {self.p_value:.3g}, Wilcoxon p = "
                f"{self.p_wilcoxon:.3g}, over {self.num_users:,} users; detectable: {self.detectable:.4f}")

    def to_dict(self) -> dict:
        """A plain ``dict`` (JSON-ready)."""
        return asdict(self)


def _check_frame(frame, name: str, metric: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"per-user frame {name!r} must be a pandas DataFrame (EvalResult.per_user); "
                          f"got {type(frame).__name__}.")
    missing = [c for c in ("user", metric) if c not in frame.columns]
    if missing:
        raise ConfigError(f"per-user frame {name!r} has no column(s) {missing}; it has {list(frame.columns)}. "
                          "Pass evaluate(..., per_user=True).per_user and a metric it holds.")
    if frame["user"].duplicated().any():
        dup = frame.loc[frame["user"].duplicated(), "user"].iloc[0]
        raise ConfigError(f"per-user frame {name!r} lists user {dup!r} more than once; give one row per user.")
    values = frame[metric]
    if not pd.api.types.is_numeric_dtype(values) or not np.isfinite(values.to_numpy(dtype=float)).all():
        raise ConfigError(f"per-user frame {name!r}: column {metric!r} must hold finite numbers.")
    return frame


_BCA_MAX_USERS = 20_000  # BCa's jackknife costs n^2: above this, the percentile interval
_BLOCK = 1 << 22  # resampled values held at once (32 MiB of float64)


def _bootstrap_interval(diff: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """Bootstrap interval of ``diff.mean()``: BCa up to 20,000 users (its jackknife costs
    ``n^2``), the percentile interval above, where the two agree; resampled in blocks of
    about 4M values, so 100k users need no more memory than 1,000."""
    n = len(diff)
    method = "BCa" if n <= _BCA_MAX_USERS else "percentile"
    batch = max(1, _BLOCK // n)
    boot = stats.bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                           method=method, batch=batch, rng=np.random.default_rng(seed))
    low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    if method == "BCa" and not (math.isfinite(low) and math.isfinite(high)):
        # BCa is undefined when the resampled means barely vary (a handful of distinct values)
        boot = stats.bootstrap((diff,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                               method="percentile", batch=batch, rng=np.random.default_rng(seed))
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return low, high


def compare_paired(
    a: pd.DataFrame,
    b: pd.DataFrame,
    metric: str = "ndcg@20",
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models' per-user ``metric`` over the users both ranked (``a`` minus ``b``).

    Args:
        a: Per-user metrics of the first model (``evaluate(..., per_user=True).per_user``:
            a ``user`` column and one column per metric).
        b: The same for the second model, on the same split and protocol (``on``,
            ``cold_only``), so that both rank the same users.
        metric: The column to compare.
        confidence: Level of the bootstrap interval, in (0, 1); ``1 - confidence`` is also
            the test level behind ``detectable``.
        n_resamples: Bootstrap resamples.
        seed: Seed of the bootstrap.

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ConfigError: a frame lacks the ``user`` or ``metric`` column, lists a user twice or
            holds a non-finite value; the frames rank different users; fewer than 2 users;
            ``confidence`` or ``n_resamples`` out of range.
    """
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ConfigError(f"The 'confidence' parameter must be a number in (0, 1), e.g. 0.95; got {confidence!r}.")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ConfigError(f"The 'n_resamples' parameter must be a positive integer; got {n_resamples!r}.")
    a, b = _check_frame(a, "a", metric), _check_frame(b, "b", metric)
    users_a, users_b = pd.Index(a["user"]), pd.Index(b["user"])
    if len(users_a) != len(users_b) or not users_a.isin(users_b).all():
        only_a, only_b = users_a.difference(users_b), users_b.difference(users_a)
        example = (f"user {only_a[0]!r} is only in a" if len(only_a) else f"user {only_b[0]!r} is only in b")
        raise ConfigError(
            f"the two per-user frames rank different users ({len(users_a):,} in a, {len(users_b):,} in b; "
            f"{example}); compare results of the same split, evaluated the same way (on, cold_only, max_users)."
        )
    x = a[metric].to_numpy(dtype=np.float64)
    y = b.set_index("user")[metric].reindex(users_a).to_numpy(dtype=np.float64)
    n = len(x)
    if n < 2:
        raise ConfigError(f"a paired comparison needs at least 2 users; the frames hold {n}.")
    diff = x - y
    mean_a, mean_b, d = float(x.mean()), float(y.mean()), float(diff.mean())
    sd = float(diff.std(ddof=1))
    alpha = 1.0 - float(confidence)
    if sd == 0.0:  # every user moved by the same amount (e.g. identical models): no spread to test
        low = high = d
        p_t = 1.0 if d == 0.0 else 0.0
        p_w = 1.0 if d == 0.0 else float(stats.wilcoxon(diff).pvalue)
    else:
        low, high = _bootstrap_interval(diff, float(confidence), int(n_resamples), seed)
        p_t = float(stats.ttest_rel(x, y).pvalue)
        p_w = float(stats.wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)
    return PairedComparison(
        metric=metric,
        num_users=n,
        mean_a=mean_a,
        mean_b=mean_b,
        difference=d,
        relative=d / mean_b if mean_b != 0 else float("nan"),
        ci_low=low,
        ci_high=high,
        confidence=float(confidence),
        p_value=p_t,
        p_wilcoxon=p_w,
        detectable=float(z * sd / math.sqrt(n)),
    )


def holm_adjust(p_values) -> np.ndarray:
    """Holm's step-down adjustment of ``m`` p-values for multiple comparisons.

    The ``i``-th smallest p-value (``i`` from 1) becomes ``min(1, max_{j <= i} (m - j + 1) p_(j))``;
    rejecting where the adjusted value is below ``alpha`` keeps the family-wise error rate at
    ``alpha`` whatever the dependence between the tests. Returned in the input order. Written
    here because ``scipy.stats.false_discovery_control`` offers only the Benjamini–Hochberg /
    –Yekutieli false-discovery corrections, and statsmodels (``multipletests``) is not a dependency.

    Raises:
        ConfigError: a value is not a number in [0, 1].
    """
    try:
        p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"p-values must be numbers in [0, 1]; got {p_values!r}.") from None
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise ConfigError(f"p-values must be numbers in [0, 1]; got {list(p_values)!r}.")
    order = np.argsort(p, kind="stable")
    steps = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted

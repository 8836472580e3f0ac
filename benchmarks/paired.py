"""Per-user metric files of benchmark rows, and the paired comparison tables built from them.

``benchmarks.run`` stores, beside each row, the per-user test metrics of that model
(``per_user/<dataset>__<split>__seed<seed>__<model>.parquet``, and ``...__cold.parquet``
for the strict cold-start ranking of a ``cold_item`` split); the row names the file
(``"per_user"``, ``"cold_per_user"``, relative to the results directory). From them
``benchmarks.report`` compares one reference model with every other model of the same
dataset, split and seed, user by user (:func:`kgrec.eval.compare_paired`): the difference
of means, its bootstrap confidence interval, paired t-test and Wilcoxon p-values, and the
smallest difference that split could detect. A table of means cannot say whether a gap of
0.003 NDCG@20 is a gap at all; this one does.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd

from kgrec.errors import ConfigError
from kgrec.eval import compare_paired, holm_adjust
from kgrec.io import atomic_write

__all__ = ["PER_USER_KEYS", "per_user_path", "write_per_user", "read_per_user", "copy_per_user",
           "remove_per_user", "paired_comparisons", "seed_mean_per_user", "pooled_comparisons", "paired_table"]

#: Row keys that name a per-user file: the test ranking, and the strict cold-start one.
PER_USER_KEYS = ("per_user", "cold_per_user")

#: Metrics the paired tables compare.
PAIRED_METRICS = ("recall@20", "ndcg@20")


def per_user_path(dataset: str, split: str, seed: int, model: str, cold: bool = False) -> str:
    """The file of a row's per-user metrics, relative to its results directory."""
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", f"{dataset}__{split}__seed{seed}__{model}")
    return f"per_user/{name}{'__cold' if cold else ''}.parquet"


def write_per_user(out: Path, relative: str, frame: pd.DataFrame) -> str:
    """Write ``frame`` (``EvalResult.per_user``) to ``out / relative`` atomically; returns ``relative``."""
    atomic_write(Path(out) / relative, lambda fh: frame.to_parquet(fh, index=False))
    return relative


def read_per_user(out: Path, row: dict, key: str = "per_user") -> pd.DataFrame | None:
    """The per-user frame a row names under ``key`` (``None`` when the row has none).

    Raises:
        ConfigError: the row names a file that is not there.
    """
    relative = row.get(key)
    if not relative:
        return None
    path = Path(out) / relative
    if not path.is_file():
        raise ConfigError(f"row {row['model']!r} ({row['dataset']} {row['split']} seed {row['seed']}) names "
                          f"per-user metrics {relative!r}, but {path} does not exist; re-run that model, or "
                          f"drop the row (python -m benchmarks.report {out} --drop {row['model']}).")
    return pd.read_parquet(path)


def copy_per_user(source: Path, target: Path, row: dict) -> None:
    """Copy the per-user files a row of ``source`` names into ``target`` (``--merge``)."""
    for key in PER_USER_KEYS:
        relative = row.get(key)
        if not relative:
            continue
        src = Path(source) / relative
        if not src.is_file():
            raise ConfigError(f"--merge {source}: row {row['model']!r} ({row['split']} seed {row['seed']}) "
                              f"names per-user metrics {relative!r}, which {source} does not have.")
        dst = Path(target) / relative
        if src.resolve() != dst.resolve():
            with src.open("rb") as fh_src:
                atomic_write(dst, lambda fh: shutil.copyfileobj(fh_src, fh))


def remove_per_user(out: Path, rows: Sequence[dict], keep: Sequence[dict]) -> None:
    """Delete the per-user files named by ``rows`` that no row of ``keep`` names (``--drop``)."""
    kept = {r.get(k) for r in keep for k in PER_USER_KEYS}
    for row in rows:
        for key in PER_USER_KEYS:
            relative = row.get(key)
            if relative and relative not in kept and (Path(out) / relative).is_file():
                (Path(out) / relative).unlink()


def paired_comparisons(rows: Sequence[dict], out: Path, reference: str, key: str = "per_user",
                       metrics: Sequence[str] = PAIRED_METRICS, seed: int = 0) -> list[dict]:
    """``reference`` minus every other model of ``rows`` (one dataset, split and seed), per metric.

    Rows without per-user metrics under ``key`` are left out; so is everything when the
    reference has none. Each result is :meth:`PairedComparison.to_dict` plus the models.
    """
    ref = next((r for r in rows if r["model"] == reference), None)
    ref_frame = read_per_user(out, ref, key) if ref is not None else None
    if ref_frame is None:
        return []
    results = []
    for row in rows:
        if row is ref:
            continue
        frame = read_per_user(out, row, key)
        if frame is None:
            continue
        for metric in metrics:
            comparison = compare_paired(ref_frame, frame, metric=metric, seed=seed).to_dict()
            results.append({"reference": reference, "model": row["model"], "dataset": row["dataset"],
                            "split": row["split"], "seed": row["seed"],
                            "on": "cold" if key == "cold_per_user" else "test", **comparison})
    _holm(results, metrics)
    return results


def _holm(results: list[dict], metrics: Sequence[str]) -> None:
    """Add ``p_holm``: Holm over the models compared on each metric (one table's family)."""
    for metric in metrics:
        family = [r for r in results if r["metric"] == metric]
        for r, adjusted in zip(family, holm_adjust([r["p_value"] for r in family])):
            r["p_holm"] = float(adjusted)


def seed_mean_per_user(out: Path, rows: Sequence[dict], key: str = "per_user") -> pd.DataFrame:
    """Each user's metrics averaged over ``rows`` (one model's rows of several seeds).

    Only users ranked in every row are kept: a user without test items under one seed's
    split has no value to average there, and averaging fewer seeds for some users would
    mix two kinds of number in one column.
    """
    frames = [read_per_user(out, row, key) for row in rows]
    if any(f is None for f in frames):
        missing = [r["seed"] for r, f in zip(rows, frames) if f is None]
        raise ConfigError(f"model {rows[0]['model']!r} has no per-user metrics ({key}) for seed(s) {missing}.")
    stacked = pd.concat(frames, ignore_index=True)
    counts = stacked.groupby("user").size()
    everywhere = counts.index[counts == len(frames)]
    means = stacked[stacked["user"].isin(everywhere)].groupby("user", sort=True).mean(numeric_only=True)
    return means.reset_index()


def pooled_comparisons(rows: Sequence[dict], out: Path, reference: str, key: str = "per_user",
                       metrics: Sequence[str] = PAIRED_METRICS, seed: int = 0) -> list[dict]:
    """``reference`` minus every other model of ``rows`` (one dataset and split, several seeds),
    each user's metric first averaged over the seeds both models ran with.

    One seed's paired test says whether a gap holds for that split and model seed; averaging
    each user over seeds first takes most of the split's and the initialisation's noise out of
    every user's number, so the test has more power, and the users stay the unit resampled.
    Models sharing fewer than two seeds with ``reference`` (with per-user files) are left out.
    Results carry ``seeds`` (the seeds averaged) and ``seed: None``; Holm's correction runs over
    the models compared on the same seeds.
    """
    by_model: dict[str, dict[int, dict]] = {}
    for row in rows:
        if row.get(key):
            by_model.setdefault(row["model"], {})[row["seed"]] = row
    ref_rows = by_model.pop(reference, {})
    families: dict[tuple[int, ...], list[dict]] = {}
    for model, per_seed in by_model.items():
        common = tuple(sorted(set(ref_rows) & set(per_seed)))
        if len(common) < 2:
            continue
        ref_frame = seed_mean_per_user(out, [ref_rows[s] for s in common], key)
        frame = seed_mean_per_user(out, [per_seed[s] for s in common], key)
        first = per_seed[common[0]]
        for metric in metrics:
            comparison = compare_paired(ref_frame, frame, metric=metric, seed=seed).to_dict()
            families.setdefault(common, []).append(
                {"reference": reference, "model": model, "dataset": first["dataset"], "split": first["split"],
                 "seed": None, "seeds": list(common),
                 "on": "cold, mean over seeds" if key == "cold_per_user" else "test, mean over seeds", **comparison})
    results = []
    for family in families.values():
        _holm(family, metrics)
        results += family
    return results


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def paired_table(comparisons: Sequence[dict]) -> str:
    """A Markdown table of :func:`paired_comparisons`: a line per compared model."""
    by_model: dict[str, dict[str, dict]] = {}
    for c in comparisons:
        by_model.setdefault(c["model"], {})[c["metric"]] = c
    metrics = [m for m in PAIRED_METRICS if any(m in v for v in by_model.values())]
    head = ["model", "users"]
    for m in metrics:
        head += [f"Δ {m} (95% CI)", "rel.", "p (t)", "p (Holm)", "p (Wilcoxon)", "detectable"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, per_metric in by_model.items():
        first = next(iter(per_metric.values()))
        cells = [model, f"{first['num_users']:,}"]
        for m in metrics:
            c = per_metric.get(m)
            if c is None:
                cells += [""] * 6
                continue
            holm = f"{c['p_holm']:.3g}" if "p_holm" in c else ""
            cells += [f"{_signed(c['difference'])} ({_signed(c['ci_low'])}, {_signed(c['ci_high'])})",
                      f"{c['relative']:+.1%}", f"{c['p_value']:.3g}", holm, f"{c['p_wilcoxon']:.3g}",
                      f"{c['detectable']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PAIRED_NOTE = (
    "*Paired differences*: the reference model minus each model, user by user over the users both "
    "ranked; 95% bootstrap interval of the difference of means (BCa, 9,999 resamples over users, "
    "seed 0), two-sided paired t-test and Wilcoxon signed-rank p-values; *p (Holm)*: the t-test's "
    "p-value adjusted by Holm's method over the models of that table (the one to read when asking "
    "whether any of them differs); *detectable*: the smallest difference of means a paired t-test at the 5% level "
    "finds with 80% power, given that pair's per-user spread (kgrec.eval.compare_paired). Users are "
    "what is resampled: another split or model seed moves the numbers too. *Paired over seeds*: the "
    "same, with each user's metric first averaged over the seeds both models ran with (users ranked "
    "under every one of them), which takes most of the split's and the model seed's noise out of "
    "each user's number. Only rows that stored per-user metrics (benchmarks.run since 2026-12-06) "
    "are compared."
)

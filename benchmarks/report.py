"""Markdown tables and PNG plots from benchmark rows (``results.json``).

``python -m benchmarks.report DIR`` re-renders ``DIR/results.md`` and the plots from
``DIR/results.json``; ``python -m benchmarks.report DIR --merge OTHER [OTHER ...]`` first
merges the rows of other result directories into ``DIR/results.json`` (a row with the
same model, dataset, split and seed is replaced) and their ``COMMAND.txt`` lines into
``DIR/COMMAND.txt`` (e.g. a slow model run in parallel into its own directory);
``--drop NAME [NAME ...]`` removes the rows of models that no longer exist (say, a
benchmark variant folded into the default). Where a (dataset, split) ran with several
seeds, ``results.md`` also gets a table of each model's mean and standard deviation.
Rows with per-user metrics get paired comparison tables against ``--reference MODEL``
(default ``kgrec``) and ``DIR/paired.json`` (:mod:`benchmarks.paired`).
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from benchmarks.paired import (PAIRED_NOTE, copy_per_user, paired_comparisons, paired_table, pooled_comparisons,
                              remove_per_user)
from kgrec.errors import KGRecError
from kgrec.io import atomic_write, atomic_write_text

__all__ = ["markdown_table", "seed_summary", "write_plots", "write_report"]

_COLUMNS = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50", "hit@20", "precision@20", "mrr")

_VALID_NOTE = ("rows run with --valid; train items excluded; the metric to tune by. "
               "Models that early-stop on it have seen it")


def _groups(rows: Sequence[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["split"], row["seed"])].append(row)
    return groups


def git_label(sha: str | None) -> str:
    """A row's commit as the tables show it: the short sha, and ``-dirty`` where the row ran
    with uncommitted changes under kgrec/ or benchmarks/ (never hidden by the shortening)."""
    if not sha:
        return "n/a"
    return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "")


_DIRTY_NOTE = ("`-dirty`: the row ran with uncommitted changes under kgrec/ or benchmarks/ on top of "
               "that commit; COMMAND.txt says what is known of them.")


def markdown_table(rows: Sequence[dict], key: str = "metrics") -> str:
    """One Markdown table: a line per row, metric columns then timings and memory."""
    cols = [c for c in _COLUMNS if any(c in (r.get(key) or {}) for r in rows)]
    head = ["model", *cols, "train s", "eval s", "peak MiB", "git"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = r.get(key) or {}
        cells = [r["model"]] + [f"{values[c]:.4f}" if c in values else "" for c in cols]
        cells += [f"{r['train_seconds']:.1f}", f"{r['eval_seconds']:.1f}", f"{r['peak_memory_mb']:.0f}",
                  git_label(r.get("git_sha"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_summary(rows: Sequence[dict], metrics: Sequence[str] = ("recall@20", "ndcg@20"), key: str = "metrics") -> str:
    """Mean ± sample standard deviation over seeds, a line per model (rows of one dataset and split).

    ``key`` picks the row's metrics: ``"metrics"`` (test) or ``"valid"`` (rows run with ``--valid``).
    """
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    head = ["model", "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, group in by_model.items():
        cells = [model, ", ".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))]
        for m in metrics:
            values = [r[key][m] for r in group if m in (r.get(key) or {})]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f"{statistics.fmean(values):.4f}{spread}" if values else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"))


def require_plotting() -> None:
    """Refuse early, by name, to promise plots without matplotlib (the optional ``bench`` extra)."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        raise KGRecError("the PNG plots need matplotlib: pip install 'kgrec[bench]', or pass --no-plots.") from None


def write_plots(rows: Sequence[dict], out: Path) -> list[Path]:
    """Per (dataset, split, seed): Recall@K and NDCG@K per model, and NDCG@20 against train time."""
    require_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for (dataset, split, seed), group in _groups(rows).items():
        tag = f"{dataset}_{split}_seed{seed}".replace("/", "_")
        for family in ("recall", "ndcg"):
            fig, ax = plt.subplots(figsize=(6, 4))
            for r in group:
                ks = sorted(int(k.split("@")[1]) for k in r["metrics"] if k.startswith(f"{family}@"))
                ax.plot(ks, [r["metrics"][f"{family}@{k}"] for k in ks], marker="o", label=r["model"])
            ax.set_xlabel("K")
            ax.set_ylabel(f"{'Recall' if family == 'recall' else 'NDCG'}@K")
            ax.set_title(f"{dataset} · {split} split · seed {seed} (test)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            path = out / f"{tag}_{family}.png"
            _save(fig, path)
            plt.close(fig)
            written.append(path)
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in group:
            x = max(r["train_seconds"], 1e-3)
            ax.scatter([x], [r["metrics"].get("ndcg@20", 0.0)], s=40)
            ax.annotate(r["model"], (x, r["metrics"].get("ndcg@20", 0.0)), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, log scale)")
        ax.set_ylabel("NDCG@20 (test)")
        ax.set_title(f"{dataset} · {split} · quality vs training time")
        ax.grid(alpha=0.3)
        path = out / f"{tag}_quality_vs_time.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def write_report(rows: Sequence[dict], out: str | os.PathLike, plots: bool = True,
                 reference: str = "kgrec") -> Path:
    """Write ``out/results.md`` (and the PNG plots); returns the Markdown path.

    Where the ``reference`` model and others of a (dataset, split, seed) have per-user
    metrics, ``results.md`` also compares them user by user and ``out/paired.json`` holds
    every comparison (see :mod:`benchmarks.paired`).
    """

    out = Path(out)
    all_paired: list[dict] = []
    parts = ["# Benchmark results", ""]
    commands = sorted({r.get("command") for r in rows if r.get("command")})
    if commands:
        parts += ["Produced by:", "", *[f"    {c}" for c in commands], ""]
    parts += [
        "Full ranking over all items, train (and valid) items excluded; mean over users "
        "with at least one test item (see kgrec.eval).", "",
    ]
    intro_end = len(parts)  # where the paired tables' note goes, if there are any
    seeds: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        seeds[(r["dataset"], r["split"])].append(r)
    for (dataset, split), group in seeds.items():
        if len({r["seed"] for r in group}) > 1:
            varies = ("the model seed only: a temporal split is the same for every seed" if split == "temporal"
                      else "split and model seed")
            parts += [f"## {dataset} · {split} split · mean over seeds (test)", "",
                      f"Mean ± standard deviation over the seeds each model ran with ({varies}).", "",
                      seed_summary(group), ""]
            with_valid = [r for r in group if r.get("valid")]
            if len({r["seed"] for r in with_valid}) > 1:
                parts += [f"Validation, mean over seeds ({_VALID_NOTE}):", "",
                          seed_summary(with_valid, key="valid"), ""]
            pooled = pooled_comparisons(group, out, reference)
            for seeds_used in dict.fromkeys(tuple(p["seeds"]) for p in pooled):
                table = [p for p in pooled if tuple(p["seeds"]) == seeds_used]
                parts += [f"Paired over seeds {', '.join(map(str, seeds_used))} (test): {reference} minus each "
                          f"model, each user's metrics first averaged over those seeds, over the same "
                          f"{table[0]['num_users']:,} users (see *Paired differences* above):", "",
                          paired_table(table), ""]
            all_paired += pooled
    for (dataset, split, seed), group in _groups(rows).items():
        first = group[0]
        parts += [f"## {dataset} · {split} split · seed {seed}", "",
                  f"{first['num_users']} test users ({first['skipped_users']} without test items skipped); "
                  f"device {first['device']}; git: the commit each row ran at.", "",
                  markdown_table(group), ""]
        if any(str(r.get("git_sha", "")).endswith("-dirty") for r in group):
            parts += [_DIRTY_NOTE, ""]
        if any(r.get("cold") for r in group):
            parts += [f"Strict cold start (ranking only the cold items; {first.get('cold_num_users')} users):", "",
                      markdown_table([r for r in group if r.get("cold")], key="cold"), ""]
        if any(r.get("valid") for r in group):
            parts += [f"Validation ({_VALID_NOTE}; eval s is the test evaluation):", "",
                      markdown_table([r for r in group if r.get("valid")], key="valid"), ""]
        for key, title in (("per_user", "Paired differences (test)"),
                           ("cold_per_user", "Paired differences (strict cold start)")):
            paired = paired_comparisons(group, out, reference, key=key)
            if paired:
                parts += [f"{title}: {reference} minus each model over the same {paired[0]['num_users']:,} users "
                          "(see *Paired differences* above):", "", paired_table(paired), ""]
                all_paired += paired
    if all_paired:  # said once, above the first table
        parts[intro_end:intro_end] = [PAIRED_NOTE, ""]
    path = out / "results.md"
    atomic_write_text(path, "\n".join(parts))
    if all_paired:
        atomic_write_text(out / "paired.json", json.dumps(all_paired, indent=2) + "\n")
    if plots and rows:
        write_plots(rows, out)
    return path


def merge_rows(base: Sequence[dict], extra: Sequence[dict]) -> list[dict]:
    """``base`` rows with ``extra`` rows added; same (model, dataset, split, seed) -> ``extra`` wins."""
    key = lambda r: (r["model"], r["dataset"], r["split"], r["seed"])  # noqa: E731
    replaced = {key(r) for r in extra}
    return [r for r in base if key(r) not in replaced] + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse


    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("dir")
    parser.add_argument("--merge", nargs="*", default=[], help="result directories to merge into DIR")
    parser.add_argument("--drop", nargs="*", default=[], metavar="MODEL",
                        help="remove the rows of these models from DIR/results.json")
    parser.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW",
                        help="relabel a model's rows (e.g. when a default changed: kgrec=kgrec-nopow); "
                             "their config still records what ran")
    parser.add_argument("--reference", default=None, metavar="MODEL",
                        help="the model the paired tables compare every other model with (default: kgrec)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.dir)
    path = out / "results.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    commands = (out / "COMMAND.txt").read_text() if (out / "COMMAND.txt").is_file() else ""
    merged_from: list[tuple[Path, dict]] = []  # their per-user files are copied once every check passed
    for other in map(Path, args.merge):
        if not (other / "results.json").is_file():
            print(f"error: --merge {other}: no results.json there.", file=sys.stderr)
            return 2
        extra = json.loads((other / "results.json").read_text())
        merged_from += [(other, row) for row in extra]
        rows = merge_rows(rows, extra)
        if (other / "COMMAND.txt").is_file():
            commands += (other / "COMMAND.txt").read_text()
    unknown = sorted(set(args.drop) - {r["model"] for r in rows})
    if unknown:
        print(f"error: --drop {', '.join(unknown)}: no such model in {path}; it has "
              f"{', '.join(sorted({r['model'] for r in rows}))}.", file=sys.stderr)
        return 2
    dropped = [r for r in rows if r["model"] in set(args.drop)]
    rows = [r for r in rows if r["model"] not in set(args.drop)]
    for pair in args.rename:
        old, sep, new = pair.partition("=")
        present = {r["model"] for r in rows}
        if not sep or not old or not new:
            print(f"error: --rename {pair!r}: expected OLD=NEW, e.g. kgrec=kgrec-nopow.", file=sys.stderr)
            return 2
        if old not in present:
            print(f"error: --rename {pair}: no model {old!r} in {path}; it has {', '.join(sorted(present))}.",
                  file=sys.stderr)
            return 2
        if new in present:
            print(f"error: --rename {pair}: {path} already has rows named {new!r}; --drop them first.",
                  file=sys.stderr)
            return 2
        for r in rows:
            if r["model"] == old:
                r["model"] = new
    if args.reference is not None and args.reference not in {r["model"] for r in rows}:
        print(f"error: --reference {args.reference}: no model of that name in {path}; it has "
              f"{', '.join(sorted({r['model'] for r in rows}))}.", file=sys.stderr)
        return 2
    kept_ids = {id(r) for r in rows}
    try:
        for other, row in merged_from:
            if id(row) in kept_ids:  # not replaced by a later --merge, nor dropped
                copy_per_user(other, out, row)
    except KGRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    remove_per_user(out, dropped, keep=rows)
    if args.merge or args.drop or args.rename:
        atomic_write_text(path, json.dumps(rows, indent=2) + "\n")
    if args.merge or args.drop or args.rename or args.reference is not None:
        cmd = ["python -m benchmarks.report", args.dir]
        cmd += ["--merge", *args.merge] if args.merge else []
        cmd += ["--drop", *args.drop] if args.drop else []
        cmd += ["--rename", *args.rename] if args.rename else []
        cmd += ["--reference", args.reference] if args.reference is not None else []
        atomic_write_text(out / "COMMAND.txt", commands + " ".join(cmd) + "\n")
    try:
        print(write_report(rows, out, plots=not args.no_plots, reference=args.reference or "kgrec"))
    except KGRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far does combining models go? Score blends of suite models, chosen on validation.

Command line::

    python -m benchmarks.blend --suite benchmarks/suites/ml100k.yaml --split random --seed 2026 \\
        --models kgrec,als,ease --ensemble kgrec=2027,2028 --out DIR

fits every ``--models`` entry once (its suite settings, model seed ``--seed``) and, for
``--ensemble NAME=SEEDS``, NAME again with each extra model seed (same split). It then
scores, with the one :func:`kgrec.eval.evaluate` every benchmark uses:

* each model alone;
* the seed ensemble of NAME (``NAME x k``): the sum of its runs' standardised scores;
* every pair of ``--models``: the first's standardised scores plus ``w`` times the
  second's, for each ``w`` of ``--weights``.

Scores are standardised per user (mean 0, standard deviation 1 over the items the user has
not seen in train, the only ones a ranking can contain) before they are added, since models
score on unrelated scales. The report lists every candidate
with its validation and test metrics, sorted by validation NDCG@20, and names the one
validation picks: its test row is the honest number for "the best blend". Writes
``DIR/results.json``, ``DIR/results.md`` and ``DIR/COMMAND.txt``.

This is an analysis of where the ceiling of a protocol lies (what the strongest
combination of today's models reaches), not a model to ship: a blend costs the training of
all its parts.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmarks.run import _model_specs, load_suite, make_model, split_and_graph
from benchmarks.speed_rows import git_sha
from kgrec.models.base import BaseRecommender
from kgrec.errors import ConfigError, KGRecError
from kgrec.io import atomic_write_text

__all__ = ["ScoreBlend", "blend", "main"]


class ScoreBlend(BaseRecommender):
    """A weighted sum of fitted recommenders' per-user standardised scores.

    Each part's scores are standardised over the user's unseen items (the candidates a
    ranking is drawn from), so a part that scores seen items far above the rest, as a
    reconstruction model does, is not shrunk by them. ``fit`` learns nothing beyond the
    train matrix every recommender keeps (what ``exclude_seen`` masks); the parts must
    already be fitted on the same train split, which ``fit`` checks. Their graphs may differ
    (a part built without KG edges blends with one built with them); ``blend`` fits every
    part on one graph.

    Args:
        parts: Fitted recommenders over the same users and items.
        weights: One weight per part.
    """

    def __init__(self, parts: Sequence[BaseRecommender] = (), weights: Sequence[float] = ()) -> None:
        self.parts = parts
        self.weights = weights

    def _fit(self, split, graph) -> None:
        if not self.parts or len(self.parts) != len(self.weights):
            raise ConfigError(f"ScoreBlend needs one weight per part; got {len(self.parts)} part(s) and "
                              f"{len(self.weights)} weight(s).")
        for part in self.parts:
            if (part.num_users, part.num_items) != (self.num_users, self.num_items):
                raise ConfigError(f"ScoreBlend: {type(part).__name__} scores {part.num_users} users x "
                                  f"{part.num_items} items; the split has {self.num_users} x {self.num_items}.")
            if (part.train_ != self.train_).nnz:
                raise ConfigError(f"ScoreBlend: {type(part).__name__} was fitted on another train split "
                                  f"({part.train_.nnz:,} train interactions, this split {self.train_.nnz:,} "
                                  "or the same count in other places); fit every part on the blend's split.")

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        unseen = torch.from_numpy(self.train_[users.cpu().numpy()].toarray() == 0)
        count = unseen.sum(1, keepdim=True).clamp(min=2)
        total = None
        for part, weight in zip(self.parts, self.weights):
            s = part.score(users).float().cpu()
            mean = torch.where(unseen, s, 0.0).sum(1, keepdim=True) / count
            var = torch.where(unseen, (s - mean) ** 2, 0.0).sum(1, keepdim=True) / (count - 1)
            s = (s - mean) / var.sqrt().clamp(min=1e-12)
            total = weight * s if total is None else total + weight * s
        return total


def _parse_ensemble(text: str | None, models: Sequence[str]) -> tuple[str, list[int]] | None:
    if not text:
        return None
    name, sep, seeds = text.partition("=")
    if not sep or not seeds.strip():
        raise ConfigError(f"--ensemble must be NAME=SEED[,SEED...] (e.g. kgrec=2027,2028); got {text!r}.")
    if name not in models:
        raise ConfigError(f"--ensemble names {name!r}, which is not in --models {list(models)}.")
    try:
        return name, [int(s) for s in seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--ensemble seeds must be comma-separated integers; got {seeds!r}.") from None


def blend(data: str, models: Sequence[str], out: str | Path, split: str | None = None, seed: int = 2026,
          ensemble: tuple[str, list[int]] | None = None, weights: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
          settings: dict[str, dict] | None = None, device: str = "cpu", threads: int | None = None,
          command: str | None = None) -> list[dict]:
    """Fit ``models`` on one split, score every single model, seed ensemble and pair blend.

    Returns:
        The rows (also written to ``out``), sorted by validation NDCG@20, best first.
    """
    from kgrec.data import load_dataset
    from kgrec.eval import evaluate

    if len(models) < 1 or len(set(models)) != len(models):
        raise ConfigError(f"--models must name distinct models; got {list(models)}.")
    if not weights or any(not w > 0 for w in weights):
        raise ConfigError(f"--weights must be positive numbers; got {list(weights)}.")
    if threads:
        torch.set_num_threads(threads)
    specs = _model_specs(models, settings or {})
    dataset = load_dataset(data)
    the_split, graph = split_and_graph(dataset, split, seed, specs, device, data=data,
                                       need_valid="benchmarks.blend chooses on validation")
    fitted: dict[str, BaseRecommender] = {}
    seconds: dict[str, float] = {}
    runs: list[tuple[str, Any, dict, int]] = [(name, klass, args, seed) for name, klass, args in specs]
    if ensemble:
        name, extra = ensemble
        _, klass, args = next(s for s in specs if s[0] == name)
        if "seed" not in inspect.signature(klass.__init__).parameters or "seed" in args:
            raise ConfigError(f"--ensemble {name}: {klass.__name__} has no seed parameter, or its settings fix "
                              "one, so every member would be the same model.")
        runs += [(f"{name}@{s}", klass, args, s) for s in dict.fromkeys(extra) if s != seed]
    for label, klass, args, model_seed in runs:
        print(f"[blend] fitting {label} ...", flush=True)
        start = time.perf_counter()
        fitted[label] = make_model(klass, args, model_seed, device).fit(the_split, graph)
        seconds[label] = time.perf_counter() - start

    candidates: list[tuple[str, BaseRecommender, list[str]]] = [(n, fitted[n], [n]) for n in models]
    if ensemble:
        members = [ensemble[0]] + [label for label in fitted if label.startswith(f"{ensemble[0]}@")]
        if len(members) > 1:
            candidates.append((f"{ensemble[0]} x {len(members)} seeds",
                               ScoreBlend([fitted[m] for m in members], [1.0] * len(members)), members))
    for a, b in itertools.combinations(models, 2):
        for w in weights:
            candidates.append((f"{a} + {w:g} {b}", ScoreBlend([fitted[a], fitted[b]], [1.0, w]), [a, b]))

    rows = []
    for label, model, parts in candidates:
        if isinstance(model, ScoreBlend):
            model.fit(the_split, graph)
        on_valid = evaluate(model, the_split, graph, on="valid").metrics
        on_test = evaluate(model, the_split, graph, on="test").metrics
        rows.append({"candidate": label, "parts": parts, "train_s": round(sum(seconds[p] for p in parts), 1),
                     "valid": on_valid, "test": on_test})
        print(f"[blend] {label}: valid ndcg@20 {on_valid['ndcg@20']:.4f}, test recall@20 "
              f"{on_test['recall@20']:.4f} ndcg@20 {on_test['ndcg@20']:.4f}", flush=True)
    rows.sort(key=lambda r: -r["valid"]["ndcg@20"])
    meta = {"dataset": dataset.name, "split": the_split.strategy, "seed": seed, "git": git_sha(),
            "command": command, "settings": {n: a for n, _, a in specs}}
    _write(Path(out), rows, meta, models)
    return rows


def _write(out: Path, rows: list[dict], meta: dict, models: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    single = {r["candidate"]: r for r in rows if len(r["parts"]) == 1}
    best_single = max(single.values(), key=lambda r: r["valid"]["ndcg@20"])
    lines = [
        "# Score blends", "", "Produced by:", "", f"    {meta['command']}", "",
        f"{meta['dataset']} · {meta['split']} split · seed {meta['seed']} · git {meta['git']}. Every candidate is "
        "scored by kgrec.eval.evaluate (full ranking, train items excluded; test also excludes valid items). "
        "Sorted by valid NDCG@20, the number to choose by; the first row is the one validation picks.", "",
        "| candidate | valid ndcg@20 | test recall@20 | test ndcg@20 | test ndcg@20 vs best single | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["test"]["ndcg@20"] / best_single["test"]["ndcg@20"] - 1
        lines.append(f"| {r['candidate']} | {r['valid']['ndcg@20']:.4f} | {r['test']['recall@20']:.4f} | "
                     f"{r['test']['ndcg@20']:.4f} | {gain:+.1%} | {r['train_s']:.1f} |")
    pick = rows[0]
    lines += ["", f"Validation picks **{pick['candidate']}**: test Recall@20 {pick['test']['recall@20']:.4f}, "
              f"NDCG@20 {pick['test']['ndcg@20']:.4f}; the best single model on validation is "
              f"{best_single['candidate']} (test {best_single['test']['recall@20']:.4f} / "
              f"{best_single['test']['ndcg@20']:.4f}).", ""]
    atomic_write_text(out / "results.md", "\n".join(lines))
    atomic_write_text(out / "COMMAND.txt", f"{meta['command']}\n")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blend", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", help="YAML suite (data, models' settings); as benchmarks.run")
    parser.add_argument("--data", help="dataset name or directory (default: the suite's)")
    parser.add_argument("--split", help="one split strategy (default: random, or presplit for a pre-split dir)")
    parser.add_argument("--seed", type=int, default=2026, help="split and model seed (default 2026)")
    parser.add_argument("--models", required=True, help="comma-separated model names (suite names or known models)")
    parser.add_argument("--ensemble", help="NAME=SEED[,SEED...]: also fit NAME with these model seeds")
    parser.add_argument("--weights", default="0.25,0.5,1,2", help="pair weights of the second model (default 0.25,0.5,1,2)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the suite's, or cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: suite value or torch's)")
    parser.add_argument("--out", required=True, help="output directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m benchmarks.blend " + " ".join(shlex.quote(a) for a in argv_list)
    try:
        suite, data = load_suite(args.suite, args.data)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights must be comma-separated numbers; got {args.weights!r}.") from None
        blend(data, models, args.out, split=args.split, seed=args.seed, ensemble=_parse_ensemble(args.ensemble, models),
              weights=weights, settings=dict(suite.get("models") or {}),
              device=args.device or suite.get("device", "cpu"), threads=args.threads or suite.get("threads"),
              command=command)
    except KGRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

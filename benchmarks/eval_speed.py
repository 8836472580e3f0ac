"""Evaluator speed: users/s of :func:`kgrec.eval.evaluate` against a naive peer, same run.

``python -m benchmarks.eval_speed --out DIR [--device cpu|cuda] [--data ml-1m] [--repeats 3]``

Both sides rank all items for every test user of the random 80/10/10 split (seed
2026) with the same fixed factor model (``dim`` random factors, so training time
plays no part):

* **kgrec**: :func:`kgrec.eval.evaluate` (chunked scoring, train+valid masking,
  exact top-K, all metrics at K in {10, 20, 50} plus full-rank MRR);
* **peer**: one dense ``U @ V.T`` for all users, a dense boolean mask of train+valid
  items, and one ``torch.topk(50)``: the naive matmul + top-k baseline (it computes
  no metric, so it is a lower bound on the work).

Reports users/s of each and the ratio kgrec / peer (median of ``repeats`` runs), and
checks that recall@20 from the peer's top-K equals kgrec's. Writes ``DIR/eval_speed.json``
and ``DIR/eval_speed.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from kgrec.io import atomic_write_text

__all__ = ["main"]


def _peer(user_f, item_f, users, excluded, target, k=50):
    """Naive evaluation: full score matrix, dense mask, one topk. Returns top-k indices."""
    scores = user_f[users] @ item_f.T
    mask = torch.from_numpy(excluded[users.cpu().numpy()].toarray() > 0).to(scores.device)
    scores = scores.masked_fill(mask, float("-inf"))
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="ml-1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from benchmarks.speed_rows import git_sha
    from kgrec.baselines._training import FactorScorer
    from kgrec.data import load_dataset
    from kgrec.eval import evaluate
    from kgrec.eval.evaluator import _pairs_matrix
    from kgrec.graph import build_graph
    from kgrec.data.split import split_dataset

    import pandas as pd

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    split = split_dataset(dataset, "random", seed=2026)
    graph = build_graph(dataset, split)

    class RandomFactors(FactorScorer):
        def __init__(self, dim: int = 64, device: str = "cpu") -> None:
            self.dim = dim
            self.device = device

        def _fit(self, split, graph) -> None:
            gen = torch.Generator().manual_seed(0)
            self.user_factors_ = torch.randn(self.num_users, self.dim, generator=gen).to(self.device_)
            self.item_factors_ = torch.randn(self.num_items, self.dim, generator=gen).to(self.device_)

    model = RandomFactors(args.dim, args.device).fit(split, graph)
    users_index = pd.Index(graph.vocabs["user"].ids)
    items_index = pd.Index(graph.vocabs["item"].ids)
    excluded = _pairs_matrix([split.train, split.valid], users_index, items_index)[0]
    target = _pairs_matrix([split.test], users_index, items_index)[0]
    eval_users = torch.from_numpy(np.flatnonzero(np.diff(target.indptr) > 0)).to(args.device)
    n = len(eval_users)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    ours, peer = [], []
    result = top = None
    for _ in range(args.repeats):
        sync(); t = time.perf_counter()
        result = evaluate(model, split, graph, on="test")
        sync(); ours.append(time.perf_counter() - t)
        sync(); t = time.perf_counter()
        top = _peer(model.user_factors_, model.item_factors_, eval_users, excluded, target)
        sync(); peer.append(time.perf_counter() - t)

    # same ranking: recall@20 from the peer's top-k equals kgrec's
    tgt = target[eval_users.cpu().numpy()]
    top20 = top[:, :20].cpu().numpy()
    hits = np.asarray([tgt[i, top20[i]].sum() for i in range(n)], dtype=np.float64)
    peer_recall = float((hits / np.diff(tgt.indptr)).mean())

    t_ours, t_peer = statistics.median(ours), statistics.median(peer)
    report = {
        "data": args.data,
        "users": n,
        "items": len(items_index),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "kgrec_seconds": t_ours,
        "peer_seconds": t_peer,
        "kgrec_users_per_s": n / t_ours,
        "peer_users_per_s": n / t_peer,
        "ratio_kgrec_over_peer": (n / t_ours) / (n / t_peer),
        "kgrec_recall@20": result.metrics["recall@20"],
        "peer_recall@20": peer_recall,
        "repeats": args.repeats,
        "command": "python -m benchmarks.eval_speed " + " ".join(sys.argv[1:] if argv is None else argv),
        "git_sha": git_sha(),
    }
    out = Path(args.out)
    atomic_write_text(out / "eval_speed.json", json.dumps(report, indent=2) + "\n")
    md = (
        f"# Evaluator speed ({args.data}, {n} users x {len(items_index)} items, {args.device}, "
        f"{report['threads']} threads)\n\n"
        "| evaluator | seconds | users/s |\n|---|---|---|\n"
        f"| kgrec.eval.evaluate (all metrics @10/20/50 + MRR) | {t_ours:.3f} | {n / t_ours:,.0f} |\n"
        f"| naive peer (dense matmul + mask + topk, no metrics) | {t_peer:.3f} | {n / t_peer:,.0f} |\n\n"
        f"Ratio kgrec / peer (users/s): **{report['ratio_kgrec_over_peer']:.2f}**. "
        f"recall@20 kgrec {report['kgrec_recall@20']:.6f} vs peer top-K {peer_recall:.6f}.\n\n"
        f"Command: `{report['command']}` (git {report['git_sha']})\n"
    )
    atomic_write_text(out / "eval_speed.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

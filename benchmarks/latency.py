"""Serving latency of a trained :class:`kgrec.KGRec`: single-user and batch recommend after load.

``python -m benchmarks.latency --ckpt PATH --out DIR [--device cpu] [--calls 1000] [--threads 2]``

Loads a ``kgrec fit`` checkpoint (``ckpt`` of ml-1m for the committed row), then times, in
one process:

* **single**: ``rec.recommend(user, k=10)`` for ``calls`` random known users, one call
  each (the full public path: id lookup, scoring every item, masking the user's training
  items, top-k, a DataFrame with names) -> p50 / p99 milliseconds;
* **peer**: the bare lower bound on the same embeddings, ``topk(u @ V.T)`` with the seen
  items masked, no id handling or output frame -> p50, and kgrec / peer p50 ratio;
* **batch**: ``rec.recommend(users, k=10)`` over every user in batches of ``batch``
  -> users/s;
* **new user**: ``rec.recommend_new_user(liked_items=<5 items>)`` (one forward pass over
  the whole graph) -> p50 ms;
* **explain**: ``rec.explain(user, top item)`` -> p50 ms;
* **load**: ``KGRec.load`` wall time.

Writes ``DIR/latency.json`` and ``DIR/latency.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from kgrec.io import atomic_write_text
from kgrec.models import KGRec

__all__ = ["main"]


def _percentiles(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "calls": len(ms)}


def _time(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        t0 = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by kgrec fit")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--slow-calls", type=int, default=50, help="calls for new-user and explain timings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    rec = KGRec.load(args.ckpt, device=args.device)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    user_ids = [str(u) for u in rec.user_ids_]
    item_ids = [str(i) for i in rec.item_ids_]
    users = [user_ids[i] for i in rng.integers(0, rec.num_users, args.calls)]

    for u in users[:50]:  # warm-up
        rec.recommend(u, k=10)
    single = _time(lambda u: rec.recommend(u, k=10), [(u,) for u in users])

    emb, items = rec.user_embeddings_, rec.item_embeddings_
    index = {u: i for i, u in enumerate(user_ids)}
    train = rec.train_

    @torch.no_grad()
    def peer(u):
        i = index[u]
        scores = emb[i] @ items.t()
        scores[torch.from_numpy(train.indices[train.indptr[i]:train.indptr[i + 1]].astype(np.int64))] = float("-inf")
        return torch.topk(scores, 10).indices

    for u in users[:50]:
        peer(u)
    peer_times = _time(peer, [(u,) for u in users])

    all_users = user_ids
    t0 = time.perf_counter()
    for s in range(0, len(all_users), args.batch):
        rec.recommend(all_users[s:s + args.batch], k=10)
    batch_s = time.perf_counter() - t0

    slow_users = users[:args.slow_calls]
    liked_sets = [[item_ids[j] for j in rng.choice(rec.num_items, 5, replace=False)] for _ in slow_users]
    rec.recommend_new_user(liked_items=liked_sets[0], k=10)
    new_user = _time(lambda liked: rec.recommend_new_user(liked_items=liked, k=10), [(s,) for s in liked_sets])
    tops = [(u, rec.recommend(u, k=1).item.iloc[0]) for u in slow_users]
    rec.explain(*tops[0])
    explain = _time(lambda u, it: rec.explain(u, it, k=3), tops)

    single_p = _percentiles(single)
    peer_p = _percentiles(peer_times)
    result = {
        "checkpoint": str(args.ckpt),
        "dataset": rec.graph_.dataset_name,
        "users": rec.num_users, "items": rec.num_items, "dim": int(items.size(1)),
        "device": str(rec.device_), "threads": args.threads,
        "load_s": load_s,
        "single_recommend": single_p,
        "peer_topk": peer_p,
        "single_over_peer_p50": single_p["p50_ms"] / peer_p["p50_ms"],
        "batch_recommend_users_per_s": len(all_users) / batch_s,
        "batch_size": args.batch,
        "new_user_recommend": _percentiles(new_user),
        "explain": _percentiles(explain),
        "python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine(),
        "command": "python -m benchmarks.latency " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "latency.json", json.dumps(result, indent=2))
    lines = [
        f"# Serving latency — {result['dataset']} ({result['users']:,} users, {result['items']:,} items, d={result['dim']})",
        "",
        f"Device {result['device']}, {args.threads} threads; checkpoint load {load_s:.2f} s.",
        "",
        "| operation | p50 ms | p99 ms | calls |",
        "|---|---|---|---|",
        f"| recommend(user, k=10) | {single_p['p50_ms']:.2f} | {single_p['p99_ms']:.2f} | {single_p['calls']} |",
        f"| peer: topk(u·Vᵀ) with seen masked | {peer_p['p50_ms']:.3f} | {peer_p['p99_ms']:.3f} | {peer_p['calls']} |",
        f"| recommend_new_user(5 liked items) | {result['new_user_recommend']['p50_ms']:.1f} | "
        f"{result['new_user_recommend']['p99_ms']:.1f} | {result['new_user_recommend']['calls']} |",
        f"| explain(user, item, k=3) | {result['explain']['p50_ms']:.1f} | {result['explain']['p99_ms']:.1f} | "
        f"{result['explain']['calls']} |",
        "",
        f"Batch recommend (batches of {args.batch}, k=10): **{result['batch_recommend_users_per_s']:,.0f} users/s**. "
        f"Single-call overhead over the bare top-k peer: {result['single_over_peer_p50']:.1f}x at p50.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    atomic_write_text(out / "latency.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

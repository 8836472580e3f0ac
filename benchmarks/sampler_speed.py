"""Sampler speed: kgrec's samplers against PyG's ``LinkNeighborLoader`` in the same run.

    python -m benchmarks.speed sampler --out benchmarks/results/speed [--device cpu|cuda]

For every graph, batch size and fanout it times a full PyG mini-batch loop
(``LinkLoader`` with kgrec's :class:`~kgrec.sampler.HeteroNeighborSampler`,
``LinkNeighborLoader`` on PyG's native backend when torch-sparse or pyg-lib is
importable, and kgrec's :class:`~kgrec.sampler.FullGraphSampler` as fanout
``"full"``): sampling, binary negatives (1 per positive) and PyG's
``filter_fn`` that builds the ``HeteroData`` batch are all inside the timing.

Graphs: ``ml-1m`` is the user–item graph (``interacts`` + ``rev_interacts``)
of the train part of ``split_dataset(load_dataset("ml-1m"), "random",
seed=2026)``; ``ml-1m-kg`` is kgrec's whole graph of that split (plus tag and
user-attribute edges); ``powerlaw-<E>`` are synthetic user–item graphs with
Zipf-distributed degrees and ``E`` unique interactions.

Rows (``DIR/speed.json``, merged with rows of other benches already there):
``{"bench": "sampler", "impl": "kgrec"|"pyg", "graph", "batch_size",
"fanout", "device", "batches_per_s", "edges_per_s", ...}``; the Markdown
table (``DIR/speed_sampler.md``) adds kgrec/pyg ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import torch_geometric.typing as pyg_typing
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkLoader, LinkNeighborLoader
from torch_geometric.sampler import NegativeSampling

from benchmarks.speed_rows import header, merge_rows, other_run_note, run_meta, same_run, table_meta
from kgrec.io import atomic_write_text
from kgrec.sampler import FullGraphSampler, HeteroNeighborSampler

__all__ = ["main", "make_powerlaw_graph", "load_ml1m_graph", "time_loaders", "time_train_steps"]

UI = ("user", "interacts", "item")
IU = ("item", "rev_interacts", "user")


def make_powerlaw_graph(num_edges: int, seed: int = 0, users_per_edge: float = 1 / 50,
                        items_per_edge: float = 1 / 200, exponent: float = 0.8) -> HeteroData:
    """A user–item graph whose user and item degrees follow Zipf laws
    (:func:`kgrec.data.scale.powerlaw_pairs`), with about ``num_edges`` unique
    interactions and their reverses."""
    from kgrec.data.scale import powerlaw_pairs

    num_users = max(int(num_edges * users_per_edge), 10)
    num_items = max(int(num_edges * items_per_edge), 10)
    users, items = powerlaw_pairs(num_users, num_items, num_edges, seed=seed, exponent=exponent)
    edge_index = torch.stack([users, items])
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    data[UI].edge_index = edge_index
    data[IU].edge_index = edge_index.flip(0)
    return data


def load_ml1m_graph(full: bool = False) -> HeteroData:
    """kgrec's graph of the train part of a seeded random split of ml-1m;
    only the user–item edge types unless ``full``."""
    from kgrec.data import load_dataset
    from kgrec.graph import build_graph
    from kgrec.data.split import split_dataset

    dataset = load_dataset("ml-1m")
    data = build_graph(dataset, split_dataset(dataset, "random", seed=2026)).data
    if full:
        return data
    out = HeteroData()
    for node_type in ("user", "item"):
        out[node_type].num_nodes = data[node_type].num_nodes
    out[UI].edge_index, out[IU].edge_index = data[UI].edge_index, data[IU].edge_index
    return out


def _cycle(loader):
    while True:
        yield from loader


def time_loaders(loaders: Dict, max_batches: int, max_seconds: float, rounds: int = 3,
                 warmup: int = 2) -> Dict[object, Dict[str, float]]:
    """Time whole mini-batches of several loaders in alternating segments
    (``rounds`` per loader, each up to ``max_batches / rounds`` batches or
    ``max_seconds / rounds`` seconds), so that a shared machine's changing
    load hits every loader alike. Loaders restart when exhausted."""
    streams = {key: _cycle(loader) for key, loader in loaders.items()}
    acc = {key: {"num": 0, "seconds": 0.0, "edges": 0, "nodes": 0} for key in loaders}
    for stream in streams.values():
        for _ in range(warmup):
            next(stream)
    per_batches, per_seconds = math.ceil(max_batches / rounds), max_seconds / rounds
    for _ in range(rounds):
        for key, stream in streams.items():
            a, num = acc[key], 0
            start = time.perf_counter()
            while num < per_batches and (num < 1 or time.perf_counter() - start < per_seconds):
                batch = next(stream)
                a["edges"] += sum(batch[et].edge_index.size(1) for et in batch.edge_types)
                a["nodes"] += sum(batch[nt].n_id.numel() for nt in batch.node_types)
                num += 1
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            a["seconds"] += time.perf_counter() - start
            a["num"] += num
    return {key: {"num_batches": a["num"], "seconds": round(a["seconds"], 4),
                  "batches_per_s": a["num"] / a["seconds"], "edges_per_s": a["edges"] / a["seconds"],
                  "edges_per_batch": a["edges"] / a["num"], "nodes_per_batch": a["nodes"] / a["num"]}
            for key, a in acc.items()}


class _TinyModel(torch.nn.Module):
    """A 2-layer heterogeneous GraphSAGE over learnable node embeddings with a
    dot-product link score: the training step used to compare sampled and
    full-graph batches end to end (sampling + model)."""

    def __init__(self, data: HeteroData, dim: int = 32) -> None:
        super().__init__()
        from torch_geometric.nn import HeteroConv, SAGEConv

        self.emb = torch.nn.ModuleDict({nt: torch.nn.Embedding(data[nt].num_nodes, dim) for nt in data.node_types})
        self.convs = torch.nn.ModuleList(
            HeteroConv({et: SAGEConv(dim, dim) for et in data.edge_types}, aggr="sum") for _ in range(2))

    def forward(self, batch) -> torch.Tensor:
        x = {nt: self.emb[nt](batch[nt].n_id) for nt in batch.node_types}
        for conv in self.convs:
            out = conv(x, batch.edge_index_dict)
            x = {nt: out.get(nt, x[nt]).relu() for nt in x}
        eli = batch[UI].edge_label_index
        score = (x["user"][eli[0]] * x["item"][eli[1]]).sum(-1)
        return torch.nn.functional.binary_cross_entropy_with_logits(score, batch[UI].edge_label)


def time_train_steps(loader, model: _TinyModel, max_batches: int, max_seconds: float) -> float:
    """Training steps per second: batch construction + forward + backward + SGD step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(batch):
        optimizer.zero_grad()
        model(batch).backward()
        optimizer.step()

    stream = iter(loader)
    step(next(stream))  # warm-up
    num, start = 0, time.perf_counter()
    for batch in stream:
        step(batch)
        num += 1
        if num >= max_batches or (num >= 2 and time.perf_counter() - start > max_seconds):
            break
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return num / (time.perf_counter() - start)


def _native_backend() -> Optional[str]:
    if pyg_typing.WITH_PYG_LIB:
        return "pyg-lib"
    if pyg_typing.WITH_TORCH_SPARSE:
        return "torch-sparse"
    return None


def bench_graph(name: str, data: HeteroData, device: str, batch_sizes: Sequence[int],
                fanouts: Sequence[List[int]], max_batches: int, max_seconds: float,
                with_full: bool = True, train_steps: bool = True, full_train_steps: bool = True) -> List[dict]:
    rows = []
    model = _TinyModel(data).to(device) if train_steps else None
    neg = NegativeSampling("binary", 1)
    graph_nodes = sum(data[nt].num_nodes for nt in data.node_types)
    graph_edges = sum(data[et].num_edges for et in data.edge_types)
    data_dev = data.to(device)
    common = {"bench": "sampler", "graph": name, "device": device, "graph_nodes": graph_nodes,
              "graph_edges": graph_edges, "neg_sampling": "binary:1"}

    def add(impl, fanout, batch_size, stats, loader, **extra):
        row = {**common, "impl": impl, "batch_size": batch_size, "fanout": fanout, **stats, **extra}
        row["node_coverage"] = round(stats["nodes_per_batch"] / graph_nodes, 4)
        row["load_avg_1min"] = round(os.getloadavg()[0], 2)  # the machine may be shared
        if model is not None and (fanout != "full" or full_train_steps):
            row["train_steps_per_s"] = time_train_steps(loader, model, max(3, max_batches // 3), max_seconds / 2)
        rows.append(row)
        steps = f" {row['train_steps_per_s']:7.2f} steps/s" if "train_steps_per_s" in row else ""
        print(f"  {name:>14} {impl:>5} fanout={fanout:>8} batch={batch_size:>6}: "
              f"{row['batches_per_s']:8.2f} batches/s {row['edges_per_s']:14,.0f} edges/s{steps}", flush=True)

    backend = _native_backend() if device == "cpu" else None
    for batch_size in batch_sizes:
        loaders, extra = {}, {}
        for fanout in fanouts:
            label = ",".join(map(str, fanout))
            t0 = time.perf_counter()
            sampler = HeteroNeighborSampler(data_dev, fanout, backend="kgrec", device=device)
            extra[("kgrec", label)] = {"setup_s": round(time.perf_counter() - t0, 3), "exclude_seed_edges": True}
            loaders[("kgrec", label)] = LinkLoader(data_dev, sampler, edge_label_index=(UI, None),
                                                   neg_sampling=neg, batch_size=batch_size, shuffle=True)
            if backend is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t0 = time.perf_counter()
                    loaders[("pyg", label)] = LinkNeighborLoader(data, fanout, edge_label_index=(UI, None),
                                                                 neg_sampling=neg, batch_size=batch_size,
                                                                 shuffle=True)
                extra[("pyg", label)] = {"setup_s": round(time.perf_counter() - t0, 3), "pyg_backend": backend,
                                         "exclude_seed_edges": False}
        if with_full:
            t0 = time.perf_counter()
            sampler = FullGraphSampler(data_dev, device=device)
            extra[("kgrec", "full")] = {"setup_s": round(time.perf_counter() - t0, 3), "exclude_seed_edges": True}
            loaders[("kgrec", "full")] = LinkLoader(data_dev, sampler, edge_label_index=(UI, None),
                                                    neg_sampling=neg, batch_size=batch_size, shuffle=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = time_loaders(loaders, max_batches, max_seconds)
            for (impl, label), loader in loaders.items():
                add(impl, label, batch_size, stats[(impl, label)], loader, **extra[(impl, label)])
    return rows


def _config(row: dict) -> tuple:
    """What a row measured; a new run replaces old rows of the same configuration only."""
    return tuple(row.get(k) for k in ("device", "graph", "batch_size", "fanout", "impl"))


def peer_name(rows: List[dict]) -> str:
    return next((r["pyg_backend"] for r in rows if r.get("pyg_backend")), "native")


def to_markdown(rows: List[dict]) -> str:
    meta = table_meta(rows)
    lines = [
        "# Sampler speed",
        "",
        header("sampler", meta),
        "One PyG mini-batch = sampling + binary negatives (1:1) + PyG's `filter_fn` building the `HeteroData`. "
        "kgrec drops each batch's seed edges from its subgraph (PyG keeps them). "
        "`full` = kgrec's `FullGraphSampler` (the whole train graph every step). "
        "ml-1m = user–item train graph of a random 80/10/10 split (seed 2026); ml-1m-kg = kgrec's whole graph "
        "of that split. Train steps/s = batch + forward/backward/SGD of a 2-layer hetero GraphSAGE (dim 32) "
        "on the loader's batches: where sampled and full-graph batches compare end to end "
        "(timed separately on a few batches, so noisier than batches/s). Rows carry the machine's load average.",
    ]
    peer_rows = {(r["device"], r["graph"], r["batch_size"], r["fanout"]): r for r in rows if r["impl"] == "pyg"}
    for r in rows:
        if (r["impl"], r["graph"], r["batch_size"], r["fanout"]) == ("kgrec", "ml-1m", 2048, "10,10"):
            other = peer_rows.get((r["device"], "ml-1m", 2048, "10,10"))
            if other and not same_run(r, other):
                lines += ["", other_run_note(r, other, f"Headline ({r['device']}) kgrec vs PyG LinkNeighborLoader")]
            elif other:
                base = other["batches_per_s"]
                lines += ["", f"**Headline ({r['device']}): ml-1m, fanout [10, 10], batch 2,048 — kgrec "
                              f"{r['batches_per_s']:.2f} batches/s vs PyG `LinkNeighborLoader` ({peer_name(rows)}) "
                              f"{base:.2f} batches/s: {r['batches_per_s'] / base:.2f}×.**"]
    wins = []
    for r in rows:
        full = next((f for f in rows if f["impl"] == "kgrec" and f["fanout"] == "full" and
                     _config(f)[:3] == _config(r)[:3] and "train_steps_per_s" in f), None)
        if r["impl"] == "kgrec" and r["fanout"] != "full" and full and "train_steps_per_s" in r:
            a, b = r["train_steps_per_s"], full["train_steps_per_s"]
            wins.append(f"{r['graph']} batch {r['batch_size']:,}: fanout {r['fanout']} {a:.2f} vs full {b:.2f} "
                        f"steps/s ({'sampled' if a > b else 'full graph'} wins, {max(a, b) / min(a, b):.1f}×)")
    if wins:
        lines += ["", "Sampled vs full-graph batches, end to end (train steps/s, same batch size): "
                  + "; ".join(wins) + "."]
    lines += [
        "",
        "| device | graph | graph edges | batch | fanout | impl | batches/s | edges/s | edges/batch | node coverage "
        "| kgrec / pyg | train steps/s |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        other = peer_rows.get((r["device"], r["graph"], r["batch_size"], r["fanout"]))
        ratio_text = ""
        if other and r["impl"] == "kgrec":  # a ratio only between rows of one run
            ratio_text = f"{r['batches_per_s'] / other['batches_per_s']:.2f}×" if same_run(r, other) else "other run"
        impl = r["impl"] + (f" ({r['pyg_backend']})" if r.get("pyg_backend") else "")
        lines.append(
            f"| {r['device']} | {r['graph']} | {r['graph_edges']:,} | {r['batch_size']:,} | {r['fanout']} | {impl} | "
            f"{r['batches_per_s']:.2f} | {r['edges_per_s']:,.0f} | {r['edges_per_batch']:,.0f} | "
            f"{r['node_coverage']:.1%} | {ratio_text} | "
            + (f"{r['train_steps_per_s']:.2f} |" if "train_steps_per_s" in r else "– |")
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed sampler", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for speed.json and speed_sampler.md")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--graphs", default=None,
                        help="comma list of ml-1m, ml-1m-kg, powerlaw-<edges> (default: ml-1m,ml-1m-kg,powerlaw-1000000,"
                             "powerlaw-10000000; on cuda also powerlaw-100000000)")
    parser.add_argument("--batch-sizes", default="2048,8192")
    parser.add_argument("--fanouts", default="10,10;20,10",
                        help="semicolon-separated fanout lists, e.g. '10,10;20,10'")
    parser.add_argument("--max-batches", type=int, default=30)
    parser.add_argument("--max-seconds", type=float, default=15.0,
                        help="time budget per loader (spread over 3 alternating rounds)")
    parser.add_argument("--no-train-steps", action="store_true",
                        help="skip timing a tiny 2-layer GraphSAGE training step on each loader")
    parser.add_argument("--max-full-train-edges", type=int, default=5_000_000,
                        help="time full-graph training steps only on graphs with at most this many edges (memory)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (PyG's sampler uses one)")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    graphs = args.graphs or ("ml-1m,ml-1m-kg,powerlaw-1000000,powerlaw-10000000"
                             + (",powerlaw-100000000" if args.device == "cuda" else ""))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    fanouts = [[int(k) for k in f.split(",")] for f in args.fanouts.split(";")]
    meta = run_meta(args.device, args.threads)

    out = args.out / "speed.json"
    rows: List[dict] = []
    for name in graphs.split(","):
        print(f"graph {name}", flush=True)
        if name in ("ml-1m", "ml-1m-kg"):
            try:
                data = load_ml1m_graph(full=name == "ml-1m-kg")
            except Exception as error:  # noqa: BLE001 - e.g. no cached copy on an offline machine
                print(f"  skipped: {error}", flush=True)
                continue
        elif name.startswith("powerlaw-"):
            data = make_powerlaw_graph(int(float(name.split("-", 1)[1])))
        else:
            parser.error(f"unknown graph {name!r}; use ml-1m, ml-1m-kg or powerlaw-<edges>")
        num_edges = sum(data[et].num_edges for et in data.edge_types)
        rows += [{**row, **meta} for row in bench_graph(
            name, data, args.device, batch_sizes, fanouts if num_edges <= 50_000_000 else fanouts[:1],
            args.max_batches, args.max_seconds, train_steps=not args.no_train_steps,
            full_train_steps=num_edges <= args.max_full_train_edges)]
        # Written after every graph; rows of other benches, devices and graphs are kept.
        sampler_rows = merge_rows(args.out, rows, "sampler", _config)
        order = {g: i for i, g in enumerate(dict.fromkeys(r["graph"] for r in sampler_rows))}
        sampler_rows.sort(key=lambda r: (r["device"], order[r["graph"]], r["batch_size"]))
        atomic_write_text(args.out / "speed_sampler.md", to_markdown(sampler_rows))
    print(f"wrote {out} and {args.out / 'speed_sampler.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training speed: a kgrec epoch against PyG's LightGCN (BPR) on the same split, device and run;
and kgrec's epoch time and peak memory on a large synthetic graph.

    python -m benchmarks.speed train --out benchmarks/results/speed [--device cpu|cuda] [--data ml-1m]
    python -m benchmarks.speed train --out DIR --device cuda --data ml-1m \\
        --scale 1000000,200000,100000000 --scale-steps 20

**Epochs** (``--data``): the random 80/10/10 split of the dataset (seed 2026), its graph
with text features, then ``--epochs`` training epochs of

- ``kgrec``: exactly the module :meth:`kgrec.models.KGRec.fit` trains (``KGRec.build``),
  with the arguments of the ``kgrec`` entry of the dataset's benchmark suite
  (``benchmarks/suites/ml1m.yaml`` for ml-1m: full-graph steps of 16,384 edges), under a
  plain Lightning ``Trainer`` without validation, checkpoints or logger;
- ``pyg-lightgcn``: the LightGCN baseline (:class:`kgrec.baselines.LightGCN`, PyG's
  ``LightGCN`` with BPR over the same train edges) with the suite's ``lightgcn`` arguments
  (batch 8,192; ml-100k's suite where the dataset's has none). Its epochs are timed inside
  its training loop (``epoch_seconds_``), validation excluded.

Each epoch is timed from its first to its last step (CUDA synchronised); the row reports the
first epoch (which pays for warm-up: graph layout, kernels) and the median of the others.

**Scale** (``--scale USERS,ITEMS,EDGES``): a synthetic graph built directly as tensors —
Zipf-distributed user and item degrees, two tags per item from 1,000, three user attributes
from 100, and a KG of ``ITEMS / 2`` entities (two edges per item, four relations), random
384-d vectors standing in for text embeddings (``float16``) — then kgrec's module with the
ml-1m suite's settings (batch ``--scale-batch``) for one epoch, or ``--scale-steps`` steps
(the epoch time is then the median step after the first times the steps per epoch, marked
extrapolated). Peak memory is
``torch.cuda.max_memory_allocated`` above what was still allocated when the model started
(after a garbage collection) on a GPU, the process's peak RSS on the CPU.

Rows (``DIR/speed.json``, merged with rows of other benches): ``{"bench": "train", "impl",
"data", "device", "batch_size", "train_edges", "epoch_s", "first_epoch_s", "peak_memory_mb",
...}``; the Markdown (``DIR/speed_train.md``) adds kgrec / LightGCN ratios.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.run import deep_merge
from benchmarks.speed_rows import (cuda_peak_start, header, merge_rows, other_run_note, run_meta, same_run,
                                   table_meta)
from kgrec.data.scale import SCALE_KEYS
from kgrec.io import atomic_write_text

__all__ = ["main", "make_scale_graph", "time_kgrec", "time_lightgcn"]

SUITES = Path(__file__).resolve().parent / "suites"
_SUITE_OF = {"ml-100k": "ml100k.yaml", "ml-1m": "ml1m.yaml", "synthetic": "synthetic.yaml"}


def suite_args(data: str, model: str) -> dict:
    """``model``'s arguments in the benchmark suite of ``data`` (ml-100k's suite if that one lacks it)."""
    import yaml

    for name in (_SUITE_OF.get(data), "ml100k.yaml"):
        if name is None:
            continue
        models = yaml.safe_load((SUITES / name).read_text()).get("models", {})
        if model in models:
            return dict(models[model] or {})
    return {}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_memory_mb(device: str, base: int = 0) -> tuple[float, str]:
    """The peak since :func:`_reset_peak`: on CUDA above the ``base`` bytes it found allocated."""
    if device.startswith("cuda"):
        return (torch.cuda.max_memory_allocated() - base) / 2**20, "cuda max_memory_allocated above the start"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def _reset_peak(device: str) -> int:
    """On CUDA :func:`~benchmarks.speed_rows.cuda_peak_start`; 0 on the CPU (its peak is the process's)."""
    return cuda_peak_start() if device.startswith("cuda") else 0


class _EpochTimer(Callback):
    """Lightning callback: wall time and step count of every training epoch, first step to last
    (Lightning's own ``Timer`` callback keeps only per-stage totals and does not wait for the GPU).

    With ``per_step`` it also keeps each step's end time (CUDA synchronised after every step),
    so a short run can leave its warm-up step out.
    """

    def __init__(self, device: str, per_step: bool = False) -> None:
        self.device, self.per_step = device, per_step
        self.seconds: List[float] = []
        self.steps: List[int] = []
        self.step_ends: List[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        _sync(self.device)
        self._start, self._steps = time.perf_counter(), 0
        self.step_ends = [self._start]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._steps += 1
        if self.per_step:
            _sync(self.device)
            self.step_ends.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, module) -> None:
        _sync(self.device)
        self.seconds.append(time.perf_counter() - self._start)
        self.steps.append(self._steps)


def _summary(seconds: Sequence[float]) -> dict:
    rest = list(seconds[1:]) or list(seconds)
    return {"first_epoch_s": round(seconds[0], 4), "epoch_s": round(statistics.median(rest), 4),
            "epochs": len(seconds)}


def time_kgrec(split, graph, args: dict, device: str, epochs: int, precision: str = "32-true",
               max_steps: Optional[int] = None) -> dict:
    """Train kgrec's module (what ``KGRec(**args).fit`` trains) for ``epochs`` epochs; timings and memory.

    With ``max_steps`` only that many steps of one epoch run, and ``epoch_s`` is extrapolated
    to the full epoch (``extrapolated: true``).
    """
    import lightning as L

    from kgrec.models import KGRec

    L.seed_everything(2026, verbose=False)
    est = KGRec(**{**args, "device": device})
    dm, module = est.build(split, graph)
    timer = _EpochTimer(device, per_step=bool(max_steps))
    trainer = L.Trainer(
        max_epochs=1 if max_steps else epochs, limit_train_batches=max_steps or 1.0,
        accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, precision=precision,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    base = _reset_peak(device)
    trainer.fit(module, dm)
    peak, kind = _peak_memory_mb(device, base)
    train_edges = int(dm.train_edges()[0].numel())
    steps_per_epoch = len(dm.train_dataloader())
    row = {"impl": "kgrec", "batch_size": dm.loader.batch_size, "train_edges": train_edges,
           "steps_per_epoch": steps_per_epoch, "precision": precision,
           "peak_memory_mb": round(peak, 1), "memory": kind, "args": args}
    if max_steps:
        ends = timer.step_ends
        durations = [b - a for a, b in zip(ends, ends[1:])]
        timed = durations[1:] or durations  # the first step pays for warm-up (graph layout, kernels)
        per_step = statistics.median(timed)
        row.update(steps_timed=len(timed), step_s=round(per_step, 4), first_step_s=round(durations[0], 4),
                   first_epoch_s=None, epoch_s=round(per_step * steps_per_epoch, 4), epochs=0,
                   extrapolated=True)
    else:
        row.update(_summary(timer.seconds), extrapolated=False)
    return row


def time_lightgcn(split, graph, args: dict, device: str, epochs: int) -> dict:
    """Train the LightGCN baseline (PyG's ``LightGCN``, BPR) for ``epochs`` epochs; its epoch timings."""
    from kgrec.baselines import LightGCN

    args = {k: v for k, v in args.items() if k not in ("max_epochs", "eval_every", "patience")}
    base = _reset_peak(device)
    model = LightGCN(**args, max_epochs=epochs, eval_every=epochs, patience=1, device=device).fit(split, graph)
    peak, kind = _peak_memory_mb(device, base)
    train_edges = int(graph.train_edge_index().size(1))
    return {"impl": "pyg-lightgcn", "batch_size": model.batch_size, "train_edges": train_edges,
            "steps_per_epoch": -(-train_edges // model.batch_size), "precision": "32-true",
            "peak_memory_mb": round(peak, 1), "memory": kind, "args": args,
            **_summary(model.epoch_seconds_), "extrapolated": False}


def load_split_graph(data: str, text_encoder: str, device: str):
    """The random split (seed 2026) of ``data`` and its graph with text features, every input kept
    (:func:`kgrec.world.build_world`; the model selects its own, as ``KGRec.fit`` does)."""
    from kgrec.data import DataConfig
    from kgrec.graph import InputConfig
    from kgrec.text import HashingTextEncoder, TextEncoder
    from kgrec.world import build_world

    encoder = HashingTextEncoder(dim=384) if text_encoder == "hashing" else TextEncoder(device=device)
    world = build_world(DataConfig(data, split="random", split_seed=2026), InputConfig(kg_min_degree=1), encoder)
    return world.split, world.graph


def make_scale_graph(num_users: int, num_items: int, num_edges: int, seed: int = 0, text_dim: int = 384):
    """A synthetic kgrec graph (:class:`kgrec.graph.GraphData`) built directly as tensors:
    ``num_edges`` power-law user–item edges (all of them TRAIN edges), tags, KG entities and
    random ``text_dim`` stand-in text features (:func:`kgrec.graph.scale_graph`, without
    communities: only the sizes matter for speed)."""
    from kgrec.data.scale import powerlaw_pairs
    from kgrec.graph import scale_graph

    users, items = powerlaw_pairs(num_users, num_items, num_edges, seed=seed)
    return scale_graph(users, items, num_users, num_items, seed=seed, text_dim=text_dim,
                       name=f"synthetic-{num_users}x{num_items}x{num_edges}")


def memory_slopes(rows: List[dict]) -> List[str]:
    """Per device (and GPU, precision, memory kind), a least-squares line through the scale rows'
    peak memory against train edges.

    What the measured sizes say about a larger graph (``configs/synthetic_scale.yaml``'s
    :data:`kgrec.data.scale.SCALE_KEYS` interactions, taken as train edges) before it is run;
    one line per such group with at least two distinct sizes.
    """
    lines = []
    groups: dict[tuple, list] = {}
    for r in rows:  # rows only fit one line when measured alike
        if r["impl"] == "kgrec" and str(r["data"]).startswith("synthetic-"):
            key = (r["device"], r.get("gpu") or "", r.get("precision") or "", r["memory"])
            groups.setdefault(key, []).append(r)
    for (device, gpu, precision, _), scale in sorted(groups.items()):
        scale.sort(key=lambda r: r["train_edges"])
        if len({r["train_edges"] for r in scale}) < 2:
            continue
        edges = [float(r["train_edges"]) for r in scale]
        peaks = [r["peak_memory_mb"] * 2**20 for r in scale]
        slope, intercept = np.polyfit(edges, peaks, 1)
        target = SCALE_KEYS["edges"]  # the synthetic_scale.yaml graph's interactions (98% of them TRAIN)
        projected = (intercept + slope * target) / 2**30
        lines.append(
            f"**Scale rows ({', '.join(x for x in (device, gpu, precision) if x)}, {len(scale)} sizes): peak memory ≈ "
            f"{intercept / 2**30:.1f} GiB + {slope:,.0f} bytes per train edge; a straight-line projection to "
            f"{target / 1e6:,.0f}M train edges (the `configs/synthetic_scale.yaml` graph, an upper bound) gives "
            f"{projected:,.1f} GiB ({scale[0]['memory']}).**"
        )
    return lines


def to_markdown(rows: List[dict]) -> str:
    meta = table_meta(rows)
    lines = [
        "# Training speed",
        "",
        header("train", meta),
        "An epoch = every train edge once, first step to last (no validation). kgrec = the module "
        "`KGRec.fit` trains with the dataset suite's `kgrec` arguments (text + tags (+ KG), cold-view loss, "
        "ials loss, full-graph steps); pyg-lightgcn = the LightGCN baseline (PyG `LightGCN`, BPR, 3 layers) "
        "with the suite's `lightgcn` arguments. `epoch s` is the median epoch after the first. Scale rows: "
        "the synthetic graph of `make_scale_graph`; an extrapolated epoch is steps timed × steps per epoch.",
    ]
    lgcn = {(r["device"], r["data"]): r for r in rows if r["impl"] == "pyg-lightgcn"}
    for r in rows:
        peer = lgcn.get((r["device"], r["data"]))
        if r["impl"] == "kgrec" and peer and not same_run(r, peer):
            lines += ["", other_run_note(r, peer, f"{r['data']} ({r['device']}) kgrec vs PyG LightGCN")]
        elif r["impl"] == "kgrec" and peer:
            lines += ["", f"**{r['data']} ({r['device']}): kgrec epoch {r['epoch_s']:.3f} s (batch "
                          f"{r['batch_size']:,}) vs PyG LightGCN + BPR {peer['epoch_s']:.3f} s (batch "
                          f"{peer['batch_size']:,}): kgrec's epoch takes {r['epoch_s'] / peer['epoch_s']:.2f}× LightGCN's.**"]
    for line in memory_slopes(rows):
        lines += ["", line]
    lines += [
        "",
        "| device | data | impl | train edges | batch | steps/epoch | first epoch s | epoch s | peak MB (kind) | git |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        first = "–" if r.get("first_epoch_s") is None else f"{r['first_epoch_s']:.3f}"
        epoch = f"{r['epoch_s']:.3f}"
        if r.get("extrapolated"):
            n = r["steps_timed"]
            epoch += f" (extrapolated from {n} step{'s' if n != 1 else ''}" + (
                ", warm-up included)" if r["steps_per_epoch"] == 1 else ")")
        lines.append(f"| {r['device']} | {r['data']} | {r['impl']} | {r['train_edges']:,} | {r['batch_size']:,} | "
                     f"{r['steps_per_epoch']:,} | {first} | {epoch} | {r['peak_memory_mb']:,.0f} ({r['memory']}) | "
                     f"{r.get('git_sha', '')} |")
    return "\n".join(lines) + "\n"


def _config(row: dict) -> tuple:
    return tuple(row.get(k) for k in ("device", "data", "impl", "batch_size"))


def _write(out_dir: Path, rows: List[dict]) -> None:
    train_rows = merge_rows(out_dir, rows, "train", _config)
    atomic_write_text(out_dir / "speed_train.md", to_markdown(train_rows))


def _scale_spec(text: str) -> tuple[int, int, int]:
    try:
        users, items, edges = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale wants USERS,ITEMS,EDGES (e.g. 1000000,200000,100000000); "
                                         f"got {text!r}") from None
    if min(users, items, edges) <= 0 or edges > users * items:
        raise argparse.ArgumentTypeError(f"--scale {text!r}: counts must be positive and EDGES <= USERS x ITEMS")
    return users, items, edges


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="directory for speed.json and speed_train.md")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--data", default="ml-1m",
                        help="comma list of datasets whose epochs to time (ml-100k, ml-1m, synthetic); '' for none")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model (the first is reported apart)")
    parser.add_argument("--models", default="kgrec,pyg-lightgcn", help="comma list of kgrec, pyg-lightgcn")
    parser.add_argument("--precision", default="32-true", help="kgrec's Lightning precision (e.g. bf16-mixed)")
    parser.add_argument("--text-encoder", default="minilm", choices=["minilm", "hashing"],
                        help="node text features: the packaged MiniLM, or hashing (no model; for smoke runs)")
    parser.add_argument("--scale", type=_scale_spec, default=None, metavar="USERS,ITEMS,EDGES",
                        help="also time kgrec on a synthetic graph of this size")
    parser.add_argument("--scale-batch", type=int, default=1 << 20, help="train edges per step on the scale graph")
    parser.add_argument("--scale-steps", type=int, default=None,
                        help="time only this many steps on the scale graph and extrapolate the epoch")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU")
    for name in ("epochs", "scale_batch", "scale_steps", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {value}")
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - {"kgrec", "pyg-lightgcn"}
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from kgrec, pyg-lightgcn")
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = {"bench": "train", "device": args.device, **run_meta(args.device)}
    rows: List[dict] = []
    for data in [d for d in args.data.split(",") if d]:
        print(f"data {data}", flush=True)
        split, graph = load_split_graph(data, args.text_encoder, args.device)
        for model in models:
            if model == "kgrec":
                row = time_kgrec(split, graph, suite_args(data, "kgrec"), args.device, args.epochs, args.precision)
            else:
                row = time_lightgcn(split, graph, suite_args(data, "lightgcn"), args.device, args.epochs)
            rows.append({**meta, "data": data, **row})
            print(f"  {model}: epoch {row['epoch_s']:.3f} s (first {row['first_epoch_s']:.3f} s), "
                  f"peak {row['peak_memory_mb']:,.0f} MB", flush=True)
            _write(args.out, rows)
    if args.scale:
        started = time.perf_counter()
        graph = make_scale_graph(*args.scale)
        built = time.perf_counter() - started
        print(f"scale graph {graph.dataset_name} built in {built:.1f} s", flush=True)
        kgrec_args = deep_merge(suite_args("ml-1m", "kgrec"), {"loader": {"batch_size": args.scale_batch}})
        row = time_kgrec(None, graph, kgrec_args, args.device, 1, args.precision, max_steps=args.scale_steps)
        rows.append({**meta, "data": graph.dataset_name, **row, "graph_build_s": round(built, 1)})
        print(f"  kgrec: epoch {row['epoch_s']:.2f} s{' (extrapolated)' if row['extrapolated'] else ''}, "
              f"peak {row['peak_memory_mb']:,.0f} MB", flush=True)
        _write(args.out, rows)
    if not rows:
        parser.error("nothing to time: give --data and/or --scale")
    print(f"wrote {args.out / 'speed.json'} and {args.out / 'speed_train.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

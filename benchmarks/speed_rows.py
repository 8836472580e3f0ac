"""What the benchmarks share: the git sha a result was measured at (every bench), and for the
``benchmarks.speed`` subcommands the run metadata, the Markdown header line and merging a
run's rows into ``DIR/speed.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable, Hashable, List, Optional

import torch
import torch_geometric

from kgrec.io import atomic_write_text

__all__ = ["git_sha", "run_meta", "header", "merge_rows", "cuda_peak_start"]


def cuda_peak_start() -> int:
    """Start measuring a CUDA peak; returns the bytes still allocated, which the peak leaves out.

    A finished model's trainer, module and data module refer to each other, so their GPU
    copies (the graph, the flattened adjacency) live on until a collection, and
    ``reset_peak_memory_stats`` only lowers the peak to what is allocated now: collect first,
    then count from what is left (``max_memory_allocated() - start``), so one model's
    leftovers never land in the next one's peak.
    """
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def git_sha() -> str:
    """Short HEAD sha, with ``-dirty`` when code under kgrec/ or benchmarks/ differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent.parent).stdout.strip()

    try:
        sha = git("rev-parse", "--short", "HEAD")
        # results written by earlier runs (benchmarks/results) do not make the code dirty
        changed = git("status", "--porcelain", "--", "kgrec", "benchmarks", ":(exclude)benchmarks/results")
        return sha + ("-dirty" if changed else "")
    except Exception:  # noqa: BLE001 - not a git checkout or no commit yet
        return "unknown"


def run_meta(device: str, threads: Optional[int] = None) -> dict:
    """What every row of a run carries: git, library versions, threads, machine, GPU name."""
    return {"git_sha": git_sha(), "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "threads": threads if threads is not None else torch.get_num_threads(),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu",
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None}


def same_run(a: dict, b: dict) -> bool:
    """Whether two speed rows can be compared as a ratio: the same commit and thread count
    (rows of one invocation). ``merge_rows`` keeps rows of earlier runs, so a table can hold
    a row and its peer from different runs; their ratio would compare two machines' states."""
    return (a.get("git_sha"), a.get("threads")) == (b.get("git_sha"), b.get("threads"))


def other_run_note(row: dict, peer: dict, what: str) -> str:
    """The line a table prints instead of a ratio between rows of different runs."""
    return (f"{what}: the rows come from different runs (git {row.get('git_sha')}, {row.get('threads')} thread(s) "
            f"vs git {peer.get('git_sha')}, {peer.get('threads')} thread(s)); no ratio. Re-run both in one "
            "command to compare them.")


def table_meta(rows: List[dict]) -> dict:
    """What a table's header states: the first row's run, with the commit and thread count
    said to be per row where the rows (merged from several runs) differ in them."""
    meta = dict(rows[0]) if rows else {}
    for key, label in (("git_sha", "per row (see the git column)"), ("threads", "per-row")):
        if len({r.get(key) for r in rows}) > 1:
            meta[key] = label
    return meta


def header(command: str, meta: dict) -> str:
    """The line under a speed table's title: the command and where it ran."""
    gpu = f", {meta['gpu']}" if meta.get("gpu") else ""
    return (f"`python -m benchmarks.speed {command}` — git {meta.get('git_sha')}, torch {meta.get('torch')}, "
            f"torch_geometric {meta.get('torch_geometric')}, {meta.get('threads')} thread(s), "
            f"{meta.get('machine')}{gpu}.")


def merge_rows(out_dir: Path, rows: List[dict], bench: str, config: Callable[[dict], Hashable]) -> List[dict]:
    """Write ``rows`` into ``out_dir/speed.json``, replacing earlier rows of ``bench`` that measured
    the same ``config`` and keeping every other row (other benches, devices, graphs); atomic.

    Returns all of ``bench``'s rows now in the file, earlier ones first.
    """
    out = out_dir / "speed.json"
    previous = json.loads(out.read_text()) if out.exists() else []
    done = {config(r) for r in rows}
    merged = [r for r in previous if r.get("bench") != bench or config(r) not in done] + rows
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(merged, indent=1) + "\n")
    return [r for r in merged if r.get("bench") == bench]

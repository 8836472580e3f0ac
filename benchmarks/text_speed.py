"""Text encoding speed: texts/s of the default encoder, and a cached re-run against the first run.

``python -m benchmarks.text_speed --data ml-1m --out DIR [--device cpu|cuda] [--model PATH] [--threads N]``

On the item texts of ``--data`` (``"Toy Story (1995). Genres: Animation, Children's, Comedy"``):

* **first run**: a fresh :class:`~kgrec.text.TextEncoder` and an empty
  :class:`~kgrec.text.EmbeddingCache` — model load, encoding and cache writes, as a user's
  first run pays them;
* **throughput**: texts/s of ``TextEncoder.encode`` over all item texts with the model
  already loaded (no cache), the median of ``--repeats`` runs;
* **cached re-run**: a second fresh encoder over the same cache directory, in the same
  process. It must encode nothing and never load the model; embeddings must be identical.

Reports the ratio first-run / cached-run wall time (and encode-only / cached-run) and
writes ``DIR/text_speed.json`` and ``DIR/text_speed.md``. Not a test: the numbers depend
on the machine and are compared only within one run.
"""

from __future__ import annotations

from benchmarks.speed_rows import git_sha
from kgrec.io import atomic_write_text
import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["main"]


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _markdown(row: dict) -> str:
    return "\n".join([
        f"# Text encoding speed — {row['dataset']} items, {row['device']}",
        "",
        f"{row['num_texts']} item texts ({row['num_unique']} distinct), model `{row['model']}` "
        f"(backend {row['backend']}, {row['dim']}-d), batch size {row['batch_size']}, "
        f"{row['threads']} torch threads on {row['cpu']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| encode throughput (model loaded, no cache) | {row['texts_per_s']:.1f} texts/s |",
        f"| first run (load + encode + cache write) | {row['first_run_s']:.2f} s |",
        f"| cached re-run (fresh encoder, same cache) | {row['cached_run_s'] * 1e3:.1f} ms |",
        f"| texts encoded by the cached re-run | {row['cached_run_encoded']} |",
        f"| model loaded by the cached re-run | {row['cached_run_loaded_model']} |",
        f"| **speed-up: first run / cached re-run** | **{row['speedup_vs_first_run']:.0f}×** |",
        f"| speed-up: encode only / cached re-run | {row['speedup_vs_encode_only']:.0f}× |",
        "",
        f"Command: `{row['command']}`",
        "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="ml-1m", help="dataset name or directory (default ml-1m)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--model", default=None, help="model directory or hub name (default: packaged MiniLM)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1, help="throughput repeats (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items (smoke runs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from kgrec.data import load_dataset
    from kgrec.graph import build_vocabs
    from kgrec.text import EmbeddingCache, TextEncoder, TextTemplates, write_node_texts

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.data)
    vocabs = {"item": build_vocabs(dataset)["item"]}
    texts = [t for t in write_node_texts(dataset, None, vocabs, TextTemplates(user_history=False)).texts["item"]
             if t is not None][: args.limit]

    def make_encoder() -> TextEncoder:
        return TextEncoder(model=args.model, device=args.device, batch_size=args.batch_size)

    with tempfile.TemporaryDirectory(prefix="kgrec-text-speed-") as cache_dir:
        first_encoder = make_encoder()
        start = time.perf_counter()
        first = EmbeddingCache(cache_dir).encode(first_encoder, texts, show_progress=False)
        first_s = time.perf_counter() - start

        times = []
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            first_encoder.encode(texts, show_progress=False)
            if first_encoder.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        encode_s = statistics.median(times)

        second_encoder = make_encoder()
        start = time.perf_counter()
        second = EmbeddingCache(cache_dir).encode(second_encoder, texts, show_progress=False)
        cached_s = time.perf_counter() - start

    if not torch.equal(first.embeddings, second.embeddings):
        raise SystemExit("cached re-run returned different embeddings")
    row = {
        "benchmark": "text_speed",
        "dataset": args.data,
        "num_texts": len(texts),
        "num_unique": first.num_encoded,
        "model": first_encoder.model_source,
        "backend": first_encoder.backend,
        "dim": int(first.embeddings.shape[1]),
        "fingerprint": first_encoder.fingerprint(),
        "device": first_encoder.device,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "texts_per_s": len(texts) / encode_s,
        "encode_only_s": encode_s,
        "first_run_s": first_s,
        "cached_run_s": cached_s,
        "cached_run_encoded": second.num_encoded,
        "cached_run_loaded_model": second_encoder._model is not None,
        "speedup_vs_first_run": first_s / cached_s,
        "speedup_vs_encode_only": encode_s / cached_s,
        "git_sha": git_sha(),
        "torch": torch.__version__,
        "command": "python -m benchmarks.text_speed " + " ".join(argv if argv is not None else os.sys.argv[1:]),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_atomic(out / "text_speed.json", json.dumps(row, indent=2) + "\n")
    _write_atomic(out / "text_speed.md", _markdown(row))
    print(_markdown(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

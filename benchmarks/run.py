"""Benchmark runner: models x splits x seeds, all scored by :func:`kgrec.eval.evaluate`.

Command line (DESIGN.md, "Benchmarks")::

    python -m benchmarks.run --data <dataset name | pre-split dir> [--split random|temporal|leave_one_out|cold_item]
        [--seed N] --models mostpop,itemknn,bprmf,als,lightgcn,textknn --out DIR [--device cpu|cuda]
    python -m benchmarks.run --suite benchmarks/suites/ml100k.yaml --out DIR

writes ``DIR/results.json`` (one row per model x split x seed), ``DIR/results.md``,
PNG plots, ``DIR/COMMAND.txt`` (the command line that produced them) and each row's
per-user test metrics under ``DIR/per_user/`` (what the report's paired comparisons
read; see :mod:`benchmarks.paired`). ``--valid`` adds
each model's validation metrics to its row and a validation table to the report: the
numbers to choose settings and defaults by, so that choice never reads the test set.

Model names resolve by importing classes, never through a hand-written table: every
recommender class in the ``__all__`` of a module listed in :data:`MODEL_MODULES` is
known by its lower-cased class name (``BPRMF`` -> ``bprmf``), plus any extra names the
class lists in a ``benchmark_variants`` class attribute (``{"kgrec-notext": {"use_text":
False}}``). A dotted class path (``my.module.MyRecommender``) works too. Adding a model
package is one line in :data:`MODEL_MODULES`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from benchmarks.paired import per_user_path, write_per_user
from benchmarks.report import require_plotting, write_report
from benchmarks.speed_rows import cuda_peak_start, git_sha
from kgrec.data import DataConfig, load_dataset, split_dataset
from kgrec.errors import ConfigError, KGRecError
from kgrec.eval import evaluate
from kgrec.graph import InputConfig
from kgrec.io import atomic_write_text
from kgrec.models import BaseRecommender
from kgrec.text import TextEncoder
from kgrec.world import build_world

__all__ = ["MODEL_MODULES", "deep_merge", "known_models", "resolve_model", "run", "main"]

#: Modules whose ``__all__`` recommender classes are benchmark models (add one line per package).
MODEL_MODULES: tuple[str, ...] = ("kgrec.baselines", "kgrec.models")

SPLITS = ("random", "temporal", "leave_one_out", "cold_item", "presplit")


def known_models() -> dict[str, tuple[str, dict[str, Any]]]:
    """``name -> (class path, init-arg overrides)`` for every importable benchmark model."""
    names: dict[str, tuple[str, dict[str, Any]]] = {}
    for module_name in MODEL_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a model package not installed / not written yet
            continue
        for attr in getattr(module, "__all__", ()):
            klass = getattr(module, attr)
            if isinstance(klass, type) and issubclass(klass, BaseRecommender) and klass is not BaseRecommender:
                path = f"{klass.__module__}.{klass.__qualname__}"
                names[klass.__name__.lower()] = (path, {})
                for variant, overrides in getattr(klass, "benchmark_variants", {}).items():
                    names[variant] = (path, dict(overrides))
    return names


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, group by group: ``{"loss": {"a": 1}}`` over
    ``{"loss": {"b": 2}}`` keeps both (a variant's switch and the suite's settings of the group)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _import_class(path: str) -> type:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"a model class path must be a dotted name such as kgrec.models.KGRec; got {path!r}.")
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        klass = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import model class {path!r}: {exc}") from exc
    if not (isinstance(klass, type) and issubclass(klass, BaseRecommender)):
        raise ConfigError(f"{path!r} is not a kgrec BaseRecommender subclass.")
    return klass


def resolve_model(name: str) -> tuple[type, dict[str, Any]]:
    """The class and init-arg overrides behind a model name or a dotted class path."""
    known = known_models()
    if name in known:
        path, overrides = known[name]
        return _import_class(path), dict(overrides)
    if "." in name or ":" in name:
        return _import_class(name), {}
    raise ConfigError(
        f"Unknown model {name!r} in --models; known models: {', '.join(sorted(known))} "
        "(or give a dotted class path such as kgrec.baselines.BPRMF)."
    )


# ---------------------------------------------------------------- measurement
class _PeakMemory:
    """Peak resident memory (CPU, sampled every 20 ms) or peak CUDA allocation, in MiB.

    On CUDA the peak counts from what is still allocated when the block starts, after a
    garbage collection (:func:`~benchmarks.speed_rows.cuda_peak_start`), so no row carries
    the previous model's leftovers.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak = 0
        self._base = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        if self.cuda:
            self._base = cuda_peak_start()
        else:
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"<tensor {tuple(value.shape)}>"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# ---------------------------------------------------------------------- runner
def _model_specs(models: Sequence[str], settings: dict[str, dict]) -> list[tuple[str, type, dict]]:
    specs = []
    for name in models:
        entry = settings.get(name) or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"model {name!r}: settings must be a mapping of init args; got {entry!r}.")
        entry = dict(entry)
        if "class_path" in entry:
            klass, args = _import_class(entry.pop("class_path")), {}
            if "init_args" in entry:
                extra = sorted(set(entry) - {"init_args"})
                if extra:
                    raise ConfigError(
                        f"model {name!r}: {extra} beside class_path and init_args; put init args "
                        "under init_args (or drop init_args and list them beside class_path)."
                    )
                entry = entry["init_args"] or {}
                if not isinstance(entry, dict):
                    raise ConfigError(f"model {name!r}: init_args must be a mapping; got {entry!r}.")
        else:
            klass, args = resolve_model(name)
        args = deep_merge(args, entry)
        params = set(inspect.signature(klass.__init__).parameters) - {"self"}
        unknown = set(args) - params
        if unknown:
            raise ConfigError(
                f"model {name!r} ({klass.__name__}) has no parameter(s) {sorted(unknown)}; "
                f"valid: {sorted(params)}."
            )
        specs.append((name, klass, args))
    return specs


def _needs_text(klass: type, args: dict) -> bool:
    return bool(getattr(klass, "uses_text_features", False)) and args.get("text_features") is None


def split_and_graph(dataset, strategy: str | None, seed: int, specs, device: str, need_valid: str | None = None,
                    data: str | None = None):
    """The split of ``dataset`` and its graph (:func:`kgrec.world.build_world`), with text features if a
    model in ``specs`` reads them; every input kept (each model selects its own).

    ``need_valid`` (why the caller needs validation, the error's first words) refuses a split
    without validation interactions, naming ``data`` (the dataset as the user gave it), before
    any text is encoded.
    """
    config = DataConfig(path=data or dataset.name, split=strategy, split_seed=seed)
    split = split_dataset(dataset, strategy, seed=seed)
    if need_valid and len(split.valid) == 0:
        raise ConfigError(f"{need_valid}: the {split.strategy!r} split of {data or dataset.name!r} has no "
                          "validation interactions to score; give a split with a valid part (a valid file in "
                          "a pre-split directory).")
    use_text = any(_needs_text(k, a) for _, k, a in specs)
    encoder = TextEncoder(device=device) if use_text else None
    world = build_world(config, InputConfig(use_text=use_text, kg_min_degree=1), encoder, dataset=dataset)
    return world.split, world.graph


def make_model(klass: type, args: dict, seed: int, device: str) -> BaseRecommender:
    """``klass(**args)`` with the run's seed (unless the settings fix one) and device."""
    params = set(inspect.signature(klass.__init__).parameters)
    kwargs = dict(args)
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    if "device" in params:
        kwargs["device"] = device
    return klass(**kwargs)


def run(
    data: str,
    models: Sequence[str],
    out: str | os.PathLike,
    splits: Sequence[str | None] = (None,),
    seeds: Sequence[int] = (2026,),
    device: str = "cpu",
    settings: dict[str, dict] | None = None,
    ks: Sequence[int] = (10, 20, 50),
    threads: int | None = None,
    command: str | None = None,
    plots: bool = True,
    append: bool = False,
    valid: bool = False,
) -> list[dict]:
    """Run every model on every split and seed; write results under ``out``; return the rows.

    Args:
        data: Built-in dataset name (``ml-100k``, ``ml-1m``, ``synthetic``) or a path
            (atomic files, or a pre-split directory).
        models: Model names (see :func:`resolve_model`).
        out: Output directory.
        splits: Split strategies; ``None`` picks ``presplit`` for a pre-split directory
            and ``random`` otherwise.
        seeds: Split and model seeds (a model's ``seed`` argument is set to it).
        device: ``cpu`` or ``cuda`` (passed to models with a ``device`` argument).
        settings: ``name -> init args`` (or ``{"class_path": ..., "init_args": ...}``).
        ks: Metric cut-offs.
        threads: ``torch.set_num_threads`` for the run (``None`` leaves it).
        command: The command line recorded in ``COMMAND.txt`` and every row.
        plots: Write PNG plots.
        append: Keep the rows already in ``out/results.json`` (a row with the same model,
            dataset, split and seed is replaced) and add the command to ``COMMAND.txt``.
        valid: Also score every model on the validation interactions (train items excluded)
            and store them as the row's ``valid`` metrics: the numbers to choose settings by,
            so model selection never looks at test. Models that early-stop on valid
            (kgrec, BPR-MF, LightGCN) have seen that metric, so compare their valid numbers
            with one another, not with models that have not.
    """
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"The '--device' option must be one of {{'cpu', 'cuda'}}; got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was requested but CUDA is not available; use --device cpu.")
    for strategy in splits:
        if strategy is not None and strategy not in SPLITS:
            raise ConfigError(f"The '--split' option must be one of {set(SPLITS)}; got {strategy!r}.")
    if threads:
        torch.set_num_threads(threads)
    if plots:
        require_plotting()
    specs = _model_specs(models, settings or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous: list[dict] = []
    if append and (out / "results.json").is_file():
        previous = json.loads((out / "results.json").read_text())
    if command:
        old = (out / "COMMAND.txt").read_text() if append and (out / "COMMAND.txt").is_file() else ""
        atomic_write_text(out / "COMMAND.txt", old + command + "\n")
    dataset = load_dataset(data)
    sha = git_sha()
    rows: list[dict] = []

    def merged() -> list[dict]:
        keys = {(r["model"], r["dataset"], r["split"], r["seed"]) for r in rows}
        return [r for r in previous if (r["model"], r["dataset"], r["split"], r["seed"]) not in keys] + rows

    for strategy in splits:
        for seed in seeds:
            split, graph = split_and_graph(dataset, strategy, seed, specs, device, need_valid="--valid" if valid else None, data=data)
            for name, klass, args in specs:
                model = make_model(klass, args, seed, device)
                print(f"[benchmarks] {dataset.name} {split.strategy} seed={seed} {name} ...", flush=True)
                with _PeakMemory(device) as mem:
                    start = time.perf_counter()
                    model.fit(split, graph)
                    train_s = time.perf_counter() - start
                    result = evaluate(model, split, graph, on="test", ks=ks, per_user=True)
                    cold = None
                    if split.cold_items:
                        cold = evaluate(model, split, graph, on="test", ks=ks, cold_only=True, per_user=True)
                    on_valid = evaluate(model, split, graph, on="valid", ks=ks) if valid else None
                eval_s = result.seconds + (cold.seconds if cold else 0.0)
                config = {"class_path": f"{klass.__module__}.{klass.__qualname__}",
                          "init_args": _jsonable(model.get_params())}
                row = {
                    "model": name,
                    "dataset": dataset.name,
                    "split": split.strategy,
                    "seed": seed,
                    "metrics": result.metrics,
                    "cold": cold.metrics if cold else None,
                    "valid": on_valid.metrics if on_valid else None,
                    "train_seconds": round(train_s, 3),
                    "eval_seconds": round(eval_s, 3),
                    "peak_memory_mb": mem.mib,
                    "device": device,
                    "git_sha": sha,
                    "config": config,
                    "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
                    "num_users": result.num_users,
                    "skipped_users": result.skipped_users,
                    "eval_counts": result.counts,
                    "cold_num_users": cold.num_users if cold else None,
                    "data_report": _jsonable(getattr(dataset, "report", {}) or {}),
                    "best_epoch": getattr(model, "best_epoch_", None),
                    "epochs": getattr(model, "epochs_", getattr(model, "epochs_trained_", None)),
                    # per-user test metrics, for paired comparisons (benchmarks.paired)
                    "per_user": write_per_user(out, per_user_path(dataset.name, split.strategy, seed, name),
                                               result.per_user),
                    "cold_per_user": (write_per_user(out, per_user_path(dataset.name, split.strategy, seed, name,
                                                                        cold=True), cold.per_user)
                                      if cold else None),
                    "torch_threads": torch.get_num_threads(),
                    "command": command,
                }
                rows.append(row)
                shown = f" valid ndcg@20={on_valid.metrics['ndcg@20']:.4f}" if on_valid else ""
                print(f"[benchmarks]   recall@20={result.metrics.get('recall@20', float('nan')):.4f} "
                      f"ndcg@20={result.metrics.get('ndcg@20', float('nan')):.4f}{shown} "
                      f"train={train_s:.1f}s eval={eval_s:.1f}s", flush=True)
                atomic_write_text(out / "results.json", json.dumps(merged(), indent=2) + "\n")
    write_report(merged(), out, plots=plots)
    return rows


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset name (ml-100k, ml-1m, synthetic) or a directory / pre-split directory")
    parser.add_argument("--split", help="comma-separated split strategies (default: random, or presplit for a pre-split dir)")
    parser.add_argument("--seed", help="comma-separated seeds (default 2026)")
    parser.add_argument("--models", help="comma-separated model names or dotted class paths")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--device", default=None, help="cpu or cuda (default cpu)")
    parser.add_argument("--suite", help="YAML suite: data, splits, seeds, models (name -> init args)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: suite value or torch's)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--append", action="store_true",
                        help="keep rows already in OUT/results.json (same model/split/seed rows are replaced)")
    parser.add_argument("--valid", action="store_true",
                        help="also score every model on the validation interactions (the metric to tune by)")
    return parser.parse_args(argv)


def load_suite(suite_path: str | None, data: str | None) -> tuple[dict[str, Any], str]:
    """The ``--suite`` YAML (``{}`` without one) and the dataset: ``--data``, else the suite's."""
    suite: dict[str, Any] = {}
    if suite_path:
        path = Path(suite_path)
        if not path.is_file():
            raise ConfigError(f"--suite {suite_path!r}: no such file.")
        suite = yaml.safe_load(path.read_text()) or {}
    data = data or suite.get("data")
    if not data:
        raise ConfigError("--data is required (a dataset name or directory) unless the --suite names one.")
    return suite, data


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in argv_list)
    try:
        suite, data = load_suite(args.suite, args.data)
        settings = dict(suite.get("models") or {})
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(settings)
        if not models:
            raise ConfigError("--models is required: e.g. --models mostpop,itemknn,bprmf,als,lightgcn,textknn")
        if args.split:
            splits = [s.strip() for s in args.split.split(",")]
        else:
            splits = list(suite.get("splits") or [None])
        try:
            seeds = [int(s) for s in args.seed.split(",")] if args.seed else [int(s) for s in suite.get("seeds", [2026])]
        except ValueError:
            raise ConfigError(f"--seed must be comma-separated integers; got {args.seed!r}.") from None
        run(
            data, models, args.out, splits=splits, seeds=seeds,
            device=args.device or suite.get("device", "cpu"), settings=settings,
            ks=tuple(suite.get("ks", (10, 20, 50))), threads=args.threads or suite.get("threads"),
            command=command, plots=not args.no_plots, append=args.append, valid=args.valid,
        )
    except KGRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

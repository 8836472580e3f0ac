"""The ``kgrec`` command line.

``kgrec info`` inspects a dataset, its split and its graph; ``kgrec fit|validate|test|predict``
train and evaluate (LightningCLI); ``kgrec recommend|similar|explain|export|ids`` serve a
trained checkpoint (:class:`kgrec.KGRec`). Library errors
(:class:`kgrec.errors.KGRecError`) print one line and exit with status 2, without
a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

import pandas as pd
import yaml

from kgrec.data import SPLIT_STRATEGIES, DataConfig
from kgrec.data.scale import SCALE_DATASET, check_scale
from kgrec.errors import ConfigError, KGRecError
from kgrec.graph import InputConfig
from kgrec.models import KGRec
from kgrec.world import build_world

__all__ = ["main"]


def _info(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kgrec info", description="Summarise a dataset, its split and the graph "
                                     "a model trains on (text is not encoded here).")
    parser.add_argument("--data", required=True,
                        help=f"built-in name (ml-100k, ml-1m, synthetic, {SCALE_DATASET}) or a directory")
    parser.add_argument("--split", choices=SPLIT_STRATEGIES, default=None, help="split strategy (default: random, or presplit)")
    parser.add_argument("--seed", type=int, default=DataConfig.split_seed, help="split seed")
    parser.add_argument("--scale", default=None, metavar="YAML",
                        help=f"sizes of the {SCALE_DATASET} graph, as dataset.scale takes them, "
                             "e.g. '{users: 100000, items: 20000, edges: 10200000}'")
    args = parser.parse_args(argv)
    scale = None
    if args.scale is not None:
        if args.data != SCALE_DATASET:
            raise ConfigError(f"--scale sizes the {SCALE_DATASET!r} graph only; --data is {args.data!r}.")
        try:
            scale = yaml.safe_load(args.scale)
        except yaml.YAMLError as err:
            raise ConfigError(f"--scale {args.scale!r} is not YAML: {err}".splitlines()[0]) from None
        if not isinstance(scale, dict):
            raise ConfigError(f"--scale must be a mapping such as '{{users: 1000, items: 200, edges: 5000}}'; "
                              f"got {args.scale!r}.")
        scale = check_scale(scale, "--scale")
    config = DataConfig(path=args.data, split=args.split, split_seed=args.seed, scale=scale)
    logging.getLogger("kgrec").setLevel(logging.WARNING)  # the summary is this command's output, not a log line
    print(build_world(config, InputConfig(use_text=False)).summary())
    return 0


def _add_ckpt(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `kgrec fit` (e.g. .../checkpoints/best.ckpt)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="table (terminal), json (a list of objects) or csv")


def _print_frame(frame, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(frame.to_dict(orient="records"), indent=2, ensure_ascii=False, default=float))
    elif fmt == "csv":
        print(frame.to_csv(index=False), end="")
    elif frame.empty:
        print("(nothing to show)")
    else:
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _load(args):
    return KGRec.load(args.ckpt, device=args.device)


def _csv_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _recommend(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kgrec recommend", description="Top-k items for a known user, or for a new user given liked items "
        "and/or attributes (cold start).")
    _add_ckpt(parser)
    parser.add_argument("--user", action="append", default=[], help="raw user id (repeat for several)")
    parser.add_argument("--liked", default=None, help="new user: comma-separated raw ids of items they liked")
    parser.add_argument("--attr", action="append", default=[], metavar="FIELD=VALUE",
                        help="new user: an attribute, e.g. --attr age=25-34 (repeatable)")
    parser.add_argument("--k", type=int, default=10, help="number of items (default 10)")
    parser.add_argument("--include-seen", action="store_true", help="keep the user's training items")
    _add_format(parser)
    args = parser.parse_args(argv)
    new_user = args.liked is not None or args.attr
    if bool(args.user) == bool(new_user):
        raise ConfigError("give --user ID for a known user, or --liked/--attr for a new user (not both).")
    attrs = {}
    for pair in args.attr:
        field, sep, value = pair.partition("=")
        if not sep or not field or not value:
            raise ConfigError(f"--attr {pair!r} must read FIELD=VALUE, e.g. --attr age=25-34.")
        attrs[field] = value
    rec = _load(args)
    if args.user:
        frame = rec.recommend(args.user, k=args.k, exclude_seen=not args.include_seen)
    else:
        frame = rec.recommend_new_user(liked_items=_csv_list(args.liked), attributes=attrs, k=args.k,
                                       exclude_seen=not args.include_seen)
    _print_frame(frame, args.format)
    return 0


def _similar(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kgrec similar", description="Items nearest to an item.")
    _add_ckpt(parser)
    parser.add_argument("--item", required=True, help="raw item id")
    parser.add_argument("--k", type=int, default=10)
    _add_format(parser)
    args = parser.parse_args(argv)
    _print_frame(_load(args).similar_items(args.item, k=args.k), args.format)
    return 0


def _explain(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kgrec explain",
                                     description="Why an item suits a user: the strongest graph paths, in words.")
    _add_ckpt(parser)
    parser.add_argument("--user", required=True, help="raw user id")
    parser.add_argument("--item", required=True, help="raw item id")
    parser.add_argument("--k", type=int, default=3, help="number of explanations (default 3)")
    _add_format(parser)
    args = parser.parse_args(argv)
    found = _load(args).explain(args.user, args.item, k=args.k)
    if args.format == "table":
        if not found:
            print(f"No path of up to three hops links user {args.user!r} to item {args.item!r} in the training graph.")
        for rank, e in enumerate(found, 1):
            print(f"{rank}. {e.text}")
            print(f"   path: {' -> '.join(f'{t} {i}' for t, i in e.path)}   (score {e.score:.3f})")
        return 0
    frame = pd.DataFrame([e.to_dict() for e in found],
                         columns=["kind", "text", "score", "via", "support", "path", "relations"])
    if args.format == "csv":
        frame["path"] = frame["path"].map(" > ".join)
        frame["relations"] = frame["relations"].map(" > ".join)
    _print_frame(frame, args.format)
    return 0


def _export(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kgrec export", description="Write user and item embeddings.")
    _add_ckpt(parser)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=("parquet", "npy"), default="parquet",
                        help="parquet (users.parquet, items.parquet) or npy (+ id lists)")
    args = parser.parse_args(argv)
    for path in _load(args).export_embeddings(args.out, fmt=args.format):
        print(path)
    return 0


def _ids(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="kgrec ids", description="List the user or item ids a model knows.")
    _add_ckpt(parser)
    parser.add_argument("--type", choices=("user", "item"), default="user")
    args = parser.parse_args(argv)
    rec = _load(args)
    if args.type == "user":
        print("\n".join(str(u) for u in rec.user_ids_))
    else:
        print("\n".join(f"{i}\t{n}" for i, n in zip(rec.item_ids_, rec.item_names)))
    return 0


def _lightning(subcommand: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        from kgrec.training.cli import run_cli  # LightningCLI and jsonargparse: only for these commands

        try:
            run_cli([subcommand, *argv])
        except Exception as err:  # Lightning's own misconfiguration errors read well on one line
            if type(err).__name__ in ("MisconfigurationException",) or isinstance(err, (RuntimeError, ValueError)) \
                    and "accelerator" in str(err).lower():
                raise KGRecError(str(err).splitlines()[0]) from None
            raise
        return 0

    run.__doc__ = f"kgrec {subcommand}: LightningCLI (see kgrec {subcommand} --help)."
    return run


#: Subcommand name -> handler taking the remaining arguments.
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "info": _info,
    "recommend": _recommend,
    "similar": _similar,
    "explain": _explain,
    "export": _export,
    "ids": _ids,
    **{name: _lightning(name) for name in ("fit", "validate", "test", "predict")},
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # kgrec's own progress at INFO; other libraries (transformers, sentence-transformers) only
    # when they warn, so `kgrec recommend --liked ...` prints recommendations, not model loading
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kgrec").setLevel(logging.INFO)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = ", ".join(sorted(COMMANDS))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"kgrec: error: unknown command {argv[0]!r}; known commands: {known}", file=sys.stderr)
            return 2
        print(f"usage: kgrec {{{known}}} ...", file=sys.stderr)
        return 0
    try:
        return COMMANDS[argv[0]](argv[1:])
    except KGRecError as err:
        print(f"kgrec: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``kgrec`` command line.

``kgrec info`` inspects a dataset, its split and its graph. Library errors
(:class:`kgrec.errors.KGRecError`) print one line and exit with status 2, without
a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from kgrec.errors import KGRecError

__all__ = ["main"]


def _info(argv: Sequence[str]) -> int:
    from kgrec.data import load_dataset
    from kgrec.graph import build_graph
    from kgrec.split import SPLIT_STRATEGIES, split_dataset

    parser = argparse.ArgumentParser(prog="kgrec info", description="Summarise a dataset, its split and its graph.")
    parser.add_argument("--data", required=True, help="built-in name (ml-100k, ml-1m, synthetic) or a directory")
    parser.add_argument("--split", choices=SPLIT_STRATEGIES, default=None, help="split strategy (default: random, or presplit)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    dataset = load_dataset(args.data)
    print(dataset.summary())
    split = split_dataset(dataset, args.split, seed=args.seed)
    print(split.summary())
    print(build_graph(dataset, split).summary())
    return 0


def _lightning(subcommand: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        from kgrec.lightning.cli import run_cli

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
    **{name: _lightning(name) for name in ("fit", "validate", "test", "predict")},
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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

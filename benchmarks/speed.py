"""Speed benchmarks, one subcommand per part of kgrec.

    python -m benchmarks.speed sampler --out DIR [--device cpu|cuda]   # benchmarks.sampler_speed
    python -m benchmarks.speed eval    --out DIR [--device cpu|cuda]   # benchmarks.eval_speed
    python -m benchmarks.speed text    --out DIR [--device cpu|cuda]   # benchmarks.text_speed
    python -m benchmarks.speed train   --out DIR [--device cpu|cuda]   # benchmarks.train_speed

Each writes rows ``{"bench": <subcommand>, "impl", ..., "device", ...}`` into
``DIR/speed.json``; the subcommand's module is imported only when it runs.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Optional, Sequence

__all__ = ["SUBCOMMANDS", "main"]

#: subcommand -> module whose ``main`` runs it
SUBCOMMANDS = {
    "sampler": "benchmarks.sampler_speed",
    "eval": "benchmarks.eval_speed",
    "text": "benchmarks.text_speed",
    "train": "benchmarks.train_speed",
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"benchmarks.speed: unknown subcommand {command!r}; choose one of {sorted(SUBCOMMANDS)}.",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command])
    run = module.main
    if inspect.signature(run).parameters:
        result = run(rest)
    else:  # a main() that parses sys.argv itself
        sys.argv = [f"benchmarks.speed {command}", *rest]
        result = run()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Did a change make kgrec slower? The same speed benchmark at two commits, interleaved.

    python -m benchmarks.ab_speed --base ac48133 --head HEAD --reps 4 --out DIR \\
        -- train --data ml-1m --models kgrec --epochs 3 --threads 2

Everything after ``--`` is a ``python -m benchmarks.speed`` command line (``train`` or
``sampler``; ``--out`` is added per run). Each commit is checked out in its own temporary
``git worktree`` (so uncommitted edits are never measured, and a commit from before this
module existed can be measured too), and the runs alternate A B, B A, A B, … so a drift
of the machine (thermal state, a neighbour's load) falls on both sides alike.

Why not one run per commit: on the 2-core development machine one ml-1m epoch measured
3.7 s one hour and 4.0 s the next at the same commit; a single pair of runs read a 9%
slowdown into noise. Repeats and their spread are what tell a change from the machine.

Writes ``DIR/ab_speed.json`` (every run's rows, the machine's 1-minute load average before
each run) and ``DIR/ab_speed.md`` (mean, standard deviation and head / base ratio per
configuration) and ``DIR/ab_speed.png`` (each run's value at both commits).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Hashable, Sequence

__all__ = ["METRICS", "run_order", "row_key", "summarise", "compare", "main"]

#: bench -> (the row's field a run is judged by, whether lower is better); train rows of a
#: synthetic ``--scale`` graph time steps, not epochs (``steps_timed`` in the row)
METRICS = {
    "train": (lambda row: "step_s" if "steps_timed" in row else "epoch_s", True),
    "sampler": (lambda row: "batches_per_s", False),
}


def run_order(reps: int) -> list[int]:
    """Which commit (0 = base, 1 = head) runs at each turn: A B, B A, A B, … for ``reps`` pairs."""
    return [side for rep in range(reps) for side in ((0, 1) if rep % 2 == 0 else (1, 0))]


def row_key(row: dict) -> Hashable:
    """One benchmark configuration: the rows of two commits with equal keys are compared."""
    return tuple(str(row.get(k)) for k in ("bench", "device", "data", "graph", "impl", "batch_size",
                                           "fanout", "threads"))


def _label(key: Hashable) -> str:
    names = ("bench", "device", "data", "graph", "impl", "batch", "fanout", "threads")
    return ", ".join(f"{n} {v}" for n, v in zip(names, key) if v not in ("None", ""))


def summarise(runs: Sequence[dict]) -> list[dict]:
    """Per configuration: each side's values, mean, standard deviation and the head / base ratio.

    ``runs``: ``{"side": 0 | 1, "rows": [speed rows]}`` per run. The difference is stated with
    its standard error (Welch), not a verdict: with 3-5 runs a side, a difference within about
    two standard errors is what the machine's own spread produces.
    """
    values: dict[Hashable, tuple[list, list]] = {}
    metric_of: dict[Hashable, tuple[str, bool]] = {}
    for run in runs:
        for row in run["rows"]:
            if row.get("bench") not in METRICS:
                continue
            pick, lower_is_better = METRICS[row["bench"]]
            field = pick(row)
            if row.get(field) is None:
                continue
            key = row_key(row)
            metric_of[key] = (field, lower_is_better)
            values.setdefault(key, ([], []))[run["side"]].append(float(row[field]))
    out = []
    for key, (base, head) in values.items():
        field, lower_is_better = metric_of[key]
        entry = {"config": _label(key), "metric": field, "lower_is_better": lower_is_better,
                 "base": base, "head": head}
        if base and head:
            mb, mh = statistics.fmean(base), statistics.fmean(head)
            sb = statistics.stdev(base) if len(base) > 1 else None
            sh = statistics.stdev(head) if len(head) > 1 else None
            entry.update(base_mean=mb, head_mean=mh, base_sd=sb, head_sd=sh, ratio=mh / mb)
            if sb is not None and sh is not None:
                se = (sb ** 2 / len(base) + sh ** 2 / len(head)) ** 0.5
                entry["diff_se"] = se
                entry["diff_in_se"] = (mh - mb) / se if se > 0 else None
        out.append(entry)
    return out


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def resolve(repo: Path, rev: str, flag: str) -> str:
    """The full sha of ``rev``, or a SystemExit that names the flag and the revision."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"benchmarks.ab_speed: {flag} {rev!r} is not a commit of the repository at {repo}; "
                         "give a sha, a branch or a tag (e.g. HEAD~3).") from None


def speed_runner(worktree: Path, speed_args: Sequence[str], out: Path) -> None:
    """Run ``python -m benchmarks.speed ARGS --out OUT`` with the worktree's code (its cwd comes
    first on ``sys.path``, ahead of an editable install of another checkout)."""
    env = dict(os.environ, PYTHONPATH=str(worktree))
    log = out.with_suffix(".log")
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "benchmarks.speed", *speed_args, "--out", str(out)],
                              cwd=worktree, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"benchmarks.ab_speed: the run in {worktree} failed (exit {done.returncode}); "
                         f"its log {log} ends:\n" + "\n".join(tail))


def compare(repo: Path, base: str, head: str, speed_args: Sequence[str], reps: int, work: Path,
            runner: Callable[[Path, Sequence[str], Path], None] | None = None,
            progress: Callable[[str], None] = print) -> list[dict]:
    """Check ``base`` and ``head`` out as worktrees under ``work``, run ``runner`` at each in
    :func:`run_order`, and return the runs ``{"side", "sha", "turn", "load_avg_1min", "rows"}``.
    ``runner`` defaults to :func:`speed_runner`. The worktrees are removed however the runs end."""
    runner = runner or speed_runner
    shas = (resolve(repo, base, "--base"), resolve(repo, head, "--head"))
    trees = [work / f"{side}-{sha[:12]}" for side, sha in zip(("base", "head"), shas)]
    runs: list[dict] = []
    try:
        for tree, sha in zip(trees, shas):
            _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), sha)
        order = run_order(reps)
        for turn, side in enumerate(order):
            out = work / f"run{turn:02d}-{('base', 'head')[side]}"
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            progress(f"[{turn + 1}/{len(order)}] {('base', 'head')[side]} {shas[side][:12]}  load {load}")
            runner(trees[side], speed_args, out)
            speed_json = out / "speed.json"
            rows = json.loads(speed_json.read_text()) if speed_json.exists() else []
            if not rows:
                raise SystemExit(f"benchmarks.ab_speed: the run at {shas[side][:12]} wrote no rows to {speed_json}.")
            runs.append({"side": side, "sha": shas[side], "turn": turn, "load_avg_1min": load, "rows": rows})
    finally:
        for tree in trees:
            if tree.exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo,
                               capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
    return runs


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def markdown(summary: Sequence[dict], base: str, head: str, command: str) -> str:
    lines = [f"# Speed at two commits: base {base[:12]} against head {head[:12]}", "",
             f"`{command}`", "",
             "Runs alternate between the commits (A B, B A, …). ratio = head mean / base mean; "
             "diff / SE is the difference of the means in standard errors (Welch): within about "
             "±2 it is what the machine's own spread gives.", "",
             "| configuration | metric | base runs | head runs | base mean ± sd | head mean ± sd | ratio | diff / SE |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        better = "lower is better" if s["lower_is_better"] else "higher is better"
        lines.append(
            f"| {s['config']} | {s['metric']} ({better}) | {', '.join(_fmt(v) for v in s['base'])} "
            f"| {', '.join(_fmt(v) for v in s['head'])} "
            f"| {_fmt(s.get('base_mean'))} ± {_fmt(s.get('base_sd'))} | {_fmt(s.get('head_mean'))} ± {_fmt(s.get('head_sd'))} "
            f"| {_fmt(s.get('ratio'))} | {_fmt(s.get('diff_in_se'))} |")
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[dict], out: Path) -> Path:
    """Each run's value by turn, one line per commit and configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kgrec.io import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4))
    series: dict[tuple, list] = {}
    for run in runs:
        for row in run["rows"]:
            if row.get("bench") in METRICS and row.get(METRICS[row["bench"]][0](row)) is not None:
                field = METRICS[row["bench"]][0](row)
                series.setdefault((run["side"], _label(row_key(row)), field), []).append((run["turn"], row[field]))
    for (side, config, field), points in sorted(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if side else "s",
                label=f"{('base', 'head')[side]} {runs_sha(runs, side)[:7]}: {config} ({field})")
    ax.set_xlabel("turn (runs alternate between the commits)")
    ax.set_ylabel(" / ".join(sorted({field for _, _, field in series})))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))  # below: never over the points
    path = out / "ab_speed.png"
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def runs_sha(runs: Sequence[dict], side: int) -> str:
    return next(r["sha"] for r in runs if r["side"] == side)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("benchmarks.ab_speed: give the benchmarks.speed command after '--', e.g. "
              "`-- train --data ml-1m --models kgrec --epochs 3 --threads 2`.", file=sys.stderr)
        return 2
    split = argv.index("--")
    own, speed_args = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (sha, branch, tag)")
    parser.add_argument("--head", default="HEAD", help="the commit under test (default HEAD)")
    parser.add_argument("--reps", type=int, default=3, help="runs per commit (default 3)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent),
                        help="the git repository (default: this checkout)")
    args = parser.parse_args(own)
    if args.reps < 1:
        parser.error(f"--reps must be at least 1; got {args.reps}.")
    if not speed_args or speed_args[0] not in METRICS:
        parser.error(f"the command after '--' must start with one of {sorted(METRICS)}; got {speed_args[:1] or 'nothing'}.")
    if "--out" in speed_args:
        parser.error("leave --out out of the benchmarks.speed command: each run gets its own.")

    from kgrec.io import atomic_write_text

    repo, out = Path(args.repo), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kgrec-ab-"))
    try:
        runs = compare(repo, args.base, args.head, speed_args, args.reps, work)
        for run in runs:  # keep each run's log beside the results
            log = work / f"run{run['turn']:02d}-{('base', 'head')[run['side']]}.log"
            run["log_tail"] = log.read_text().strip().splitlines()[-3:] if log.exists() else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(runs)
    command = "python -m benchmarks.ab_speed " + " ".join(own) + " -- " + " ".join(speed_args)
    atomic_write_text(out / "ab_speed.json", json.dumps({"command": command, "base": runs_sha(runs, 0),
                                                          "head": runs_sha(runs, 1), "summary": summary,
                                                          "runs": runs}, indent=1) + "\n")
    text = markdown(summary, runs_sha(runs, 0), runs_sha(runs, 1), command)
    atomic_write_text(out / "ab_speed.md", text)
    plot(runs, out)
    print(text)
    print(f"wrote {out / 'ab_speed.json'}, {out / 'ab_speed.md'} and {out / 'ab_speed.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

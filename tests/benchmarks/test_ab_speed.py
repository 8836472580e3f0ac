"""benchmarks.ab_speed: interleaved runs at two commits, their summary and its refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import ab_speed


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with two commits whose file ``speed`` holds the epoch time to report."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for value in ("2.0", "3.0"):
        (repo / "speed").write_text(value)
        _git(repo, "add", "speed")
        _git(repo, "commit", "-q", "-m", value)
    return repo


def _row(epoch_s, **extra):
    return {"bench": "train", "device": "cpu", "data": "ml-1m", "impl": "kgrec", "batch_size": 16384,
            "threads": 2, "epoch_s": epoch_s, **extra}


def _fake_runner(calls):
    def run(tree: Path, args, out: Path) -> None:
        calls.append(tree.name.split("-")[0])
        out.mkdir(parents=True)
        (out / "speed.json").write_text(json.dumps([_row(float((tree / "speed").read_text()))]))
    return run


def test_run_order_alternates_pairs():
    assert ab_speed.run_order(3) == [0, 1, 1, 0, 0, 1]
    assert ab_speed.run_order(1) == [0, 1]


def test_summarise_means_ratio_and_standard_error():
    runs = [{"side": 0, "rows": [_row(4.0)]}, {"side": 1, "rows": [_row(3.0)]},
            {"side": 1, "rows": [_row(3.4)]}, {"side": 0, "rows": [_row(3.6)]}]
    (entry,) = ab_speed.summarise(runs)
    assert entry["metric"] == "epoch_s" and entry["lower_is_better"]
    assert entry["base"] == [4.0, 3.6] and entry["head"] == [3.0, 3.4]
    assert entry["base_mean"] == pytest.approx(3.8) and entry["head_mean"] == pytest.approx(3.2)
    assert entry["ratio"] == pytest.approx(3.2 / 3.8)
    se = (0.08 / 2 + 0.08 / 2) ** 0.5  # both sides have sd sqrt(0.08)
    assert entry["diff_in_se"] == pytest.approx(-0.6 / se)


def test_summarise_keys_configurations_and_metrics_apart():
    scale = _row(None, data="synthetic-1x1x1", step_s=7.0, steps_timed=2)
    sampler = {"bench": "sampler", "graph": "ml-1m", "impl": "kgrec", "batch_size": 2048, "fanout": [10, 10],
               "batches_per_s": 80.0}
    runs = [{"side": 0, "rows": [_row(4.0), scale, sampler]},
            {"side": 1, "rows": [_row(2.0), dict(scale, step_s=14.0), dict(sampler, batches_per_s=40.0)]}]
    by_metric = {s["metric"]: s for s in ab_speed.summarise(runs)}
    assert by_metric["epoch_s"]["ratio"] == pytest.approx(0.5)
    assert by_metric["step_s"]["ratio"] == pytest.approx(2.0)  # a --scale row is timed per step
    assert by_metric["batches_per_s"]["ratio"] == pytest.approx(0.5)
    assert not by_metric["batches_per_s"]["lower_is_better"]
    assert "diff_in_se" not in by_metric["epoch_s"]  # one run a side has no spread to judge by


def test_compare_interleaves_commits_and_removes_worktrees(repo, tmp_path):
    calls = []
    work = tmp_path / "work"
    work.mkdir()
    runs = ab_speed.compare(repo, "HEAD~1", "HEAD", ["train"], 2, work, runner=_fake_runner(calls),
                            progress=lambda _: None)
    assert calls == ["base", "head", "head", "base"]
    assert [r["rows"][0]["epoch_s"] for r in runs] == [2.0, 3.0, 3.0, 2.0]  # each side ran its own code
    assert {r["sha"] for r in runs if r["side"] == 1} == {_git(repo, "rev-parse", "HEAD")}
    assert len(_git(repo, "worktree", "list").splitlines()) == 1
    assert not [p for p in work.iterdir() if p.name.startswith(("base-", "head-"))]


def test_compare_removes_worktrees_when_a_run_fails(repo, tmp_path):
    def failing(tree, args, out):
        raise SystemExit("boom")

    with pytest.raises(SystemExit, match="boom"):
        ab_speed.compare(repo, "HEAD~1", "HEAD", ["train"], 1, tmp_path, runner=failing, progress=lambda _: None)
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_compare_refuses_a_run_without_rows(repo, tmp_path):
    def empty(tree, args, out):
        out.mkdir()

    with pytest.raises(SystemExit, match=r"wrote no rows to .*speed\.json"):
        ab_speed.compare(repo, "HEAD~1", "HEAD", ["train"], 1, tmp_path, runner=empty, progress=lambda _: None)


def test_unknown_revision_names_the_flag(repo, tmp_path):
    with pytest.raises(SystemExit, match=r"--base 'no-such-rev' is not a commit"):
        ab_speed.compare(repo, "no-such-rev", "HEAD", ["train"], 1, tmp_path, runner=_fake_runner([]))


@pytest.mark.parametrize("argv, message", [
    (["--base", "HEAD", "--out", "x"], "after '--'"),
    (["--base", "HEAD", "--out", "x", "--", "eval"], "must start with one of"),
    (["--base", "HEAD", "--out", "x", "--", "train", "--out", "y"], "leave --out out"),
    (["--base", "HEAD", "--out", "x", "--reps", "0", "--", "train"], "--reps must be at least 1"),
])
def test_main_refuses_bad_command_lines(argv, message, capsys):
    try:
        code = ab_speed.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_main_writes_json_markdown_and_plot(repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ab_speed, "speed_runner", _fake_runner([]))
    out = tmp_path / "out"
    assert ab_speed.main(["--base", "HEAD~1", "--repo", str(repo), "--reps", "2", "--out", str(out),
                          "--", "train", "--data", "ml-1m"]) == 0
    result = json.loads((out / "ab_speed.json").read_text())
    (entry,) = result["summary"]
    assert entry["base"] == [2.0, 2.0] and entry["head"] == [3.0, 3.0] and entry["ratio"] == pytest.approx(1.5)
    assert result["command"].endswith("-- train --data ml-1m")
    assert "| 1.5 |" in (out / "ab_speed.md").read_text()
    assert (out / "ab_speed.png").stat().st_size > 0

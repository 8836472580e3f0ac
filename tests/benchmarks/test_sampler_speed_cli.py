"""The ``python -m benchmarks.speed sampler`` command contract, on a tiny synthetic graph."""

from __future__ import annotations

import json

import pytest

from benchmarks import speed
from benchmarks.sampler_speed import make_powerlaw_graph

REQUIRED = {"bench", "impl", "graph", "batch_size", "fanout", "device", "batches_per_s", "edges_per_s"}


def test_sampler_subcommand_writes_rows_and_keeps_other_benches(tmp_path):
    (tmp_path / "speed.json").write_text(json.dumps([{"bench": "eval", "impl": "kgrec"}]))
    code = speed.main(["sampler", "--out", str(tmp_path), "--graphs", "powerlaw-3000", "--batch-sizes", "64",
                       "--fanouts", "3,2", "--max-batches", "2", "--max-seconds", "0.1", "--no-train-steps"])
    assert code == 0
    rows = json.loads((tmp_path / "speed.json").read_text())
    assert rows[0] == {"bench": "eval", "impl": "kgrec"}
    sampler_rows = [r for r in rows if r["bench"] == "sampler"]
    assert {r["fanout"] for r in sampler_rows if r["impl"] == "kgrec"} == {"3,2", "full"}
    for row in sampler_rows:
        assert REQUIRED <= set(row) and row["device"] == "cpu" and row["batches_per_s"] > 0
    assert "| powerlaw-3000 |" in (tmp_path / "speed_sampler.md").read_text()


def test_unknown_subcommand_is_refused(capsys):
    assert speed.main(["sampling"]) == 2
    assert "unknown subcommand 'sampling'" in capsys.readouterr().err


def test_powerlaw_graph_has_the_requested_unique_edges():
    data = make_powerlaw_graph(100_000, seed=1)
    ei = data["user", "interacts", "item"].edge_index
    assert ei.size(1) == 100_000
    assert (ei[0] * data["item"].num_nodes + ei[1]).unique().numel() == 100_000
    with pytest.raises(SystemExit):
        speed.main(["sampler", "--out", "x", "--device", "tpu"])


def test_sampler_ratio_only_between_rows_of_one_run():
    from benchmarks.sampler_speed import to_markdown

    def row(impl, rate, sha):
        return {"device": "cpu", "graph": "ml-1m", "graph_edges": 10, "batch_size": 2048, "fanout": "10,10",
                "impl": impl, "batches_per_s": rate, "edges_per_s": 1.0, "edges_per_batch": 1.0,
                "node_coverage": 0.5, "git_sha": sha, "threads": 2}
    same = to_markdown([row("kgrec", 6.0, "abc"), row("pyg", 2.0, "abc")])
    assert "3.00×" in same and "**Headline (cpu)" in same
    mixed = to_markdown([row("kgrec", 6.0, "def"), row("pyg", 2.0, "abc")])
    assert "3.00×" not in mixed and "| other run |" in mixed
    assert "the rows come from different runs (git def, 2 thread(s) vs git abc, 2 thread(s)); no ratio" in mixed

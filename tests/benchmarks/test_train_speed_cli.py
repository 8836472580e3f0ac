"""The ``python -m benchmarks.speed train`` command contract, on tiny data."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import speed
from benchmarks.train_speed import make_scale_graph, memory_slopes, suite_args, to_markdown
from kgrec.data.scale import SCALE_KEYS
from kgrec.graph import INTERACTS

REQUIRED = {"bench", "impl", "data", "device", "batch_size", "train_edges", "epoch_s", "first_epoch_s",
            "peak_memory_mb", "steps_per_epoch", "git_sha"}


def test_train_subcommand_times_kgrec_and_lightgcn_and_keeps_other_benches(tmp_path, capsys):
    (tmp_path / "speed.json").write_text(json.dumps([{"bench": "eval", "impl": "kgrec"}]))
    code = speed.main(["train", "--out", str(tmp_path), "--data", "synthetic", "--text-encoder", "hashing",
                       "--epochs", "2", "--scale", "400,80,4000", "--scale-batch", "1024", "--threads", "1"])
    assert code == 0
    rows = json.loads((tmp_path / "speed.json").read_text())
    assert rows[0] == {"bench": "eval", "impl": "kgrec"}
    train = [r for r in rows if r["bench"] == "train"]
    assert [(r["data"], r["impl"]) for r in train] == [
        ("synthetic", "kgrec"), ("synthetic", "pyg-lightgcn"), ("synthetic-400x80x4000", "kgrec")]
    for row in train:
        assert REQUIRED <= set(row) and row["device"] == "cpu" and row["epoch_s"] > 0 and row["peak_memory_mb"] > 0
    kgrec, lightgcn, scale = train
    assert kgrec["epochs"] == lightgcn["epochs"] == 2
    # both models saw the same train edges; each got its suite's batch size
    assert kgrec["train_edges"] == lightgcn["train_edges"]
    assert lightgcn["batch_size"] == suite_args("synthetic", "lightgcn")["batch_size"]
    assert scale["train_edges"] == 4000 and scale["batch_size"] == 1024 and scale["steps_per_epoch"] == 3
    assert not scale["extrapolated"]
    markdown = (tmp_path / "speed_train.md").read_text()
    assert "**synthetic (cpu): kgrec epoch" in markdown and "| synthetic-400x80x4000 | kgrec |" in markdown


def test_scale_steps_extrapolate_the_epoch(tmp_path):
    assert speed.main(["train", "--out", str(tmp_path), "--data", "", "--scale", "300,60,3000",
                       "--scale-batch", "512", "--scale-steps", "2", "--threads", "1"]) == 0
    (row,) = json.loads((tmp_path / "speed.json").read_text())
    # the first (warm-up) step is timed apart: two steps run, one is extrapolated from
    assert row["extrapolated"] and row["steps_timed"] == 1 and row["steps_per_epoch"] == 5
    assert row["first_step_s"] > 0
    assert row["epoch_s"] == pytest.approx(row["step_s"] * 5, rel=0.01)
    assert "extrapolated from 1 step)" in (tmp_path / "speed_train.md").read_text()


def test_scale_rows_give_a_memory_line_per_device():
    def row(device, edges, mb, data="synthetic-x"):
        return {"device": device, "impl": "kgrec", "data": data, "train_edges": edges, "peak_memory_mb": mb,
                "memory": "process peak RSS", "batch_size": 1, "steps_per_epoch": 1, "epoch_s": 1.0,
                "git_sha": "abc"}
    # 1 GiB + 2^20 bytes (1 MiB) per million edges: exactly 1.0 GiB + 1 byte per train edge
    rows = [row("cpu", n, 1024 + n / 2**20) for n in (2**20, 3 * 2**20, 5 * 2**20)]
    rows += [row("cuda", 2**20, 10.0), row("cpu", 7 * 2**20, 1.0, data="ml-1m")]  # one cuda size; not a scale row
    # rows measured differently (here: another precision) never share a line with these
    rows += [{**row("cpu", n, 1.0), "precision": "bf16-mixed"} for n in (2**20, 2**21)]
    line, other = memory_slopes(rows)
    assert other.startswith("**Scale rows (cpu, bf16-mixed, 2 sizes): peak memory ≈ 0.0 GiB + 0 bytes")
    projected = (2**30 + SCALE_KEYS["edges"]) / 2**30  # projected to the scale config's interactions
    assert line.startswith("**Scale rows (cpu, 3 sizes): peak memory ≈ 1.0 GiB + 1 bytes per train edge")
    assert f"gives {projected:,.1f} GiB (process peak RSS)" in line
    assert line in to_markdown(rows)


def test_scale_graph_has_the_requested_shape():
    graph = make_scale_graph(500, 100, 5000, seed=3)
    data = graph.data
    assert data[INTERACTS].edge_index.size(1) == 5000
    assert (data["user"].num_nodes, data["item"].num_nodes) == (500, 100)
    assert data["item"].x.shape == (100, 384) and data["item"].x.dtype == torch.float16
    assert data["item", "kg", "entity"].edge_type.max() < len(graph.relations)
    assert data.validate(raise_on_error=True)
    assert graph.vocabs["item"].decode([7])[0] == "i7"


@pytest.mark.parametrize("argv, message", [
    (["--scale", "10,10"], "--scale wants USERS,ITEMS,EDGES"),
    (["--scale", "10,10,500"], "EDGES <= USERS x ITEMS"),
    (["--models", "kgrec,ease"], "unknown model(s) ['ease']"),
    (["--data", ""], "nothing to time"),
    (["--epochs", "0"], "--epochs must be >= 1; got 0"),
    (["--scale", "10,10,50", "--scale-batch", "0"], "--scale-batch must be >= 1; got 0"),
    (["--scale", "10,10,50", "--scale-steps", "-2"], "--scale-steps must be >= 1; got -2"),
    (["--threads", "0"], "--threads must be >= 1; got 0"),
])
def test_bad_arguments_are_named(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        speed.main(["train", "--out", str(tmp_path), *argv])
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where no GPU exists")
def test_cuda_without_a_gpu_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit):
        speed.main(["train", "--out", str(tmp_path), "--device", "cuda"])
    assert "--device cuda needs a CUDA GPU" in capsys.readouterr().err


def test_a_ratio_only_between_rows_of_one_run():
    def row(impl, epoch_s, sha, threads):
        return {"device": "cpu", "impl": impl, "data": "ml-1m", "train_edges": 10, "peak_memory_mb": 1.0,
                "memory": "process peak RSS", "batch_size": 8192, "steps_per_epoch": 1, "epoch_s": epoch_s,
                "git_sha": sha, "threads": threads}
    same = to_markdown([row("kgrec", 1.0, "abc", 2), row("pyg-lightgcn", 4.0, "abc", 2)])
    assert "kgrec's epoch takes 0.25× LightGCN's" in same and "2 thread(s)" in same
    # a kgrec row re-run alone (merge_rows keeps the old LightGCN row): no ratio, and the header
    # does not claim one thread count for both
    mixed = to_markdown([row("kgrec", 1.0, "def", 1), row("pyg-lightgcn", 4.0, "abc", 2)])
    assert "LightGCN's" not in mixed and "the rows come from different runs (git def, 1 thread(s) vs git abc" in mixed
    assert "per-row thread(s)" in mixed and "git per row" in mixed


class _FakeCuda:
    """Stands in for torch.cuda's allocator counters: bytes allocated now and their peak."""

    def __init__(self, allocated):
        self.allocated = self.peak = allocated

    def alloc(self, n):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: self.allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: self.peak)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: setattr(self, "peak", self.allocated))


class _Leftover:
    """A finished model's GPU copies, kept alive only by a reference cycle (as trainer <-> module)."""

    def __init__(self, cuda, n):
        self.cuda, self.n, self.me = cuda, n, self
        cuda.alloc(n)

    def __del__(self):
        self.cuda.allocated -= self.n


@pytest.mark.parametrize("which", ["train_speed", "run"])
def test_cuda_peak_leaves_out_the_previous_models_leftovers(monkeypatch, which):
    import gc

    from benchmarks.run import _PeakMemory
    from benchmarks.train_speed import _peak_memory_mb, _reset_peak

    cuda = _FakeCuda(allocated=100 * 2**20)  # 100 MiB that stays (the split, say)
    cuda.install(monkeypatch)
    gc.disable()  # only the measurement's own collection may free the cycle
    try:
        _Leftover(cuda, 400 * 2**20)  # unreachable, but not yet collected
        if which == "train_speed":
            base = _reset_peak("cuda")
            assert base == 100 * 2**20  # the leftover was collected before the count started
            cuda.alloc(250 * 2**20)  # this model's own peak
            peak, kind = _peak_memory_mb("cuda", base)
        else:
            with _PeakMemory("cuda") as probe:
                cuda.alloc(250 * 2**20)
            peak = probe.mib
    finally:
        gc.enable()
    assert peak == pytest.approx(250.0)

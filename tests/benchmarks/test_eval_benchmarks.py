"""benchmarks.run / benchmarks.report on synthetic data (no network, seconds)."""

from __future__ import annotations

import dataclasses

import json
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks.run import _model_specs, known_models, main, resolve_model, run
from kgrec.baselines import BPRMF, ItemKNN
from kgrec.errors import ConfigError

ROW_KEYS = {"model", "dataset", "split", "seed", "metrics", "cold", "train_seconds", "eval_seconds",
            "peak_memory_mb", "device", "git_sha", "config"}


def test_model_names_come_from_baselines_all():
    known = known_models()
    import kgrec.baselines as baselines

    assert set(known) >= {name.lower() for name in baselines.__all__}
    assert resolve_model("bprmf")[0] is BPRMF
    assert resolve_model("kgrec.baselines.ItemKNN")[0] is ItemKNN
    from kgrec.models import KGRec

    # ablations are the kgrec class with one part switched off
    assert resolve_model("kgrec-nocold") == (KGRec, {"loss": {"cold_weight": 0.0}})
    assert resolve_model("kgrec-learnrel") == (KGRec, {"gnn": {"learn_relation_weights": True}})
    # the ablation grid: every name resolves to kgrec with one part changed
    for name in ("kgrec-notext", "kgrec-nokg", "kgrec-noalign", "kgrec-idonly", "kgrec-align"):
        klass, args = resolve_model(name)
        assert klass is KGRec and args and set(args) <= set(KGRec().get_params())
    assert resolve_model("kgrec-noalign")[1] == {"loss": {"align_weight": 0.0}}
    assert KGRec().get_params()["loss"].name == "ials"
    klass, args = resolve_model("kgrec-softmax")
    assert klass is KGRec and args["loss"]["name"] == "softmax"
    assert KGRec(**args).get_params()["gnn"].dropout == args["gnn"]["dropout"]
    assert "baserecommender" not in known  # the contract itself is not a model


def test_unknown_model_lists_known_ones(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"Unknown model 'nope' in --models; known models: .*bprmf.*itemknn"):
        resolve_model("nope")
    code = main(["--data", "synthetic", "--models", "mostpop,nope", "--out", str(tmp_path)])
    assert code == 2
    assert "known models: als, bprmf, ease" in capsys.readouterr().err


def test_bad_options_are_refused(tmp_path, capsys):
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path), "--seed", "x"]) == 2
    assert "--seed must be comma-separated integers; got 'x'" in capsys.readouterr().err
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path), "--device", "tpu"]) == 2
    assert "'--device' option must be one of" in capsys.readouterr().err
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path), "--split", "rnd"]) == 2
    assert "'--split' option must be one of" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"model 'itemknn' \(ItemKNN\) has no parameter\(s\) \['k'\]"):
        run("synthetic", ["itemknn"], tmp_path, settings={"itemknn": {"k": 3}})


@pytest.mark.parametrize("entry, message", [
    ({"class_path": "kgrec.models.KGRex"}, r"cannot import model class 'kgrec.models.KGRex'"),
    ({"class_path": "nosuchpackage.Model"}, r"cannot import model class 'nosuchpackage.Model'"),
    ({"class_path": 3}, r"must be a dotted name such as kgrec.models.KGRec; got 3"),
    ({"class_path": "kgrec.errors.ConfigError"}, r"'kgrec.errors.ConfigError' is not a kgrec BaseRecommender"),
    ({"class_path": "kgrec.baselines.ItemKNN", "init_args": {"neighbors": 3}, "shrink": 1.0},
     r"model 'mine': \['shrink'\] beside class_path and init_args"),
    ({"class_path": "kgrec.baselines.ItemKNN", "init_args": [3]}, r"model 'mine': init_args must be a mapping; got \[3\]"),
    (5, r"model 'mine': settings must be a mapping of init args; got 5"),
])
def test_bad_suite_model_entries_name_the_model_and_the_fault(entry, message):
    with pytest.raises(ConfigError, match=message):
        _model_specs(["mine"], {"mine": entry})


def test_suite_class_path_entries_take_init_args_nested_or_flat():
    nested = _model_specs(["a"], {"a": {"class_path": "kgrec.baselines.ItemKNN", "init_args": {"neighbors": 3}}})
    flat = _model_specs(["a"], {"a": {"class_path": "kgrec.baselines.ItemKNN", "neighbors": 3}})
    assert nested == flat == [("a", ItemKNN, {"neighbors": 3})]


def test_run_writes_rows_markdown_plots_and_command(tmp_path):
    out = tmp_path / "bench"
    code = main(["--data", "synthetic", "--split", "random,cold_item", "--seed", "3",
                 "--models", "mostpop,itemknn", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 4
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["seed"] == 3 and row["device"] == "cpu"
        assert 0.0 <= row["metrics"]["recall@20"] <= 1.0
        assert {"recall@10", "ndcg@50", "hit@20", "precision@20", "mrr"} <= set(row["metrics"])
        assert (row["cold"] is not None) == (row["split"] == "cold_item")
    assert rows[0]["config"]["class_path"] == "kgrec.baselines.mostpop.MostPop"
    md = (out / "results.md").read_text()
    assert "| itemknn |" in md and "Strict cold start" in md
    assert (out / "COMMAND.txt").read_text().startswith("python -m benchmarks.run --data synthetic")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "synthetic_random_seed3_recall.png" in pngs and "synthetic_cold_item_seed3_quality_vs_time.png" in pngs


def test_suite_yaml_settings_reach_the_model(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("data: synthetic\nsplits: [random]\nseeds: [1]\nmodels:\n  itemknn: {neighbors: 3}\n")
    assert main(["--suite", str(suite), "--out", str(tmp_path / "o"), "--no-plots"]) == 0
    row = json.loads((tmp_path / "o" / "results.json").read_text())[0]
    assert row["config"]["init_args"]["neighbors"] == 3


def _write_inter(path: Path, frame: pd.DataFrame) -> None:
    frame.rename(columns={"user": "user_id:token", "item": "item_id:token"}).to_csv(path, sep="\t", index=False)


def test_presplit_test_only_item_is_counted(tmp_path):
    from kgrec.data import make_synthetic
    from kgrec.data.split import split_dataset

    split = split_dataset(make_synthetic(), "random", seed=0)
    data = tmp_path / "toy"
    data.mkdir()
    test = pd.concat([split.test[["user", "item"]],
                      pd.DataFrame({"user": [split.test["user"].iloc[0]], "item": ["brand-new-item"]})])
    _write_inter(data / "toy.train.inter", split.train[["user", "item"]])
    _write_inter(data / "toy.valid.inter", split.valid[["user", "item"]])
    _write_inter(data / "toy.test.inter", test)
    rows = run(str(data), ["mostpop"], tmp_path / "out", plots=False)
    assert rows[0]["split"] == "presplit"
    # kept in the catalogue as a test item with no training signal, and counted
    assert rows[0]["data_report"]["test_only_items"] == 1
    assert rows[0]["eval_counts"]["target_items_without_train"] >= 1
    assert rows[0]["eval_counts"]["unknown_item_interactions"] == 0


def test_append_keeps_earlier_rows_and_commands(tmp_path):
    out = tmp_path / "o"
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(out), "--no-plots"]) == 0
    assert main(["--data", "synthetic", "--models", "itemknn,mostpop", "--out", str(out), "--no-plots",
                 "--append"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["model"] for r in rows) == ["itemknn", "mostpop"]
    assert len((out / "COMMAND.txt").read_text().splitlines()) == 2


def test_report_merges_other_result_dirs(tmp_path):
    from benchmarks.report import main as report_main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(a), "--no-plots"]) == 0
    assert main(["--data", "synthetic", "--models", "itemknn", "--out", str(b), "--no-plots"]) == 0
    assert report_main([str(a), "--merge", str(b), "--no-plots"]) == 0
    rows = json.loads((a / "results.json").read_text())
    assert sorted(r["model"] for r in rows) == ["itemknn", "mostpop"]
    assert "| itemknn |" in (a / "results.md").read_text()
    lines = (a / "COMMAND.txt").read_text().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("python -m benchmarks.report")
    # a retired model's rows can be dropped; a name that is not there is an error naming it
    assert report_main([str(a), "--drop", "nope", "--no-plots"]) == 2
    assert report_main([str(a), "--merge", str(tmp_path / "missing"), "--no-plots"]) == 2
    assert report_main([str(a), "--drop", "itemknn", "--no-plots"]) == 0
    assert [r["model"] for r in json.loads((a / "results.json").read_text())] == ["mostpop"]
    assert (a / "COMMAND.txt").read_text().splitlines()[-1].endswith("--drop itemknn")


def test_report_summarises_seeds(tmp_path):
    from benchmarks.report import main as report_main

    out = tmp_path / "s"
    assert main(["--data", "synthetic", "--models", "mostpop,itemknn", "--seed", "1,2", "--out", str(out),
                 "--no-plots"]) == 0
    rows = json.loads((out / "results.json").read_text())
    text = (out / "results.md").read_text()
    assert "mean over seeds" in text
    pop = [r["metrics"]["ndcg@20"] for r in rows if r["model"] == "mostpop"]
    line = next(l for l in text.splitlines() if l.startswith("| mostpop | 1, 2 |"))
    assert f"{statistics.fmean(pop):.4f} ± {statistics.stdev(pop):.4f}" in line
    # every row names the commit it ran at
    assert all(r["git_sha"] is None or r["git_sha"][:7] in text for r in rows)
    assert report_main([str(out), "--no-plots"]) == 0


def test_eval_speed_ranks_like_the_naive_peer_and_records_its_commit(tmp_path):
    from benchmarks import eval_speed

    assert eval_speed.main(["--out", str(tmp_path), "--data", "synthetic", "--repeats", "1", "--threads", "1"]) == 0
    report = json.loads((tmp_path / "eval_speed.json").read_text())
    # the synthetic catalogue is smaller than the peer's top-50: it ranks them all
    assert report["items"] < 50 and report["kgrec_recall@20"] == pytest.approx(report["peer_recall@20"], abs=1e-12)
    assert report["kgrec_users_per_s"] > 0 and report["ratio_kgrec_over_peer"] > 0 and report["git_sha"]
    assert f"(git {report['git_sha']})" in (tmp_path / "eval_speed.md").read_text()


def test_valid_option_scores_the_validation_interactions(tmp_path):
    from kgrec.baselines import MostPop
    from kgrec.data import make_synthetic
    from kgrec.eval import evaluate
    from kgrec.graph import build_graph
    from kgrec.data.split import split_dataset

    out = tmp_path / "v"
    assert main(["--data", "synthetic", "--models", "mostpop", "--seed", "1,2", "--out", str(out),
                 "--no-plots", "--valid"]) == 0
    rows = json.loads((out / "results.json").read_text())
    split = split_dataset(make_synthetic(), "random", seed=1)
    graph = build_graph(make_synthetic(), split)
    model = MostPop().fit(split, graph)
    expected = evaluate(model, split, graph, on="valid").metrics
    row = next(r for r in rows if r["seed"] == 1)
    assert row["valid"] == pytest.approx(expected)
    assert row["valid"] != row["metrics"]
    text = (out / "results.md").read_text()
    assert "Validation, mean over seeds" in text and text.count("Validation (rows run with --valid") == 2
    mean = statistics.fmean(r["valid"]["ndcg@20"] for r in rows)
    summary = text.split("Validation, mean over seeds")[1]
    line = next(l for l in summary.splitlines() if l.startswith("| mostpop | 1, 2 |"))
    assert f"{mean:.4f} ±" in line
    # without the option there is no valid block
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path / "t"), "--no-plots"]) == 0
    assert json.loads((tmp_path / "t" / "results.json").read_text())[0]["valid"] is None
    assert "Validation" not in (tmp_path / "t" / "results.md").read_text()


def test_valid_option_refuses_a_split_without_validation_interactions(tmp_path, monkeypatch, capsys):
    # the readers refuse an empty valid file, so empty out the split's valid part directly
    import dataclasses

    import benchmarks.run

    real = benchmarks.run.split_dataset

    def without_valid(*args, **kwargs):
        split = real(*args, **kwargs)
        return dataclasses.replace(split, valid=split.valid.iloc[:0])

    monkeypatch.setattr(benchmarks.run, "split_dataset", without_valid)
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path / "o"), "--valid"]) == 2
    err = capsys.readouterr().err
    assert "--valid: the 'random' split of 'synthetic' has no validation interactions" in err
    assert not (tmp_path / "o" / "results.json").exists()
    # the same split without --valid runs
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path / "o"), "--no-plots"]) == 0


def test_report_renames_a_models_rows(tmp_path, capsys):
    from benchmarks.report import main as report_main

    out = tmp_path / "r"
    assert main(["--data", "synthetic", "--models", "mostpop,itemknn", "--out", str(out), "--no-plots"]) == 0
    before = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert report_main([str(out), "--rename", "mostpop=mostpop-old", "--no-plots"]) == 0
    after = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert sorted(after) == ["itemknn", "mostpop-old"]
    assert after["mostpop-old"]["metrics"] == before["mostpop"]["metrics"]
    assert after["mostpop-old"]["config"] == before["mostpop"]["config"]
    assert "| mostpop-old |" in (out / "results.md").read_text()
    assert (out / "COMMAND.txt").read_text().splitlines()[-1].endswith("--rename mostpop=mostpop-old")
    # a bad pair, a missing model and a name already taken are refused, the file untouched
    for bad, message in (("mostpop", "expected OLD=NEW"), ("nope=x", "no model 'nope'"),
                         ("itemknn=mostpop-old", "already has rows named 'mostpop-old'")):
        assert report_main([str(out), "--rename", bad, "--no-plots"]) == 2
        assert message in capsys.readouterr().err
    assert {r["model"] for r in json.loads((out / "results.json").read_text())} == {"itemknn", "mostpop-old"}


@pytest.mark.parametrize("suite", sorted((Path(__file__).parents[2] / "benchmarks" / "suites").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_committed_suites_name_models_that_resolve_and_construct(suite):
    """A typo in a committed suite (a model name, a class path, an init arg) fails here, not
    an hour into a benchmark run."""
    settings = yaml.safe_load(suite.read_text())["models"]
    specs = _model_specs(list(settings), settings)
    for name, klass, args in specs:
        model = klass(**args)
        for key, value in args.items():
            got = getattr(model, key)
            if dataclasses.is_dataclass(got):  # a group given as a mapping: the fields it set
                got = {field: getattr(got, field) for field in value}
                value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            assert got == value, (suite.name, name, key)


def test_report_shows_dirty_rows_and_what_a_temporal_seed_varies(tmp_path):
    from benchmarks.report import main as report_main

    out = tmp_path / "t"
    assert main(["--data", "synthetic", "--models", "mostpop", "--split", "temporal,random", "--seed", "1,2",
                 "--out", str(out), "--no-plots"]) == 0
    rows = json.loads((out / "results.json").read_text())
    rows[0]["git_sha"] = "0123456789ab-dirty"  # ran on uncommitted code: the table must say so
    (out / "results.json").write_text(json.dumps(rows))
    assert report_main([str(out), "--no-plots"]) == 0
    text = (out / "results.md").read_text()
    assert "| 0123456-dirty |" in text and "`-dirty`: the row ran with uncommitted changes" in text
    assert "(the model seed only: a temporal split is the same for every seed)" in text
    assert "(split and model seed)" in text  # the random split's summary


def test_plots_without_matplotlib_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the `bench` extra were not installed
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path / "o")]) == 2
    assert "the PNG plots need matplotlib: pip install 'kgrec[bench]', or pass --no-plots" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(tmp_path / "o"), "--no-plots"]) == 0

"""kgrec.eval.compare_paired and the paired tables of benchmarks.run / benchmarks.report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from kgrec.errors import ConfigError
from kgrec.eval import compare_paired, holm_adjust

# z_{0.975} + z_{0.8}, typed from a normal table rather than computed by the code under test
Z_5PCT_80PCT_POWER = 1.959964 + 0.841621


def _frame(values, users=None) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    users = [f"u{i}" for i in range(len(values))] if users is None else users
    return pd.DataFrame({"user": users, "ndcg@20": values, "recall@20": values / 2})


def test_a_clear_shift_is_found_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 500)
    better = base + 0.05 + rng.normal(0, 0.02, 500)
    c = compare_paired(_frame(better), _frame(base))
    assert c.num_users == 500
    assert c.mean_a == pytest.approx(better.mean()) and c.mean_b == pytest.approx(base.mean())
    assert c.difference == pytest.approx((better - base).mean())
    assert c.relative == pytest.approx(c.difference / base.mean())
    assert c.ci_low < c.difference < c.ci_high and c.ci_low > 0.04 and c.ci_high < 0.06
    assert c.p_value < 1e-12 and c.p_wilcoxon < 1e-12
    assert str(c).startswith(f"ndcg@20: a - b = {c.difference:+.4f} (") and "over 500 users" in str(c)
    sd = (better - base).std(ddof=1)
    assert c.detectable == pytest.approx(Z_5PCT_80PCT_POWER * sd / math.sqrt(500), rel=1e-5)


def test_a_difference_that_cancels_out_is_not_significant():
    # half the users gain 0.125, the other half lose 0.125 (exact in binary): the means are equal
    base = 0.25 + np.arange(400) / 1024
    other = base + np.tile([0.125, -0.125], 200)
    c = compare_paired(_frame(other), _frame(base))
    assert c.difference == pytest.approx(0.0, abs=1e-12)
    assert c.p_value == pytest.approx(1.0) and c.p_wilcoxon == pytest.approx(1.0)
    assert c.ci_low < 0 < c.ci_high
    # 0.125 per user either way is a lot of spread: small mean differences go unseen
    assert c.detectable == pytest.approx(Z_5PCT_80PCT_POWER * 0.125 * math.sqrt(400 / 399) / math.sqrt(400),
                                         rel=1e-5)


def test_users_are_matched_by_id_not_by_row_order_and_swapping_negates():
    rng = np.random.default_rng(1)
    a, b = _frame(rng.uniform(0, 1, 200)), _frame(rng.uniform(0, 1, 200))
    forward = compare_paired(a, b, metric="recall@20")
    shuffled = compare_paired(a, b.sample(frac=1.0, random_state=3), metric="recall@20")
    assert shuffled == forward
    backward = compare_paired(b, a, metric="recall@20")
    assert backward.difference == pytest.approx(-forward.difference)
    assert backward.p_value == pytest.approx(forward.p_value)
    # a paired t statistic, written out: mean difference over its standard error
    from scipy import stats

    d = a["recall@20"].to_numpy() - b["recall@20"].to_numpy()
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert forward.p_value == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1))


def test_identical_models_differ_by_exactly_nothing():
    a = _frame(np.random.default_rng(2).uniform(0, 1, 50))
    c = compare_paired(a, a.copy())
    assert (c.difference, c.ci_low, c.ci_high, c.p_value, c.p_wilcoxon, c.detectable) == (0, 0, 0, 1, 1, 0)


def test_many_users_use_the_percentile_interval_in_bounded_memory():
    rng = np.random.default_rng(4)
    n = 30_000
    diff = rng.normal(0.01, 0.2, n)
    c = compare_paired(_frame(diff), _frame(np.zeros(n)), n_resamples=999)
    half = 1.959964 * diff.std(ddof=1) / math.sqrt(n)
    assert c.ci_low == pytest.approx(diff.mean() - half, abs=half * 0.15)
    assert c.ci_high == pytest.approx(diff.mean() + half, abs=half * 0.15)


def test_per_user_metrics_of_evaluate_compare_and_average_to_the_reported_means():
    from kgrec.baselines import ItemKNN, MostPop
    from kgrec.data import make_synthetic
    from kgrec.eval import evaluate
    from kgrec.graph import build_graph
    from kgrec.data.split import split_dataset

    dataset = make_synthetic()
    split = split_dataset(dataset, "random", seed=0)
    graph = build_graph(dataset, split)
    knn = evaluate(ItemKNN().fit(split, graph), split, graph, per_user=True)
    pop = evaluate(MostPop().fit(split, graph), split, graph, per_user=True)
    c = compare_paired(knn.per_user, pop.per_user)
    assert c.num_users == knn.num_users
    assert c.mean_a == pytest.approx(knn.metrics["ndcg@20"]) and c.mean_b == pytest.approx(pop.metrics["ndcg@20"])
    assert c.difference == pytest.approx(knn.metrics["ndcg@20"] - pop.metrics["ndcg@20"])


@pytest.mark.parametrize("change, message", [
    (lambda a, b: (a.drop(columns="ndcg@20"), b), r"per-user frame 'a' has no column\(s\) \['ndcg@20'\]; it has"),
    (lambda a, b: (a, b.rename(columns={"user": "uid"})), r"per-user frame 'b' has no column\(s\) \['user'\]"),
    (lambda a, b: (a, pd.concat([b, b.iloc[:1]])), r"per-user frame 'b' lists user 'u0' more than once"),
    (lambda a, b: (a, b.assign(user=["x"] + list(b["user"][1:]))),
     r"rank different users \(5 in a, 5 in b; user 'u0' is only in a\); compare results of the same split"),
    (lambda a, b: (a.iloc[:4], b), r"rank different users \(4 in a, 5 in b; user 'u4' is only in b\)"),
    (lambda a, b: (a.iloc[:1], b.iloc[:1]), r"needs at least 2 users; the frames hold 1"),
    (lambda a, b: (a.assign(**{"ndcg@20": [np.nan, 0, 0, 0, 0]}), b), r"'ndcg@20' must hold finite numbers"),
    (lambda a, b: (a.to_dict(), b), r"must be a pandas DataFrame \(EvalResult.per_user\); got dict"),
])
def test_bad_frames_are_refused_with_what_is_wrong(change, message):
    a, b = change(_frame([0.1, 0.2, 0.3, 0.4, 0.5]), _frame([0.2, 0.2, 0.2, 0.2, 0.2]))
    with pytest.raises(ConfigError, match=message):
        compare_paired(a, b)


@pytest.mark.parametrize("kwargs, message", [
    ({"confidence": 1.5}, r"'confidence' parameter must be a number in \(0, 1\), e.g. 0.95; got 1.5"),
    ({"confidence": True}, r"'confidence' parameter must be a number in \(0, 1\)"),
    ({"n_resamples": 0}, r"'n_resamples' parameter must be a positive integer; got 0"),
])
def test_bad_parameters_are_refused(kwargs, message):
    a = _frame([0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match=message):
        compare_paired(a, a, **kwargs)


def test_holm_adjustment_matches_the_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06; input order kept
    assert holm_adjust([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([0.2]) == pytest.approx([0.2]) and len(holm_adjust([])) == 0
    with pytest.raises(ConfigError, match=r"p-values must be numbers in \[0, 1\]; got \[0.1, 1.5\]"):
        holm_adjust([0.1, 1.5])
    with pytest.raises(ConfigError, match=r"p-values must be numbers in \[0, 1\]; got \['x'\]"):
        holm_adjust(["x"])


# ------------------------------------------------------------------ benchmarks
def test_run_stores_per_user_metrics_and_the_report_compares_them(tmp_path):
    from benchmarks.run import main

    out = tmp_path / "b"
    assert main(["--data", "synthetic", "--split", "random,cold_item", "--seed", "1",
                 "--models", "mostpop,itemknn", "--out", str(out), "--no-plots"]) == 0
    rows = json.loads((out / "results.json").read_text())
    for row in rows:
        frame = pd.read_parquet(out / row["per_user"])
        assert len(frame) == row["num_users"]
        assert frame["ndcg@20"].mean() == pytest.approx(row["metrics"]["ndcg@20"])
        if row["split"] == "cold_item":
            cold = pd.read_parquet(out / row["cold_per_user"])
            assert len(cold) == row["cold_num_users"]
            assert cold["recall@20"].mean() == pytest.approx(row["cold"]["recall@20"])
        else:
            assert row["cold_per_user"] is None
    # no kgrec row: the default reference is absent, so no paired table yet
    assert "Paired differences" not in (out / "results.md").read_text()

    from benchmarks.report import main as report_main

    assert report_main([str(out), "--reference", "itemknn", "--no-plots"]) == 0
    # the choice of reference shapes results.md, so COMMAND.txt records it
    assert (out / "COMMAND.txt").read_text().splitlines()[-1].endswith(f"{out} --reference itemknn")
    text = (out / "results.md").read_text()
    assert text.count("Paired differences (test): itemknn minus each model") == 2 and "*Paired differences*: the reference" in text
    assert "Paired differences (strict cold start)" in text
    paired = json.loads((out / "paired.json").read_text())
    random_ndcg = next(p for p in paired if p["split"] == "random" and p["on"] == "test" and p["metric"] == "ndcg@20")
    by_model = {r["model"]: r for r in rows if r["split"] == "random"}
    assert random_ndcg["model"] == "mostpop" and random_ndcg["reference"] == "itemknn"
    assert random_ndcg["p_holm"] == pytest.approx(random_ndcg["p_value"])  # one comparison: nothing to adjust
    assert random_ndcg["difference"] == pytest.approx(
        by_model["itemknn"]["metrics"]["ndcg@20"] - by_model["mostpop"]["metrics"]["ndcg@20"])
    random_paired = text.split("Paired differences (test)")[1]  # the random split's group comes first
    line = next(l for l in random_paired.splitlines() if l.startswith("| mostpop |"))
    assert f"{random_ndcg['difference']:+.4f} ({random_ndcg['ci_low']:+.4f}, {random_ndcg['ci_high']:+.4f})" in line


def test_report_merge_and_drop_carry_the_per_user_files(tmp_path, capsys):
    from benchmarks.report import main as report_main
    from benchmarks.run import main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--data", "synthetic", "--models", "mostpop", "--out", str(a), "--no-plots"]) == 0
    assert main(["--data", "synthetic", "--models", "itemknn", "--out", str(b), "--no-plots"]) == 0
    assert report_main([str(a), "--merge", str(b), "--reference", "itemknn", "--no-plots"]) == 0
    knn = next(r for r in json.loads((a / "results.json").read_text()) if r["model"] == "itemknn")
    assert (a / knn["per_user"]).read_bytes() == (b / knn["per_user"]).read_bytes()
    assert "Paired differences (test): itemknn minus each model" in (a / "results.md").read_text()
    # an unknown reference is named, and nothing is written
    before = (a / "COMMAND.txt").read_text()
    assert report_main([str(a), "--reference", "kgrecc", "--no-plots"]) == 2
    assert "--reference kgrecc: no model of that name" in capsys.readouterr().err
    assert (a / "COMMAND.txt").read_text() == before
    # a call that fails part-way deletes and copies nothing: the drop waits for every check
    assert report_main([str(a), "--drop", "itemknn", "--rename", "nope=x", "--no-plots"]) == 2
    assert (a / knn["per_user"]).exists()
    c = tmp_path / "c"
    assert report_main([str(c), "--merge", str(b), "--reference", "kgrecc", "--no-plots"]) == 2
    assert not (c / "per_user").exists()
    capsys.readouterr()
    # dropping a model removes its per-user file too
    assert report_main([str(a), "--drop", "itemknn", "--no-plots"]) == 0
    assert not (a / knn["per_user"]).exists()
    # a row naming a per-user file that is gone is an error naming the file, not a silent gap
    pop = json.loads((a / "results.json").read_text())[0]
    (a / pop["per_user"]).unlink()
    assert report_main([str(a), "--reference", "mostpop", "--no-plots"]) == 2
    assert f"names per-user metrics {pop['per_user']!r}" in capsys.readouterr().err
    # and so is merging a directory whose row names a missing file
    knn_file = b / knn["per_user"]
    knn_file.unlink()
    assert report_main([str(a), "--merge", str(b), "--no-plots"]) == 2
    assert f"--merge {b}: row 'itemknn'" in capsys.readouterr().err


def test_paired_comparisons_adjust_p_values_over_the_models_of_one_table(tmp_path):
    from benchmarks.paired import paired_comparisons, paired_table, write_per_user

    rng = np.random.default_rng(5)
    base = rng.uniform(0, 1, 300)
    rows = []
    for name, shift in (("ref", 0.0), ("m1", 0.02), ("m2", 0.05), ("m3", 0.0)):
        frame = _frame(np.clip(base - shift + rng.normal(0, 0.1, 300), 0, 1))
        relative = write_per_user(tmp_path, f"per_user/{name}.parquet", frame)
        rows.append({"model": name, "dataset": "d", "split": "random", "seed": 1, "per_user": relative})
    rows.append({"model": "no-file", "dataset": "d", "split": "random", "seed": 1})  # an older row: left out
    paired = paired_comparisons(rows, tmp_path, "ref")
    assert {p["model"] for p in paired} == {"m1", "m2", "m3"}
    for metric in ("recall@20", "ndcg@20"):
        family = [p for p in paired if p["metric"] == metric]
        assert [p["p_holm"] for p in family] == pytest.approx(list(holm_adjust([p["p_value"] for p in family])))
        assert all(p["p_holm"] >= p["p_value"] for p in family)
    table = paired_table(paired)
    assert table.splitlines()[0].count("p (Holm)") == 2 and len(table.splitlines()) == 2 + 3


def test_pooled_comparisons_average_each_user_over_the_shared_seeds_first(tmp_path):
    from benchmarks.paired import paired_comparisons, pooled_comparisons, seed_mean_per_user, write_per_user

    rng = np.random.default_rng(11)
    users = [f"u{i}" for i in range(200)]
    base = rng.uniform(0.2, 0.8, 200)  # how well each user can be served at all
    values: dict[tuple[str, int], np.ndarray] = {}
    rows = []
    for name, seeds, shift in (("ref", (1, 2, 3), 0.0), ("m1", (1, 2, 3), 0.03), ("m2", (1,), 0.0),
                               ("m3", (2, 3), 0.01)):
        for seed in seeds:
            v = np.clip(base - shift + rng.normal(0, 0.15, 200), 0, 1)  # + this split's and seed's noise
            keep = slice(None) if seed != 2 else slice(1, None)  # u0 has no test item under seed 2's split
            values[(name, seed)] = v
            frame = _frame(v[keep], users[keep])
            relative = write_per_user(tmp_path, f"per_user/{name}_{seed}.parquet", frame)
            rows.append({"model": name, "dataset": "d", "split": "random", "seed": seed, "per_user": relative})
    pooled = pooled_comparisons(rows, tmp_path, "ref")
    # m2 shares one seed with the reference: nothing to average, left out
    assert {(p["model"], tuple(p["seeds"])) for p in pooled} == {("m1", (1, 2, 3)), ("m3", (2, 3))}
    m1 = next(p for p in pooled if p["model"] == "m1" and p["metric"] == "ndcg@20")
    # by hand: u0 is dropped (not ranked under seed 2), the rest averaged per user
    ref_mean = np.mean([values[("ref", s)][1:] for s in (1, 2, 3)], axis=0)
    m1_mean = np.mean([values[("m1", s)][1:] for s in (1, 2, 3)], axis=0)
    assert m1["num_users"] == 199 and m1["seed"] is None and m1["on"] == "test, mean over seeds"
    assert m1["difference"] == pytest.approx(float(np.mean(ref_mean - m1_mean)))
    m3 = next(p for p in pooled if p["model"] == "m3" and p["metric"] == "ndcg@20")
    ref23 = np.mean([values[("ref", s)][1:] for s in (2, 3)], axis=0)
    m323 = np.mean([values[("m3", s)][1:] for s in (2, 3)], axis=0)
    assert m3["difference"] == pytest.approx(float(np.mean(ref23 - m323)))
    # each seed set is its own table: with one model in it, Holm leaves its p-value alone
    assert m3["p_holm"] == pytest.approx(m3["p_value"])
    # averaging takes noise out of each user's number: the pooled test is surer than any one seed's
    single = [paired_comparisons([r for r in rows if r["seed"] == s and r["model"] in ("ref", "m1")], tmp_path,
                                 "ref", metrics=("ndcg@20",))[0] for s in (1, 2, 3)]
    assert m1["p_value"] < min(c["p_value"] for c in single) and m1["ci_low"] > 0
    assert m1["detectable"] < min(c["detectable"] for c in single)
    # a model ranking other users than the reference under the same seed was evaluated otherwise: refused
    odd = write_per_user(tmp_path, "per_user/odd.parquet", _frame(values[("m1", 2)], users))
    rows_odd = [dict(r, per_user=odd) if (r["model"], r["seed"]) == ("m1", 2) else r for r in rows]
    with pytest.raises(ConfigError, match="rank different users .*'u0' is only in b"):
        pooled_comparisons(rows_odd, tmp_path, "ref")
    # a row without per-user metrics is named with its seed
    with pytest.raises(ConfigError, match=r"model 'm2' has no per-user metrics \(per_user\) for seed\(s\) \[9\]"):
        seed_mean_per_user(tmp_path, [rows[-3], {"model": "m2", "dataset": "d", "split": "random", "seed": 9}])


def test_report_pairs_models_over_seeds(tmp_path):
    from benchmarks.report import main as report_main
    from benchmarks.run import main

    out = tmp_path / "b"
    assert main(["--data", "synthetic", "--split", "random", "--seed", "1,2",
                 "--models", "mostpop,itemknn", "--out", str(out), "--no-plots"]) == 0
    assert report_main([str(out), "--reference", "itemknn", "--no-plots"]) == 0
    text = (out / "results.md").read_text()
    assert "Paired over seeds 1, 2 (test): itemknn minus each model" in text
    pooled = [p for p in json.loads((out / "paired.json").read_text()) if p["seed"] is None]
    assert {(p["model"], tuple(p["seeds"]), p["metric"]) for p in pooled} == {
        ("mostpop", (1, 2), "recall@20"), ("mostpop", (1, 2), "ndcg@20")}
    rows = json.loads((out / "results.json").read_text())
    knn = [pd.read_parquet(out / r["per_user"]) for r in rows if r["model"] == "itemknn"]
    pop = [pd.read_parquet(out / r["per_user"]) for r in rows if r["model"] == "mostpop"]
    users = sorted(set.intersection(*(set(f["user"]) for f in knn + pop)))
    mean = lambda frames: np.mean([f.set_index("user").loc[users, "ndcg@20"].to_numpy() for f in frames], axis=0)  # noqa: E731
    ndcg = next(p for p in pooled if p["metric"] == "ndcg@20")
    assert ndcg["num_users"] == len(users)
    assert ndcg["difference"] == pytest.approx(float(np.mean(mean(knn) - mean(pop))))

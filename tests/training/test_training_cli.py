"""`kgrec fit|validate|test|predict` (LightningCLI): files, refusals, one definition of each default, DDP."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
import yaml

from helpers import CONFIG, ROOT, groups, make_dm
from kgrec.cli import main
from kgrec.config import coerce_config
from kgrec.data import DataConfig
from kgrec.errors import ConfigError
from kgrec.graph import INTERACTS, InputConfig
from kgrec.models import KGRec, load
from kgrec.nn import GNNConfig
from kgrec.training import KGRecModule, LoaderConfig, LossConfig, OptimConfig, PredictConfig, TopKWriter


def _fit(tmp_path, monkeypatch, epochs=2, *extra) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--trainer.max_epochs", str(epochs), *extra]) == 0
    return tmp_path / "runs" / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"


def test_cli_fit_then_test_round_trip(tmp_path, monkeypatch, caplog):
    ckpt = _fit(tmp_path, monkeypatch)
    run = ckpt.parent.parent
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    assert main(["test", "--config", str(CONFIG), "--ckpt_path", str(ckpt)]) == 0
    # written in the test run's own directory and beside the checkpoint's training run
    written = sorted((tmp_path / "runs").rglob("test_metrics.json"))
    assert written == [run / "test_metrics.json", run.parent / "version_1" / "test_metrics.json"]
    metrics = json.loads(written[0].read_text())
    assert metrics == json.loads(written[1].read_text())
    assert 0.0 <= metrics["ndcg@20"] <= 1.0 and metrics["recall@20"] > 0
    # the test metrics are the evaluator's on the model the checkpoint holds
    from kgrec.data import DataConfig
    from kgrec.eval import evaluate
    from kgrec.text import HashingTextEncoder
    from kgrec.world import build_world

    world = build_world(DataConfig("synthetic", split="random"), text_encoder=HashingTextEncoder(dim=32))
    assert metrics["ndcg@20"] == pytest.approx(evaluate(load(ckpt), world.split, world.graph)["ndcg@20"], abs=1e-6)

    # a trained run that cannot be written to (a read-only archive) costs a warning, not the result
    import kgrec.training.callbacks as callbacks

    real_write = callbacks.atomic_write_text

    def refuse_trained_run(path, text):
        if Path(path).parent == run:
            raise PermissionError(13, "Permission denied", str(path))
        return real_write(path, text)

    monkeypatch.setattr(callbacks, "atomic_write_text", refuse_trained_run)
    (run / "test_metrics.json").unlink()
    with caplog.at_level(logging.WARNING, logger="kgrec"):
        assert main(["test", "--config", str(CONFIG), "--ckpt_path", str(ckpt)]) == 0
    assert json.loads((run.parent / "version_2" / "test_metrics.json").read_text()) == metrics
    assert not (run / "test_metrics.json").exists()
    assert "could not write test metrics beside the checkpoint's run" in caplog.text and "Permission denied" in caplog.text


def test_cli_logs_metrics_to_csv_even_where_tensorboard_is_installed(tmp_path, monkeypatch):
    import lightning.pytorch.trainer.connectors.logger_connector.logger_connector as connector
    from lightning.pytorch.loggers import CSVLogger

    from kgrec.training.cli import run_cli

    # Lightning would pick TensorBoard as the default logger on a machine that has it (the GPU image does)
    monkeypatch.setattr(connector, "_TENSORBOARD_AVAILABLE", True)
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1", "--trainer.default_root_dir", "out"])
    assert isinstance(cli.trainer.logger, CSVLogger)
    assert (tmp_path / "out" / "lightning_logs" / "version_0" / "metrics.csv").is_file()
    # a logger the config names is kept, and so is none at all
    cli = run_cli(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1",
                   "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir",
                   "mine", "--trainer.logger.init_args.name", "named"])
    assert cli.trainer.logger.save_dir == "mine" and cli.trainer.logger.name == "named"
    cli = run_cli(["fit", "--config", str(CONFIG), "--trainer.max_epochs", "1", "--trainer.logger", "false"])
    assert cli.trainer.logger is None


def test_cli_predict_writes_every_users_top_k_as_the_model_ranks_them(tmp_path, monkeypatch, capsys):
    ckpt = _fit(tmp_path, monkeypatch)
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--data.predict.k", "7"]) == 0
    frame = pd.read_parquet(tmp_path / "runs" / "lightning_logs" / "version_1" / "predictions.parquet")
    assert list(frame.columns) == ["user", "rank", "item", "name", "score"]
    # what the checkpoint serves, ranked as the trained object ranks
    rec = load(ckpt, device="cpu")
    users = [str(u) for u in rec.user_ids_]
    assert frame["user"].nunique() == rec.num_users and len(frame) == 7 * rec.num_users
    expected = rec.recommend(users, k=7)
    assert frame[["user", "rank", "item", "name"]].equals(expected[["user", "rank", "item", "name"]])
    assert frame["score"].to_numpy() == pytest.approx(expected["score"].to_numpy(), abs=1e-5)
    # no user is recommended an item they trained on
    seen = set(zip(*(rec.graph_.data[INTERACTS].edge_index[i].tolist() for i in (0, 1))))
    index = {nt: {v: i for i, v in enumerate(ids)} for nt, ids in (("user", users), ("item", list(rec.item_ids_)))}
    assert not any((index["user"][u], index["item"][i]) in seen for u, i in zip(frame["user"], frame["item"]))
    # in several chunks, seen items included: still what the model ranks
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--data.predict.k", "3",
                 "--data.loader.eval_batch_users", "7", "--data.predict.exclude_seen", "false"]) == 0
    chunked = pd.read_parquet(tmp_path / "runs" / "lightning_logs" / "version_2" / "predictions.parquet")
    expected = rec.recommend(users, k=3, exclude_seen=False)
    assert chunked[["user", "rank", "item"]].equals(expected[["user", "rank", "item"]])
    assert any((index["user"][u], index["item"][i]) in seen for u, i in zip(chunked["user"], chunked["item"]))
    # a k past the catalogue is named
    capsys.readouterr()
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--data.predict.k", "100000"]) == 2
    assert "predict.k=100000 is larger than the catalogue" in capsys.readouterr().err
    assert main(["predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--data.predict.k", "0"]) == 2
    assert "predict.k must be an integer >= 1; got 0" in capsys.readouterr().err


@pytest.mark.parametrize("filename", ["top.csv", "../top.parquet"])
def test_prediction_writer_names_a_bad_file_name(filename):
    with pytest.raises(ConfigError, match=f"predictions.filename must be a file name ending in .parquet; got '{filename}'"):
        TopKWriter(filename)


def test_checkpoint_from_another_split_is_refused_for_test_validate_and_resume(tmp_path, monkeypatch, capsys):
    # the graph's shape does not depend on the split seed, so only the train fingerprint tells
    # a checkpoint trained on one seed's train pairs from data split with seed 7
    ckpt = str(_fit(tmp_path, monkeypatch, 1))
    assert "train_fingerprint" in torch.load(ckpt, map_location="cpu", weights_only=True)
    capsys.readouterr()
    for command in (["test"], ["validate"], ["predict"], ["fit", "--trainer.max_epochs", "2"]):
        assert main([*command, "--config", str(CONFIG), "--data.dataset.split_seed", "7", "--ckpt_path", ckpt]) == 2
        err = capsys.readouterr().err
        assert "kgrec: error:" in err and "trained on other train interactions" in err and "split_seed" in err
        assert re.search(r"as many train pairs, [\d,]+, but not the same ones", err)
    assert not list((tmp_path / "runs").rglob("test_metrics.json"))
    # the refused runs leave no run directory behind (they recorded nothing), so the next is version_1
    assert sorted(p.name for p in (tmp_path / "runs" / "lightning_logs").iterdir()) == ["version_0"]
    assert main(["test", "--config", str(CONFIG), "--ckpt_path", ckpt]) == 0  # its own split still tests
    assert (tmp_path / "runs" / "lightning_logs" / "version_1" / "test_metrics.json").is_file()
    # without a numbering logger the run writes into a directory the user named: never removed
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text(CONFIG.read_text())
    assert main(["test", "--config", str(mine / "config.yaml"), "--data.dataset.split_seed", "7", "--ckpt_path", ckpt,
                 "--trainer.logger", "false", "--trainer.default_root_dir", str(mine)]) == 2
    assert (mine / "config.yaml").is_file()


def test_cli_config_errors_are_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIG), "--model.gnn.hidden_size", "8"])
    assert "hidden_size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIG), "--model.gnn.num_layers", "two"])
    assert "num_layers" in capsys.readouterr().err
    assert main(["fit", "--config", str(CONFIG), "--data.dataset.path", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a group's own check runs when the CLI builds it
        main(["fit", "--config", str(CONFIG), "--model.loss.name", "hinge"])
    assert "hinge" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_requested_without_gpu_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(CONFIG), "--trainer.accelerator", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "kgrec: error:" in err and ("GPU" in err or "gpu" in err or "CUDA" in err)


# ------------------------------------------------------- one definition of each hyper-parameter
def test_the_cli_the_library_and_the_configs_share_one_definition_of_each_default(tmp_path, monkeypatch):
    from kgrec.training.cli import make_cli

    monkeypatch.chdir(tmp_path)
    cli = make_cli(["--data.dataset.path", "synthetic", "--data.inputs.use_text", "false"], run=False)
    library = KGRec()
    assert cli.model.gnn_config == library.gnn
    assert cli.model.loss_config == library.loss
    assert cli.model.optim_config == library.optim
    assert cli.datamodule.loader == library.loader
    assert cli.datamodule.inputs == dataclasses.replace(library.inputs, use_text=False)
    assert cli.trainer.max_epochs == library.schedule.max_epochs
    assert cli.trainer.early_stopping_callback.patience == library.schedule.patience
    assert cli.datamodule.dataset == DataConfig(path="synthetic")
    # the groups, not copies of their fields: no hyper-parameter is a constructor argument twice
    shared = set(KGRec().get_params()) & set(KGRecModule.__init__.__code__.co_varnames)
    assert shared == {"gnn", "loss", "optim"}
    # every committed config names only fields of the groups, and each group builds
    owners = {("model", "gnn"): GNNConfig, ("model", "loss"): LossConfig, ("model", "optim"): OptimConfig,
              ("data", "dataset"): DataConfig, ("data", "inputs"): InputConfig, ("data", "loader"): LoaderConfig,
              ("data", "predict"): PredictConfig}
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        config = yaml.safe_load(path.read_text())
        assert set(config.get("model", {})) <= {"gnn", "loss", "optim"}, path.name
        assert set(config.get("data", {})) <= {"dataset", "inputs", "loader", "predict", "text_encoder"}, path.name
        for (section, group), cls in owners.items():
            coerce_config(cls, config.get(section, {}).get(group), f"{path.name}: {section}.{group}")


# --------------------------------------------------------------------- DDP
class _RecordShard(L.Callback):
    """Each rank writes how many training batches it ran (the main process cannot see them)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        users, items = batch
        if batch_idx == 0:
            Path(self.folder, f"rng{trainer.global_rank}.txt").write_text(str(torch.get_rng_state().tolist()))
        with open(Path(self.folder, f"edges{trainer.global_rank}.txt"), "a") as fh:
            fh.writelines(f"{u} {i}\n" for u, i in zip(users.tolist(), items.tolist()))

    def on_train_epoch_end(self, trainer, pl_module):
        Path(self.folder, f"rank{trainer.global_rank}.txt").write_text(str(trainer.num_training_batches))


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_on_shards(synthetic_graph, synthetic_split, tmp_path):
    """Lightning DDP over gloo: two ranks, each with its shard of the supervision edges."""
    dm = make_dm(synthetic_graph, synthetic_split, batch_size=32)
    module = KGRecModule(dm.graph_info, **groups(hidden_channels=8, num_negatives=8))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
                        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path,
                        callbacks=[_RecordShard(tmp_path)])
    trainer.fit(module, dm)
    assert trainer.world_size == 2
    # 480 training edges split over 2 ranks: 240 each, 7 full batches of 32 (one rank alone: 15)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["7", "7"]
    # the shards are disjoint: no training edge reached both ranks
    seen = [set((tmp_path / f"edges{r}.txt").read_text().split("\n")) - {""} for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 7 * 32 and not seen[0] & seen[1]
    # and each rank draws its own random numbers (negatives, dropout): not the same stream twice
    assert (tmp_path / "rng0.txt").read_text() != (tmp_path / "rng1.txt").read_text()
    after = module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained weights came back


@pytest.mark.slow
def test_cli_fit_test_and_predict_run_over_two_processes_as_on_one(tmp_path):
    """`--trainer.devices 2` (DDP over gloo, through the CLI): fit trains, and test and predict shard
    the users over both processes and give what one process gives. Lightning's DDP launcher starts
    rank 1 by re-running the command line, so the CLI must leave the real one in sys.argv."""
    base = [sys.executable, "-m", "kgrec.cli"]
    two = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]

    def run(*args):
        proc = subprocess.run([*base, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    proc = run("fit", "--config", str(CONFIG), "--trainer.max_epochs", "1", *two)
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout
    logs = tmp_path / "runs" / "lightning_logs"
    ckpt = logs / "version_0" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file() and (logs / "version_0" / "metrics.csv").is_file()
    # eval_batch_users 7: several chunks per process, and a padded last one the gather drops
    for extra in ([], two):
        run("test", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--data.loader.eval_batch_users", "7", *extra)
        run("predict", "--config", str(CONFIG), "--ckpt_path", str(ckpt), "--data.loader.eval_batch_users", "7", *extra)
    one_test, two_test = (json.loads((logs / v / "test_metrics.json").read_text()) for v in ("version_1", "version_3"))
    assert one_test == pytest.approx(two_test, abs=1e-6) and one_test["ndcg@20"] > 0
    one, two_ = (pd.read_parquet(logs / v / "predictions.parquet") for v in ("version_2", "version_4"))
    assert one[["user", "rank", "item"]].equals(two_[["user", "rank", "item"]]) and len(one) == 20 * 60
    assert one["score"].to_numpy() == pytest.approx(two_["score"].to_numpy(), abs=1e-6)

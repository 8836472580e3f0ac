"""The kgrec command line: one clear line on bad input, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kgrec.cli import main


def test_info_prints_dataset_split_and_graph(capsys):
    assert main(["info", "--data", "synthetic", "--split", "cold_item"]) == 0
    out = capsys.readouterr().out
    assert "Dataset 'synthetic'" in out and "Split[cold_item" in out and "user-interacts-item" in out


def test_info_summarises_the_synthetic_scale_world(capsys):
    assert main(["info", "--data", "synthetic-scale", "--scale", "{users: 400, items: 100, edges: 4000}"]) == 0
    out = capsys.readouterr().out
    assert "Dataset[synthetic-scale-400x100x4000]: users 400, items 100, interactions 4,000" in out
    assert "Split[random, seed=2026]: train 3,200 (80.0%), valid 400, test 400" in out
    assert "user-interacts-item                    3,200" in out


def test_info_scale_errors_name_the_argument(capsys):
    cases = [
        (["--data", "synthetic-scale", "--scale", "[1]"], "--scale must be a mapping"),
        (["--data", "synthetic-scale", "--scale", "{users: [}"], "--scale '{users: [}' is not YAML"),
        (["--data", "synthetic-scale", "--scale", "{users: 0}"], "--scale.users must be a positive integer; got 0"),
        (["--data", "synthetic-scale", "--scale", "{people: 5}"], "--scale has unknown key(s) ['people']"),
        (["--data", "synthetic-scale", "--split", "temporal"],
         "dataset.path 'synthetic-scale' is split at random; got dataset.split='temporal'"),
        (["--data", "synthetic", "--scale", "{users: 5}"], "--scale sizes the 'synthetic-scale' graph only; --data is 'synthetic'"),
    ]
    for argv, message in cases:
        assert main(["info", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


@pytest.mark.slow
def test_bad_dataset_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kgrec.cli", "info", "--data", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("kgrec: error: dataset.path ")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.strip().endswith("is neither a built-in dataset (ml-100k, ml-1m, synthetic, synthetic-scale) "
                                        "nor an existing directory of RecBole atomic files.")
    # a directory that exists but holds no dataset gets its own error, about the files
    proc = subprocess.run([sys.executable, "-m", "kgrec.cli", "info", "--data", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "synthetic-scale" not in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'; known commands: explain, export, fit, ids, info, predict, recommend, similar, test, validate" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_logs_kgrec_progress_but_not_other_libraries_chatter():
    script = (
        "import logging\n"
        "from kgrec.cli import main\n"
        "main(['--help'])\n"
        "logging.getLogger('sentence_transformers.base.model').info('loading a model')\n"
        "logging.getLogger('kgrec').info('epoch 1 valid')\n"
        "logging.getLogger('transformers').warning('a real warning')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "INFO kgrec: epoch 1 valid" in proc.stderr
    assert "a real warning" in proc.stderr
    assert "loading a model" not in proc.stderr

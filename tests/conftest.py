"""Shared fixtures: tiny synthetic data, an isolated cache, no network."""

from __future__ import annotations

import pytest
import torch

from kgrec.data import make_synthetic
from kgrec.graph import build_graph
from kgrec.data.split import split_dataset

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, request):
    """Every test gets its own empty cache unless it is marked ``network`` (which reuses the user's)."""
    if "network" not in request.keywords:
        monkeypatch.setenv("KGREC_CACHE_DIR", str(tmp_path_factory.mktemp("kgrec-cache")))


@pytest.fixture(scope="session")
def synthetic():
    return make_synthetic()


@pytest.fixture(scope="session")
def synthetic_split(synthetic):
    return split_dataset(synthetic, "random", seed=7)


@pytest.fixture(scope="session")
def synthetic_graph(synthetic, synthetic_split):
    return build_graph(synthetic, synthetic_split)

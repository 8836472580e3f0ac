"""Small builders the tests share: worlds with hashing text, data modules, modules, short fits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import torch

from kgrec.data import make_synthetic, split_dataset
from kgrec.graph import InputConfig, build_graph, build_vocabs
from kgrec.nn import GNNConfig
from kgrec.text import HashingTextEncoder, encode_node_texts
from kgrec.training import KGRecDataModule, KGRecModule, LoaderConfig, LossConfig, OptimConfig
from kgrec.world import World

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "synthetic.yaml"

_GROUPS = {"gnn": GNNConfig, "loss": LossConfig, "optim": OptimConfig}


def text_world(strategy="random", seed=0, dim=32):
    """``(dataset, split, graph)`` of the synthetic data with 32-d hashing text features."""
    dataset = make_synthetic(seed=seed)
    split = split_dataset(dataset, strategy, seed=seed)
    vocabs = build_vocabs(dataset)
    x = encode_node_texts(dataset, split, vocabs, HashingTextEncoder(dim=dim), use_cache=False)
    return dataset, split, build_graph(dataset, split, text_features={k: v for k, v in x.items() if v is not None},
                                       vocabs=vocabs)


def groups(**flat) -> dict[str, dict]:
    """Flat hyper-parameters routed to their group (``loss`` names the loss): ``{"gnn": {...}, ...}``."""
    out: dict[str, dict] = {}
    for key, value in flat.items():
        if key == "loss":
            out.setdefault("loss", {})["name"] = value
            continue
        owner = next((g for g, cls in _GROUPS.items() if key in {f.name for f in dataclasses.fields(cls)}), None)
        if owner is None:
            raise TypeError(f"no group has a field {key!r}")
        out.setdefault(owner, {})[key] = value
    return out


def make_dm(graph, split, inputs=None, **loader) -> KGRecDataModule:
    """A data module over ``graph`` as given (every KG entity kept unless ``inputs`` says otherwise)."""
    return KGRecDataModule.from_world(World(split, graph), inputs=inputs or InputConfig(kg_min_degree=1),
                                      loader=LoaderConfig(**loader))


def make_module(graph, split, **flat) -> tuple[KGRecDataModule, KGRecModule]:
    """A data module (batches of 64) and a small module attached to it, as ``setup`` would."""
    dm = make_dm(graph, split, batch_size=64)
    args = dict(hidden_channels=16, num_layers=2, num_negatives=16, lr=0.01)
    args.update(flat)
    module = KGRecModule(dm.graph_info, **groups(**args))
    module.attach(dm)
    return dm, module


def fit(module, dm, epochs=3, accelerator="cpu", **trainer_kwargs) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, accelerator=accelerator, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        **trainer_kwargs)
    trainer.fit(module, dm)
    return trainer


class EmbeddingScorer:
    """Fixed embeddings under the evaluator's contract (``score``, ``score_device``, ``is_fitted``)."""

    is_fitted = True

    def __init__(self, user: torch.Tensor, item: torch.Tensor, score: str = "dot") -> None:
        from kgrec.nn import score_space

        self.user, self.item = score_space(score, user, item)

    @property
    def score_device(self) -> torch.device:
        return self.user.device

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user[users.to(self.user.device)] @ self.item.t()

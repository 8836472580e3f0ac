"""The package's layout: one package per pipeline stage, imports pointing down the pipeline only."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import kgrec

PACKAGE = Path(kgrec.__file__).resolve().parent

#: The pipeline's stages, lowest first. A module may import its own stage and the ones before it.
STAGES = [
    ("kgrec._version", "kgrec.errors", "kgrec.io", "kgrec.config"),
    ("kgrec.data",),
    ("kgrec.text",),
    ("kgrec.graph",),
    ("kgrec.world",),
    ("kgrec.nn",),
    ("kgrec.sampler",),
    ("kgrec.eval",),
    ("kgrec.training", "kgrec.serving"),  # side by side: neither imports the other
    ("kgrec.models",),
    ("kgrec.baselines",),
    ("kgrec.testing", "kgrec.cli", "kgrec"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """Every kgrec module and the kgrec modules it imports, at the top or inside a function."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).rstrip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("kgrec") and target != name:
                    graph.add_edge(name, target)
    return graph


def _stage(module: str) -> int:
    for index, stage in enumerate(STAGES):
        if any(module == s or module.startswith(s + ".") for s in stage):
            return index
    raise AssertionError(f"{module} belongs to no stage: add it to STAGES")


def test_no_import_cycle_even_through_imports_inside_functions():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, cycles


def test_imports_point_down_the_pipeline():
    wrong = [(a, b) for a, b in import_graph().edges if _stage(b) > _stage(a) and a != "kgrec"]
    assert not wrong, wrong


def test_training_and_serving_never_import_each_other():
    graph = import_graph()
    for side, other in (("kgrec.training", ("kgrec.serving", "kgrec.models")),
                        ("kgrec.serving", ("kgrec.training", "kgrec.models"))):
        reached = {m for n in graph if n.startswith(side) for m in nx.descendants(graph, n)}
        assert not [m for m in reached if m.startswith(other)], (side, sorted(reached))


def test_the_top_level_exposes_the_handful_of_names_a_user_needs():
    assert {"load_dataset", "DataConfig", "build_world", "KGRec", "load", "evaluate"} <= set(kgrec.__all__)
    assert len(kgrec.__all__) <= 35
    assert all(hasattr(kgrec, name) for name in kgrec.__all__)

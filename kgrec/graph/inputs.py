"""Which inputs a model reads: text, tags and attributes, the knowledge graph.

The ablation switches live here, once, and are applied by one function,
:func:`select_inputs`, to a built graph: by :func:`kgrec.world.build_world` (so
``kgrec fit``, ``kgrec info`` and the benchmarks train on the same graph) and by
:meth:`kgrec.models.KGRec.fit` on whatever graph it is given.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass, replace

from kgrec.errors import ConfigError
from kgrec.graph.build import GraphData, prune_entities

__all__ = ["InputConfig", "select_inputs"]


@dataclass(frozen=True)
class InputConfig:
    """What the model reads besides user–item interactions.

    Args:
        use_text: Text embeddings as node features (``False``: the graph keeps no ``x``;
            the ``kgrec-notext`` ablation).
        use_kg: Knowledge-graph edges and entity nodes (``kgrec-nokg``).
        use_side_info: Tag nodes: item tags and user attribute values.
        kg_min_degree: Drop KG entities (not linked to an item) with fewer KG edges than
            this; 1 keeps all. An entity met by one KG edge links no two items, so it adds
            propagation cost and no collaborative signal.
    """

    use_text: bool = True
    use_kg: bool = True
    use_side_info: bool = True
    kg_min_degree: int = 2

    def __post_init__(self) -> None:
        for name in ("use_text", "use_kg", "use_side_info"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"inputs.{name} must be true or false; got {getattr(self, name)!r}.")
        value = self.kg_min_degree
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"inputs.kg_min_degree must be a positive integer; got {value!r}.")


def select_inputs(graph: GraphData, inputs: InputConfig) -> GraphData:
    """``graph`` restricted to ``inputs``: a copy, the caller's graph untouched.

    Drops the KG edges and entity nodes (``use_kg=False``), the tag nodes with their
    edges (``use_side_info=False``), the text features (``use_text=False``), and KG
    entities below ``kg_min_degree``. Idempotent: applying it twice gives the same graph.
    """
    data = graph.data
    keep = [et for et in data.edge_types
            if (inputs.use_kg or et[1] not in ("kg", "rev_kg"))
            and (inputs.use_side_info or "tag" not in (et[0], et[2]))]
    out = graph
    if len(keep) < len(data.edge_types) or not inputs.use_text:
        data = copy.copy(data).edge_type_subgraph(keep)
        for nt in list(data.node_types):
            if (nt == "entity" and not inputs.use_kg) or (nt == "tag" and not inputs.use_side_info):
                del data[nt]
            elif not inputs.use_text and "x" in data[nt]:
                del data[nt].x
        vocabs = {nt: v for nt, v in graph.vocabs.items() if nt in data.node_types}
        out = replace(graph, data=data, vocabs=vocabs,
                      relations=list(graph.relations) if inputs.use_kg else [],
                      text_encoder=graph.text_encoder if inputs.use_text else None)
    return prune_entities(out, inputs.kg_min_degree)

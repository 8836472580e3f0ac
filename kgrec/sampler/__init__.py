"""Mini-batch samplers for link prediction on kgrec's heterogeneous graph.

Both samplers implement PyG's :class:`~torch_geometric.sampler.BaseSampler`,
so :class:`~torch_geometric.loader.LinkLoader` and
:class:`~torch_geometric.loader.NodeLoader` use them unchanged::

    from torch_geometric.loader import LinkLoader
    from kgrec.sampler import HeteroNeighborSampler, NegativeSampler

    sampler = HeteroNeighborSampler(graph.data, num_neighbors=[10, 10])
    loader = LinkLoader(graph.data, sampler,
                        edge_label_index=(("user", "interacts", "item"), None),
                        neg_sampling=NegativeSampler("binary", popularity_exponent=0.75),
                        batch_size=2048, shuffle=True)
"""

from kgrec.sampler.base import HeteroSamplerBase, SeedExclusion
from kgrec.sampler.full_graph import FullGraphSampler
from kgrec.sampler.hetero_csc import HeteroCSC
from kgrec.sampler.negatives import NegativeSampler
from kgrec.sampler.neighbor_sampler import HeteroNeighborSampler, pyg_lib_available

__all__ = [
    "FullGraphSampler",
    "HeteroCSC",
    "HeteroNeighborSampler",
    "HeteroSamplerBase",
    "NegativeSampler",
    "SeedExclusion",
    "pyg_lib_available",
]

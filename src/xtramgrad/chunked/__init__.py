"""Out-of-core gradients: the locality of a neighbour table (:mod:`.locality`) and the halo
gather that makes each bin's stencil an array chunked like ``bin`` (:mod:`.gather`).

When to sort
------------
Bins of an irregular tessellation often come in random order, and then every chunk touches
every other chunk (quadratic graphs, every task reading everything). Reorder them along a
space-filling curve first, with :func:`xtramgrad.sort` (``ds.tram.sort()``), before
chunking or writing to zarr; the original positions stay in the ``bin_id`` coordinate and
:func:`xtramgrad.unsort` maps results back.

Examples
--------
>>> import xtramgrad
>>> ds = xtramgrad.grid((6, 5))
>>> ds["D"] = ds.center.sel(space="x") ** 2
>>> g = ds.chunk({"bin": 7}).tram.grad("D")
>>> g.chunks
((7, 7, 7, 7, 2), (2,))
>>> bool((g.compute() == ds.tram.grad("D")).all())
True
"""

from .gather import GatherPlan, gather_plan, gather_values
from .locality import HALO_ATTR, PLAN_ATTRS, chunk_dependencies, plan

__all__ = [
    "HALO_ATTR",
    "PLAN_ATTRS",
    "GatherPlan",
    "chunk_dependencies",
    "gather_plan",
    "gather_values",
    "plan",
]

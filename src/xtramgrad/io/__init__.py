"""Meet users where their data is: TRamWAy analyses and UGRID meshes in, gradient maps out.

Three public functions, each returning or consuming the tessellation Dataset of
:mod:`xtramgrad.topology`:

* :func:`from_tramway` reads a TRamWAy ``.rwa`` file (or a loaded analysis tree): the bins
  and adjacency exactly as TRamWAy's inference sees them, every map stored under the
  chosen tessellation as variables (with TRamWAy's units: micrometres, seconds, kT), the
  cells' geometry where TRamWAy knows it, and TRamWAy's spatio-temporal analyses (time
  lattices) as maps with a ``time`` dimension;
* :func:`to_tramway` turns a gradient (or any per-bin variable) back into a TRamWAy map: a
  :class:`pandas.DataFrame` indexed by TRamWAy's cell index with TRamWAy's column names
  (``"diffusivity x"``, ...), optionally stored in the analysis tree / ``.rwa`` file;
* :func:`from_ugrid` reads a 2D UGRID mesh (an :class:`xarray.Dataset` following the UGRID
  conventions, an ``xugrid`` ``Ugrid2d``/``UgridDataset``/``UgridDataArray``, or an
  ``uxarray`` ``Grid``/``UxDataset``/``UxDataArray``): faces become bins, with their
  polygons, areas and shared edge lengths.

Both readers fill the optional geometry variables of the schema when the source has them:
``volume(bin)``, ``face_area(bin, nbr)`` (aligned with ``neighbours``), ``vertex(vertex,
space)`` and ``cell_vertex(bin, corner)``. The table operations they share (padding,
packing, ``start_index``/``_FillValue``, deduplication, polygon rings) live in
:mod:`xtramgrad.io._tables`.

TRamWAy, xugrid and uxarray are optional: each is imported only inside the function that
needs it (``pip install -e ".[tramway]"`` / ``".[ugrid]"`` from a checkout).

Examples
--------
>>> import numpy as np, xarray as xr, xtramgrad
>>> mesh = xr.Dataset(
...     {
...         "mesh": ((), 0, {"cf_role": "mesh_topology", "topology_dimension": 2,
...                         "node_coordinates": "node_x node_y",
...                         "face_node_connectivity": "face_nodes"}),
...         "node_x": ("node", [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]),
...         "node_y": ("node", [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
...         "face_nodes": (("face", "corner"), [[0, 1, 4, 3], [1, 2, 5, 4]]),
...         "D": ("face", [1.0, 3.0]),
...     }
... )
>>> ds = xtramgrad.from_ugrid(mesh)
>>> ds.center.values.tolist(), ds.neighbours.values.tolist()
([[0.5, 0.5], [1.5, 0.5]], [[1], [0]])
>>> ds.tram.grad("D").values.tolist()
[[2.0, nan], [2.0, nan]]
>>> ds.volume.values.tolist(), ds.face_area.values.tolist(), ds.cell_vertex.values.tolist()
([1.0, 1.0], [[1.0], [1.0]], [[0, 1, 4, 3], [1, 2, 5, 4]])
"""

from .tramway import TRAMWAY_CELL, from_tramway, to_tramway
from .ugrid import from_ugrid

__all__ = ["from_tramway", "to_tramway", "from_ugrid", "TRAMWAY_CELL"]

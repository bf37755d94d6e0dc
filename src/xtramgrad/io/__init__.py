"""Meet users where their data is: TRamWAy analyses and UGRID meshes in, gradient maps out.

Three public functions, each returning or consuming the tessellation Dataset of
:mod:`xtramgrad.topology`:

* :func:`from_tramway` reads a TRamWAy ``.rwa`` file (or a loaded analysis tree): the bins
  and adjacency exactly as TRamWAy's inference sees them, and every map stored under the
  chosen tessellation as variables;
* :func:`to_tramway` turns a gradient (or any per-bin variable) back into a TRamWAy map: a
  :class:`pandas.DataFrame` indexed by TRamWAy's cell index with TRamWAy's column names
  (``"diffusivity x"``, ...), optionally stored in the analysis tree / ``.rwa`` file;
* :func:`from_ugrid` reads a 2D UGRID mesh (an :class:`xarray.Dataset` following the UGRID
  conventions, an ``xugrid`` ``Ugrid2d``/``UgridDataset``/``UgridDataArray``, or an
  ``uxarray`` ``Grid``/``UxDataset``/``UxDataArray``): faces become bins.

TRamWAy, xugrid and uxarray are optional: each is imported only inside the function that
needs it (``pip install 'xtramgrad[tramway]'`` / ``'xtramgrad[ugrid]'``).

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
"""

from .tramway import TRAMWAY_CELL, from_tramway, to_tramway
from .ugrid import from_ugrid

__all__ = ["from_tramway", "to_tramway", "from_ugrid", "TRAMWAY_CELL"]

"""The tessellation Dataset: its schema and validation (:mod:`.schema`), its constructors
(:mod:`.build`) and the order of its bins (:mod:`.ordering`).

A tessellation Dataset is an ordinary :class:`xarray.Dataset` with

========================  ==================  ==================================================
variable                  dims                meaning
========================  ==================  ==================================================
``center``                ``(bin, space)``    float bin centers; ``space`` has size d = 1, 2, 3
                                              and coordinate labels such as ``"x"``, ``"y"``
``neighbours``            ``(bin, nbr)``      integer, zero-based positions of each bin's
                                              neighbours along ``bin``, padded with -1
``neighbour_label``       ``(bin, nbr)``      optional signed labels ``+-(j+1)``: the neighbour is
                                              above / below the bin along axis j
``volume``                ``(bin,)``          optional bin volume (area in 2D)
measurements              ``(bin, ...)``      any variable with a ``bin`` dimension
========================  ==================  ==================================================

These names are the public schema: a Dataset written by hand with them (to zarr, netCDF,
or in memory) works with the ``.tram`` accessor.

Examples
--------
>>> import xtramgrad
>>> ds = xtramgrad.grid((3, 4), spacing=0.5)
>>> ds.sizes["bin"], ds.sizes["space"], ds.sizes["nbr"]
(12, 2, 8)
>>> ds.neighbours.values[0].tolist()
[1, 4, 5, -1, -1, -1, -1, -1]
"""

from ..errors import TessellationError
from .build import from_adjacency, from_neighbours, grid, grid_offsets, voronoi
from .ordering import BIN_ID, hilbert_key, sort, unsort
from .schema import (
    BIN,
    CENTER,
    DEFAULT_SPACE,
    LABEL,
    NBR,
    NEIGHBOURS,
    SCHEMA_VARIABLES,
    SPACE,
    VOLUME,
    Topology,
    check_values,
    topology,
    validate,
)

__all__ = [
    "BIN",
    "BIN_ID",
    "CENTER",
    "DEFAULT_SPACE",
    "LABEL",
    "NBR",
    "NEIGHBOURS",
    "SCHEMA_VARIABLES",
    "SPACE",
    "VOLUME",
    "TessellationError",
    "Topology",
    "check_values",
    "from_adjacency",
    "from_neighbours",
    "grid",
    "grid_offsets",
    "hilbert_key",
    "sort",
    "topology",
    "unsort",
    "validate",
    "voronoi",
]

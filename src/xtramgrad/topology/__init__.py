"""The tessellation Dataset: its schema and validation (:mod:`.schema`), its constructors
(:mod:`.build`), the operations that move rows (:mod:`.tables`: ``isel``, ``concat``,
``symmetrize``) and the order of its bins (:mod:`.ordering`).

A tessellation Dataset is an ordinary :class:`xarray.Dataset` with

========================  ===================  ==================================================
variable                  dims                 meaning
========================  ===================  ==================================================
``center``                ``(bin, space)``     float bin centers; ``space`` has size d = 1, 2, 3
                                               and coordinate labels such as ``"x"``, ``"y"``;
                                               ``center.attrs["units"]``: the space units
``bin``                   ``(bin,)``           coordinate 0..n-1: the row positions the
                                               neighbour table refers to (optional; set by the
                                               constructors)
``neighbours``            ``(bin, nbr)``       padded layout: integer, zero-based positions of
                                               each bin's neighbours along ``bin``, padded
                                               with -1
``neighbours``            ``(edge,)``          ragged layout (CF contiguous ragged array): the
                                               neighbours of bin 0, then of bin 1, ...
``neighbour_count``       ``(bin,)``           ragged layout: neighbours per bin, attribute
                                               ``sample_dimension = "edge"``
``neighbour_label``       as ``neighbours``    optional signed labels ``+-(j+1)``: the neighbour
                                               is above / below the bin along axis j
``face_area``             as ``neighbours``    optional (d-1)-measure of the face shared with
                                               each neighbour (NaN at padding)
``volume``                ``(bin,)``           optional bin volume (area in 2D)
``vertex``                ``(vertex, space)``  optional cell polygon corners (for plots)
``cell_vertex``           ``(bin, corner)``    optional positions along ``vertex`` of each
                                               cell's corners, padded with -1
``bin_id``                ``(bin,)``           coordinate: original positions after
                                               :func:`sort` or :func:`isel`
measurements              ``(bin, ...)``       any variable with a ``bin`` dimension
========================  ===================  ==================================================

These names are the public schema: a Dataset written by hand with them (to zarr, netCDF,
or in memory) works with the ``.tram`` accessor. A ``bin`` coordinate that is not 0..n-1
(after ``ds.isel``, ``xr.concat``, ``ds.sortby``...) is refused by every operation that
reads the table; :func:`isel` and :func:`concat` are the supported ways.

Examples
--------
>>> import xtramgrad
>>> ds = xtramgrad.grid((3, 4), spacing=0.5)
>>> ds.sizes["bin"], ds.sizes["space"], ds.sizes["nbr"]
(12, 2, 8)
>>> ds.neighbours.values[0].tolist()
[1, 4, 5, -1, -1, -1, -1, -1]
>>> ragged = xtramgrad.grid((3, 4), layout="ragged")
>>> ragged.neighbours.dims, ragged.neighbour_count.values[:3].tolist()
(('edge',), [3, 5, 5])
"""

from ..errors import TessellationError
from .build import from_adjacency, from_neighbours, grid, grid_offsets, voronoi
from .ordering import hilbert_key, sort, unsort
from .schema import (
    BIN,
    CELL_VERTEX,
    CENTER,
    CORNER,
    COUNT,
    DEFAULT_SPACE,
    EDGE,
    FACE_AREA,
    LABEL,
    NBR,
    NEIGHBOURS,
    SCHEMA_VARIABLES,
    SPACE,
    VERTEX,
    VOLUME,
    AsymmetryWarning,
    Topology,
    check_counts,
    check_values,
    edge_values,
    row_problem,
    table_csr,
    topology,
    validate,
)
from .tables import BIN_ID, LAYOUTS, bin_coordinate, choose_layout, concat, isel, symmetrize

__all__ = [
    "BIN",
    "BIN_ID",
    "CELL_VERTEX",
    "CENTER",
    "CORNER",
    "COUNT",
    "DEFAULT_SPACE",
    "EDGE",
    "FACE_AREA",
    "LABEL",
    "LAYOUTS",
    "NBR",
    "NEIGHBOURS",
    "SCHEMA_VARIABLES",
    "SPACE",
    "VERTEX",
    "VOLUME",
    "AsymmetryWarning",
    "TessellationError",
    "Topology",
    "bin_coordinate",
    "check_counts",
    "check_values",
    "choose_layout",
    "concat",
    "edge_values",
    "from_adjacency",
    "from_neighbours",
    "grid",
    "grid_offsets",
    "hilbert_key",
    "isel",
    "row_problem",
    "sort",
    "symmetrize",
    "table_csr",
    "topology",
    "unsort",
    "validate",
    "voronoi",
]

"""Pictures of a tessellation Dataset: maps, gradient arrows, method comparisons and
neighbour selection, readable from 10^2 to 10^6 bins.

matplotlib is an optional dependency (``pip install -e ".[plot]"``), imported only when
drawing. Each function draws on ``ax`` (a new figure when omitted) and returns the
matplotlib Axes; the accessor methods ``ds.tram.plot_map``, ``ds.tram.plot_gradient`` and
``ds.tram.plot_selection`` call them.

* :func:`plot_map`: each bin's cell coloured by a measurement or a gradient component,
  with robust colour limits (2nd-98th percentiles) and a colour bar naming the variable,
  the component and the units. Cells are the Dataset's own polygons when it records them
  (``vertex`` and ``cell_vertex``), the exact squares of a regular grid (drawn as one
  image), or else Voronoi-like cells built from the centers and the neighbour table, with
  border cells cut to the size of their interior neighbours (:mod:`.geometry`).
* :func:`plot_gradient`: arrows over the map, one per bin up to 2,000 bins and aggregated
  onto a regular grid (35 per side) above, on a robust length scale, with a key.
* :func:`plot_compare`: methods side by side on a shared scale, with error maps and RMS
  errors against a known gradient.
* :func:`plot_selection`: which neighbours a selection rule picks around one bin; each
  rule's geometry is drawn by one function of :data:`RULE_DRAWERS`.

3D tessellations are shown one slab at a time (``at={"z": 0.5}``); 1D maps are a line
through the centers.
"""

from .arrows import AGGREGATE_ABOVE, ARROW_QUANTILE, ARROWS, plot_gradient
from .compare import plot_compare, rms_error
from .geometry import Polygons, typical_spacing
from .maps import (
    CELLS,
    EDGES_BELOW,
    RASTERIZE_ABOVE,
    cell_kind,
    cell_polygons,
    grid_cells,
    plot_map,
    voronoi_cells,
)
from .selection import (
    AXIS_COLOURS,
    RULE_DRAWERS,
    SIDE_MARKERS,
    draw_cone,
    draw_halfspace,
    draw_labels,
    draw_quadrants,
    plot_selection,
)

__all__ = [
    "AGGREGATE_ABOVE",
    "ARROWS",
    "ARROW_QUANTILE",
    "AXIS_COLOURS",
    "CELLS",
    "EDGES_BELOW",
    "Polygons",
    "RASTERIZE_ABOVE",
    "RULE_DRAWERS",
    "SIDE_MARKERS",
    "cell_kind",
    "cell_polygons",
    "draw_cone",
    "draw_halfspace",
    "draw_labels",
    "draw_quadrants",
    "grid_cells",
    "plot_compare",
    "plot_gradient",
    "plot_map",
    "plot_selection",
    "rms_error",
    "typical_spacing",
    "voronoi_cells",
]

"""Maps of a measurement over the bins: cells coloured by value (:func:`plot_map`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple, cast

import numpy as np
import xarray as xr

from ..topology import CELL_VERTEX, CORNER, SPACE, VERTEX, TessellationError, topology
from . import geometry
from ._common import (
    Field,
    View,
    field,
    label_axes,
    new_axes,
    padded_table,
    pyplot,
    space_names,
    view,
)
from .geometry import Polygons

__all__ = [
    "CELLS",
    "CELL_VERTEX",
    "EDGES_BELOW",
    "RASTERIZE_ABOVE",
    "VERTEX",
    "cell_kind",
    "cell_polygons",
    "grid_cells",
    "plot_map",
    "voronoi_cells",
]

#: How bins can be drawn (``cells=``); see :func:`plot_map`.
CELLS = ("auto", "polygons", "grid", "voronoi", "delaunay", "scatter")
#: Cell borders are drawn (white, thin) on maps of at most this many bins; above, cells
#: are drawn edge to edge.
EDGES_BELOW = 3000
#: Above this many bins the cells are rasterized in vector outputs (PDF, SVG).
RASTERIZE_ABOVE = 5000
#: The default percentiles of the colour limits (``robust=True``), as in xarray.
ROBUST_PERCENTILES = (2.0, 98.0)


# --------------------------------------------------------------------------- cells


def _is_grid(ds: xr.Dataset) -> bool:
    return ds.attrs.get("tessellation") == "grid" and "grid_spacing" in ds.attrs


def _has_polygons(ds: xr.Dataset) -> bool:
    return VERTEX in ds.variables and CELL_VERTEX in ds.variables


def cell_kind(ds: xr.Dataset, cells: str = "auto") -> str:
    """How :func:`plot_map` draws the bins of ``ds`` with ``cells=`` (resolving "auto").

    ``"auto"`` is ``"polygons"`` for a 2D Dataset with ``vertex`` and ``cell_vertex``,
    ``"grid"`` for a regular grid (``attrs["tessellation"] == "grid"`` with
    ``grid_spacing``), else ``"voronoi"`` (``"scatter"`` below 3 bins).

    Examples
    --------
    >>> import xtramgrad
    >>> cell_kind(xtramgrad.open_sample("grid")), cell_kind(xtramgrad.open_sample("hexagon"))
    ('grid', 'voronoi')
    """
    if cells not in CELLS:
        raise ValueError(f"cells={cells!r}; expected one of {list(CELLS)}.")
    d = topology(ds).ndim
    if cells == "auto":
        if d == 2 and _has_polygons(ds):
            return "polygons"
        if _is_grid(ds):
            return "grid"
        return "voronoi" if ds.sizes["bin"] >= 3 else "scatter"
    if cells == "grid" and not _is_grid(ds):
        raise TessellationError(
            "cells='grid' needs ds.attrs['tessellation'] == 'grid' and "
            "ds.attrs['grid_spacing'] (as xtramgrad.grid sets them)."
        )
    if cells == "polygons":
        if not _has_polygons(ds):
            raise TessellationError(
                f"cells='polygons' needs the variables {VERTEX!r} (vertex, space) and "
                f"{CELL_VERTEX!r} (bin, corner); this Dataset has neither or one only. Use "
                "cells='voronoi' to draw cells from the centers and neighbours."
            )
        if d != 2:
            raise TessellationError(
                f"cells='polygons' draws 2D polygons; this tessellation is {d}D."
            )
    return cells


def _grid_index(ds: xr.Dataset, v: View) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer lattice positions (m, 2) of the drawn bins, the spacing and the origin."""
    d = topology(ds).ndim
    spacing = np.asarray(ds.attrs["grid_spacing"], dtype=np.float64).ravel()
    if spacing.size == 1:
        spacing = np.repeat(spacing, d)
    sp = spacing[v.plane]
    if "grid_origin" in ds.attrs:
        origin = np.asarray(ds.attrs["grid_origin"], dtype=np.float64).ravel()[v.plane]
    else:
        origin = v.xy.min(axis=0)
    pos = (v.xy - origin) / sp
    idx = np.rint(pos)
    off = np.abs(pos - idx).max() if len(pos) else 0.0
    if off > 1e-6:
        raise TessellationError(
            f"attrs say the tessellation is a grid of spacing {sp.tolist()} from "
            f"{origin.tolist()}, but some centers lie {off:.3g} spacings off the lattice; "
            "fix grid_spacing / grid_origin, or draw with cells='voronoi'."
        )
    return idx.astype(np.int64), sp, origin


def _polygons(ds: xr.Dataset, kind: str, v: View, rows: np.ndarray | None = None) -> Polygons:
    """The polygons of the drawn bins ``v.bins[rows]`` (all by default)."""
    pick = np.arange(len(v.bins)) if rows is None else np.asarray(rows)
    if kind == "polygons":
        return geometry.stored_polygons(
            np.asarray(ds[VERTEX].transpose(VERTEX, SPACE).values),
            np.asarray(ds[CELL_VERTEX].transpose("bin", CORNER).values), v.bins[pick],
        )
    if kind == "grid":
        _, sp, _ = _grid_index(ds, v)
        return geometry.grid_squares(v.xy[pick], sp)
    if kind == "delaunay" or topology(ds).ndim == 3:
        # a slab of a 3D tessellation: its neighbour table is not planar
        table = geometry.delaunay_neighbours(v.xy)
        return geometry.neighbour_cells(v.xy, table, pick)
    return geometry.neighbour_cells(v.xy, padded_table(topology(ds)), pick, spacing=v.spacing)


def cell_polygons(
    ds: xr.Dataset, *, cells: str = "auto", at: Mapping[Hashable, float] | None = None
) -> Polygons:
    """The polygons :func:`plot_map` draws, one per bin in view (all bins in 2D).

    Parameters
    ----------
    ds : xarray.Dataset
    cells : {"auto", "polygons", "grid", "voronoi", "delaunay"}
        As in :func:`plot_map` (``"scatter"`` has no polygons).
    at : dict, optional
        The slab of a 3D tessellation, as in :func:`plot_map`.

    Returns
    -------
    Polygons
        ``verts`` (m, V, 2) and ``counts`` (m,); polygon ``i`` is
        ``verts[i, :counts[i]]``, counter-clockwise.

    Examples
    --------
    >>> import xtramgrad
    >>> p = cell_polygons(xtramgrad.grid((2, 2), spacing=0.5))
    >>> p.verts[0].tolist()
    [[-0.25, -0.25], [0.25, -0.25], [0.25, 0.25], [-0.25, 0.25]]
    """
    kind = cell_kind(ds, cells)
    if kind == "scatter":
        raise ValueError("cells='scatter' draws points, not polygons.")
    return _polygons(ds, kind, view(ds, at))


def voronoi_cells(
    points: np.ndarray, bbox: Any = None, pad: float | None = None
) -> list[np.ndarray]:
    """Voronoi cells of 2D points clipped to a box, one polygon (k, 2) per point.

    Exact: each cell is the box cut by the perpendicular bisectors of the point's
    Delaunay neighbours (:func:`geometry.voronoi_polygons`).

    Parameters
    ----------
    points : (n, 2) float
    bbox : (xmin, xmax, ymin, ymax), optional
        Default: the points' bounding box grown by ``pad`` on each side.
    pad : float, optional
        Default: half the median distance to the nearest other point.

    Examples
    --------
    >>> cells = voronoi_cells(np.array([[0.0, 0.0], [1.0, 0.0]]), bbox=(-1, 2, -1, 1))
    >>> [round(abs(float(geometry.polygon_area(c[None])[0])), 6) for c in cells]
    [3.0, 3.0]
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise TessellationError(
            f"voronoi_cells needs at least two 2D points, got shape {pts.shape}."
        )
    if bbox is None:
        if pad is None:
            dist, _ = cKDTree(pts).query(pts, k=2)
            near = dist[:, 1][dist[:, 1] > 0]
            pad = 0.5 * float(np.median(near)) if len(near) else 1.0
        lo, hi = pts.min(axis=0) - pad, pts.max(axis=0) + pad
        box: tuple[float, ...] = (lo[0], hi[0], lo[1], hi[1])
    else:
        box = tuple(float(b) for b in bbox)
        lo = np.array([box[0], box[2]])
        hi = np.array([box[1], box[3]])
    inside = np.all((pts > lo) & (pts < hi), axis=1)
    if not inside.all():
        raise TessellationError(
            f"{int((~inside).sum())} point(s) lie on or outside bbox={tuple(box)}; "
            "the box must contain every center strictly."
        )
    return geometry.voronoi_polygons(pts, box).to_list()


def grid_cells(centers: np.ndarray, spacing: Any) -> list[np.ndarray]:
    """The squares (rectangles) of grid bins around their centers, one (4, 2) per bin.

    Examples
    --------
    >>> grid_cells(np.array([[0.5, 0.5]]), [1.0, 1.0])[0].tolist()
    [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    """
    return geometry.grid_squares(centers, spacing).to_list()


# --------------------------------------------------------------------------- colours


class Colours(NamedTuple):
    cmap: Any
    vmin: float
    vmax: float
    extend: str


def colours(
    values: np.ndarray | None,
    *,
    cmap: Any,
    vmin: float | None,
    vmax: float | None,
    robust: bool,
    center: float | bool | None,
) -> Colours:
    """Colour map and limits, as xarray chooses them.

    Limits: ``vmin`` / ``vmax`` if given, else the 2nd / 98th percentiles of the finite
    values (``robust=True``) or their range. A map whose limits straddle zero (and no
    ``vmin``/``vmax``), or any map given a numeric ``center``, gets the diverging map
    ``"RdBu_r"`` with limits symmetric about the center (``center=False`` never does).
    """
    vals = np.zeros(0) if values is None else values[np.isfinite(values)]
    lo, hi = geometry.robust_limits(vals, robust, ROBUST_PERCENTILES)
    if vmin is not None:
        lo = float(vmin)
    if vmax is not None:
        hi = float(vmax)
    mid: float | None = None
    if center is not False:
        if center is not None and center is not True:
            mid = float(center)
        elif vmin is None and vmax is None and lo < 0 < hi:
            mid = 0.0
    if mid is not None:
        if vmin is None and vmax is None:
            span = max(abs(lo - mid), abs(hi - mid))
            lo, hi = mid - span, mid + span
        if cmap is None:
            cmap = "RdBu_r"
    if cmap is None:
        cmap = "viridis"
    if lo == hi:  # one value: a small range around it
        half = 0.05 * abs(lo) if lo != 0 else 0.5
        lo, hi = lo - half, hi + half
    elif lo > hi:
        lo, hi = hi, lo
    below = bool(np.any(vals < lo))
    above = bool(np.any(vals > hi))
    extend = "both" if below and above else "min" if below else "max" if above else "neither"
    return Colours(cmap, float(lo), float(hi), extend)


# --------------------------------------------------------------------------- drawing


class Drawn(NamedTuple):
    artist: Any
    view: View
    colours: Colours | None
    colorbar: Any


def draw_map(
    ds: xr.Dataset,
    fld: Field | None,
    ax: Any,
    *,
    cells: str = "auto",
    cmap: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool = True,
    center: float | bool | None = None,
    colorbar: bool = True,
    label: str | None = None,
    at: Mapping[Hashable, float] | None = None,
    edgecolor: Any = "auto",
    linewidth: float | None = None,
    rasterized: bool | None = None,
    **kwargs: Any,
) -> Drawn:
    """Draw the cells of the bins in view, coloured by ``fld``; see :func:`plot_map`."""
    from matplotlib.collections import PolyCollection

    plt = pyplot()
    v = view(ds, at)
    kind = cell_kind(ds, cells)
    vals = None if fld is None else fld.values[v.bins]
    col = None
    if vals is not None:
        col = colours(vals, cmap=cmap, vmin=vmin, vmax=vmax, robust=robust, center=center)
    small = len(v.bins) <= EDGES_BELOW
    if edgecolor == "auto":
        edgecolor = "white" if small else "face"
    if linewidth is None:
        linewidth = 0.3 if small else 0.2
    if rasterized is None:
        rasterized = len(v.bins) > RASTERIZE_ABOVE
    cmap_obj = plt.get_cmap(col.cmap if col else "viridis").with_extremes(bad="lightgrey")
    if kind == "scatter":
        artist = ax.scatter(
            v.xy[:, 0], v.xy[:, 1], c=vals if vals is not None else "tab:grey",
            cmap=cmap_obj if vals is not None else None,
            vmin=col.vmin if col else None, vmax=col.vmax if col else None,
            s=kwargs.pop("s", 12), plotnonfinite=True, rasterized=rasterized, **kwargs,
        )
    elif kind == "grid" and vals is not None:
        artist = _draw_grid(ds, v, vals, ax, cmap_obj, col, edgecolor, linewidth,
                            rasterized, kwargs)
    else:
        polys = _polygons(ds, kind, v)
        artist = PolyCollection(
            cast(Any, polys.padded()), cmap=cmap_obj, edgecolors=edgecolor, linewidths=linewidth,
            rasterized=rasterized, **kwargs,
        )
        if vals is not None and col is not None:
            artist.set_array(np.ma.masked_invalid(vals))
            artist.set_clim(col.vmin, col.vmax)
        else:
            artist.set_facecolor("none")
            artist.set_edgecolor("tab:grey" if edgecolor in ("white", "face") else edgecolor)
            artist.set_linewidth(max(linewidth, 0.5))
        ax.add_collection(artist, autolim=False)  # limits set below, cheaply
        _fit(ax, polys)
    artist.set_gid("xtramgrad-cells")
    label_axes(ax, ds, v.plane)
    if v.title:
        ax.set_title(v.title)
    cbar = None
    if colorbar and vals is not None and col is not None:
        text = label if label is not None else (fld.label if fld is not None else "")
        cbar = ax.figure.colorbar(artist, ax=ax, label=text, extend=col.extend)
    return Drawn(artist, v, col, cbar)


def _fit(ax: Any, polys: Polygons) -> None:
    j = np.arange(polys.verts.shape[1])
    ok = j[None, :] < polys.counts[:, None]
    pts = polys.verts[ok]
    if len(pts):
        ax.set_xlim(pts[:, 0].min(), pts[:, 0].max())
        ax.set_ylim(pts[:, 1].min(), pts[:, 1].max())


def _draw_grid(
    ds: xr.Dataset,
    v: View,
    vals: np.ndarray,
    ax: Any,
    cmap_obj: Any,
    col: Colours | None,
    edgecolor: Any,
    linewidth: float,
    rasterized: bool,
    kwargs: dict[str, Any],
) -> Any:
    """A regular grid as one image (a QuadMesh of its exact squares)."""
    from matplotlib.collections import PolyCollection

    idx, sp, origin = _grid_index(ds, v)
    lo = idx.min(axis=0)
    shape = idx.max(axis=0) - lo + 1
    if len(np.unique(idx[:, 0] * shape[1] + idx[:, 1])) < len(idx):
        raise TessellationError(
            "attrs say the tessellation is a grid, but two bins share a grid square; draw "
            "with cells='voronoi'."
        )
    z = np.full((shape[1], shape[0]), np.nan)
    z[idx[:, 1] - lo[1], idx[:, 0] - lo[0]] = vals
    xe = origin[0] + (np.arange(shape[0] + 1) + lo[0] - 0.5) * sp[0]
    ye = origin[1] + (np.arange(shape[1] + 1) + lo[1] - 0.5) * sp[1]
    clear = cmap_obj.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    mesh = ax.pcolormesh(
        xe, ye, np.ma.masked_invalid(z), cmap=clear, shading="flat",
        vmin=col.vmin if col else None, vmax=col.vmax if col else None,
        edgecolors="none" if edgecolor == "face" else edgecolor, linewidth=linewidth,
        rasterized=rasterized, **kwargs,
    )
    missing = ~np.isfinite(vals)
    if missing.any():
        # bins without a value (not bins absent from the grid): light grey squares
        under = PolyCollection(
            cast(Any, geometry.grid_squares(v.xy[missing], sp).verts), facecolors="lightgrey",
            edgecolors="none", zorder=mesh.get_zorder() - 0.1,
        )
        under.set_gid("xtramgrad-missing")
        ax.add_collection(under)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    return mesh


def _draw_line(ds: xr.Dataset, fld: Field | None, ax: Any) -> Any:
    x = np.asarray(topology(ds).center.values)[:, 0]
    order = np.argsort(x, kind="stable")
    y = np.zeros_like(x) if fld is None else fld.values
    (line,) = ax.plot(x[order], y[order], marker="o", ms=3)
    line.set_gid("xtramgrad-cells")
    units = ds["center"].attrs.get("units")
    ax.set_xlabel(space_names(ds)[0] + (f" [{units}]" if units else ""))
    ax.set_ylabel("" if fld is None else fld.label)
    return line


# --------------------------------------------------------------------------- public


def plot_map(
    ds: xr.Dataset,
    variable: Hashable | xr.DataArray | None = None,
    *,
    component: str | int | None = None,
    ax: Any = None,
    cells: str = "auto",
    cmap: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    robust: bool = True,
    center: float | bool | None = None,
    colorbar: bool = True,
    label: str | None = None,
    at: Mapping[Hashable, float] | None = None,
    edgecolor: Any = "auto",
    linewidth: float | None = None,
    rasterized: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Map of a measurement over the bins: each bin's cell coloured by its value.

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset.
    variable : str or DataArray, optional
        A measurement with one value per bin (select other dims first), or a DataArray
        over ``bin`` such as a gradient. Without it, only the cell outlines are drawn.
    component : str or int, optional
        For a variable with a ``space`` dim (a gradient): the component to map (``"x"``,
        a position) or ``"magnitude"`` (its length). A component already selected
        (``g.sel(space="x")``) is recognised.
    ax : matplotlib Axes, optional
    cells : {"auto", "polygons", "grid", "voronoi", "delaunay", "scatter"}
        How bins are drawn:

        * ``"polygons"``: the polygons the Dataset records (``vertex(vertex, space)``
          corners and ``cell_vertex(bin, corner)`` positions into them, padded with -1),
          exactly;
        * ``"grid"``: the exact squares of a regular grid (``attrs["tessellation"] ==
          "grid"`` with ``grid_spacing``), drawn as one image (a ``QuadMesh``);
        * ``"voronoi"``: each bin's region closer to its center than to its neighbours'
          centers, cut on the outer border to half a spacing beyond the centers, with
          border cells no larger than their interior neighbours (see
          :mod:`xtramgrad.plot.geometry`); the exact Voronoi cells when the neighbours are
          the Delaunay neighbours (kmeans, gwr, hexagon, :func:`xtramgrad.voronoi`);
        * ``"delaunay"``: the same from the Delaunay neighbours of the centers instead of
          the Dataset's table (slower; for tables that omit neighbours);
        * ``"scatter"``: a dot per center.

        ``"auto"`` picks the first that applies among polygons, grid and voronoi. NaN
        values are drawn light grey; bins absent from a grid are left blank.
    cmap : colour map, optional
        Default ``"viridis"``, or ``"RdBu_r"`` for a map centred on zero (see ``center``).
    vmin, vmax : float, optional
        Colour limits (each overrides the default one).
    robust : bool
        Default limits at the 2nd and 98th percentiles of the values in view (True, the
        default, as ``robust=True`` in xarray: a few outliers do not wash out the map), or
        at their minimum and maximum (False). The colour bar's arrows show values beyond.
    center : float or bool, optional
        Centre of a diverging colour map (limits symmetric about it). By default a map
        whose limits straddle zero is centred on zero; ``center=False`` never centres.
    colorbar : bool
        Add a colour bar.
    label : str, optional
        Colour-bar label; default: the variable's ``long_name`` (or name), the component
        (``"gradient of diffusivity, x component"``, ``"|gradient of D|"``) and
        ``[units]``.
    at : dict, optional
        For 3D tessellations, the slab to draw, e.g. ``{"z": 0.5}``: the bins whose center
        lies within half a typical neighbour distance of the plane (default: the middle
        layer along the last axis).
    edgecolor, linewidth
        Cell borders; by default thin white borders up to :data:`EDGES_BELOW` bins, and
        none above (cells edge to edge).
    rasterized : bool, optional
        Rasterize the cells in vector outputs; default above :data:`RASTERIZE_ABOVE` bins.
    **kwargs
        Passed to the PolyCollection, ``pcolormesh`` or ``scatter``.

    Returns
    -------
    matplotlib.axes.Axes
        The cells are its collection with gid ``"xtramgrad-cells"``.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.open_sample("hexagon")
    >>> ax = ds.tram.plot_map("D")
    >>> len(ax.collections[0].get_paths()) == ds.sizes["bin"]
    True
    >>> g = ds.tram.grad("D")
    >>> ax = xtramgrad.plot_map(ds, g, component="x")
    >>> ax.figure.axes[1].get_ylabel()
    'gradient of diffusivity, x component [um^2/s / um]'
    """
    ax = new_axes(ax)
    fld = field(ds, variable, component)
    if topology(ds).ndim == 1:
        _draw_line(ds, fld, ax)
        return ax
    draw_map(
        ds, fld, ax, cells=cells, cmap=cmap, vmin=vmin, vmax=vmax, robust=robust,
        center=center, colorbar=colorbar, label=label, at=at, edgecolor=edgecolor,
        linewidth=linewidth, rasterized=rasterized, **kwargs,
    )
    return ax

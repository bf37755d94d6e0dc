"""Pictures of a tessellation Dataset: maps, gradient arrows and neighbour selection.

matplotlib is an optional dependency (``pip install "xtramgrad[plot]"``), imported only
inside these functions. Each function draws on ``ax`` (a new figure when omitted) and
returns the matplotlib Axes; the accessor methods ``ds.tram.plot_map``,
``ds.tram.plot_gradient`` and ``ds.tram.plot_selection`` call them.

Cells are drawn as

* the grid's own squares when ``ds.attrs["tessellation"] == "grid"`` and the Dataset
  records ``grid_spacing`` (as :func:`xtramgrad.grid` and the grid sample do);
* otherwise the Voronoi cells of the bin centers (2D), clipped to a box around them:
  exactly the cells of TRamWAy's kmeans, gwr and hexagon tessellations, and a faithful
  picture of any tessellation whose bins are their centers' Voronoi cells;
* a scatter of the centers when asked (``cells="scatter"``), or when there are too few
  bins for a Voronoi diagram.

3D tessellations are shown one slab at a time (``at={"z": 0.5}``): the bins whose center
lies within half a typical neighbour distance of the plane, drawn in the other two
coordinates. 1D maps are drawn as a line through the centers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import kernels
from .core import resolve_selection
from .topology import BIN, SPACE, TessellationError, topology

__all__ = [
    "plot_map",
    "plot_gradient",
    "plot_selection",
    "voronoi_cells",
    "grid_cells",
    "typical_spacing",
]

#: Marker of each (axis, side) in :func:`plot_selection`; axis 0, 1, 2 is x, y, z.
SIDE_MARKERS = {(0, "below"): "<", (0, "above"): ">", (1, "below"): "v", (1, "above"): "^",
                (2, "below"): "s", (2, "above"): "D"}
AXIS_COLOURS = ("tab:blue", "tab:orange", "tab:green")


# --------------------------------------------------------------------------- helpers


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError(
            "xtramgrad's plots need matplotlib; install it with "
            "pip install 'xtramgrad[plot]' (or pip install matplotlib)."
        ) from err
    return plt


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    plt = _pyplot()
    _, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    return ax


def typical_spacing(centers: np.ndarray, neighbours: np.ndarray, sample: int = 20000) -> float:
    """Median distance between neighbouring centers (over at most ``sample`` bins).

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((4, 4), spacing=0.5, connectivity="faces")
    >>> typical_spacing(ds.center.values, ds.neighbours.values)
    0.5
    """
    centers = np.asarray(centers, dtype=np.float64)
    table = np.asarray(neighbours[:sample])
    rows, slots = np.nonzero(table >= 0)
    if len(rows) == 0:
        ext = np.ptp(centers, axis=0).max() if len(centers) > 1 else 1.0
        return float(ext) if ext > 0 else 1.0
    dist = np.linalg.norm(centers[table[rows, slots]] - centers[rows], axis=1)
    dist = dist[dist > 0]
    return float(np.median(dist)) if len(dist) else 1.0


def voronoi_cells(
    points: np.ndarray, bbox: Sequence[float] | None = None, pad: float | None = None
) -> list[np.ndarray]:
    """Voronoi cells of 2D points clipped to a box, one polygon (k, 2) per point.

    The points are mirrored across the four sides of the box; the Voronoi cells of the
    original points in that extended set are exactly their cells clipped to the box.

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
    >>> [round(abs(float(_area(c))), 6) for c in cells]
    [3.0, 3.0]
    """
    from scipy.spatial import Voronoi, cKDTree

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
    else:
        lo = np.array([bbox[0], bbox[2]], dtype=np.float64)
        hi = np.array([bbox[1], bbox[3]], dtype=np.float64)
    inside = np.all((pts > lo) & (pts < hi), axis=1)
    if not inside.all():
        raise TessellationError(
            f"{int((~inside).sum())} point(s) lie on or outside bbox={tuple(bbox or ())}; "
            "the box must contain every center strictly."
        )
    mirrors = [pts]
    for j in range(2):
        for edge in (lo[j], hi[j]):
            m = pts.copy()
            m[:, j] = 2 * edge - m[:, j]
            mirrors.append(m)
    vor = Voronoi(np.concatenate(mirrors))
    cells = []
    for i in range(len(pts)):
        region = vor.regions[vor.point_region[i]]
        poly = vor.vertices[region]
        # numerical safety: the mirrored diagram closes every cell inside the box
        cells.append(np.clip(poly, lo, hi))
    return cells


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def grid_cells(centers: np.ndarray, spacing: Sequence[float]) -> list[np.ndarray]:
    """The squares (rectangles) of grid bins around their centers, one (4, 2) per bin.

    Examples
    --------
    >>> grid_cells(np.array([[0.5, 0.5]]), [1.0, 1.0])[0].tolist()
    [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    """
    c = np.asarray(centers, dtype=np.float64)
    hx, hy = 0.5 * float(spacing[0]), 0.5 * float(spacing[1])
    corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return list(c[:, None, :] + corners[None])


def _field_values(ds: xr.Dataset, variable: Any) -> tuple[np.ndarray | None, str]:
    """The (bin,) values to colour the map with, and their colour-bar label."""
    if variable is None:
        return None, ""
    if isinstance(variable, xr.DataArray):
        da = variable
        name = da.name
    else:
        if variable not in ds.variables:
            raise TessellationError(
                f"the Dataset has no variable {variable!r} to plot; its variables are "
                f"{[str(v) for v in ds.data_vars]}."
            )
        da = ds[variable]
        name = variable
    extra = [d for d in da.dims if d != BIN]
    if BIN not in da.dims or any(da.sizes[d] != 1 for d in extra):
        raise TessellationError(
            f"variable {name!r} has dims {tuple(da.dims)}; a map needs one value per bin. "
            "Select the other dims first, e.g. ds.D.isel(time=0) or "
            "grad.sel(space='x')."
        )
    if da.sizes[BIN] != ds.sizes[BIN]:
        raise TessellationError(
            f"variable {name!r} has {da.sizes[BIN]} bins but the Dataset has "
            f"{ds.sizes[BIN]}."
        )
    values = np.asarray(da.squeeze(extra, drop=True).values, dtype=np.float64)
    label = str(da.attrs.get("long_name", name if name is not None else ""))
    if da.attrs.get("units"):
        label += f" [{da.attrs['units']}]"
    return values, label


def _slab(
    ds: xr.Dataset, centers: np.ndarray, spacing: float, at: Mapping[Hashable, float] | None
) -> tuple[np.ndarray, list[int], str]:
    """For 3D Datasets: the bins in a slab, and the two in-plane axes."""
    space = list(topology(ds).space)
    if at is None:
        axis = 2
        coord = centers[:, axis]
        value = float(np.unique(coord)[len(np.unique(coord)) // 2])
    else:
        if len(at) != 1:
            raise TessellationError(f"at={dict(at)!r}; expected one axis, e.g. {{'z': 0.5}}.")
        ((key, value),) = at.items()
        if key not in space:
            raise TessellationError(f"at={dict(at)!r}: {key!r} is not one of {space}.")
        axis = space.index(key)
        value = float(value)
    keep = np.abs(centers[:, axis] - value) <= 0.5 * spacing
    if not keep.any():
        raise TessellationError(
            f"no bin center lies within {0.5 * spacing:.3g} of {space[axis]} = {value}; "
            f"the centers span [{centers[:, axis].min():.3g}, {centers[:, axis].max():.3g}]."
        )
    plane = [j for j in range(3) if j != axis]
    return np.flatnonzero(keep), plane, f"{space[axis]} = {value:.3g} \u00b1 {0.5 * spacing:.2g}"


def _cells(
    ds: xr.Dataset, xy: np.ndarray, cells: str, plane: Sequence[int]
) -> list[np.ndarray] | None:
    """Polygons for the selected bins, or None for a scatter."""
    if cells not in ("auto", "voronoi", "grid", "scatter"):
        raise TessellationError(
            f"cells={cells!r}; expected 'auto', 'voronoi', 'grid' or 'scatter'."
        )
    is_grid = ds.attrs.get("tessellation") == "grid" and "grid_spacing" in ds.attrs
    if cells == "scatter":
        return None
    if cells == "grid" or (cells == "auto" and is_grid):
        if not is_grid:
            raise TessellationError(
                "cells='grid' needs ds.attrs['tessellation'] == 'grid' and "
                "ds.attrs['grid_spacing'] (as xtramgrad.grid sets them)."
            )
        spacing = np.asarray(ds.attrs["grid_spacing"], dtype=np.float64).ravel()
        if spacing.size == 1:
            spacing = np.repeat(spacing, 3)
        return grid_cells(xy, [spacing[plane[0]], spacing[plane[1]]])
    if len(xy) < 3 or len(np.unique(xy, axis=0)) < len(xy):
        if cells == "voronoi":
            raise TessellationError(
                "cells='voronoi' needs at least 3 distinct bin centers in the plane."
            )
        return None
    return voronoi_cells(xy)


def _space_names(ds: xr.Dataset) -> list[str]:
    return [str(s) for s in topology(ds).space]


def _units(ds: xr.Dataset) -> str:
    u = ds["center"].attrs.get("units")
    return f" [{u}]" if u else ""


def _draw_map(
    ds: xr.Dataset,
    values: np.ndarray | None,
    label: str,
    ax: Any,
    *,
    cells: str,
    cmap: Any,
    vmin: float | None,
    vmax: float | None,
    colorbar: bool,
    at: Mapping[Hashable, float] | None,
    edgecolor: Any,
    linewidth: float,
    **kwargs: Any,
) -> tuple[Any, np.ndarray, list[int]]:
    """Draw the map; return the artist, the bins drawn and the in-plane axes."""
    from matplotlib.collections import PolyCollection

    plt = _pyplot()
    topo = topology(ds)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    names = _space_names(ds)
    d = centers.shape[1]
    if d == 1:
        raise TessellationError("1D maps are drawn by _draw_line")
    bins = np.arange(len(centers))
    plane = [0, 1]
    title = ""
    if d == 3:
        spacing = typical_spacing(centers, np.asarray(topo.neighbours.values))
        bins, plane, title = _slab(ds, centers, spacing, at)
    elif at is not None:
        raise TessellationError("at= selects a slab of a 3D tessellation; this one is 2D.")
    xy = centers[bins][:, plane]
    vals = None if values is None else values[bins]
    polys = _cells(ds, xy, cells, plane)
    cmap_obj = plt.get_cmap(cmap).with_extremes(bad="lightgrey")
    if polys is None:
        artist = ax.scatter(
            xy[:, 0], xy[:, 1], c=vals if vals is not None else "tab:grey", cmap=cmap_obj,
            vmin=vmin, vmax=vmax, s=kwargs.pop("s", 12), plotnonfinite=True, **kwargs,
        )
    else:
        artist = PolyCollection(
            polys, cmap=cmap_obj, edgecolors=edgecolor, linewidths=linewidth, **kwargs
        )
        if vals is not None:
            artist.set_array(np.ma.masked_invalid(vals))
            artist.set_clim(vmin, vmax)
        else:
            artist.set_facecolor("none")
            artist.set_edgecolor("tab:grey" if edgecolor in (None, "white") else edgecolor)
        ax.add_collection(artist)
        allpts = np.concatenate(polys)
        ax.set_xlim(allpts[:, 0].min(), allpts[:, 0].max())
        ax.set_ylim(allpts[:, 1].min(), allpts[:, 1].max())
    artist.set_gid("xtramgrad-cells")
    ax.set_aspect("equal")
    ax.set_xlabel(names[plane[0]] + _units(ds))
    ax.set_ylabel(names[plane[1]] + _units(ds))
    if title:
        ax.set_title(title)
    if colorbar and vals is not None:
        ax.figure.colorbar(artist, ax=ax, label=label)
    return artist, bins, plane


def _draw_line(ds: xr.Dataset, values: np.ndarray | None, label: str, ax: Any) -> Any:
    x = np.asarray(topology(ds).center.values)[:, 0]
    order = np.argsort(x, kind="stable")
    y = np.zeros_like(x) if values is None else values
    (line,) = ax.plot(x[order], y[order], marker="o", ms=3)
    line.set_gid("xtramgrad-cells")
    ax.set_xlabel(_space_names(ds)[0] + _units(ds))
    ax.set_ylabel(label)
    return line


# --------------------------------------------------------------------------- public


def plot_map(
    ds: xr.Dataset,
    variable: Hashable | xr.DataArray | None = None,
    *,
    ax: Any = None,
    cells: str = "auto",
    cmap: Any = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    at: Mapping[Hashable, float] | None = None,
    edgecolor: Any = "white",
    linewidth: float = 0.3,
    **kwargs: Any,
) -> Any:
    """Map of a measurement over the bins.

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset.
    variable : str or DataArray, optional
        A measurement with one value per bin (select other dims first), or a DataArray
        over ``bin`` such as a gradient component. Without it, only the cells are drawn.
    ax : matplotlib Axes, optional
    cells : {"auto", "voronoi", "grid", "scatter"}
        How bins are drawn (see the module docstring); NaN values are drawn light grey.
    cmap, vmin, vmax : colour map and limits
    colorbar : bool
        Add a colour bar labelled with the variable's ``long_name`` and ``units``.
    at : dict, optional
        For 3D tessellations, the slab to draw, e.g. ``{"z": 0.5}`` (default: the middle
        layer along the last axis).
    edgecolor, linewidth : cell borders.
    **kwargs
        Passed to the PolyCollection (or to ``scatter``).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.open_sample("hexagon")
    >>> ax = ds.tram.plot_map("D")
    >>> len(ax.collections[0].get_paths()) == ds.sizes["bin"]
    True
    """
    ax = _axes(ax)
    values, label = _field_values(ds, variable)
    if topology(ds).ndim == 1:
        _draw_line(ds, values, label, ax)
        return ax
    _draw_map(
        ds, values, label, ax, cells=cells, cmap=cmap, vmin=vmin, vmax=vmax,
        colorbar=colorbar, at=at, edgecolor=edgecolor, linewidth=linewidth, **kwargs,
    )
    return ax


def plot_gradient(
    ds: xr.Dataset,
    variable: Hashable,
    *,
    grad: xr.DataArray | None = None,
    ax: Any = None,
    background: bool = True,
    cells: str = "auto",
    cmap: Any = "viridis",
    colorbar: bool = True,
    scale: float | None = None,
    color: Any = None,
    at: Mapping[Hashable, float] | None = None,
    quiver_kw: Mapping[str, Any] | None = None,
    **grad_kwargs: Any,
) -> Any:
    """The gradient of a measurement as arrows, over the map of that measurement.

    Parameters
    ----------
    ds : xarray.Dataset
    variable : str
        The measurement (one value per bin).
    grad : DataArray (bin, space), optional
        A gradient already computed; by default ``xtramgrad.grad(ds, variable,
        **grad_kwargs)``.
    ax : matplotlib Axes, optional
    background : bool
        Draw the map of ``variable`` under the arrows (its colour bar when ``colorbar``);
        without it the arrows are coloured by the gradient's norm, with its colour bar.
    cells, cmap, at
        As in :func:`plot_map`.
    scale : float, optional
        Arrow length, in space units, per unit of gradient. By default the upper quartile
        of the gradient norm is drawn as 0.75 times the typical neighbour distance, so
        that most arrows stay within their cell and outliers still stand out.
    color : optional
        Arrow colour (default black over a map).
    quiver_kw : dict, optional
        Passed to ``Axes.quiver``.
    **grad_kwargs
        ``method``, ``selection``, ``selection_angle``, ``eps``, ``na`` for
        :func:`xtramgrad.grad`.

    Returns
    -------
    matplotlib.axes.Axes
        The arrows are the Axes' ``Quiver`` (gid ``"xtramgrad-arrows"``), one per bin with
        a defined gradient.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.open_sample("grid")
    >>> ax = ds.tram.plot_gradient("D", selection_angle=0.9)
    >>> [c.N for c in ax.collections if c.get_gid() == "xtramgrad-arrows"]
    [400]
    """
    from .core import grad as _grad

    topo = topology(ds)
    if topo.ndim == 1:
        raise TessellationError(
            "plot_gradient draws arrows in 2D and 3D; for a 1D tessellation plot the "
            "gradient itself: xtramgrad.plot_map(ds, ds.tram.grad('D').sel(space='x'))."
        )
    if grad is None:
        g = _grad(ds, variable, **grad_kwargs)
    else:
        if grad_kwargs:
            raise TessellationError(
                f"grad= is given, so {sorted(grad_kwargs)} would be ignored; pass one or the "
                "other."
            )
        g = grad
    if not isinstance(g, xr.DataArray) or set(g.dims) != {BIN, SPACE}:
        raise TessellationError(
            f"the gradient has dims {getattr(g, 'dims', None)}; expected (bin, space). Select "
            "the other dims of the measurement first, e.g. ds.isel(time=0)."
        )
    gv = np.asarray(g.transpose(BIN, SPACE).values, dtype=np.float64)
    ax = _axes(ax)
    values, label = _field_values(ds, variable)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    spacing = typical_spacing(centers, np.asarray(topo.neighbours.values))
    if background:
        _, bins, plane = _draw_map(
            ds, values, label, ax, cells=cells, cmap=cmap, vmin=None, vmax=None,
            colorbar=colorbar, at=at, edgecolor="white", linewidth=0.3,
        )
    else:
        bins = np.arange(len(centers))
        plane = [0, 1]
        if topo.ndim == 3:
            bins, plane, title = _slab(ds, centers, spacing, at)
            ax.set_title(title)
        names = _space_names(ds)
        ax.set_aspect("equal")
        ax.set_xlabel(names[plane[0]] + _units(ds))
        ax.set_ylabel(names[plane[1]] + _units(ds))
    xy = centers[bins][:, plane]
    uv = gv[bins][:, plane]
    ok = np.all(np.isfinite(uv), axis=1)
    norm = np.linalg.norm(uv[ok], axis=1)
    if scale is None:
        top = float(np.percentile(norm, 75)) if len(norm) else 0.0
        scale = 0.75 * spacing / top if top > 0 else 1.0
    kw: dict[str, Any] = {
        "angles": "xy", "scale_units": "xy", "scale": 1.0 / scale, "width": 0.004,
        "pivot": "middle",
    }
    kw.update(quiver_kw or {})
    g_units = g.attrs.get("units")
    g_label = f"|{g.attrs.get('long_name', 'gradient')}|" + (f" [{g_units}]" if g_units else "")
    if background:
        q = ax.quiver(xy[ok, 0], xy[ok, 1], uv[ok, 0], uv[ok, 1],
                      color="black" if color is None else color, **kw)
    elif color is not None:
        q = ax.quiver(xy[ok, 0], xy[ok, 1], uv[ok, 0], uv[ok, 1], color=color, **kw)
    else:
        q = ax.quiver(xy[ok, 0], xy[ok, 1], uv[ok, 0], uv[ok, 1], norm, cmap=cmap, **kw)
        if colorbar:
            ax.figure.colorbar(q, ax=ax, label=g_label)
    q.set_gid("xtramgrad-arrows")
    if not background:
        ax.autoscale_view()
        pad = spacing
        ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
        ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    return ax


def plot_selection(
    ds: xr.Dataset,
    bin: int,
    *,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    variable: Hashable | None = None,
    ax: Any = None,
    cells: str = "auto",
    annotate: bool = True,
    legend: bool = True,
) -> Any:
    """Which neighbours of one bin count below / above along each axis, under a rule.

    The sides are decided by :func:`xtramgrad.kernels.build_stencil`, the function the
    gradient itself uses, so the picture is the computation. Drawn: the cells around the
    bin, the rule's geometry (2D: the angular sectors, the InferenceMAP quadrants, or the
    half-space boundaries with their margin band; none for labels), the bin (a star),
    and, per neighbour, one marker per axis and side it counts for (``<``/``>`` for x
    below/above, ``v``/``^`` for y, squares/diamonds for z), hollow grey circles for
    neighbours that count for no axis, and grey crosses for neighbours without a
    measurement (with ``variable``: they are removed before selection, as in the gradient).

    Parameters
    ----------
    ds : xarray.Dataset
    bin : int
        Position of the bin along ``bin``.
    selection, selection_angle, eps
        The rule, as in :func:`xtramgrad.grad` (default ``selection_angle=0.9``).
    variable : str, optional
        A measurement (one value per bin) whose missing values exclude neighbours.
    ax : matplotlib Axes, optional
    cells : {"auto", "voronoi", "grid", "scatter"}
        How the surrounding bins are drawn (see :func:`plot_map`).
    annotate : bool
        Write each neighbour's roles next to it (``x+``, ``y-``, ...).
    legend : bool

    Returns
    -------
    matplotlib.axes.Axes
        Each marker group is a collection labelled ``"x below"``, ``"x above"``,
        ``"y below"``, ..., ``"unused"``, ``"missing"`` (gid ``"xtramgrad-selection"``).
        In 3D the picture is projected on the first two axes and the rule's geometry is
        not drawn.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((5, 5))
    >>> ax = ds.tram.plot_selection(12, selection_angle=0.5)
    >>> sorted((c.get_label(), len(c.get_offsets())) for c in ax.collections
    ...        if c.get_gid() == "xtramgrad-selection")
    [('x above', 3), ('x below', 3), ('y above', 1), ('y below', 1)]
    """
    topo = topology(ds, labels=selection == "labels")
    centers = np.asarray(topo.center.values, dtype=np.float64)
    table = np.asarray(topo.neighbours.values)
    n, d = centers.shape
    b = int(bin)
    if not 0 <= b < n:
        raise TessellationError(f"bin={bin}; expected a position in [0, {n - 1}].")
    sel = resolve_selection(d, selection, selection_angle, eps)
    labels = None if topo.labels is None else np.asarray(topo.labels.values)[b : b + 1]
    st = kernels.build_stencil(
        centers, table[b : b + 1], sel, targets=np.array([b]), labels=labels
    )
    valid = np.ones(n, dtype=bool)
    if variable is not None:
        vals, _ = _field_values(ds, variable)
        assert vals is not None
        valid = ~np.isnan(vals)
    ok = valid[st.dst]
    ax = _axes(ax)
    names = _space_names(ds)
    plane = [0, 1] if d >= 2 else [0]

    def xy(points: np.ndarray) -> np.ndarray:
        if d == 1:
            return np.column_stack([points[:, 0], np.zeros(len(points))])
        return points[:, plane]

    c0 = xy(centers[b : b + 1])[0]
    nbr_xy = xy(centers[st.dst])
    reach = float(np.max(np.linalg.norm(nbr_xy - c0, axis=1))) if len(st.dst) else 1.0
    radius = 1.25 * reach
    # the surrounding cells
    if d == 2:
        # cells of the bins in view, from the Voronoi diagram of a wider neighbourhood only
        # (cells within 2 reaches are exact when every bin within 4 reaches takes part)
        dist = np.linalg.norm(centers - c0, axis=1)
        local = np.flatnonzero(dist <= 4.0 * reach)
        polys = _cells(ds, centers[local], cells, plane) if cells != "scatter" else None
        if polys is not None:
            from matplotlib.collections import PolyCollection

            pc = PolyCollection(
                [p for p, i in zip(polys, local, strict=True) if dist[i] <= 2.0 * reach],
                facecolors="none", edgecolors="0.75", linewidths=0.8, zorder=0,
            )
            pc.set_gid("xtramgrad-cells")
            ax.add_collection(pc)
        _draw_rule(ax, sel, c0, radius, names)
    # neighbour markers
    used = np.zeros(len(st.dst), dtype=bool)
    for j in range(d):
        for side, mask in (("below", st.below[:, j]), ("above", st.above[:, j])):
            pick = mask & ok
            used |= pick
            if not pick.any():
                continue
            coll = ax.scatter(
                nbr_xy[pick, 0], nbr_xy[pick, 1], marker=SIDE_MARKERS[(j, side)],
                s=150 if j == 0 else 70, color=AXIS_COLOURS[j], edgecolors="black",
                linewidths=0.5, zorder=3 + j, label=f"{names[j]} {side}",
            )
            coll.set_gid("xtramgrad-selection")
    for label, pick, style in (
        ("unused", ok & ~used, {"marker": "o", "facecolors": "none", "edgecolors": "0.4"}),
        ("missing", ~ok, {"marker": "x", "color": "0.4"}),
    ):
        if pick.any():
            coll = ax.scatter(nbr_xy[pick, 0], nbr_xy[pick, 1], s=60, zorder=2, label=label,
                              **style)
            coll.set_gid("xtramgrad-selection")
    star = ax.scatter([c0[0]], [c0[1]], marker="*", s=250, color="black", zorder=6,
                      label=f"bin {b}")
    star.set_gid("xtramgrad-bin")
    if annotate:
        for e in range(len(st.dst)):
            roles = [
                f"{names[j]}{'-' if st.below[e, j] else '+'}"
                for j in range(d)
                if ok[e] and (st.below[e, j] or st.above[e, j])
            ]
            text = ", ".join(roles) if ok[e] else "missing"
            ax.annotate(text or "unused", nbr_xy[e], xytext=(6, 6),
                        textcoords="offset points", fontsize=8)
    title = f"bin {b}: {sel.describe()}"
    if not valid[b]:
        title += " (no measurement: no gradient)"
    if d == 3:
        title += f", projected on {names[0]}-{names[1]}"
    ax.set_title(title, fontsize=10)
    ax.set_xlim(c0[0] - radius, c0[0] + radius)
    ax.set_ylim(c0[1] - radius, c0[1] + radius)
    ax.set_aspect("equal")
    ax.set_xlabel(names[0] + _units(ds))
    if d >= 2:
        ax.set_ylabel(names[1] + _units(ds))
    else:
        ax.set_yticks([])
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return ax


def _draw_rule(
    ax: Any, sel: kernels.Selection, c0: np.ndarray, radius: float, names: list[str]
) -> None:
    """The rule's geometry around a 2D bin at ``c0``."""
    from matplotlib.patches import Wedge

    if sel.kind in ("cone", "quadrants"):
        s = float(sel.value) if sel.kind == "cone" and sel.value is not None else 0.5
        half = 90.0 * s  # half-angle of the sectors, in degrees
        for j, (angle_below, angle_above) in enumerate(((180.0, 0.0), (270.0, 90.0))):
            for side, angle in (("below", angle_below), ("above", angle_above)):
                w = Wedge(
                    tuple(c0), radius, angle - half, angle + half,
                    facecolor=AXIS_COLOURS[j], alpha=0.10, edgecolor=AXIS_COLOURS[j],
                    linewidth=0.8, linestyle="--", zorder=1,
                )
                w.set_gid(f"xtramgrad-rule-{names[j]}-{side}")
                ax.add_patch(w)
    elif sel.kind == "halfspace":
        e = float(sel.value or 0.0)
        for j in range(2):
            line = ax.axvline if j == 0 else ax.axhline
            for off in ((-e, e) if e > 0 else (0.0,)):
                ln = line(c0[j] + off, color=AXIS_COLOURS[j], linestyle="--", linewidth=1,
                          zorder=1)
                ln.set_gid(f"xtramgrad-rule-{names[j]}-boundary")
            if e > 0:
                span = ax.axvspan if j == 0 else ax.axhspan
                band = span(c0[j] - e, c0[j] + e, color=AXIS_COLOURS[j], alpha=0.2,
                            zorder=1, label=f"{names[j]} margin (eps={e:g})")
                band.set_gid(f"xtramgrad-rule-{names[j]}-margin")

"""Gradient arrows over a map (:func:`plot_gradient`), readable from 10^2 to 10^6 bins."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ..topology import BIN, SPACE, TessellationError, topology
from . import geometry
from ._common import View, field, label_axes, new_axes, view
from .maps import draw_map

__all__ = [
    "AGGREGATE_ABOVE",
    "ARROWS",
    "ARROW_QUANTILE",
    "ARROW_REACH",
    "Arrows",
    "CLIP",
    "arrow_field",
    "arrow_scale",
    "plot_gradient",
]

#: Above this many bins with a gradient in view, arrows are aggregated onto a grid.
AGGREGATE_ABOVE = 2000
#: Aggregated arrows along the longer side of the map.
ARROWS = 35
#: The quantile of the arrows' magnitudes that sets the length scale ...
ARROW_QUANTILE = 0.9
#: ... drawn this many times the spacing between arrows.
ARROW_REACH = 0.9
#: Arrows longer than this many times the reference are drawn that long, in red.
CLIP = 3.0
#: Colour of the shortened arrows.
CLIP_COLOUR = "tab:red"


class Arrows(NamedTuple):
    """The arrows to draw: positions, vectors, and the spacing between them."""

    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    #: distance between neighbouring arrows (the typical bin spacing, or the grid cell)
    spacing: float
    #: the aggregation, or None for one arrow per bin
    aggregated: geometry.Aggregated | None


def arrow_field(
    xy: np.ndarray,
    uv: np.ndarray,
    spacing: float,
    *,
    aggregate: bool | None = None,
    aggregate_above: int = AGGREGATE_ABOVE,
    arrows: int = ARROWS,
    min_bins: int | None = None,
) -> Arrows:
    """One arrow per bin with a gradient, or arrows aggregated onto a regular grid.

    ``aggregate=None`` aggregates when more than ``aggregate_above`` bins have a gradient;
    see :func:`geometry.aggregate_arrows` for the grid (``arrows`` cells along the longer
    side, each arrow the mean of the bins in its cell, sparse cells dropped).

    Examples
    --------
    >>> xy = np.random.default_rng(0).random((5000, 2))
    >>> a = arrow_field(xy, np.ones((5000, 2)), 0.01, arrows=10)
    >>> len(a.x), round(a.spacing, 3)
    (100, 0.1)
    """
    if isinstance(aggregate_above, bool) or not isinstance(aggregate_above, (int, np.integer)):
        raise ValueError(
            f"aggregate_above={aggregate_above!r}; expected a number of bins (default "
            f"{AGGREGATE_ABOVE})."
        )
    if aggregate is not None and not isinstance(aggregate, (bool, np.bool_)):
        raise ValueError(f"aggregate={aggregate!r}; expected True, False or None (automatic).")
    ok = np.all(np.isfinite(uv), axis=1)
    if aggregate is None:
        aggregate = int(ok.sum()) > aggregate_above
    if not aggregate:
        return Arrows(xy[ok, 0], xy[ok, 1], uv[ok, 0], uv[ok, 1], float(spacing), None)
    bounds = (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max())
    agg = geometry.aggregate_arrows(xy, uv, arrows=arrows, bounds=bounds, min_bins=min_bins)
    return Arrows(agg.x, agg.y, agg.u, agg.v, agg.size, agg)


def arrow_scale(
    magnitudes: np.ndarray, spacing: float, quantile: float = ARROW_QUANTILE
) -> tuple[float, float]:
    """The arrow length per unit of gradient, and the magnitude it was set from.

    The ``quantile`` of the magnitudes (default the 90th percentile, so that a few
    outliers do not shrink every other arrow) is drawn :data:`ARROW_REACH` times
    ``spacing`` long; arrows beyond it are drawn proportionally longer.

    Examples
    --------
    >>> arrow_scale(np.array([1.0, 2.0, 3.0, 100.0]), spacing=1.0, quantile=0.5)
    (0.36, 2.5)
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile={quantile!r}; expected a value in (0, 1], e.g. 0.9.")
    mag = np.asarray(magnitudes, dtype=np.float64)
    mag = mag[np.isfinite(mag)]
    ref = float(np.quantile(mag, quantile)) if len(mag) else 0.0
    if not ref > 0:
        ref = float(mag.max()) if len(mag) and mag.max() > 0 else 1.0
    return ARROW_REACH * spacing / ref, ref


def _gradient(
    ds: xr.Dataset, variable: Hashable, grad: xr.DataArray | None, grad_kwargs: dict[str, Any]
) -> xr.DataArray:
    from ..core import grad as _grad

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
    if g.sizes[BIN] != ds.sizes[BIN]:
        raise TessellationError(
            f"the gradient has {g.sizes[BIN]} bins but the Dataset has {ds.sizes[BIN]}."
        )
    return g


def _magnitude_label(g: xr.DataArray) -> str:
    units = g.attrs.get("units")
    return f"|{g.attrs.get('long_name', 'gradient')}|" + (f" [{units}]" if units else "")


def draw_arrows(
    ax: Any,
    g: xr.DataArray,
    v: View,
    *,
    aggregate: bool | None = None,
    aggregate_above: int = AGGREGATE_ABOVE,
    arrows: int = ARROWS,
    min_bins: int | None = None,
    scale: float | None = None,
    quantile: float = ARROW_QUANTILE,
    clip: float | None = CLIP,
    key: bool | tuple[float, float] = True,
    key_coordinates: str = "axes",
    color: Any = "black",
    arrow_cmap: Any = "viridis",
    colorbar: bool = True,
    quiver_kw: Mapping[str, Any] | None = None,
) -> tuple[Any, Any, Arrows]:
    """Draw the arrows of the bins in view; return the Quiver, its key and the arrows."""
    gv = np.asarray(g.transpose(BIN, SPACE).values, dtype=np.float64)
    uv = gv[v.bins][:, v.plane]
    arr = arrow_field(v.xy, uv, v.spacing, aggregate=aggregate,
                      aggregate_above=aggregate_above, arrows=arrows, min_bins=min_bins)
    mag = np.hypot(arr.u, arr.v)
    if scale is None:
        scale, ref = arrow_scale(mag, arr.spacing, quantile)
    else:
        if not (isinstance(scale, (int, float, np.floating)) and np.isfinite(scale)
                and scale > 0):
            raise ValueError(
                f"scale={scale!r}; expected a positive arrow length (space units) per unit "
                "of gradient."
            )
        ref = ARROW_REACH * arr.spacing / scale
    if clip is not None and not (np.isfinite(clip) and clip >= 1):
        raise ValueError(f"clip={clip!r}; expected None or a factor >= 1 (default {CLIP}).")
    long_ = mag > clip * ref if clip is not None else np.zeros(len(mag), dtype=bool)
    limit = ref if clip is None else clip * ref
    kw: dict[str, Any] = {
        "angles": "xy", "scale_units": "xy", "scale": 1.0 / scale, "width": 0.004,
        "pivot": "middle",
    }
    kw.update(quiver_kw or {})
    keep = ~long_
    if isinstance(color, str) and color == "magnitude":
        q = ax.quiver(arr.x[keep], arr.y[keep], arr.u[keep], arr.v[keep], mag[keep],
                      cmap=arrow_cmap, **kw)
        if colorbar:
            ax.figure.colorbar(q, ax=ax, label=_magnitude_label(g))
    else:
        q = ax.quiver(arr.x[keep], arr.y[keep], arr.u[keep], arr.v[keep], color=color, **kw)
    q.set_gid("xtramgrad-arrows")
    if long_.any():
        shrink = limit / mag[long_]
        qc = ax.quiver(arr.x[long_], arr.y[long_], arr.u[long_] * shrink,
                       arr.v[long_] * shrink, color=CLIP_COLOUR, **kw)
        qc.set_gid("xtramgrad-arrows-clipped")
    qk = None
    if key is not False and len(arr.x):
        pos = (0.98, 1.03) if key is True else tuple(key)
        length = geometry.nice_number(ref)
        units = g.attrs.get("units")
        text = f"{length:g}" + (f" {units}" if units else "")
        qk = ax.quiverkey(q, pos[0], pos[1], length, text, labelpos="W",
                          coordinates=key_coordinates, fontproperties={"size": 8})
        qk.set_gid("xtramgrad-key")
        if key_coordinates == "axes" and key is True and not ax.get_title(loc="right"):
            # a blank right-hand title: constrained layout then keeps room for the key
            ax.set_title(" ", loc="right", fontsize=9)
    return q, qk, arr


def plot_gradient(
    ds: xr.Dataset,
    variable: Hashable,
    *,
    grad: xr.DataArray | None = None,
    ax: Any = None,
    background: bool = True,
    cells: str = "auto",
    cmap: Any = None,
    colorbar: bool = True,
    aggregate: bool | None = None,
    aggregate_above: int = AGGREGATE_ABOVE,
    arrows: int = ARROWS,
    min_bins: int | None = None,
    scale: float | None = None,
    quantile: float = ARROW_QUANTILE,
    clip: float | None = CLIP,
    key: bool | tuple[float, float] = True,
    color: Any = None,
    arrow_cmap: Any = None,
    at: Mapping[Hashable, float] | None = None,
    quiver_kw: Mapping[str, Any] | None = None,
    **grad_kwargs: Any,
) -> Any:
    """The gradient of a measurement as arrows, over the map of that measurement.

    Up to :data:`AGGREGATE_ABOVE` (2,000) bins with a gradient, one arrow per bin. Above,
    the arrows are aggregated onto a regular grid of square cells, ``arrows`` (35) along
    the longer side of the map: each arrow, at its cell's center, is the mean of the
    gradients (component by component) of the bins whose center lies in the cell, and cells
    holding fewer than ``min_bins`` bins are dropped (by default a quarter of the median
    number of bins per non-empty cell). So at most ``arrows**2`` (1,225) arrows are drawn,
    whatever the number of bins.

    Arrow lengths are proportional to the gradient, on one scale: the 90th percentile
    (``quantile``) of the drawn arrows' magnitudes is drawn 0.9 times the spacing between
    arrows (the bins' typical spacing, or the aggregation cell), so that a few outliers
    (often on the border, where differences are one-sided) do not shrink every other
    arrow. Arrows longer than ``clip`` (3) times that reference are drawn 3 times as long
    as it and in red (a second ``Quiver``, gid ``"xtramgrad-arrows-clipped"``): they are
    larger than shown. A key above the top-right corner gives a reference length in the
    gradient's units (its ``units`` attr).

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
        Draw the map of ``variable`` under the arrows (with its colour bar when
        ``colorbar``), as :func:`plot_map` draws it.
    cells, cmap, at
        For the background map, as in :func:`plot_map`.
    colorbar : bool
        Colour bars for the background and for arrows coloured by magnitude.
    aggregate : bool, optional
        Force (True) or forbid (False) aggregation; default: above ``aggregate_above``.
    aggregate_above : int
        The number of bins with a gradient above which arrows are aggregated.
    arrows : int
        Aggregated arrows along the longer side of the map (grid cells of side
        ``longer side / arrows``).
    min_bins : int, optional
        Aggregation cells holding fewer bins are dropped.
    scale : float, optional
        Arrow length, in space units, per unit of gradient (overrides the robust scale).
    quantile : float
        The quantile of the magnitudes that sets the scale (default 0.9).
    clip : float or None
        Arrows longer than ``clip`` times the reference are shortened to it and drawn red;
        None draws every arrow to scale.
    key : bool or (x, y)
        Draw the key (at axes coordinates ``(x, y)``, default ``(0.98, 1.03)``): an
        arrow of a round magnitude near the scale's reference, labelled with its value
        and units, e.g. ``"0.5 um^2/s / um"``.
    color : optional
        Arrow colour; ``"magnitude"`` colours each arrow by its length, with a colour bar
        (the default without background). Default black over a map.
    arrow_cmap : optional
        Colour map of arrows coloured by magnitude (default ``"magma"`` over a map,
        ``"viridis"`` without).
    quiver_kw : dict, optional
        Passed to ``Axes.quiver``.
    **grad_kwargs
        ``method`` and its options for :func:`xtramgrad.grad`.

    Returns
    -------
    matplotlib.axes.Axes
        The arrows are its ``Quiver`` (gid ``"xtramgrad-arrows"``) and the key its
        ``QuiverKey`` (gid ``"xtramgrad-key"``).

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.open_sample("grid")
    >>> ax = ds.tram.plot_gradient("D", selection_angle=0.9)
    >>> [(c.get_gid(), c.N) for c in ax.collections if c.get_gid().endswith("arrows")
    ...  or c.get_gid().endswith("clipped")]
    [('xtramgrad-arrows', 397), ('xtramgrad-arrows-clipped', 3)]
    >>> [a.text.get_text() for a in ax.artists if a.get_gid() == "xtramgrad-key"]
    ['0.5 um^2/s / um']
    """
    topo = topology(ds)
    if topo.ndim == 1:
        raise TessellationError(
            "plot_gradient draws arrows in 2D and 3D; for a 1D tessellation plot the "
            "gradient itself: xtramgrad.plot_map(ds, ds.tram.grad('D'), component='x')."
        )
    g = _gradient(ds, variable, grad, dict(grad_kwargs))
    ax = new_axes(ax)
    if background:
        drawn = draw_map(ds, field(ds, variable), ax, cells=cells, cmap=cmap,
                         colorbar=colorbar, at=at)
        v = drawn.view
    else:
        v = view(ds, at)
        label_axes(ax, ds, v.plane)
        if v.title:
            ax.set_title(v.title)
    if color is None:
        color = "black" if background else "magnitude"
    if arrow_cmap is None:
        arrow_cmap = "magma" if background else "viridis"
    _, _, arr = draw_arrows(
        ax, g, v, aggregate=aggregate, aggregate_above=aggregate_above, arrows=arrows,
        min_bins=min_bins, scale=scale, quantile=quantile, clip=clip, key=key, color=color,
        arrow_cmap=arrow_cmap, colorbar=colorbar, quiver_kw=quiver_kw,
    )
    if not background:
        pad = arr.spacing
        ax.set_xlim(v.xy[:, 0].min() - pad, v.xy[:, 0].max() + pad)
        ax.set_ylim(v.xy[:, 1].min() - pad, v.xy[:, 1].max() + pad)
    return ax

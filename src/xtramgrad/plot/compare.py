"""Gradient methods side by side, and against a known gradient (:func:`plot_compare`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ..topology import BIN, SPACE, TessellationError, topology
from ._common import MAGNITUDE, Field, field, pyplot, view
from .arrows import ARROW_QUANTILE, ARROWS, CLIP, arrow_field, arrow_scale, draw_arrows
from .maps import colours, draw_map

__all__ = ["Panel", "compare_panels", "plot_compare", "rms_error"]


class Panel(NamedTuple):
    """One method of a comparison: its title, the gradient, and its error if known."""

    label: str
    method: str
    options: dict[str, Any]
    grad: xr.DataArray
    #: RMS error against the truth over the bins in view (NaN without truth)
    rms: float


def _method(entry: Any) -> tuple[str, str, dict[str, Any]]:
    """(label, method, options) of one entry of ``methods``."""
    if isinstance(entry, str):
        return entry, entry, {}
    if isinstance(entry, Mapping):
        opts = dict(entry)
        if "method" not in opts or not isinstance(opts["method"], str):
            raise ValueError(
                f"methods entry {dict(entry)!r} has no 'method' name; expected e.g. "
                "{'method': 'grad1', 'selection_angle': 0.5} (and optionally 'label')."
            )
        method = opts.pop("method")
        label = opts.pop("label", None)
        if label is None:
            extra = ", ".join(f"{k}={v!r}" for k, v in opts.items())
            label = f"{method} ({extra})" if extra else method
        return str(label), method, opts
    raise ValueError(
        f"methods entry {entry!r}; expected a method name (e.g. 'grad1') or a dict "
        "{'method': ..., **options}."
    )


def _truth(ds: xr.Dataset, truth: Any, like: xr.DataArray) -> xr.DataArray:
    """The true gradient as a (bin, space) DataArray like ``like``."""
    n, d = like.sizes[BIN], like.sizes[SPACE]
    centers = np.asarray(topology(ds).center.values, dtype=np.float64)
    if isinstance(truth, xr.DataArray):
        if set(truth.dims) != {BIN, SPACE}:
            raise TessellationError(
                f"truth has dims {truth.dims}; expected (bin, space), the true gradient at "
                "each bin."
            )
        values = np.asarray(truth.transpose(BIN, SPACE).values, dtype=np.float64)
    elif callable(truth):
        values = np.asarray(truth(centers), dtype=np.float64)
    else:
        values = np.asarray(truth, dtype=np.float64)
    if values.shape == (d,):
        values = np.broadcast_to(values, (n, d))
    if values.shape != (n, d):
        raise TessellationError(
            f"truth gives shape {values.shape}; expected the true gradient as ({n}, {d}) "
            f"values (one vector per bin) or ({d},) (a uniform gradient), e.g. "
            "truth=ds.attrs['true_gradient'] or truth=lambda center: ...."
        )
    out = like.copy(data=np.array(values))
    out.attrs = {**like.attrs, "long_name": "true gradient"}
    out.name = "truth"
    return out


def rms_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Root mean square of ``estimate - truth`` over the rows where both are finite.

    For (n, d) vectors, the mean is over bins of the squared error vector's length.

    Examples
    --------
    >>> rms_error(np.array([1.0, 2.0, np.nan]), np.array([0.0, 0.0, 0.0]))
    1.5811388300841898
    """
    e = np.asarray(estimate, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    sq = e**2 if e.ndim == 1 else np.sum(e**2, axis=-1)
    sq = sq[np.isfinite(sq)]
    return float(np.sqrt(sq.mean())) if len(sq) else float("nan")


def compare_panels(
    ds: xr.Dataset,
    variable: Hashable,
    methods: Sequence[str | Mapping[str, Any]],
    *,
    truth: Any = None,
    component: str | int | None = None,
    at: Mapping[Hashable, float] | None = None,
) -> tuple[list[Panel], xr.DataArray | None]:
    """The gradients of a comparison, their RMS errors, and the truth (if given).

    Each method is computed with ``xtramgrad.grad(ds, variable, method=..., **options)``.
    The RMS error is over the bins in view (all bins in 2D): of the component's error
    with ``component``, of the error vector's length without.
    """
    from ..core import grad

    if isinstance(methods, (str, Mapping)) or not isinstance(methods, Sequence):
        raise ValueError(
            f"methods={methods!r}; expected a list, e.g. ['grad1', 'gradn'] or "
            "[{'method': 'grad1', 'selection_angle': 0.5}, 'gradn']."
        )
    if len(methods) == 0:
        raise ValueError("methods=[]; give at least one method, e.g. ['grad1', 'gradn'].")
    v = view(ds, at)
    grads = []
    for entry in methods:
        label, method, opts = _method(entry)
        g = grad(ds, variable, method=method, **opts)
        if not isinstance(g, xr.DataArray):
            raise TessellationError(f"method {method!r} returned {type(g).__name__}.")
        grads.append((label, method, opts, g))
    true = None if truth is None else _truth(ds, truth, grads[0][3])
    panels = []
    for label, method, opts, g in grads:
        rms = float("nan")
        if true is not None:
            est = _values(ds, g, component, v.bins)
            ref = _values(ds, true, component, v.bins)
            rms = rms_error(est, ref)
        panels.append(Panel(label, method, opts, g, rms))
    return panels, true


def _values(
    ds: xr.Dataset, g: xr.DataArray, component: Any, bins: np.ndarray
) -> np.ndarray:
    if component is None:
        return np.asarray(g.transpose(BIN, SPACE).values, dtype=np.float64)[bins]
    fld = field(ds, g, component)
    assert fld is not None
    return fld.values[bins]


def _title(label: str, rms: float, units: str | None) -> str:
    if not np.isfinite(rms):
        return label
    return f"{label}\nRMS error {rms:.3g}" + (f" {units}" if units else "")


def plot_compare(
    ds: xr.Dataset,
    variable: Hashable,
    methods: Sequence[str | Mapping[str, Any]] = ("grad1", "gradn"),
    *,
    truth: Any = None,
    component: str | int | None = None,
    at: Mapping[Hashable, float] | None = None,
    cells: str = "auto",
    cmap: Any = None,
    robust: bool = True,
    aggregate: bool | None = None,
    arrows: int = ARROWS,
    quantile: float = ARROW_QUANTILE,
    clip: float | None = CLIP,
    figsize: tuple[float, float] | None = None,
) -> np.ndarray:
    """Gradient methods side by side on one map, and against a known gradient.

    One panel per method, on a shared scale: with ``component``, maps of that component
    sharing one colour scale and colour bar; without, the gradient arrows (as
    :func:`plot_gradient` draws them, aggregated above 2,000 bins) over the map of
    ``variable``, sharing one arrow scale and key. With ``truth``, a first panel shows the
    true gradient, a second row the error of each method (the component's error, or the
    length of the error vector) on a shared scale, and each method's title its RMS error
    over the bins in view.

    Parameters
    ----------
    ds : xarray.Dataset
    variable : str
        The measurement whose gradient is compared.
    methods : list of str or dict
        The panels: a method name accepted by :func:`xtramgrad.grad` (``"grad1"``,
        ``"gradn"``, ...), or a dict ``{"method": name, **options}`` whose other keys are
        passed to :func:`xtramgrad.grad` (e.g. ``{"method": "grad1",
        "selection_angle": 0.5}``), with an optional ``"label"`` for the title.
    truth : callable, DataArray or array-like, optional
        The true gradient: ``truth(center)`` returning (n, d) (or (d,)) values from the
        (n, d) bin centers, a (bin, space) DataArray, or an array of shape (n, d) or (d,)
        (a uniform gradient, e.g. ``ds.attrs["true_gradient"]`` of the shipped samples).
    component : str or int, optional
        Compare maps of one component (``"x"``, ``"y"``, a position, or
        ``"magnitude"``) instead of arrows.
    at : dict, optional
        The slab of a 3D tessellation, as in :func:`plot_map`.
    cells, cmap, robust
        As in :func:`plot_map` (the shared limits are the robust limits of all the
        panels' values together).
    aggregate, arrows, quantile, clip
        As in :func:`plot_gradient` (arrow panels; the scale is set from the arrows of all
        the panels together, and the key, top right of the figure, holds for all).
    figsize : (width, height), optional

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        Shape (1, columns), or (2, columns) with ``truth`` (the axes under the truth
        panel are hidden). Columns: the truth (if given), then the methods in order.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.open_sample("hexagon")
    >>> axes = xtramgrad.plot.plot_compare(ds, "D", ["grad1", "gradn"], component="x",
    ...                                    truth=ds.attrs["true_gradient"])
    >>> axes.shape, axes[0, 1].get_title().splitlines()[0]
    ((2, 3), 'grad1')
    """
    plt = pyplot()
    panels, true = compare_panels(ds, variable, methods, truth=truth, component=component,
                                  at=at)
    v = view(ds, at)
    ncols = len(panels) + (true is not None)
    nrows = 2 if true is not None else 1
    if figsize is None:
        figsize = (3.3 * ncols + 1.2, 3.1 * nrows + 0.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained",
                             squeeze=False, sharex=True, sharey=True)
    shown: list[tuple[str, xr.DataArray, float]] = []
    if true is not None:
        shown.append(("truth", true, float("nan")))
    shown += [(p.label, p.grad, p.rms) for p in panels]
    units = panels[0].grad.attrs.get("units")
    top = list(axes[0])
    if component is not None:
        fields = [field(ds, g, component) for _, g, _ in shown]
        pooled = np.concatenate([f.values[v.bins] for f in fields if f is not None])
        col = colours(pooled, cmap=cmap, vmin=None, vmax=None, robust=robust, center=None)
        artist = None
        for ax, (label, _, rms), fld in zip(top, shown, fields, strict=True):
            drawn = draw_map(ds, fld, ax, cells=cells, cmap=col.cmap, vmin=col.vmin,
                             vmax=col.vmax, colorbar=False, at=at)
            artist = drawn.artist
            ax.set_title(_title(label, rms, units), fontsize=10)
        assert fields[0] is not None
        cbar = fig.colorbar(artist, ax=top, label=fields[0].label.replace("true gradient",
                            panels[0].grad.attrs.get("long_name", "gradient")),
                            extend=col.extend, shrink=0.9)
        cbar.ax.set_gid("xtramgrad-shared-colorbar")
    else:
        gvals = [np.asarray(g.transpose(BIN, SPACE).values, np.float64) for _, g, _ in shown]
        fields_ = [arrow_field(v.xy, gv[v.bins][:, v.plane], v.spacing, aggregate=aggregate,
                               arrows=arrows) for gv in gvals]
        pooled = np.concatenate([np.hypot(f.u, f.v) for f in fields_])
        scale, _ = arrow_scale(pooled, fields_[0].spacing, quantile)
        for i, (ax, (label, g, rms)) in enumerate(zip(top, shown, strict=True)):
            # cell outlines only, so that black arrows read on small panels
            draw_map(ds, None, ax, cells=cells, at=at, edgecolor="0.82", linewidth=0.5)
            last = i == len(top) - 1
            draw_arrows(ax, g, v, aggregate=aggregate, arrows=arrows, scale=scale, clip=clip,
                        key=(0.96, 0.985) if last else False, key_coordinates="figure",
                        quiver_kw={"width": 0.006})
            ax.set_title(_title(label, rms, units), fontsize=10)
    if true is not None:
        axes[1, 0].set_visible(False)
        errs = []
        for p in panels:
            est = _values(ds, p.grad, component, v.bins)
            ref = _values(ds, true, component, v.bins)
            e = est - ref
            if component is None:
                e = np.sqrt(np.sum(e**2, axis=1))
            errs.append(e)
        pooled_err = np.concatenate(errs)
        if component is None:
            ecol = colours(pooled_err, cmap="magma", vmin=0.0, vmax=None, robust=robust,
                           center=False)
            what = "length of the error vector"
        else:
            ecol = colours(pooled_err, cmap=None, vmin=None, vmax=None, robust=robust,
                           center=0.0)
            fld0 = field(ds, panels[0].grad, component)
            comp = fld0.component if fld0 is not None else str(component)
            what = f"error, {comp} component" if comp != MAGNITUDE else "error of |gradient|"
        artist = None
        for ax, p, e in zip(axes[1, 1:], panels, errs, strict=True):
            full = np.full(ds.sizes[BIN], np.nan)
            full[v.bins] = e
            efld = Field(full, what, component if component is None else str(component),
                         units)
            drawn = draw_map(ds, efld, ax, cells=cells, cmap=ecol.cmap, vmin=ecol.vmin,
                             vmax=ecol.vmax, colorbar=False, at=at)
            artist = drawn.artist
            ax.set_title(f"{p.label} \u2212 truth", fontsize=10)
        cbar = fig.colorbar(artist, ax=list(axes[1, 1:]), extend=ecol.extend, shrink=0.9,
                            label=what + (f" [{units}]" if units else ""))
        cbar.ax.set_gid("xtramgrad-error-colorbar")
    name = str(variable)
    what_top = f"gradient of {name}" + (f", {component}" if component is not None else "")
    fig.suptitle(what_top, fontsize=11)
    return axes



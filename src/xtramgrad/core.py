"""xarray and dask glue: the public gradient functions.

Everything here normalises arguments, finds the tessellation (:mod:`xtramgrad.topology`)
and hands plain arrays to the pure-numpy kernels (:mod:`xtramgrad.kernels`). dask is
imported only on the chunked path (:mod:`xtramgrad.chunked`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import kernels
from .kernels import Selection
from .topology import BIN, SPACE, TessellationError, Topology, topology

__all__ = ["grad", "grad_operator", "resolve_selection", "pointwise", "DEFAULT_SELECTION_ANGLE"]

#: TRamWAy's ``infer(...)`` default (``get_grad_kwargs``).
DEFAULT_SELECTION_ANGLE = 0.9
METHODS = ("grad1", "gradn")


def resolve_selection(
    ndim: int,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
) -> Selection:
    """Turn the user's selection keywords into one rule, refusing conflicts.

    ================================  ===============================================
    keywords                          rule
    ================================  ===============================================
    (none)                            angular sectors, ``selection_angle=0.9``
    ``selection_angle=s``             angular sectors of half-angle ``s * pi / 2``;
                                      ``s = 0.5`` in 2D means InferenceMAP quadrants
                                      (as in TRamWAy)
    ``eps=e``                         half-spaces with exclusion margin ``e >= 0``
    ``selection="quadrants"``         InferenceMAP quadrants, any dimension
    ``selection="cone"``              angular sectors (``selection_angle``, default 0.9)
    ``selection="halfspace"``         half-spaces (``eps``, default 0)
    ``selection="labels"``            sides read from ``neighbour_label``
    ================================  ===============================================

    Examples
    --------
    >>> resolve_selection(2)
    Selection(kind='cone', value=0.9)
    >>> resolve_selection(2, selection_angle=0.5)
    Selection(kind='quadrants', value=None)
    >>> resolve_selection(3, selection_angle=0.5)
    Selection(kind='cone', value=0.5)
    >>> resolve_selection(2, eps=0.01)
    Selection(kind='halfspace', value=0.01)
    >>> resolve_selection(2, selection_angle=0.9, eps=0.0)
    Traceback (most recent call last):
    ...
    xtramgrad.errors.TessellationError: selection_angle=0.9 and eps=0.0 ...
    """
    if selection_angle is not None and eps is not None:
        raise TessellationError(
            f"selection_angle={selection_angle} and eps={eps} select neighbours in two "
            "different ways (angular sectors vs half-spaces); pass only one of them."
        )
    if selection_angle is not None:
        s = float(selection_angle)
        if not (0.5 <= s < 1.0):
            raise TessellationError(
                f"selection_angle={selection_angle}; expected a value in [0.5, 1) (in units "
                "of pi radians: 0.5 is a quarter turn, TRamWAy's default is 0.9)."
            )
    if eps is not None:
        e = float(eps)
        if not (e >= 0.0 and math.isfinite(e)):
            raise TessellationError(
                f"eps={eps}; expected a finite margin >= 0 in space units (0 for plain "
                "half-spaces, e.g. 1e-2 to exclude neighbours almost aligned with another "
                "axis)."
            )
    if selection is None:
        if eps is not None:
            return Selection("halfspace", float(eps))
        s = DEFAULT_SELECTION_ANGLE if selection_angle is None else float(selection_angle)
        if s == 0.5 and ndim == 2:
            return Selection("quadrants")
        return Selection("cone", s)
    if selection not in kernels.SELECTION_KINDS:
        raise TessellationError(
            f"selection={selection!r}; expected one of {kernels.SELECTION_KINDS}."
        )
    if selection == "cone":
        if eps is not None:
            raise TessellationError("selection='cone' takes selection_angle=, not eps=.")
        return Selection(
            "cone", DEFAULT_SELECTION_ANGLE if selection_angle is None else float(selection_angle)
        )
    if selection == "halfspace":
        if selection_angle is not None:
            raise TessellationError("selection='halfspace' takes eps=, not selection_angle=.")
        return Selection("halfspace", 0.0 if eps is None else float(eps))
    if selection_angle is not None or eps is not None:
        raise TessellationError(
            f"selection={selection!r} takes neither selection_angle nor eps; drop them."
        )
    return Selection(selection)


def pointwise(func: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Turn a per-bin gradient function into a vectorised one usable as ``method=``.

    ``func(center, value, neighbour_centers, neighbour_values)`` receives one bin's center
    ``(d,)``, its value (a float), and its *measured* neighbours' centers ``(k, d)`` and
    values ``(k,)``; it returns the gradient ``(d,)``. It is called once per bin and slice
    with a measurement, in Python: convenient, not fast (use a vectorised function for big
    maps).

    Examples
    --------
    TRamWAy's "Overloading grad" example, translated: a gradient by least-squares plane fit.

    >>> import numpy as np, xtramgrad
    >>> @xtramgrad.pointwise
    ... def plane_fit(center, value, nbr_centers, nbr_values):
    ...     dx = nbr_centers - center
    ...     g, *_ = np.linalg.lstsq(dx, nbr_values - value, rcond=None)
    ...     return g
    >>> ds = xtramgrad.grid((4, 4))
    >>> ds["V"] = 2 * ds.center.sel(space="x") - ds.center.sel(space="y")
    >>> ds.tram.grad("V", method=plane_fit).values[5].round(12).tolist()
    [2.0, -1.0]
    """

    def vectorised(
        center: np.ndarray,
        value: np.ndarray,
        neighbour_center: np.ndarray,
        neighbour_value: np.ndarray,
        neighbour_mask: np.ndarray,
    ) -> np.ndarray:
        s_count, n = value.shape
        out = np.full((s_count, n, center.shape[1]), np.nan)
        for s in range(s_count):
            for i in range(n):
                m = neighbour_mask[s, i]
                if np.isnan(value[s, i]) or not m.any():
                    continue
                out[s, i] = func(
                    center[i], float(value[s, i]), neighbour_center[i][m], neighbour_value[s, i][m]
                )
        return out

    vectorised.__name__ = getattr(func, "__name__", "pointwise")
    vectorised.__doc__ = func.__doc__
    vectorised._xtramgrad_pointwise = True  # type: ignore[attr-defined]
    return vectorised


def _method_name(method: str | Callable[..., Any]) -> str:
    if callable(method):
        return getattr(method, "__name__", type(method).__name__)
    if method not in METHODS:
        raise TessellationError(
            f"method={method!r}; expected one of {METHODS} or a callable (see "
            "xtramgrad.pointwise for a per-bin function)."
        )
    return method


def _field(ds: xr.Dataset, name: Hashable) -> xr.DataArray:
    if name not in ds.data_vars and name not in ds.coords:
        raise TessellationError(
            f"the Dataset has no variable {name!r} to differentiate; its measurements are "
            f"{[v for v in ds.data_vars if BIN in ds[v].dims and v not in _SCHEMA]}."
        )
    if name in ("neighbours", "neighbour_label"):
        raise TessellationError(
            f"variable {name!r} is part of the tessellation (a table of bin positions or "
            "side labels), not a measurement; differentiate a measurement such as "
            "ds['D'] = ('bin', values)."
        )
    da = ds[name]
    if BIN not in da.dims:
        raise TessellationError(
            f"variable {name!r} has dims {tuple(da.dims)} without 'bin'; a measurement to "
            "differentiate must be defined on the bins, e.g. ds['D'] = ('bin', values)."
        )
    if SPACE in da.dims:
        raise TessellationError(
            f"variable {name!r} has a 'space' dim {tuple(da.dims)}; gradients apply to "
            f"scalar fields. Select a component first, e.g. ds[{name!r}].sel(space='x')."
        )
    if not (np.issubdtype(da.dtype, np.floating) or np.issubdtype(da.dtype, np.integer)):
        raise TessellationError(
            f"variable {name!r} has dtype {da.dtype}; expected real numbers."
        )
    return da


_SCHEMA = ("center", "neighbours", "neighbour_label", "volume")


def _attrs(
    field: xr.DataArray, topo: Topology, method: str, selection: Selection | None, na: float
) -> dict[str, Any]:
    label = field.attrs.get("long_name", field.name)
    attrs: dict[str, Any] = {
        "long_name": f"gradient of {label}",
        "xtramgrad_method": method,
    }
    if selection is not None:
        attrs["xtramgrad_selection"] = selection.describe()
    if not np.isnan(na):
        attrs["xtramgrad_na"] = na
    fu, su = field.attrs.get("units"), topo.center.attrs.get("units")
    if fu is not None and su is not None:
        attrs["units"] = f"{fu} / {su}"
    return attrs


def _is_dask(*arrays: xr.DataArray | None) -> bool:
    return any(a is not None and a.chunks is not None for a in arrays)


def grad(
    ds: xr.Dataset,
    variables: Hashable | Sequence[Hashable],
    *,
    method: str | Callable[..., Any] = "grad1",
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    na: float = np.nan,
) -> xr.DataArray | xr.Dataset:
    """Spatial gradient of measurements defined on the bins of a tessellation.

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset (see :mod:`xtramgrad.topology`).
    variables : str or list of str
        The measurement(s) to differentiate. A list returns a Dataset.
    method : {"grad1", "gradn"} or callable
        ``"grad1"`` (default): TRamWAy's per-axis 3-point regression with 2-point fallback.
        ``"gradn"``: the multidimensional order-2 regression, with a correct derivative.
        A callable is a vectorised user gradient receiving keyword arrays ``center``
        (n, d), ``value`` (S, n), ``neighbour_center`` (n, k, d), ``neighbour_value``
        (S, n, k) and ``neighbour_mask`` (S, n, k) (False for padding and missing values),
        and returning (S, n, d); wrap a per-bin function with :func:`pointwise`.
    selection : {"cone", "quadrants", "halfspace", "labels"}, optional
        Neighbour selection rule for ``grad1`` (see :func:`resolve_selection`).
    selection_angle : float, optional
        Angular sectors of top angle ``selection_angle * pi``, in [0.5, 1); default 0.9.
    eps : float, optional
        Half-spaces with exclusion margin ``eps`` (space units).
    na : float
        Value of a component with no neighbour on either side (default NaN).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The field's dims plus ``space``. Bins without a measurement, or without any measured
        neighbour, have NaN gradients.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((5, 5), spacing=0.1)
    >>> ds["D"] = 1.0 + 2.0 * ds.center.sel(space="x") + ds.center.sel(space="y") ** 2
    >>> g = ds.tram.grad("D", selection_angle=0.9)
    >>> g.dims
    ('bin', 'space')
    >>> [round(float(v), 6) for v in g.isel(bin=12)]
    [2.0, 0.4]
    """
    many = not isinstance(variables, str) and isinstance(variables, Sequence)
    names: list[Hashable] = list(variables) if isinstance(variables, Sequence) and many else [
        variables
    ]
    name = _method_name(method)
    builtin = isinstance(method, str)
    if not builtin or method == "gradn":
        if selection is not None or selection_angle is not None or eps is not None:
            raise TessellationError(
                f"selection options apply to method='grad1' only; method={name!r} uses every "
                "measured neighbour. Drop selection/selection_angle/eps."
            )
    if not (isinstance(na, (int, float)) and not isinstance(na, bool)):
        raise TessellationError(f"na={na!r}; expected a float (default NaN).")
    topo = topology(ds, labels=selection == "labels")
    sel = resolve_selection(topo.ndim, selection, selection_angle, eps) if builtin else None
    if sel is None:
        sel = Selection("cone", DEFAULT_SELECTION_ANGLE)  # unused by gradn and callables
    out = {}
    for var in names:
        field = _field(ds, var)
        if _is_dask(field, topo.center, topo.neighbours, topo.labels):
            from .chunked import grad_chunked

            result = grad_chunked(field, topo, sel, method, float(na))
        else:
            result = _grad_eager(field, topo, sel, method, float(na))
        result.attrs = _attrs(field, topo, name, sel if method == "grad1" else None, na)
        result.name = f"grad_{var}"
        out[var] = result
    if many:
        return xr.Dataset({f"grad_{v}": r for v, r in out.items()})
    return out[names[0]]


def _grad_eager(
    field: xr.DataArray,
    topo: Topology,
    sel: Selection,
    method: str | Callable[..., Any],
    na: float,
) -> xr.DataArray:
    batch = [d for d in field.dims if d != BIN]
    values = field.transpose(*batch, BIN).values.astype(np.float64, copy=False)
    g = kernels.local_gradient(
        values,
        topo.center.values,
        topo.neighbours.values,
        selection=sel,
        method=method,
        labels=None if topo.labels is None else topo.labels.values,
        na=na,
    )
    return _wrap(g, field, topo, batch)


def _wrap(
    g: Any, field: xr.DataArray, topo: Topology, batch: list[Hashable]
) -> xr.DataArray:
    """Label a (..., bin, space) gradient array like ``field`` plus ``space``."""
    coords: dict[Hashable, Any] = {
        k: v for k, v in field.coords.items() if SPACE not in v.dims
    }
    # reuse the center's space coordinate (and its index) when it has one
    space = topo.center.coords.get(SPACE)
    coords[SPACE] = space if space is not None else topo.space
    dims = (*batch, BIN, SPACE)
    res = xr.DataArray(g, dims=dims, coords=coords)
    wanted = (*field.dims, SPACE)
    return res if wanted == dims else res.transpose(*wanted)


def grad_operator(
    ds: xr.Dataset,
    variable: Hashable | None = None,
    *,
    method: str = "grad1",
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
) -> Any:
    """The gradient as a sparse linear map: ``(G @ y).reshape(n, d)`` is ``grad(y)``.

    For a fixed tessellation, options and missing-value pattern, every built-in gradient is
    linear in the measurements. This returns it as a ``scipy.sparse.csr_array`` of shape
    ``(n * d, n)``; row ``i * d + j`` gives component ``j`` (the ``space`` order) at bin
    ``i``. A component that is undefined (no neighbour on either side, no measured neighbour,
    or a missing measurement) holds a single NaN coefficient on its own bin's column, so
    products give NaN there, as :func:`grad` does; drop those rows with
    ``np.isnan(G.sum(axis=1))`` when building a penalty.

    Parameters
    ----------
    ds : xarray.Dataset
    variable : str, optional
        A measurement whose missing values (NaN) define the pattern; it must have the same
        pattern in every slice. By default every bin counts as measured.
    method, selection, selection_angle, eps
        As in :func:`grad`.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((4, 3))
    >>> ds["D"] = ds.center.sel(space="x") ** 2
    >>> G = ds.tram.grad_operator()
    >>> G.shape
    (24, 12)
    >>> g = (G @ ds.D.values).reshape(12, 2)
    >>> bool(np.allclose(g, ds.tram.grad("D").values))
    True
    """
    if method not in METHODS:
        raise TessellationError(
            f"method={method!r}; grad_operator supports the built-in methods {METHODS} (a "
            "user function need not be linear)."
        )
    if method == "gradn" and (
        selection is not None or selection_angle is not None or eps is not None
    ):
        raise TessellationError(
            "selection options apply to method='grad1' only; drop them for 'gradn'."
        )
    topo = topology(ds, labels=selection == "labels")
    sel = resolve_selection(topo.ndim, selection, selection_angle, eps)
    n = topo.center.sizes[BIN]
    valid = np.ones((n, 1), dtype=bool)
    if variable is not None:
        field = _field(ds, variable)
        ok = ~np.isnan(field.transpose(..., BIN).values.reshape(-1, n))
        if not (ok == ok[:1]).all():
            raise TessellationError(
                f"variable {variable!r} has different missing-value patterns across its "
                f"dims {tuple(d for d in field.dims if d != BIN)}; the operator depends on "
                "the pattern. Select one slice, e.g. ds[var].isel(time=0)."
            )
        valid = ok[:1].T.copy()
    stencil = kernels.build_stencil(
        np.asarray(topo.center.values),
        np.asarray(topo.neighbours.values),
        sel,
        labels=None if topo.labels is None else np.asarray(topo.labels.values),
    )
    diag, w, _ = kernels.local_weights(stencil, method, valid)
    return kernels.weights_to_csr(stencil, diag[:, :, 0], w[:, :, 0], n_source=n)

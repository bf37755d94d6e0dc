"""Vector calculus on tessellations: divergence, curl, Laplacian and smoothness penalties.

Every function here is built on the gradient methods of :mod:`xtramgrad.kernels` and runs
through the same glue as :func:`xtramgrad.grad` (:func:`xtramgrad.core.estimate`: eager, or
chunked along ``bin`` through the halo gather, with the same arithmetic in the same order,
so chunked results equal eager ones); results are labelled by
:func:`xtramgrad.core._label`.

* :func:`div`, :func:`curl`: of a *vector field*, a variable with dims ``(..., bin, space)``
  (what :func:`xtramgrad.grad` returns) or a list of component variables, one per space
  axis. Each component is differentiated by the chosen gradient method.
* :func:`laplacian`: of a scalar field, either the trace of the Hessian that a quadratic fit
  estimates (``method="lsq2"``) or the finite-volume form on cells with face areas and
  volumes (``method="fv"``).
* :func:`div_operator`, :func:`curl_operator`, :func:`laplacian_operator`: the same maps as
  ``scipy.sparse`` matrices (every registered method is linear).
* :func:`smoothness_penalty`: a symmetric positive semi-definite matrix ``P`` with
  ``u @ P @ u`` approximating the Dirichlet energy, the integral of ``|grad u|^2``.

Why a quadratic fit by default
------------------------------
On irregular meshes, applying a first-order gradient twice does not converge: measured on
random, k-means-like and jittered Voronoi meshes of 10^3 to 10^5 bins, ``div(grad f)`` with
``grad1`` *grows* like ``1/h`` (7 to 700 times ``|lap f|`` at 10^5 bins), and with ``gradn``
or 1-ring least squares it stalls at 8-140% of ``|lap f|``. The 2-ring quadratic fit
``lsq2`` estimates second derivatives that converge (order 1 in the bin spacing), and its
gradients are second order, so ``div``, ``curl`` and ``laplacian`` default to it.
``docs/calculus.md`` and ``benchmarks/calculus.py`` give the measured orders per method and
mesh.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import core
from .core import _Q, Request, estimate, resolve_request
from .errors import TessellationError
from .kernels import METHODS
from .kernels.stencil import Rings
from .topology import BIN, EDGE, FACE_AREA, NBR, SPACE, VOLUME, Topology, topology

__all__ = [
    "div",
    "curl",
    "laplacian",
    "div_operator",
    "curl_operator",
    "laplacian_operator",
    "smoothness_penalty",
    "PENALTY_FORMS",
]

#: Private dim of a vector field's components while they are differentiated.
COMP = "_xtramgrad_component"
#: Default method of every function here (see the module docstring).
DEFAULT_METHOD = "lsq2"
#: The forms of :func:`smoothness_penalty`.
PENALTY_FORMS = ("two_point", "gradient", "tramway")
#: The values of ``rgrad`` of ``form="tramway"`` (TRamWAy's own names).
_RGRAD = {None: "grad1", "grad": "grad1", "grad1": "grad1", "gradn": "grad1",
          "delta": "delta0", "delta0": "delta0", "delta1": "delta0"}

# (sign, derivative axis, component) terms of each output component
_CURL_TERMS = {
    2: [[(1.0, 0, 1), (-1.0, 1, 0)]],
    3: [
        [(1.0, 1, 2), (-1.0, 2, 1)],
        [(1.0, 2, 0), (-1.0, 0, 2)],
        [(1.0, 0, 1), (-1.0, 1, 0)],
    ],
}

_GEOMETRY_HINT = (
    "xtramgrad.voronoi(points) and xtramgrad.grid(...) compute both (from_tramway reads "
    "them from TRamWAy's 2D Voronoi partitions); for a table of your own, "
    "xtramgrad.topology.geometry.voronoi_geometry(points, neighbours, bounds) returns "
    "(face_area, volume) aligned with it."
)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _FVRequest(Request):
    """The finite-volume Laplacian, labelled as a method named ``"fv"``."""

    @property
    def name(self) -> str:
        return "fv"


_FV_NOTE = (("xtramgrad_formula", "(1/V_i) sum_f (A_f / d_f) (u_k - u_i)"),)


def _request(
    ds: xr.Dataset, method: Any, selection: str | None, selection_angle: float | None,
    eps: float | None, options: dict[str, Any], *, linear: bool, what: str,
) -> Request:
    req = resolve_request(core._topology_ndim(ds), method, selection, selection_angle, eps,
                          np.nan, options, linear=linear)
    if req.options.get("bandwidth") == "auto":
        raise ValueError(
            f"{what} with bandwidth='auto': the bandwidth is chosen from one scalar field; "
            "pass a bandwidth in space units (e.g. bandwidth=0.1), or choose it first with "
            "ds.tram.grad(component, method='local') and read attrs['xtramgrad_bandwidth']."
        )
    return req


def _n_quantities(req: Request, d: int) -> int:
    return d if req.method is None else req.method.n_quantities(d)


# --------------------------------------------------------------------------- vector fields


def _check_bin_alignment(da: xr.DataArray, ds: xr.Dataset, what: str) -> None:
    n = int(ds["center"].sizes[BIN])
    if da.sizes[BIN] != n:
        raise TessellationError(
            f"{what} has {da.sizes[BIN]} bins along 'bin'; the tessellation has {n}. Pass a "
            "field computed on this Dataset (e.g. ds.tram.grad('V'))."
        )
    if BIN in da.coords and BIN in ds.coords:
        if not np.array_equal(np.asarray(da[BIN].values), np.asarray(ds[BIN].values)):
            raise TessellationError(
                f"{what} has a 'bin' coordinate that differs from the Dataset's: it was "
                "computed on other bins (a selection or another tessellation). Pass a field "
                "computed on this Dataset."
            )


def _numeric(da: xr.DataArray, what: str) -> None:
    if not (np.issubdtype(da.dtype, np.floating) or np.issubdtype(da.dtype, np.integer)):
        raise TessellationError(f"{what} has dtype {da.dtype}; expected real numbers.")


def _vector(
    ds: xr.Dataset, field: Any, topo: Topology
) -> tuple[xr.DataArray, xr.DataArray, str, str]:
    """The vector field as ``(..., COMP, bin)`` (components in the tessellation's space
    order), a scalar template ``(..., bin)`` for :func:`core._label` (dims, name, long_name,
    units), its name and label."""
    d = topo.ndim
    space = topo.space
    expected = (
        f"a vector field is a variable with dims (..., 'bin', 'space') and {d} entries "
        f"along 'space' (what ds.tram.grad returns), or a list of {d} component variables, "
        f"one per space axis {space}, e.g. {[f'F{s}' for s in space]}"
    )
    if isinstance(field, np.ndarray):
        raise TessellationError(
            f"the vector field is a numpy array of shape {field.shape}; {expected}. Wrap an "
            "(n, d) array as xr.DataArray(F, dims=('bin', 'space'))."
        )
    if isinstance(field, (str, xr.DataArray)) or not isinstance(field, Sequence):
        if not isinstance(field, (str, xr.DataArray)) and not (
            isinstance(field, Hashable) and field in ds.variables
        ):
            raise TessellationError(
                f"the vector field is {type(field).__name__} {field!r}; {expected}."
            )
        if isinstance(field, xr.DataArray):
            da = field
            what = f"the vector field {da.name!r}" if da.name is not None else "the vector field"
        else:
            if field not in ds.variables:
                raise TessellationError(f"the Dataset has no variable {field!r}; {expected}.")
            da = ds[field]
            what = f"variable {field!r}"
        if BIN not in da.dims or SPACE not in da.dims:
            raise TessellationError(f"{what} has dims {tuple(da.dims)}; {expected}.")
        if da.sizes[SPACE] != d:
            raise TessellationError(
                f"{what} has {da.sizes[SPACE]} entries along 'space'; the tessellation is "
                f"{d}D: {expected}."
            )
        _check_bin_alignment(da, ds, what)
        _numeric(da, what)
        if SPACE in da.coords:
            have = list(da[SPACE].values.tolist())
            if have != list(space):
                if sorted(map(str, have)) != sorted(map(str, space)):
                    raise TessellationError(
                        f"{what} has space labels {have}; the tessellation's are {space}."
                    )
                da = da.sel({SPACE: space})
        name = str(da.name) if da.name is not None else "F"
        label = str(da.attrs.get("long_name", name))
        units = da.attrs.get("units")
        out_dims = [dim for dim in da.dims if dim != SPACE]
        drop = [c for c in da.coords if SPACE in da[c].dims]
        vec = da.drop_vars(drop).rename({SPACE: COMP})
    else:
        names = list(field)
        if len(names) != d:
            raise TessellationError(
                f"{len(names)} component variables {names} for a {d}D tessellation; "
                f"{expected}."
            )
        comps = []
        for c in names:
            if isinstance(c, xr.DataArray):
                cw = f"component {c.name!r}"
                if BIN not in c.dims or SPACE in c.dims:
                    raise TessellationError(
                        f"{cw} has dims {tuple(c.dims)}; each component is a scalar field "
                        "with dims (..., 'bin')."
                    )
                _check_bin_alignment(c, ds, cw)
                _numeric(c, cw)
                comps.append(c)
            else:
                comps.append(core._field(ds, c))
        units_set = {comp.attrs.get("units") for comp in comps}
        if len(units_set) > 1:
            raise TessellationError(
                f"the components {[str(c.name) for c in comps]} have different units "
                f"{sorted(map(str, units_set))}; a divergence or curl adds their "
                "derivatives: convert them to one unit first."
            )
        units = units_set.pop()
        cnames = [str(comp.name) for comp in comps]
        name = "_".join(cnames)
        label = "(" + ", ".join(str(comp.attrs.get("long_name", cn))
                                for comp, cn in zip(comps, cnames, strict=True)) + ")"
        comps = list(xr.broadcast(*comps))
        out_dims = list(comps[0].dims)
        vec = xr.concat(comps, dim=COMP, coords="minimal", compat="override",
                        join="override", combine_attrs="drop")
    batch = [dim for dim in vec.dims if dim not in (COMP, BIN)]
    vec = vec.transpose(*batch, COMP, BIN)
    vec.name = name
    template = xr.DataArray(
        np.empty((0,) * len(out_dims)), dims=out_dims, name=name,
        attrs={"long_name": label, **({} if units is None else {"units": units})},
    )
    return vec, template, name, label


def _combine_terms(est: xr.DataArray, terms: list[tuple[float, int, int]]) -> xr.DataArray:
    """sign * d(component)/d(axis), summed in the order of ``terms`` (elementwise, so the
    eager and chunked paths add the same numbers in the same order)."""
    acc: xr.DataArray | None = None
    for sign, axis, comp in terms:
        part = est.isel({COMP: comp, _Q: axis}, drop=True)
        if acc is None:
            acc = part if sign > 0 else -part
        else:
            acc = acc + part if sign > 0 else acc - part
    assert acc is not None
    return acc


def _per_length(units: str | None, space_units: str | None) -> str | None:
    """``"X / um / um"`` as ``"X / um^2"`` (and ``"X / um^2 / um"`` as ``"X / um^3"``)."""
    if units is None or space_units is None:
        return units
    tail = f" / {space_units}"
    if not units.endswith(tail):
        return units
    base = units[: -len(tail)]
    power = 1
    for p in range(6, 1, -1):
        if base.endswith(f"{tail}^{p}"):
            base, power = base[: -len(f"{tail}^{p}")], p
            break
    else:
        if base.endswith(tail):
            base, power = base[: -len(tail)], 1
        else:
            return units
    return f"{base}{tail}^{power + 1}"


def _finish(res: xr.DataArray, topo: Topology) -> xr.DataArray:
    units = res.attrs.get("units")
    if units is not None:
        res.attrs["units"] = _per_length(units, topo.center.attrs.get("units"))
    return res


# --------------------------------------------------------------------------- div, curl


def div(
    ds: xr.Dataset,
    field: Hashable | xr.DataArray | Sequence[Hashable | xr.DataArray],
    *,
    method: Any = DEFAULT_METHOD,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    **options: Any,
) -> xr.DataArray:
    r"""Divergence of a vector field on the bins of a tessellation.

    .. math:: \nabla \cdot F = \sum_j \frac{\partial F_j}{\partial x_j}

    with each derivative estimated by the gradient method ``method`` applied to the
    component ``F_j`` (missing values are dropped from the fits as in
    :func:`xtramgrad.grad`, per component).

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset.
    field : str, DataArray, or list of str / DataArray
        The vector field: a variable (or a DataArray, e.g. ``ds.tram.grad("V")``) with dims
        ``(..., bin, space)``, or a list of ``d`` component variables in the space order
        (``["Fx", "Fy"]``). Components must share their units.
    method : str or callable
        A gradient method of :data:`xtramgrad.kernels.METHODS` (default ``"lsq2"``: the
        quadratic fit, second order; ``grad1`` and ``gradn`` do not converge on irregular
        meshes) or a vectorised user gradient (see :func:`xtramgrad.grad`).
    selection, selection_angle, eps, **options
        As in :func:`xtramgrad.grad`. ``bandwidth="auto"`` is refused: pass a length.

    Returns
    -------
    xarray.DataArray
        The field's dims without ``space``, named ``div_<name>``, with ``long_name``,
        ``units`` ("<field units> / <space units>") and the method in ``attrs``. NaN where
        a derivative is undefined. Chunked along ``bin`` if the field (or the tessellation)
        is; the values then equal the eager ones.

    See Also
    --------
    div_operator : the same map as a sparse matrix.

    Examples
    --------
    ``F = (x^2, x y)`` has divergence ``3 x``; the quadratic fit is exact for it:

    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((6, 6), spacing=0.2)
    >>> x, y = ds.center.sel(space="x"), ds.center.sel(space="y")
    >>> ds["Fx"], ds["Fy"] = x**2, x * y
    >>> d = xtramgrad.calculus.div(ds, ["Fx", "Fy"])
    >>> bool(np.allclose(d, 3 * x, atol=1e-9))
    True

    The divergence of a gradient (here of ``x^2 + y^2``, whose Laplacian is 4):

    >>> ds["V"] = x**2 + y**2
    >>> dg = xtramgrad.calculus.div(ds, ds.tram.grad("V", method="lsq2"))
    >>> dg.name, round(float(dg.isel(bin=14)), 9)
    ('div_grad_V', 4.0)
    """
    req = _request(ds, method, selection, selection_angle, eps, dict(options), linear=False,
                   what="div")
    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    vec, template, name, _ = _vector(ds, field, topo)
    d = topo.ndim
    est, _ = estimate(vec, topo, req, np.eye(d, _n_quantities(req, d)))
    out = _combine_terms(est, [(1.0, j, j) for j in range(d)]).expand_dims(_Q, axis=-1)
    res = core._label(out, template, topo, req, name=f"div_{name}",
                      long_name="divergence of {label}", unit_power=1, quantity_dim=None)
    return _finish(res, topo)


def curl(
    ds: xr.Dataset,
    field: Hashable | xr.DataArray | Sequence[Hashable | xr.DataArray],
    *,
    method: Any = DEFAULT_METHOD,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    **options: Any,
) -> xr.DataArray:
    r"""Curl of a vector field on the bins of a 2D or 3D tessellation.

    2D: the scalar :math:`\partial F_y / \partial x - \partial F_x / \partial y`.
    3D: the vector :math:`\nabla \times F = (\partial_y F_z - \partial_z F_y,\
    \partial_z F_x - \partial_x F_z,\ \partial_x F_y - \partial_y F_x)` along ``space``.
    Each derivative is estimated by ``method`` applied to one component. The curl of a
    gradient is 0: with ``lsq2`` it converges to 0 (order 1 in the bin spacing, measured in
    ``docs/calculus.md``), exactly 0 to rounding for quadratic fields.

    Parameters
    ----------
    ds, field, method, selection, selection_angle, eps, **options
        As in :func:`div`.

    Returns
    -------
    xarray.DataArray
        2D: the field's dims without ``space``; 3D: with ``space``. Named ``curl_<name>``,
        units "<field units> / <space units>".

    Raises
    ------
    TessellationError
        On a 1D tessellation (a curl needs two space dims or more).

    Examples
    --------
    A rotation ``F = (-y, x)`` has curl 2 everywhere:

    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((5, 5))
    >>> ds["Fx"], ds["Fy"] = -ds.center.sel(space="y"), ds.center.sel(space="x")
    >>> c = xtramgrad.calculus.curl(ds, ["Fx", "Fy"])
    >>> c.dims, bool(np.allclose(c, 2.0))
    (('bin',), True)
    """
    req = _request(ds, method, selection, selection_angle, eps, dict(options), linear=False,
                   what="curl")
    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    d = topo.ndim
    _check_curl_ndim(d)
    vec, template, name, _ = _vector(ds, field, topo)
    est, _ = estimate(vec, topo, req, np.eye(d, _n_quantities(req, d)))
    parts = [_combine_terms(est, terms) for terms in _CURL_TERMS[d]]
    if d == 2:
        out = parts[0].expand_dims(_Q, axis=-1)
        res = core._label(out, template, topo, req, name=f"curl_{name}",
                          long_name="curl of {label}", unit_power=1, quantity_dim=None)
    else:
        out = xr.concat(parts, dim=_Q).transpose(..., _Q)
        res = core._label(out, template, topo, req, name=f"curl_{name}",
                          long_name="curl of {label}", unit_power=1, quantity_dim=SPACE)
    return _finish(res, topo)


def _check_curl_ndim(d: int) -> None:
    if d == 1:
        raise TessellationError(
            "curl of a 1D tessellation: a curl needs 2 or 3 space dims (in 1D every vector "
            "field is a gradient); use div (the derivative dF/dx) instead."
        )


# --------------------------------------------------------------------------- Laplacian


def laplacian(
    ds: xr.Dataset,
    variable: Hashable,
    *,
    method: str = DEFAULT_METHOD,
    **options: Any,
) -> xr.DataArray:
    r"""Laplacian of a scalar field on the bins of a tessellation.

    * ``method="lsq2"`` (default; any registered method that fits a Hessian): the trace of
      the Hessian of the weighted quadratic fit over the 2-ring,
      :math:`\Delta u_i = \sum_j H_{jj}`. Exact for quadratic fields; first order in the
      bin spacing on irregular meshes. No cell geometry needed.
    * ``method="fv"``: the finite-volume (two-point flux) form on cells with face areas
      :math:`A_f` and volumes :math:`V_i`,

      .. math:: (\Delta u)_i = \frac{1}{V_i} \sum_{f = (i, k)} \frac{A_f}{d_f} (u_k - u_i),
                \qquad d_f = |x_k - x_i|.

      It is the divergence theorem with the normal derivative on each face taken from the
      two centers: exact on grids (the 5- / 7-point stencil), second order there, and
      conservative. On irregular Voronoi cells it is **not** pointwise consistent (the
      face midpoint is not on the segment between the centers): its error does not shrink
      with the bin size (measured: 8% of ``|lap f|`` on k-means-like and jittered meshes,
      19% on random ones, from 10^3 to 10^5 bins), although solutions of FV equations
      still converge; prefer ``lsq2`` to *evaluate* a Laplacian. Border cells miss the
      flux through the domain boundary (a no-flux boundary), as do faces towards bins
      without a measurement.

    Parameters
    ----------
    ds : xarray.Dataset
    variable : str
        A scalar measurement ``(..., bin)``.
    method : str
        ``"lsq2"`` (or another method with a Hessian) or ``"fv"`` (needs ``face_area`` and
        ``volume``).
    **options
        The method's options (e.g. ``power=``, ``cutoff=`` for ``"lsq2"``); ``"fv"`` takes
        none.

    Returns
    -------
    xarray.DataArray
        The field's dims, named ``laplacian_<variable>``, units
        "<field units> / <space units>^2". NaN where undefined (missing value; ``fv``: no
        positive finite volume, a NaN face area).

    Raises
    ------
    TessellationError
        ``method="fv"`` on a Dataset without ``face_area`` or ``volume``.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> rng = np.random.default_rng(0)
    >>> ds = xtramgrad.voronoi(rng.random((300, 2)), units="um")
    >>> x, y = ds.center.sel(space="x"), ds.center.sel(space="y")
    >>> ds["V"] = (x**2 + 3 * y**2).assign_attrs(units="kT")
    >>> lap = xtramgrad.calculus.laplacian(ds, "V")
    >>> bool(np.allclose(lap, 8.0)), lap.attrs["units"]
    (True, 'kT / um^2')

    On a grid the finite-volume form is the 5-point stencil, exact for quadratics inside:

    >>> g = xtramgrad.grid((6, 6), spacing=0.5)
    >>> g["V"] = g.center.sel(space="x") ** 2 + 3 * g.center.sel(space="y") ** 2
    >>> fv = xtramgrad.calculus.laplacian(g, "V", method="fv")
    >>> round(float(fv.isel(bin=14)), 12)
    8.0
    """
    topo0 = core._topology_ndim(ds)
    if method == "fv":
        if options:
            raise ValueError(
                f"method='fv' takes no options; got {sorted(options)}."
            )
        return _laplacian_fv(ds, variable)
    req = _hessian_request(ds, method, options, topo0)
    topo = topology(ds)
    field = core._field(ds, variable)
    if not core._is_dask(field):
        core.check_finite(np.asarray(field.values), variable)
    from .kernels.operators import quantity_matrix

    assert req.method is not None
    est, _ = estimate(field, topo, req, quantity_matrix(req.method, "laplacian", topo.ndim))
    res = core._label(est, field, topo, req, name=f"laplacian_{variable}",
                      long_name="Laplacian of {label}", unit_power=2, quantity_dim=None)
    return res


def _hessian_request(ds: xr.Dataset, method: Any, options: dict[str, Any], d: int) -> Request:
    with_hessian = [m for m, spec in METHODS.items() if "hessian" in spec.quantities]
    if not isinstance(method, str) or method not in METHODS or method not in with_hessian:
        raise ValueError(
            f"laplacian(method={method!r}): expected 'fv' (finite volumes, on cells with "
            f"face_area and volume) or a method that fits the Hessian: {with_hessian}."
        )
    return resolve_request(d, method, None, None, None, np.nan, options, linear=True)


# ----------------------------------------------------------------- finite-volume geometry


def _require_geometry(ds: xr.Dataset, volume: bool, what: str) -> None:
    need = [FACE_AREA] + ([VOLUME] if volume else [])
    missing = [v for v in need if v not in ds.variables]
    if missing:
        dims = {FACE_AREA: "face_area(bin, nbr) (or face_area(edge) with a ragged table)",
                VOLUME: "volume(bin)"}
        raise TessellationError(
            f"{what} needs the cells' {' and '.join(dims[v] for v in need)}; the Dataset "
            f"has no {' and no '.join(repr(v) for v in missing)}. {_GEOMETRY_HINT}"
        )


def _face_dims_ok(topo: Topology, fa: xr.DataArray) -> None:
    want = (EDGE,) if topo.layout == "ragged" else (BIN, NBR)
    if set(fa.dims) != set(want):
        raise TessellationError(
            f"variable 'face_area' has dims {tuple(fa.dims)}; with this {topo.layout} "
            f"neighbour table it needs dims {want} (one entry per neighbour)."
        )
    if not np.issubdtype(fa.dtype, np.floating) and not np.issubdtype(fa.dtype, np.integer):
        raise TessellationError(f"variable 'face_area' has dtype {fa.dtype}; expected floats.")


def _edge_geometry(
    ds: xr.Dataset, topo: Topology, *, strict: bool, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``indptr, indices, area (E,), dist (E,)`` in memory. ``strict``: NaN face areas of
    real neighbours are an error (penalties); otherwise they stay NaN (the Laplacian is then
    undefined at that bin)."""
    from .topology import edge_values, table_csr

    _require_geometry(ds, volume=False, what=what)
    fa = ds[FACE_AREA]
    _face_dims_ok(topo, fa)
    indptr, indices = table_csr(topo)
    area = np.asarray(edge_values(topo, fa), dtype=np.float64)
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    c = np.asarray(topo.center.transpose(BIN, SPACE).values, dtype=np.float64)
    dist = _distance(c[indices], c[rows])
    _check_faces(area, dist, rows, indices, strict=strict, what=what)
    return indptr, indices, area, dist


def _distance(other: np.ndarray, own: np.ndarray) -> np.ndarray:
    off = other - own
    return np.sqrt((off * off).sum(axis=-1))


def _check_faces(area: np.ndarray, dist: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 *, strict: bool, what: str) -> None:
    bad = area < 0
    if bad.any():
        e = int(np.argmax(bad))
        raise TessellationError(
            f"variable 'face_area' holds {int(bad.sum())} negative value(s) (first: bin "
            f"{int(rows[e])}, neighbour {int(cols[e])}: {area[e]!r}); face areas are >= 0 "
            "(0 where cells touch at a corner). Recompute them."
        )
    if strict:
        nan = np.isnan(area)
        if nan.any():
            e = int(np.argmax(nan))
            raise TessellationError(
                f"{what}: variable 'face_area' is NaN for {int(nan.sum())} neighbour "
                f"pair(s) (first: bin {int(rows[e])}, neighbour {int(cols[e])}); every "
                "neighbour needs a face area (0 if the cells share no face). "
                + _GEOMETRY_HINT
            )
    zero = (dist == 0) & ~(area == 0)
    if zero.any():
        e = int(np.argmax(zero))
        raise TessellationError(
            f"bins {int(rows[e])} and {int(cols[e])} share a face but have the same center; "
            "a two-point flux needs distinct centers. Merge them."
        )


def _volume_values(ds: xr.Dataset, topo: Topology) -> np.ndarray:
    vol = ds[VOLUME]
    if vol.dims != (BIN,):
        raise TessellationError(
            f"variable 'volume' has dims {tuple(vol.dims)}; expected ('bin',)."
        )
    v = np.asarray(vol.values, dtype=np.float64)
    if (v < 0).any():
        i = int(np.argmax(v < 0))
        raise TessellationError(
            f"variable 'volume' holds {int((v < 0).sum())} negative value(s) (first at bin "
            f"{i}: {v[i]!r}); cell volumes are > 0. Recompute them."
        )
    return v


def _inverse_volume(v: np.ndarray) -> np.ndarray:
    ok = np.isfinite(v) & (v > 0)
    return np.where(ok, 1.0 / np.where(ok, v, 1.0), np.nan)


def _pad_float(indptr: np.ndarray, values: np.ndarray, width: int) -> np.ndarray:
    deg = np.diff(indptr)
    n = len(deg)
    out = np.full((n, width), np.nan)
    rows = np.repeat(np.arange(n), deg)
    slots = np.arange(len(values)) - np.repeat(indptr[:-1], deg)
    out[rows, slots] = values
    return out


def _fv_weights(area: np.ndarray, ids: np.ndarray, nbr_center: np.ndarray,
                center: np.ndarray) -> np.ndarray:
    """``A / d`` per (bin, slot) of a padded stencil, 0 at padding (one function for the
    eager and the chunked paths: the same arithmetic)."""
    ids = np.asarray(ids)
    present = ids >= 0
    dist = _distance(np.asarray(nbr_center, dtype=np.float64),
                     np.asarray(center, dtype=np.float64)[:, None, :])
    area = np.asarray(area, dtype=np.float64)
    use = present & (dist > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(use, area / np.where(use, dist, 1.0), 0.0)
    bad = present & (dist == 0) & ~(area == 0)
    if bad.any():
        raise TessellationError(
            "two neighbouring bins share a face but have the same center; a two-point flux "
            "needs distinct centers. Merge them."
        )
    neg = present & (area < 0)
    if neg.any():
        raise TessellationError(
            f"variable 'face_area' holds {int(neg.sum())} negative value(s); face areas are "
            ">= 0. Recompute them."
        )
    return w


def _fv_kernel(values: np.ndarray, nbr_values: np.ndarray, w: np.ndarray,
               inv_vol: np.ndarray) -> np.ndarray:
    """``(1/V) sum_slots w (u_k - u_i)``, slot by slot; faces towards missing values (and
    padding) are left out, a missing own value gives NaN."""
    v = np.asarray(values, dtype=np.float64)
    acc = np.zeros(np.broadcast_shapes(v.shape, np.shape(inv_vol)))
    k = w.shape[-1]
    for s in range(k):
        nv = nbr_values[..., s]
        term = w[:, s] * (nv - v)
        acc = acc + np.where(np.isnan(nv), 0.0, term)
    return np.where(np.isnan(v), np.nan, acc * inv_vol)


def _eager_fv(values: np.ndarray, *, ids: np.ndarray, w: np.ndarray, inv_vol: np.ndarray,
              var: Hashable) -> np.ndarray:
    """apply_ufunc kernel with bin as a core dim: gathers one slot at a time."""
    v = np.asarray(values, dtype=np.float64)
    core.check_finite(v.reshape(-1, v.shape[-1]), var)
    safe = np.where(ids >= 0, ids, 0)
    v_shape = v.shape
    acc = np.zeros(v_shape)
    for s in range(ids.shape[1]):
        nv = np.where(ids[:, s] >= 0, v[..., safe[:, s]], np.nan)
        term = w[:, s] * (nv - v)
        acc = acc + np.where(np.isnan(nv), 0.0, term)
    return np.where(np.isnan(v), np.nan, acc * inv_vol)


def _chunked_fv(values: np.ndarray, nbr_values: np.ndarray, w: np.ndarray,
                inv_vol: np.ndarray, *, var: Hashable) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    core.check_finite(v.reshape(-1, v.shape[-1]), var)
    return _fv_kernel(v, nbr_values, w, inv_vol)


def _padded_face_area(topo: Topology, fa: xr.DataArray) -> tuple[xr.DataArray, int]:
    """face_area as ``(bin, nbr)`` (a ragged table's padded to its widest row)."""
    if topo.layout == "ragged":
        assert topo.count is not None
        count = np.asarray(topo.count.values)
        indptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
        width = int(count.max(initial=0))
        return xr.DataArray(_pad_float(indptr, np.asarray(fa.values, np.float64), width),
                            dims=(BIN, NBR)), width
    return fa.transpose(BIN, NBR), int(topo.neighbours.sizes[NBR])


def _laplacian_fv(ds: xr.Dataset, variable: Hashable) -> xr.DataArray:
    _require_geometry(ds, volume=True, what="laplacian(method='fv')")
    topo = topology(ds)
    field = core._field(ds, variable)
    if not core._is_dask(field):
        core.check_finite(np.asarray(field.values), variable)
    fa = ds[FACE_AREA]
    _face_dims_ok(topo, fa)
    vol = ds[VOLUME]
    if vol.dims != (BIN,):
        raise TessellationError(
            f"variable 'volume' has dims {tuple(vol.dims)}; expected ('bin',)."
        )
    req = _FVRequest(None, None, {}, None, np.nan, notes=_FV_NOTE)
    if field.chunks is not None:
        chunks = tuple(int(c) for c in field.chunks[field.get_axis_num(BIN)])
    else:
        chunks = core._bin_chunks(topo.center, topo.neighbours, core._count(topo)) or (0,)
    batch = [dim for dim in field.dims if dim != BIN]
    if len(chunks) == 1:
        from .kernels.stencil import pad_rows
        from .topology import table_csr

        indptr, indices = table_csr(topo)
        ids = (np.asarray(topo.neighbours.transpose(BIN, NBR).values) if topo.layout == "padded"
               else pad_rows(indptr, indices))
        area, _ = _padded_face_area(topo, fa)
        c = np.asarray(topo.center.transpose(BIN, SPACE).values, dtype=np.float64)
        safe = np.where(ids >= 0, ids, 0)
        nbr_c = np.where((ids >= 0)[..., None], c[safe], np.nan)
        w = _fv_weights(np.asarray(area.values), ids, nbr_c, c)
        inv = _inverse_volume(_volume_values(ds, topo))
        out = xr.apply_ufunc(
            _eager_fv, field, input_core_dims=[[BIN]], output_core_dims=[[BIN]],
            kwargs=dict(ids=ids, w=w, inv_vol=inv, var=variable), dask="parallelized",
            output_dtypes=[np.float64],
        )
    else:
        out = _laplacian_fv_chunked(field, topo, fa, vol, chunks, variable)
    out = out.expand_dims(_Q, axis=-1).transpose(*batch, BIN, _Q)
    return core._label(out, field, topo, req, name=f"laplacian_{variable}",
                       long_name="Laplacian of {label}", unit_power=2, quantity_dim=None)


def _laplacian_fv_chunked(field: xr.DataArray, topo: Topology, fa: xr.DataArray,
                          vol: xr.DataArray, chunks: tuple[int, ...], var: Hashable
                          ) -> xr.DataArray:
    import dask.array as da

    from .chunked.gather import gather_plan, gather_values

    plan = gather_plan(topo, Rings(1), chunks, False)
    k = plan.width
    field = core._along_bin(field, chunks)
    batch = [dim for dim in field.dims if dim != BIN]
    field = field.transpose(*batch, BIN)
    nv = gather_values(plan, field.data)
    center = core._along_bin(topo.center.transpose(BIN, SPACE), chunks).data
    if topo.layout == "ragged":
        area = _ragged_area_blocks(topo, fa, chunks, k)
    else:
        area = core._along_bin(fa.transpose(BIN, NBR), chunks).data
        area = area.rechunk((chunks, (k,)))
    w = da.blockwise(_fv_weights, "ik", area, "ik", plan.ids, "ik", plan.center, "ikj",
                     center, "ij", dtype=np.float64, concatenate=True)
    v = core._along_bin(vol, chunks).data
    inv = v.map_blocks(_checked_inverse_volume, dtype=np.float64)
    kdim = "_xtramgrad_face"
    args = [
        field,
        xr.DataArray(nv, dims=(*batch, BIN, kdim)),
        xr.DataArray(w, dims=(BIN, kdim)),
        xr.DataArray(inv, dims=(BIN,)),
    ]
    return xr.apply_ufunc(
        _chunked_fv, *args, input_core_dims=[[], [kdim], [kdim], []],
        output_core_dims=[[]], kwargs=dict(var=var), dask="parallelized",
        output_dtypes=[np.float64],
    )


def _checked_inverse_volume(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if (v < 0).any():
        raise TessellationError(
            f"variable 'volume' holds {int((v < 0).sum())} negative value(s); cell volumes "
            "are > 0. Recompute them."
        )
    return _inverse_volume(v)


def _ragged_area_blocks(topo: Topology, fa: xr.DataArray, chunks: tuple[int, ...],
                        width: int) -> Any:
    """A ragged face_area(edge) as a (bin, width) dask array chunked like ``chunks``."""
    import dask
    import dask.array as da

    assert topo.count is not None
    count = np.asarray(topo.count.values)
    indptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    b = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    data = fa.data
    blocks = []
    for c in range(len(chunks)):
        lo, hi = int(b[c]), int(b[c + 1])
        ip = indptr[lo : hi + 1] - indptr[lo]
        part = data[int(indptr[lo]) : int(indptr[hi])]
        blk = dask.delayed(_pad_float)(ip, part, width)
        blocks.append(da.from_delayed(blk, shape=(hi - lo, width), dtype=np.float64))
    return da.concatenate(blocks, axis=0)


# --------------------------------------------------------------------------- operators


def _valid_patterns(vec: xr.DataArray | None, d: int) -> list[np.ndarray | None]:
    """Per component, the bins holding a value (the same in every slice), or None."""
    if vec is None:
        return [None] * d
    out: list[np.ndarray | None] = []
    for j in range(d):
        comp = vec.isel({COMP: j})
        n = comp.sizes[BIN]
        vals = np.asarray(comp.transpose(..., BIN).values, dtype=np.float64)
        ok = ~np.isnan(vals).reshape(-1, n)
        if not (ok == ok[:1]).all():
            raise TessellationError(
                f"component {j} of the vector field has different missing-value patterns "
                f"across its dims {tuple(x for x in comp.dims if x != BIN)}; the operator "
                "depends on the pattern. Select one slice first, e.g. .isel(time=0)."
            )
        out.append(ok[0])
    return out


def _component_gradients(ds: xr.Dataset, field: Any, req: Request) -> tuple[list[Any], int, int]:
    from .kernels.operators import operator

    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    d, n = topo.ndim, topo.n_bins
    vec = None if field is None else _vector(ds, field, topo)[0]
    valid = _valid_patterns(vec, d)
    arrays = core.topo_arrays(topo, labels)
    cache: dict[bytes | None, Any] = {}
    ops = []
    for ok in valid:
        key = None if ok is None else np.packbits(ok).tobytes()
        if key not in cache:
            cache[key] = operator(arrays, req, "gradient", ok)
        ops.append(cache[key])
    return ops, n, d


def _assemble(ops: list[Any], terms: list[list[tuple[float, int, int]]], n: int,
              d: int) -> Any:
    """The sparse map of sign * d(component)/d(axis) terms: row ``i * C + c`` (C output
    components), column ``k * d + j`` (component j at bin k)."""
    from scipy import sparse

    nout = len(terms)
    rows, cols, vals = [], [], []
    for c, group in enumerate(terms):
        for sign, axis, comp in group:
            g = ops[comp].tocoo()
            sel = g.row % d == axis
            i = g.row[sel] // d
            rows.append(i * nout + c)
            cols.append(g.col[sel] * d + comp)
            vals.append(sign * g.data[sel])
    return sparse.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n * nout, n * d),
    )


def div_operator(
    ds: xr.Dataset,
    field: Any = None,
    *,
    method: str = DEFAULT_METHOD,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    **options: Any,
) -> Any:
    """The divergence as a sparse matrix ``D`` of shape ``(n, n * d)``.

    ``D @ F.reshape(n * d)`` is :func:`div` of ``F`` for ``F`` an ``(n, d)`` array (bins,
    then components in the space order): column ``k * d + j`` is component ``j`` at bin
    ``k``, the bin-major order of the rows of :func:`xtramgrad.grad_operator`, so
    ``D @ (G @ u)`` is the divergence of the gradient. ``D`` is ``sum_j`` of the rows of
    component ``j`` of the gradient operator of component ``j``.

    Parameters
    ----------
    ds : xarray.Dataset
    field : vector field, optional
        As in :func:`div`; only its missing values (NaN, the same in every slice, per
        component) are read: they define the operator, as ``variable=`` does for
        :func:`xtramgrad.grad_operator`. By default every bin counts as measured.
    method, selection, selection_angle, eps, **options
        A registered linear method and its options (default ``"lsq2"``).

    Returns
    -------
    scipy.sparse.csr_array
        Where a derivative is undefined the row holds a NaN coefficient (on that bin's own
        column of the component), so products give NaN as :func:`div` does.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((5, 4))
    >>> D = xtramgrad.calculus.div_operator(ds)
    >>> D.shape
    (20, 40)
    >>> F = ds.center.values ** 2          # (x^2, y^2): divergence 2x + 2y
    >>> bool(np.allclose(D @ F.reshape(-1), 2 * ds.center.values.sum(axis=1)))
    True
    """
    req = _request(ds, method, selection, selection_angle, eps, dict(options), linear=True,
                   what="div_operator")
    ops, n, d = _component_gradients(ds, field, req)
    return _assemble(ops, [[(1.0, j, j) for j in range(d)]], n, d)


def curl_operator(
    ds: xr.Dataset,
    field: Any = None,
    *,
    method: str = DEFAULT_METHOD,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    **options: Any,
) -> Any:
    """The curl as a sparse matrix: ``(n, 2 n)`` in 2D, ``(3 n, 3 n)`` in 3D.

    Acting on ``F.reshape(n * d)`` (bin-major, as :func:`div_operator`). In 2D row ``i`` is
    ``dFy/dx - dFx/dy`` at bin ``i``; in 3D row ``i * 3 + c`` is component ``c`` of the
    curl at bin ``i`` (the layout of :func:`xtramgrad.grad_operator`'s rows), so
    ``(C @ F.reshape(-1)).reshape(n, 3)`` is :func:`curl` of ``F``.

    Parameters
    ----------
    ds, field, method, selection, selection_angle, eps, **options
        As in :func:`div_operator`.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((4, 4))
    >>> C = xtramgrad.calculus.curl_operator(ds)
    >>> x, y = ds.center.values.T
    >>> F = np.stack([-y, x], axis=1)      # a rotation: curl 2
    >>> C.shape, bool(np.allclose(C @ F.reshape(-1), 2.0))
    ((16, 32), True)
    """
    d = core._topology_ndim(ds)
    _check_curl_ndim(d)
    req = _request(ds, method, selection, selection_angle, eps, dict(options), linear=True,
                   what="curl_operator")
    ops, n, d = _component_gradients(ds, field, req)
    return _assemble(ops, _CURL_TERMS[d], n, d)


def laplacian_operator(
    ds: xr.Dataset,
    variable: Hashable | None = None,
    *,
    method: str = DEFAULT_METHOD,
    **options: Any,
) -> Any:
    r"""The Laplacian as a sparse ``(n, n)`` matrix: ``L @ u`` is :func:`laplacian` of ``u``.

    ``method="lsq2"``: row ``i`` holds the coefficients of the Hessian's trace of the
    quadratic fit of bin ``i``. ``method="fv"``: :math:`L = V^{-1} (C - \mathrm{diag}(C
    1))` with :math:`C_{ik} = A_{ik} / d_{ik}`, faces towards bins without a measurement
    left out. Rows where the Laplacian is undefined hold a NaN coefficient on the bin's
    own column.

    Parameters
    ----------
    ds : xarray.Dataset
    variable : str, optional
        A measurement whose missing values define the pattern (the same in every slice).
    method, **options
        As in :func:`laplacian`.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((5, 5), spacing=0.5)
    >>> L = xtramgrad.calculus.laplacian_operator(ds, method="fv")
    >>> L.shape, float(L[12, 12]), float(L[12, 13])
    ((25, 25), -16.0, 4.0)
    """
    d = core._topology_ndim(ds)
    valid = None
    if method == "fv":
        if options:
            raise ValueError(f"method='fv' takes no options; got {sorted(options)}.")
        topo = topology(ds)
        if variable is not None:
            valid = _scalar_pattern(ds, variable, topo)
        return _fv_operator(ds, topo, valid)
    from .kernels.operators import operator

    req = _hessian_request(ds, method, dict(options), d)
    topo = topology(ds)
    if variable is not None:
        valid = _scalar_pattern(ds, variable, topo)
    return operator(core.topo_arrays(topo, False), req, "laplacian", valid)


def _scalar_pattern(ds: xr.Dataset, variable: Hashable, topo: Topology) -> np.ndarray:
    field = core._field(ds, variable)
    n = topo.n_bins
    ok = ~np.isnan(np.asarray(field.transpose(..., BIN).values, dtype=np.float64)).reshape(-1, n)
    if not (ok == ok[:1]).all():
        raise TessellationError(
            f"variable {variable!r} has different missing-value patterns across its dims "
            f"{tuple(x for x in field.dims if x != BIN)}; the operator depends on the "
            "pattern. Select one slice, e.g. ds[var].isel(time=0)."
        )
    return ok[0]


def _fv_operator(ds: xr.Dataset, topo: Topology, valid: np.ndarray | None) -> Any:
    from scipy import sparse

    _require_geometry(ds, volume=True, what="laplacian_operator(method='fv')")
    indptr, indices, area, dist = _edge_geometry(ds, topo, strict=False,
                                                 what="laplacian_operator(method='fv')")
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    inv = _inverse_volume(_volume_values(ds, topo))
    ok = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(dist > 0, area / np.where(dist > 0, dist, 1.0), 0.0)
    coef = np.where(ok[indices], coef, 0.0)  # faces towards missing values: left out
    diag = np.zeros(n)
    np.add.at(diag, rows, coef)
    undefined = ~ok | np.isnan(inv) | np.isnan(diag)
    off = coef * inv[rows]
    dvals = -diag * inv
    off = np.where(undefined[rows], 0.0, off)
    dvals = np.where(undefined, np.nan, dvals)
    keep = off != 0
    r = np.concatenate([rows[keep], np.arange(n)])
    c = np.concatenate([indices[keep], np.arange(n)])
    v = np.concatenate([off[keep], dvals])
    return sparse.csr_array((v, (r, c)), shape=(n, n))


# --------------------------------------------------------------------------- penalties


def _weights(ds: xr.Dataset, weight: Any, n: int) -> np.ndarray:
    if weight is None:
        return np.ones(n)
    if isinstance(weight, str):
        if weight not in ds.variables:
            raise TessellationError(
                f"weight={weight!r}: the Dataset has no such variable; pass the name of a "
                "variable (bin), a DataArray, an array of n values, or None."
            )
        weight = ds[weight]
    if isinstance(weight, xr.DataArray):
        if weight.dims != (BIN,):
            raise TessellationError(
                f"weight has dims {tuple(weight.dims)}; expected ('bin',): one weight per bin."
            )
        w = np.asarray(weight.values, dtype=np.float64)
    elif isinstance(weight, numbers.Real) and not isinstance(weight, bool):
        w = np.full(n, float(weight))
    else:
        w = np.asarray(weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weight has shape {w.shape}; expected ({n},): one weight per bin.")
    bad = ~(np.isfinite(w) & (w >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"weight holds {int(bad.sum())} value(s) that are negative, infinite or NaN "
            f"(first at bin {i}: {w[i]!r}); expected finite weights >= 0 (0 leaves a bin out)."
        )
    return w


def _pairs_laplacian(n: int, rows: np.ndarray, cols: np.ndarray, coef: np.ndarray,
                     how: str) -> Any:
    """``sum over unordered pairs c_ik (u_i - u_k)^2`` as a symmetric sparse matrix: the
    directed entries of a pair are averaged (``how="mean"``: one face seen from both
    sides) or added (``how="sum"``: two terms)."""
    from scipy import sparse

    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    key = lo.astype(np.int64) * n + hi
    uniq, inv = np.unique(key, return_inverse=True)
    total = np.bincount(inv, weights=coef, minlength=len(uniq)).astype(np.float64)
    if how == "mean":
        total = total / np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    a, b = uniq // n, uniq % n
    diag = np.bincount(a, weights=total, minlength=n) + np.bincount(b, weights=total,
                                                                    minlength=n)
    r = np.concatenate([a, b, np.arange(n)])
    c = np.concatenate([b, a, np.arange(n)])
    v = np.concatenate([-total, -total, diag])
    return sparse.csr_array((v, (r, c)), shape=(n, n))


def _bin_volumes(ds: xr.Dataset, topo: Topology, what: str, fix: str) -> np.ndarray:
    v = _volume_values(ds, topo)
    bad = np.isnan(v)
    if bad.any():
        raise TessellationError(
            f"{what}: variable 'volume' is NaN at {int(bad.sum())} bin(s) (first: bin "
            f"{int(np.argmax(bad))}; e.g. unbounded border cells of a TRamWAy partition). "
            f"{fix}"
        )
    return v


def smoothness_penalty(
    ds: xr.Dataset,
    form: str = "two_point",
    *,
    method: str | None = None,
    weight: Any = None,
    rgrad: str | None = None,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    **options: Any,
) -> Any:
    r"""A smoothness penalty: a symmetric positive semi-definite sparse matrix ``P``.

    ``u @ P @ u`` approximates the Dirichlet energy
    :math:`\int_\Omega w\, |\nabla u|^2 \,dx` (``w`` the optional per-bin ``weight``), the
    smoothing prior of DV-like inferences. ``P @ 1 = 0`` (to rounding): constants cost
    nothing.

    ``form="two_point"`` (default; needs ``face_area``)
        The finite-volume Dirichlet form, each face once,

        .. math:: u^T P u = \sum_{f = \{i, k\}} w_f \frac{A_f}{d_f} (u_k - u_i)^2,
                  \qquad w_f = (w_i + w_k) / 2.

        On Voronoi cells (faces perpendicular to the segment between the centers) it
        converges to the integral: measured ratio 0.999-1.000 at 10^5 bins on random,
        k-means-like and jittered meshes (``docs/calculus.md``). It **sees checkerboard
        modes** (``(-1)^{i+j}`` on a grid costs 4 per face). Cost: one entry per
        neighbour pair plus the diagonal (the table's 1-ring): the cheapest.
    ``form="gradient"`` (needs ``volume``)
        :math:`u^T P u = \sum_i w_i V_i |G u|_i^2`, ``P = G^T W G`` with ``G`` the
        gradient operator of any registered linear method (``method=``, default ``"lsq2"``;
        see :func:`xtramgrad.grad_operator`; components that are undefined are left out).
        Every centred gradient is **blind to checkerboards** (on a grid, the checkerboard
        has zero centred differences: only border rows see it), so this form leaves such
        modes unpenalised. Cost: ``P`` couples the bins of two stencils: the 2-ring for
        1-ring methods (about 19 entries per row in 2D), the 4-ring for ``lsq2`` (about 60).
    ``form="tramway"``
        TRamWAy 0.7's own smoothing prior of its ``d`` / ``dd`` / ``dv`` inference
        (``diffusivity_prior`` / ``potential_prior``, divided by the prior's factor), kept
        for parity: :math:`u^T P u = \sum_i w_i v_i |\mathrm{grad1}(u)_i|^2`, TRamWAy's
        ``grad_sum`` over ``Distributed.grad`` (``grad1``, default ``selection_angle=0.9``;
        ``selection=``, ``selection_angle=``, ``eps=`` as in :func:`xtramgrad.grad`).
        ``v_i`` is the bin's volume if the Dataset has one and it is not 0, else 1 (as
        ``grad_sum`` does). With ``rgrad="delta0"`` (TRamWAy's ``rgrad='delta0'``,
        ``'delta'`` or ``'delta1'``, which all call ``local_variation``, i.e. ``delta0``):
        :math:`\sum_i w_i v_i \frac{1}{k_i} \sum_{k \in N_i} (u_k - u_i)^2 / d_{ik}^2`
        (``k_i`` neighbours). grad1 on irregular meshes overestimates the integral by 4-22%
        and is blind to checkerboards; a component grad1 cannot determine (no neighbour on
        either side: TRamWAy's objective would be NaN) is left out. Cost: the 2-ring.

    Parameters
    ----------
    ds : xarray.Dataset
    form : {"two_point", "gradient", "tramway"}
    method : str, optional
        ``form="gradient"``: a registered linear method (default ``"lsq2"``). Not taken by
        the other forms.
    weight : str, DataArray, array-like (n,) or float, optional
        Per-bin weights ``w_i >= 0`` (e.g. TRamWAy's ``prior_include`` as 0 / 1).
    rgrad : {None, "grad1", "delta0"}, optional
        ``form="tramway"`` only: which TRamWAy regularisation gradient.
    selection, selection_angle, eps, **options
        The gradient method's options (``form="gradient"`` and ``"tramway"``).

    Returns
    -------
    scipy.sparse.csr_array
        ``(n, n)``, symmetric, positive semi-definite.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((40, 40), spacing=1 / 40, origin=1 / 80)  # cells tile [0, 1]^2
    >>> x, y = ds.center.values.T
    >>> u = np.cos(np.pi * x)              # integral of |grad u|^2 over the box: pi^2 / 2
    >>> P = xtramgrad.calculus.smoothness_penalty(ds)
    >>> round(float(u @ P @ u / (np.pi**2 / 2)), 4)
    0.9995
    >>> bool(abs(P - P.T).max() == 0), bool(np.abs(P @ np.ones(1600)).max() < 1e-12)
    (True, True)
    """
    if form not in PENALTY_FORMS:
        raise ValueError(f"form={form!r}; expected one of {list(PENALTY_FORMS)}.")
    if rgrad is not None and form != "tramway":
        raise ValueError(f"rgrad={rgrad!r} applies to form='tramway' only; drop it.")
    sel_given = selection is not None or selection_angle is not None or eps is not None
    d = core._topology_ndim(ds)
    if form == "two_point":
        if method is not None or sel_given or options:
            raise ValueError(
                "form='two_point' takes no gradient method or options (it uses the face "
                "areas and center distances only); drop method=/selection options, or use "
                "form='gradient'."
            )
        topo = topology(ds)
        w = _weights(ds, weight, topo.n_bins)
        indptr, indices, area, dist = _edge_geometry(ds, topo, strict=True,
                                                     what="smoothness_penalty('two_point')")
        n = topo.n_bins
        rows = np.repeat(np.arange(n), np.diff(indptr))
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = np.where(dist > 0, area / np.where(dist > 0, dist, 1.0), 0.0)
        coef = coef * (w[rows] + w[indices]) / 2
        return _pairs_laplacian(n, rows, indices, coef, "mean")
    if form == "gradient":
        if VOLUME not in ds.variables:
            raise TessellationError(
                "smoothness_penalty(form='gradient') weights each bin by its volume, and "
                f"the Dataset has no 'volume' variable (bin). {_GEOMETRY_HINT}"
            )
        req = _request(ds, method or DEFAULT_METHOD, selection, selection_angle, eps,
                       dict(options), linear=True, what="smoothness_penalty")
        topo = topology(ds)
        vol = _bin_volumes(
            ds, topo, "smoothness_penalty(form='gradient')",
            "Fill them, e.g. ds['volume'] = ds.volume.fillna(ds.volume.median()), or use "
            "form='two_point'.",
        )
        return _gram(ds, req, vol * _weights(ds, weight, topo.n_bins), d)
    # tramway
    if rgrad not in _RGRAD:
        raise ValueError(
            f"rgrad={rgrad!r}; expected None or one of {sorted(k for k in _RGRAD if k)} "
            "(TRamWAy's names: 'grad1' and 'gradn' both use grad1, 'delta', 'delta0' and "
            "'delta1' all use delta0)."
        )
    if method not in (None, "grad1"):
        raise ValueError(
            f"form='tramway' uses TRamWAy's grad1 (its Distributed.grad): method={method!r} "
            "is not taken. For another method use form='gradient'."
        )
    topo = topology(ds)
    n = topo.n_bins
    vol = np.ones(n)
    if VOLUME in ds.variables:
        v = _bin_volumes(
            ds, topo, "smoothness_penalty(form='tramway')",
            "TRamWAy weights each bin by its cell's volume: fill them (TRamWAy's own "
            "value, or e.g. ds.volume.fillna(ds.volume.median())), or drop the variable "
            "to weight every bin by 1.",
        )
        vol = np.where(v != 0, v, 1.0)
    w = vol * _weights(ds, weight, n)
    if _RGRAD[rgrad] == "delta0":
        if sel_given or options:
            raise ValueError("rgrad='delta0' takes no selection options; drop them.")
        from .topology import table_csr

        indptr, indices = table_csr(topo)
        deg = np.diff(indptr)
        rows = np.repeat(np.arange(n), deg)
        c = np.asarray(topo.center.transpose(BIN, SPACE).values, dtype=np.float64)
        dist = _distance(c[indices], c[rows])
        coef = w[rows] / deg[rows] / (dist * dist)
        return _pairs_laplacian(n, rows, indices, coef, "sum")
    req = _request(ds, "grad1", selection, selection_angle, eps, dict(options), linear=True,
                   what="smoothness_penalty")
    return _gram(ds, req, w, d)


def _gram(ds: xr.Dataset, req: Request, w: np.ndarray, d: int) -> Any:
    """``G^T diag(w per bin) G`` over the defined rows of the gradient operator."""
    from scipy import sparse

    from .kernels.operators import operator

    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    g = operator(core.topo_arrays(topo, labels), req, "gradient", None)
    undefined = np.isnan(g @ np.ones(g.shape[1]))
    rw = np.where(undefined, 0.0, np.repeat(w, d))
    g = g.copy()
    g.data = np.where(np.isnan(g.data), 0.0, g.data)
    p = g.T @ (sparse.diags_array(rw) @ g)
    p = (p + p.T) * 0.5
    return sparse.csr_array(p)

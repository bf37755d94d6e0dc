"""Gradient kernels: pure numpy (and optional numba), no xarray, no dask.

Every built-in method is a *local linear map*: for a fixed tessellation, options and
missing-value pattern, the estimate of bin ``i`` is::

    g[i, q] = sum_e w[e, q] * y[stencil[i][e]]  +  c0[i, q] * y[i]

where ``e`` runs over the bin's stencil (its table neighbours, or a wider stencil for some
methods). The kernels compute the weights ``w`` and ``c0`` from the geometry, then apply
them to any number of fields, time steps or samples.

Modules
-------
* :mod:`.stencil`: which bins enter each bin's fit (rings, radius), in a fixed order;
* :mod:`.tramway` (grad1, gradn) and :mod:`.fits` (least-squares fits): the numpy weight
  functions, the reference;
* :mod:`.methods`: the method registry;
* :mod:`.engine`: running a method (numpy engine, compiled dispatch, backends);
* :mod:`._numba` / :mod:`.compiled`: the optional compiled kernels (``fast`` extra).

Shapes follow the "core dimensions last" habit: values ``(..., n)``, centers ``(n, d)``,
neighbour tables ``(n, k)`` padded with -1 (or CSR ``(indptr, indices)``), results
``(..., n, d)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..selection import DEFAULT_SELECTION_ANGLE, Selection
from .engine import get_backend, missing_patterns, numba_available, run, set_backend
from .fits import FLAG_FALLBACK, FLAG_OK, FLAG_UNDEFINED, Weights
from .job import Gathered, Job
from .methods import METHODS, Method, register_method, resolve_options, unregister_method
from .stencil import Neighbourhood, Radius, Rings

__all__ = [
    "Selection",
    "Method",
    "METHODS",
    "register_method",
    "unregister_method",
    "resolve_options",
    "Weights",
    "Neighbourhood",
    "Rings",
    "Radius",
    "Job",
    "Gathered",
    "FLAG_OK",
    "FLAG_FALLBACK",
    "FLAG_UNDEFINED",
    "local_gradient",
    "gather_neighbourhoods",
    "build_stencil",
    "run",
    "missing_patterns",
    "set_backend",
    "get_backend",
    "numba_available",
]


def _flat(values: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(-1, values.shape[-1]), values.shape[:-1]


def gather_neighbourhoods(
    centers: np.ndarray, values: np.ndarray, neighbours: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """Padded views of each bin's neighbourhood, as passed to vectorised user functions.

    Returns a dict with ``center`` (n, d), ``value`` (S, n), ``neighbour_center`` (n, k, d),
    ``neighbour_value`` (S, n, k) and ``neighbour_mask`` (S, n, k), where padding and
    missing neighbours are masked out (their values are NaN, their centers NaN at padding).
    """
    present = neighbours >= 0
    safe = np.where(present, neighbours, 0)
    nbr_center = np.where(present[:, :, None], centers[safe], np.nan)
    nbr_value = np.where(present[None], values[:, safe], np.nan)
    return {
        "center": centers[targets],
        "value": values[:, targets],
        "neighbour_center": nbr_center,
        "neighbour_value": nbr_value,
        "neighbour_mask": ~np.isnan(nbr_value),
    }


def call_user_function(
    func: Callable[..., Any], center: np.ndarray, value: np.ndarray,
    nbr_center: np.ndarray, nbr_value: np.ndarray,
) -> np.ndarray:
    """Run a vectorised user gradient on gathered neighbourhoods; check its output shape;
    NaN where the bin's own value is missing."""
    s_count, n = value.shape
    d = center.shape[1]
    out = np.asarray(
        func(
            center=center, value=value, neighbour_center=nbr_center,
            neighbour_value=nbr_value, neighbour_mask=~np.isnan(nbr_value),
        ),
        dtype=np.float64,
    )
    if out.shape != (s_count, n, d):
        raise ValueError(
            f"the user gradient function returned shape {out.shape}, expected "
            f"(slices, bins, space) = {(s_count, n, d)}"
        )
    return np.where(np.isnan(value)[:, :, None], np.nan, out)


def local_gradient(
    values: np.ndarray,
    centers: np.ndarray,
    neighbours: np.ndarray,
    *,
    selection: Selection | None = None,
    method: str | Callable[..., np.ndarray] = "grad1",
    targets: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    na: float = np.nan,
    backend: str | None = None,
    **options: Any,
) -> np.ndarray:
    """Gradient of ``values`` on a tessellation given as plain arrays.

    Parameters
    ----------
    values : (..., m) float
        Measurements at the bins; NaN marks a missing measurement.
    centers : (m, d) float
    neighbours : (n, k) int
        Neighbour positions (into the m bins) padded with -1, one row per output bin.
    selection : Selection, optional
        Neighbour-selection rule of grad1 (default: cone, selection_angle 0.9).
    method : str or callable
        A registered method (:data:`METHODS`) or a vectorised user gradient (see
        :func:`xtramgrad.grad`).
    targets : (n,) int, optional
        Position of each output bin among the m bins (default ``arange(n)``, then m = n).
    labels : (n, k) int, optional
        Signed edge labels for ``Selection("labels")``.
    na : float
        Value of a component the data do not determine (no neighbour on either side).
    backend : {"auto", "numpy", "numba"}, optional
        Kernels (default: :func:`get_backend`). Both agree to rounding.
    **options
        The method's options (e.g. ``power=`` for ``"lsq"``).

    Returns
    -------
    (..., n, d) float64

    Examples
    --------
    A 1D chain with a quadratic field: grad1's three-point fit is exact inside.

    >>> x = np.arange(5.0)[:, None]
    >>> table = np.array([[1, -1], [0, 2], [1, 3], [2, 4], [3, -1]])
    >>> g = local_gradient(x[:, 0] ** 2, x, table, selection=Selection("cone", 0.9))
    >>> g[:, 0].tolist()
    [1.0, 2.0, 4.0, 6.0, 7.0]
    """
    flat, batch = _flat(values)
    centers = np.asarray(centers, dtype=np.float64)
    neighbours = np.asarray(neighbours)
    n, d = neighbours.shape[0], centers.shape[1]
    if callable(method):
        t = np.arange(n) if targets is None else np.asarray(targets)
        hood = gather_neighbourhoods(centers, flat, neighbours, t)
        out = call_user_function(
            method, hood["center"], hood["value"], hood["neighbour_center"],
            hood["neighbour_value"],
        )
        return out.reshape(batch + (n, d))
    try:
        m = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown gradient method {method!r}: expected one of {sorted(METHODS)} or a "
            "callable"
        ) from None
    opts = resolve_options(m, options)
    sel = selection if selection is not None else Selection("cone", DEFAULT_SELECTION_ANGLE)
    spec = m.stencil_for(d, opts)
    combine = np.eye(d, m.n_quantities(d))
    if targets is not None:
        t = np.asarray(targets, dtype=np.intp)
        hood = gather_neighbourhoods(centers, flat, neighbours, t)
        lab = None if labels is None else np.where(neighbours >= 0, labels, 0)
        ring = np.ones(neighbours.shape, dtype=np.int8)
        if not (isinstance(spec, Rings) and spec.depth == 1):
            raise ValueError(f"targets= supports 1-ring methods only, not {method!r}")
        job = Job(hood["value"], None, hood["center"], None, np.zeros(0, np.int64), None,
                  Gathered(hood["neighbour_value"], None, hood["neighbour_center"], lab, ring),
                  spec, opts, sel, float(na), combine)
    else:
        job = Job(flat, None, centers, neighbours, np.zeros(0, np.int64), labels, None, spec,
                  opts, sel, float(na), combine)
    out, _ = run(job, m, backend)
    return out.reshape(batch + (n, d))


class Stencil(NamedTuple):
    """The 1-ring of a block of bins with the sides a selection rule gives each neighbour
    (see :func:`build_stencil`)."""

    indptr: np.ndarray
    rows: np.ndarray
    dst: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    below: np.ndarray
    above: np.ndarray


def build_stencil(
    centers: np.ndarray,
    neighbours: np.ndarray,
    selection: Selection,
    targets: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> Stencil:
    """The 1-ring of each bin and the side each neighbour falls on, per axis.

    This is the decision grad1 uses (:attr:`xtramgrad.selection.Rule.sides`).

    Examples
    --------
    >>> centers = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    >>> table = np.array([[1, 2, 3], [0, -1, -1], [0, -1, -1], [0, -1, -1]])
    >>> st = build_stencil(centers, table, Selection("cone", 0.9))
    >>> st.below[:3].astype(int).tolist(), st.above[:3].astype(int).tolist()
    ([[0, 0], [1, 0], [0, 0]], [[1, 0], [0, 0], [0, 1]])
    """
    centers = np.asarray(centers, dtype=np.float64)
    neighbours = np.asarray(neighbours)
    n = neighbours.shape[0]
    t = np.arange(n, dtype=np.intp) if targets is None else np.asarray(targets, dtype=np.intp)
    present = neighbours >= 0
    rows, slots = np.nonzero(present)
    dst = neighbours[rows, slots].astype(np.intp)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    own = centers[t[rows]]
    other = centers[dst]
    rule = selection.rule
    lab = None
    if rule.needs_labels:
        if labels is None:
            raise ValueError(f"Selection({rule.name!r}) needs the edge labels")
        lab = np.asarray(labels)[rows, slots]
    below, above = rule.sides(other - own, own, other, lab, selection.value)
    return Stencil(indptr, rows.astype(np.intp), dst, t, other - own, below, above)

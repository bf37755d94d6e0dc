"""Independent-truth harness: TRamWAy 0.7's own gradients on plain numpy inputs.

This module is a helper imported by tests (it is not a test file).  It never
re-implements TRamWAy: it builds a real :class:`tramway.inference.base.Distributed`
from a table of bin centers and a neighbour table, and calls TRamWAy's functions
the way ``tramway.inference.gradient.gradient_map`` calls them.

Conventions shared by all functions:

* ``centers``: float array (n, d), d in {1, 2, 3};
* ``neighbours``: int array (n, k), zero-based positions of the neighbours of each
  bin, padded with -1 (padding may appear anywhere in a row; the order of the
  valid entries is kept, it is the order TRamWAy iterates over);
* ``values``: float array (n,) or (n, T); NaN means "no measurement in this bin"
  (TRamWAy's ``gradient_map`` only puts bins that have the feature into ``X``).
  With a time axis every slice is processed independently.

Bins to which TRamWAy gives no gradient (missing measurement, ``None`` returned,
exception raised) get all-NaN rows.

TRamWAy is imported lazily so that importing this module (e.g. during pytest's
``--doctest-modules`` collection) works without TRamWAy installed.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = [
    "TESSELLATIONS_FILE",
    "build_distributed",
    "load_tramway_counts",
    "load_tramway_tessellation",
    "neighbour_table_from_csr",
    "tramway_default_kwargs",
    "tramway_grad1",
    "tramway_gradn_corrected",
    "tramway_gradn_raw",
    "tramway_tessellation_names",
]

TESSELLATIONS_FILE = Path(__file__).resolve().parent / "data" / "tramway_tessellations.npz"


# ----------------------------------------------------------------------------- inputs


def _check_geometry(centers, neighbours):
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] not in (1, 2, 3):
        raise ValueError(f"centers must be (n, d) with d in 1..3, got {centers.shape}")
    n = centers.shape[0]
    neighbours = np.asarray(neighbours)
    if neighbours.ndim != 2 or neighbours.shape[0] != n:
        raise ValueError(f"neighbours must be (n, k) with n={n}, got {neighbours.shape}")
    if not np.issubdtype(neighbours.dtype, np.integer):
        raise TypeError("neighbours must be an integer array")
    neighbours = neighbours.astype(np.int64)
    if np.any(neighbours >= n) or np.any(neighbours < -1):
        raise ValueError("neighbour positions must be in [0, n) or -1 (padding)")
    return centers, neighbours


def _check_values(values, n):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2) or values.shape[0] != n:
        raise ValueError(f"values must be (n,) or (n, T) with n={n}, got {values.shape}")
    return values


def _slices(values):
    """Yield (t, 1-D slice) pairs; t is None when values has no time axis."""
    if values.ndim == 1:
        yield None, values
    else:
        for t in range(values.shape[1]):
            yield t, values[:, t]


def build_distributed(centers, neighbours):
    """A real ``tramway.inference.base.Distributed`` for these bins.

    Cells are ``tramway.inference.base.Locations`` holding a single dummy location
    (at the center; only ``center`` and ``dim`` matter to the gradients), keyed
    0..n-1.  The adjacency is a BOOLEAN csr matrix whose rows list the neighbours
    in table order, as TRamWAy's ``distributed`` produces for every tessellation
    method (``simplified_adjacency`` always returns bool data), so TRamWAy takes
    its geometric branches in ``neighbours_per_axis``.
    """
    import scipy.sparse as sparse
    from tramway.inference.base import Distributed, Locations

    centers, neighbours = _check_geometry(centers, neighbours)
    n, d = centers.shape
    valid = neighbours >= 0
    indices = neighbours[valid]  # row-major: keeps the order within each row
    indptr = np.r_[0, np.cumsum(valid.sum(axis=1))]
    adjacency = sparse.csr_matrix(
        (np.ones(indices.size, dtype=bool), indices, indptr), shape=(n, n)
    )
    cells = OrderedDict()
    for i in range(n):
        center = centers[i].copy()
        cell = Locations(i, np.r_[center, 0.0][np.newaxis, :], center=center)
        cell.time_col = d
        cell.space_cols = np.arange(d)
        cells[i] = cell
    return Distributed(cells, adjacency)


def neighbour_table_from_csr(adjacency, rows=None):
    """Padded (-1) zero-based neighbour table from a csr matrix, keeping row order.

    If ``rows`` (sorted array of kept row/column indices) is given, the matrix is
    restricted to those rows and columns and re-indexed to 0..len(rows)-1.
    """
    adjacency = adjacency.tocsr()
    if rows is None:
        rows = np.arange(adjacency.shape[0])
    rows = np.asarray(rows)
    position = np.full(adjacency.shape[1], -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    lists = []
    for r in rows:
        cols = adjacency.indices[adjacency.indptr[r] : adjacency.indptr[r + 1]]
        cols = position[cols]
        lists.append(cols[cols >= 0])
    k = max((len(c) for c in lists), default=0)
    table = np.full((rows.size, k), -1, dtype=np.int64)
    for i, c in enumerate(lists):
        table[i, : len(c)] = c
    return table


# ----------------------------------------------------------------------------- grad1


def tramway_default_kwargs(**kwargs):
    """What ``tramway.inference.gradient.get_grad_kwargs`` resolves the options to.

    E.g. no option gives ``{'selection_angle': 0.9}``, ``epsilon=0.1`` gives
    ``{'eps': 0.1}`` (options named as ``infer`` takes them: ``grad_selection_angle``,
    ``grad_epsilon``/``epsilon``, ``compatibility``).
    """
    from tramway.inference.gradient import get_grad_kwargs

    return get_grad_kwargs(**kwargs)


def _reverse_index(present):
    index = np.flatnonzero(present)
    reverse_index = np.full(present.size, -1, dtype=int)
    reverse_index[index] = np.arange(index.size)
    return index, reverse_index


def _run_per_bin(dist, values, d, call):
    """Shared loop: gradient_map-style calls for every slice of ``values``."""
    n = values.shape[0]
    out = np.full(values.shape + (d,), np.nan)
    previous = None
    for t, y in _slices(values):
        present = ~np.isnan(y)
        # TRamWAy caches per cell the neighbours filtered with the index map;
        # the cache is only valid for one missing-value pattern.
        if previous is None or not np.array_equal(previous, present):
            dist.clear_caches()
            previous = present
        index, reverse_index = _reverse_index(present)
        X = y[index]
        for i in index:
            try:
                g = call(dist, int(i), X, reverse_index)
            except (SystemExit, KeyboardInterrupt):
                raise
            except Exception:
                g = None
            if g is None:
                continue
            g = np.asarray(g, dtype=np.float64).reshape(-1)
            if g.size != d:
                raise AssertionError(f"TRamWAy returned {g.size} components for bin {i}")
            if t is None:
                out[i] = g
            else:
                out[i, t] = g
    assert out.shape[0] == n
    return out


def tramway_grad1(centers, neighbours, values, *, selection_angle=None, eps=None, na=np.nan):
    """TRamWAy 0.7's ``grad1`` for every bin: (n, d), or (n, T, d) for (n, T) values.

    ``selection_angle`` / ``eps`` / ``na`` are passed to ``grad1`` exactly (``None``
    is grad1's own default, i.e. InferenceMAP quadrants in any d; note that
    ``infer`` would have resolved "nothing" to ``selection_angle=0.9``, see
    :func:`tramway_default_kwargs`).
    """
    centers, neighbours = _check_geometry(centers, neighbours)
    values = _check_values(values, centers.shape[0])
    dist = build_distributed(centers, neighbours)
    kwargs = dict(eps=eps, selection_angle=selection_angle, na=na)

    def call(dist, i, X, reverse_index):
        return dist.grad(i, X, reverse_index, **kwargs)

    return _run_per_bin(dist, values, centers.shape[1], call)


# ----------------------------------------------------------------------------- gradn


def tramway_gradn_raw(centers, neighbours, values):
    """What TRamWAy 0.7's own ``gradn`` returns (buggy derivative: ~0 for linear fields)."""
    from tramway.inference.gradient import gradn

    centers, neighbours = _check_geometry(centers, neighbours)
    values = _check_values(values, centers.shape[0])
    dist = build_distributed(centers, neighbours)

    def call(dist, i, X, reverse_index):
        return gradn(dist, i, X, reverse_index)

    return _run_per_bin(dist, values, centers.shape[1], call)


def _unique_monomial_rank(offsets):
    """Rank of [1, z, z_u z_v (u <= v)] for centered, scale-normalised offsets."""
    d = offsets.shape[1]
    scale = np.max(np.abs(offsets))
    z = offsets / scale if scale > 0 else offsets
    cols = [np.ones(z.shape[0])]
    cols += [z[:, u] for u in range(d)]
    cols += [z[:, u] * z[:, v] for u in range(d) for v in range(u, d)]
    return int(np.linalg.matrix_rank(np.column_stack(cols)))


def tramway_gradn_corrected(centers, neighbours, values):
    """TRamWAy's ``gradn`` fit, with the derivative evaluated correctly.

    Per bin i with a measurement and k >= 1 neighbours with a measurement, the
    rows are those ``gradn`` builds (the center repeated k times, then the k
    neighbours, absolute coordinates), the design is TRamWAy's ``_poly2`` and the
    fit is ``np.linalg.lstsq(V, Y, rcond=None)``.  With W = [M (d*d), L (d), c]
    where column ``v*d + u`` of ``_poly2`` is ``x_u * x_v`` (so
    ``M = W[:d*d].reshape(d, d)`` gives ``M[v, u]``), the gradient at the center
    is ``(M + M.T) @ x_i + L``.

    Returns ``(grad, rank)``: grad (n, d) [(n, T, d)], rank (n,) int [(n, T)], the
    rank of the unique-monomial design (1, x, d(d+1)/2 distinct products) in
    coordinates centered on the bin (scaled by the largest offset); 0 where no
    fit is made.  The gradient is uniquely determined when
    ``rank == 1 + d + d*(d+1)//2`` (6 in 2D, 10 in 3D); otherwise it is numpy's
    minimum-norm answer, which depends on the origin.
    """
    from tramway.inference.gradient import _poly2

    centers, neighbours = _check_geometry(centers, neighbours)
    values = _check_values(values, centers.shape[0])
    n, d = centers.shape
    grad = np.full(values.shape + (d,), np.nan)
    rank = np.zeros(values.shape, dtype=np.int64)
    for t, y in _slices(values):
        present = ~np.isnan(y)
        for i in np.flatnonzero(present):
            nb = neighbours[i][neighbours[i] >= 0]
            nb = nb[present[nb]]
            k = nb.size
            if k == 0:
                continue  # gradn returns None
            x0 = centers[i]
            rows = np.vstack([x0] * k + [centers[j] for j in nb])
            V = _poly2(rows)
            Y = np.r_[np.full(k, y[i]), y[nb]]
            W = np.linalg.lstsq(V, Y, rcond=None)[0]
            M = W[: d * d].reshape(d, d)
            L = W[d * d : d * d + d]
            g = (M + M.T) @ x0 + L
            r = _unique_monomial_rank(rows - x0)
            if t is None:
                grad[i], rank[i] = g, r
            else:
                grad[i, t], rank[i, t] = g, r
    return grad, rank


# ----------------------------------------------------------------------------- fixtures


def tramway_tessellation_names():
    """Names of the tessellations stored in tests/data/tramway_tessellations.npz."""
    with np.load(TESSELLATIONS_FILE) as f:
        return [str(s) for s in f["names"]]


def load_tramway_tessellation(name):
    """(centers (n, 2) float64, neighbours (n, k) int64 padded with -1) as TRamWAy's
    inference sees them (empty bins dropped, zero-based, TRamWAy's row order)."""
    with np.load(TESSELLATIONS_FILE) as f:
        if f"{name}__centers" not in f.files:
            raise KeyError(f"no tessellation {name!r}; have {[str(s) for s in f['names']]}")
        return f[f"{name}__centers"].astype(np.float64), f[f"{name}__neighbours"].astype(np.int64)


def load_tramway_counts(name):
    """(translocations per bin as in TRamWAy's Distributed, locations per bin)."""
    with np.load(TESSELLATIONS_FILE) as f:
        return f[f"{name}__counts"].astype(np.int64), f[f"{name}__location_counts"].astype(
            np.int64
        )

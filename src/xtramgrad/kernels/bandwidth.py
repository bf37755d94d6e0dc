"""Choosing the bandwidth of ``method="local"`` from the field itself (``bandwidth="auto"``).

The rule is generalized cross-validation (Craven & Wahba 1979; for local polynomial fits,
Loader 1999, ch. 5): for a candidate bandwidth ``l``, the local fit smooths the field,
``yhat = S_l y``, and

    GCV(l) = n * sum_i (y_i - yhat_i)^2 / (n - tr S_l)^2

estimates the prediction error of the smoother without a held-out set (``S_ii`` is the
weight of ``y_i`` on its own fitted value, the fit's leverage). The bandwidth minimising it
over a log-spaced grid of multiples of the typical bin spacing is then refined once on a
finer grid. The score is a mean over bins, so it is estimated on a random sample of at most
:data:`SAMPLE` bins (a fixed seed: the choice is reproducible), with every slice of the
field (up to :data:`MAX_SLICES`) pooled.

GCV targets the field, not its gradient, and the two optima differ. For ``degree=1`` the
bandwidth that minimises the error of the gradient is larger than the field's (derivatives
need more smoothing); for ``degree=2`` GCV already picks a wide window (a quadratic fit has
little bias at the field's scale) and the gradient's optimum is narrower.
:data:`GRADIENT_FACTOR` scales the GCV choice to the gradient, per degree; both values were
measured on noisy maps (see ``docs/methods.md``, "Noise").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fits import local_weights, segment_sum

__all__ = ["typical_spacing", "gcv_scores", "gcv_bandwidth", "SAMPLE", "GRADIENT_FACTOR"]

#: Bins on which the GCV score is estimated (fewer in 3D, where stencils are larger).
SAMPLE = 3000
#: Slices of the field pooled in the score.
MAX_SLICES = 8
#: Candidate bandwidths, in multiples of the typical spacing (then refined).
GRID = 2.0 ** np.arange(-0.5, 2.51, 0.5)
#: The gradient's bandwidth, in multiples of the field's GCV bandwidth, per degree of the
#: local fit (measured on noisy maps: see docs/methods.md, "Noise").
GRADIENT_FACTOR = {1: 2.0**0.5, 2: 2.0**-0.5}
#: How many bandwidths the stencil of ``local`` reaches (as in the method).
REACH = 3.0


def typical_spacing(indptr: np.ndarray, indices: np.ndarray, centers: np.ndarray,
                    sample: np.ndarray | None = None) -> float:
    """Median length of the table's edges (of the sampled bins).

    Examples
    --------
    >>> from xtramgrad.kernels.stencil import as_csr
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> typical_spacing(*as_csr(np.array([[1, -1], [0, 2], [1, -1]])), x)
    1.5
    """
    rows = np.arange(len(indptr) - 1) if sample is None else np.asarray(sample)
    start, stop = indptr[rows], indptr[rows + 1]
    deg = stop - start
    own = np.repeat(rows, deg)
    pos = np.arange(int(deg.sum())) - np.repeat(np.cumsum(deg) - deg, deg) + np.repeat(start, deg)
    off = centers[indices[pos]] - centers[own]
    length = np.sqrt(np.einsum("ij,ij->i", off, off))
    length = length[length > 0]
    if not len(length):
        raise ValueError("the tessellation has no edge of positive length: no spacing")
    return float(np.median(length))


def _stencils(indptr: np.ndarray, indices: np.ndarray, centers: np.ndarray,
              targets: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Radius stencils of ``targets``: ``(sindptr, ids)`` (compiled when available)."""
    from .compiled import read_only
    from .engine import compiled_kernels

    _numba = compiled_kernels()
    if _numba is not None:  # (read-only, as every stencil walk's inputs: compiled once)
        sp, ids, _ = _numba.walk_stencils(
            read_only(indices, np.int64), read_only(indptr, np.int64), read_only(centers),
            np.asarray(targets, np.int64), 1, 0, 0, float(radius),
        )
        return sp, ids
    sp, ids, _ = build_stencil_csr(indptr, indices, centers, targets, radius)
    return sp, ids


def build_stencil_csr(indptr, indices, centers, targets, radius):  # noqa: ANN001, ANN201
    from .stencil import radius_stencil

    return radius_stencil(indptr, indices, centers, targets, radius)


def gcv_scores(
    values: np.ndarray, centers: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
    targets: np.ndarray, bandwidths: np.ndarray, degree: int,
) -> np.ndarray:
    """GCV score of each bandwidth, on bins ``targets`` of ``values`` (S, n).

    The stencil is walked once, for the largest bandwidth; each candidate keeps the entries
    within its own reach (the same bins as its own walk on a convex domain).
    """
    from .engine import compiled_kernels

    sp, ids = _stencils(indptr, indices, centers, targets, REACH * float(np.max(bandwidths)))
    m = len(targets)
    d = centers.shape[1]
    deg = np.diff(sp)
    k = int(deg.max(initial=1))
    rows = np.repeat(np.arange(m), deg)
    slots = np.arange(len(ids)) - np.repeat(sp[:-1], deg)
    off = centers[ids] - centers[targets][rows]
    dist = np.sqrt(np.einsum("ed,ed->e", off, off))
    vals = np.asarray(values, dtype=np.float64)
    own = vals[:, targets]
    compiled = compiled_kernels() is not None
    scores = np.full(len(bandwidths), np.inf)
    for b, bw in enumerate(bandwidths):
        keep = dist <= REACH * float(bw)
        if compiled:
            yhat, lev = _fit_compiled(own, vals, centers, targets, ids, rows, slots, keep, m,
                                      k, d, float(bw), degree)
        else:
            yhat, lev = _fit_numpy(vals, centers, indptr, indices, targets, keep, sp, ids, m,
                                   d, float(bw), degree)
        ok = ~np.isnan(yhat) & ~np.isnan(own) & ~np.isnan(lev)
        count = int(ok.sum())
        trace = float(lev[ok].sum())
        if count and trace < count:
            res = float(np.sum((own[ok] - yhat[ok]) ** 2))
            scores[b] = count * res / (count - trace) ** 2
    return scores


def _fit_compiled(own, vals, centers, targets, ids, rows, slots, keep, m, k, d, bw, degree):  # noqa: ANN001, ANN202, E501
    """Fitted values and leverages of the sampled bins by the compiled ``local`` map."""
    from . import _numba
    from .compiled import read_only

    s_count = vals.shape[0]
    nc = np.full((m, k, d), np.nan)
    nv = np.full((s_count, m, k), np.nan)
    r, sl, j = rows[keep], slots[keep], ids[keep]
    nc[r, sl] = centers[j]
    nv[:, r, sl] = vals[:, j]
    ring = np.ones((m, k), dtype=np.int8)
    comb = np.zeros((1, d + 1))
    comb[0, d] = 1.0
    par = np.array([bw, float(degree)])
    out = np.empty((s_count, m, 1))
    flags = np.empty((s_count, m), dtype=np.int8)
    conds = np.empty((s_count, m))
    center = read_only(centers[targets])
    code = _numba.METHOD_CODES["local"]
    own_c = read_only(own)
    comb = read_only(comb)
    nv, nc, ring = read_only(nv), read_only(nc), read_only(ring, np.int8)
    stencils = (nv, nv, nc, ring)  # read-only, as the chunked path's: one compilation
    _numba.drive_gathered(code, own_c, own_c, center, stencils, par, d + 1, comb,
                          _numba.MODE_VALUES, np.nan, out, flags, conds, _numba.dim_tag(d))
    yhat = out[:, :, 0].copy()
    _numba.drive_gathered(code, own_c, own_c, center, stencils, par, d + 1, comb,
                          _numba.MODE_LEVERAGE, np.nan, out, flags, conds, _numba.dim_tag(d))
    return yhat, out[:, :, 0]


def _fit_numpy(vals, centers, indptr, indices, targets, keep, sp, ids, m, d, bw, degree):  # noqa: ANN001, ANN202, E501
    """Fitted values and leverages of the sampled bins by the numpy ``local`` map."""
    from .stencil import Neighbourhood

    deg = np.diff(sp)
    rows_all = np.repeat(np.arange(m), deg)
    kept = keep
    cnt = np.bincount(rows_all[kept], minlength=m)
    indptr_k = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
    j = ids[kept]
    rows = rows_all[kept]
    own_c = centers[targets]
    nb = Neighbourhood(indptr_k, rows, j, np.asarray(targets), centers[j] - own_c[rows], own_c,
                       centers[j], None, np.ones(len(j), dtype=np.int8))
    s_count = vals.shape[0]
    yhat = np.full((s_count, m), np.nan)
    lev = np.full((s_count, m), np.nan)
    for s in range(s_count):
        y = vals[s]
        ok = ~np.isnan(y[nb.src])
        w = local_weights(nb, ok, bandwidth=bw, degree=degree)
        y_src = np.where(ok, y[nb.src], 0.0)
        yhat[s] = segment_sum(w.w[:, d] * y_src, nb.indptr) + w.c0[:, d] * y[nb.targets]
        lev[s] = np.where(w.flag != 2, w.c0[:, d], np.nan)
    return yhat, lev


def gcv_bandwidth(
    values: np.ndarray, centers: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
    degree: int, seed: int = 0,
) -> tuple[float, dict[str, Any]]:
    """The GCV bandwidth for the gradient of ``values`` (S, n): ``(bandwidth, info)``.

    ``info`` holds the typical spacing, the candidates and their scores.
    """
    n = centers.shape[0]
    values = np.asarray(values, dtype=np.float64).reshape(-1, n)[:MAX_SLICES]
    rng = np.random.default_rng(seed)
    measured = np.flatnonzero(~np.isnan(values).all(axis=0))
    if len(measured) < 10:
        raise ValueError(
            f"bandwidth='auto' needs at least 10 measured bins to choose a bandwidth; the "
            f"field has {len(measured)}. Pass a bandwidth in space units."
        )
    d = centers.shape[1]
    sample = SAMPLE if d < 3 else SAMPLE // 4
    targets = np.sort(rng.choice(measured, size=min(sample, len(measured)), replace=False))
    h0 = typical_spacing(indptr, indices, centers, targets)
    grid = h0 * GRID
    scores = gcv_scores(values, centers, indptr, indices, targets, grid, degree)
    best = int(np.argmin(scores))
    fine = grid[best] * 2.0 ** np.array([-0.25, 0.0, 0.25])
    fine_scores = gcv_scores(values, centers, indptr, indices, targets, fine, degree)
    chosen = float(fine[int(np.argmin(fine_scores))])
    info = {
        "spacing": h0,
        "candidates": np.concatenate([grid, fine]),
        "scores": np.concatenate([scores, fine_scores]),
        "gcv": chosen,
    }
    return chosen * GRADIENT_FACTOR[degree], info


#: Bins of the contiguous window a chunked field's bandwidth is chosen on.
WINDOW = 50_000


def choose_bandwidth(ds: Any, field: Any, topo: Any, req: Any) -> tuple[float, dict[str, Any]]:
    """The ``bandwidth="auto"`` of a field of a tessellation Dataset.

    Eager data: on a random sample of its bins. Dask-backed data: on a contiguous window of
    at most :data:`WINDOW` bins in the middle of the bin order (taken with
    :func:`xtramgrad.isel`, which loads only that window): for bins sorted along a
    space-filling curve (:func:`xtramgrad.sort`) the window is a compact region of space.
    """
    from ..topology import table_csr

    n = int(topo.center.sizes["bin"])
    lazy = any(
        a is not None and getattr(a, "chunks", None) is not None
        for a in (field, topo.center, topo.neighbours)
    )
    if lazy and n > WINDOW:
        from ..topology import isel, topology

        lo = (n - WINDOW) // 2
        sub = isel(ds[[field.name]].assign(center=topo.center), bin=slice(lo, lo + WINDOW))
        sub = sub.load()
        return choose_bandwidth(sub, sub[field.name], topology(sub), req)
    indptr, indices = table_csr(topo)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    batch = [d for d in field.dims if d != "bin"]
    vals = np.asarray(field.transpose(*batch, "bin").values, dtype=np.float64)
    return gcv_bandwidth(vals, centers, indptr, indices, int(req.options["degree"]))

"""Weighted least-squares fits over stencils: the numpy reference of every fitted method.

Each bin's estimate is a fixed linear combination of the values of its stencil and of its
own value: a *local linear map*. The functions here compute that map, for a block of bins
and one missing-value pattern, as :class:`Weights`: ``w`` (E, Q) on the stencil entries and
``c0`` (n, Q) on the bins' own values, for Q estimated quantities (the d gradient
components first; then, for the quadratic fits, the Hessian; for kernel fits, the fitted
value).

Conventions shared by every fit:

* offsets are scaled by a length ``h`` per bin before solving (the RMS distance of the
  fitted points, or the bandwidth), so designs are well scaled whatever the units;
* the pseudo-inverse of the normal matrix is taken from its eigendecomposition; bins whose
  design is ill-conditioned (normal-matrix eigenvalue ratio below :data:`SVD_RATIO`) are
  solved again by a singular value decomposition of the weighted design itself, which keeps
  their accuracy at ``eps * cond`` rather than ``eps * cond**2``;
* a quantity that the data do not determine (its direction has a component in the null
  space of the design) gets a NaN coefficient on the bin itself: "not determined", never a
  guess.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .stencil import Neighbourhood

__all__ = [
    "Weights",
    "segment_sum",
    "monomials",
    "ls_map",
    "lsq_weights",
    "lsq2_weights",
    "local_weights",
    "FLAG_OK",
    "FLAG_FALLBACK",
    "FLAG_UNDEFINED",
]

FLAG_OK = 0  #: the method's own estimate
FLAG_FALLBACK = 1  #: the method's documented fallback (e.g. a linear fit)
FLAG_UNDEFINED = 2  #: no estimate (missing value, no measured neighbour)

# eigenvalues of the (scaled) normal matrix below this ratio to the largest are dropped
RANK_RATIO = 1e-12
# bins whose smallest kept eigenvalue ratio is below this are solved by SVD of the design
SVD_RATIO = 1e-6
# a quantity is not determined when this much of its direction lies in the null space
NULL_MASS = 1e-8


class Weights(NamedTuple):
    """A local linear map for a block of bins and one missing-value pattern.

    ``w`` (E, Q): coefficient of each stencil entry's value; ``c0`` (n, Q): coefficient of
    the bin's own value (NaN where the quantity is not determined); ``flag`` (n,) int8:
    :data:`FLAG_OK`, :data:`FLAG_FALLBACK` or :data:`FLAG_UNDEFINED`; ``cond`` (n,): the
    condition number of the bin's scaled design (NaN where not computed).
    """

    w: np.ndarray
    c0: np.ndarray
    flag: np.ndarray
    cond: np.ndarray


def segment_sum(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sum ``values`` (E, ...) over each row's entries, sequentially in entry order."""
    n = len(indptr) - 1
    out = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
    nonempty = indptr[1:] > indptr[:-1]
    if values.shape[0] and nonempty.any():
        out[nonempty] = np.add.reduceat(values, indptr[:-1][nonempty], axis=0)
    return out


def monomials(z: np.ndarray, degree: int, constant: bool) -> np.ndarray:
    """Design columns ``[1?, z_1..z_d, (z_j z_l, j <= l)?]`` of points ``z`` (..., d).

    Squares come halved (``z_j^2 / 2``) so that the coefficients are the Hessian entries:
    ``y = c + g.z + 1/2 z^T H z`` has columns ``z_j^2 / 2`` for ``H_jj`` and ``z_j z_l`` for
    ``H_jl`` (j < l).
    """
    cols = [np.ones(z.shape[:-1] + (1,))] if constant else []
    cols.append(z)
    if degree >= 2:
        d = z.shape[-1]
        iu, ju = np.triu_indices(d)
        quad = z[..., iu] * z[..., ju]
        quad = np.where(iu == ju, 0.5 * quad, quad)
        cols.append(quad)
    return np.concatenate(cols, axis=-1)


def _pinv(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-inverse of symmetric (n, p, p) matrices; also the kept-rank, the null-space
    mass of each coordinate direction (n, p) and the eigenvalue ratio (n,)."""
    lam, vec = np.linalg.eigh(normal)
    top = lam[..., -1:]
    keep = lam > RANK_RATIO * np.where(top > 0, top, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(keep, 1.0 / lam, 0.0)
        ratio = np.where(keep.any(-1), np.min(np.where(keep, lam, np.inf), -1) / top[..., 0],
                         0.0)
    pinv = np.einsum("nik,nk,njk->nij", vec, inv, vec)
    null = np.einsum("nik,nk->ni", vec * vec, (~keep).astype(np.float64))
    return pinv, keep.sum(-1), null, ratio


def ls_map(
    nb: Neighbourhood,
    phi: np.ndarray,
    wt: np.ndarray,
    scale: np.ndarray,
    out_cols: np.ndarray,
    out_power: np.ndarray,
    center: str,
    center_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The linear map of a weighted least-squares fit, per bin.

    Minimises ``sum_e wt_e (r_e - phi_e . theta)^2`` per bin, where ``r_e`` is the entry's
    value (``center="free"``, with one more row ``e0`` of weight ``center_weight`` for the
    bin's own value) or the entry's value minus the bin's (``center="constrained"``).

    Parameters
    ----------
    phi : (E, p)
        Design rows of the entries (scaled coordinates).
    wt : (E,)
        Row weights (0 drops an entry).
    scale : (n,)
        Length scale of each bin: coefficient ``c`` of column ``out_cols[q]`` is divided by
        ``scale ** out_power[q]`` to give the quantity in space units.
    out_cols, out_power : (Q,)
        The coefficients to return and their length dimension.
    center : {"free", "constrained"}
    center_weight : (n,), for ``center="free"``.

    Returns
    -------
    w (E, Q), c0 (n, Q), rank (n,), null (n, Q) bool (not determined), cond (n,)
    """
    p = phi.shape[1]
    wphi = phi * wt[:, None]
    normal = segment_sum(wphi[:, :, None] * phi[:, None, :], nb.indptr)  # (n, p, p)
    if center == "free":
        assert center_weight is not None
        normal[:, 0, 0] += center_weight
    pinv, rank, null, ratio = _pinv(normal)
    rows = nb.rows
    sel = pinv[:, out_cols, :]  # (n, Q, p)
    w = np.einsum("eqp,ep->eq", sel[rows], wphi)
    if center == "free":
        assert center_weight is not None
        c0 = sel[:, :, 0] * center_weight[:, None]
    else:
        c0 = -segment_sum(w, nb.indptr)
    bad = np.flatnonzero((ratio < SVD_RATIO) & (rank > 0))
    if len(bad):
        _svd_map(nb, phi, wt, bad, out_cols, center, center_weight, w, c0)
    not_det = null[:, out_cols] > NULL_MASS
    with np.errstate(divide="ignore"):
        cond = np.where(rank == p, np.sqrt(1.0 / np.where(ratio > 0, ratio, np.nan)), np.inf)
    div = scale[:, None] ** out_power[None, :]
    w = w / div[rows]
    c0 = np.where(not_det, np.nan, c0 / div)
    w = np.where(not_det[rows], 0.0, w)
    return w, c0, rank, not_det, cond


# Upper bound on the padded design of one batch of the SVD path, in float64 items.
_SVD_ITEMS = 2**22


def _svd_map(
    nb: Neighbourhood,
    phi: np.ndarray,
    wt: np.ndarray,
    bins: np.ndarray,
    out_cols: np.ndarray,
    center: str,
    center_weight: np.ndarray | None,
    w: np.ndarray,
    c0: np.ndarray,
) -> None:
    """Overwrite the map of ``bins`` (in place) with the SVD solution of the weighted design
    (same normal equations, same minimum-norm solution, better accuracy). Bins are batched
    by degree so that no batch pads to the widest row of a skewed table."""
    deg = nb.degree[bins]
    order = np.argsort(deg, kind="stable")
    p = phi.shape[1]
    start = 0
    while start < len(order):
        width = int(deg[order[start]])
        stop = start + 1
        while stop < len(order):
            width2 = int(deg[order[stop]])
            if (stop + 1 - start) * (width2 + 1) * p > _SVD_ITEMS and stop > start:
                break
            width = width2
            stop += 1
        _svd_batch(nb, phi, wt, bins[order[start:stop]], width, out_cols, center,
                   center_weight, w, c0)
        start = stop


def _svd_batch(nb, phi, wt, bins, width, out_cols, center, center_weight, w, c0) -> None:  # noqa: ANN001
    p = phi.shape[1]
    deg = nb.degree[bins]
    slot = np.arange(width)
    present = slot[None, :] < deg[:, None]
    q_idx, s_idx = np.nonzero(present)
    e_idx = nb.indptr[bins][q_idx] + s_idx
    design = np.zeros((len(bins), width + 1, p))
    sw = np.sqrt(wt[e_idx])
    design[q_idx, s_idx + 1] = phi[e_idx] * sw[:, None]
    if center == "free":
        design[:, 0, 0] = np.sqrt(center_weight[bins])
    u, sv, vt = np.linalg.svd(design, full_matrices=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(sv > np.sqrt(RANK_RATIO) * sv[:, :1], 1.0 / sv, 0.0)
    x = np.einsum("bri,br,bkr->bik", vt[:, :, out_cols], inv, u)  # (B, Q, width + 1)
    w[e_idx] = x[q_idx, :, s_idx + 1] * sw[:, None]
    if center == "free":
        c0[bins] = x[:, :, 0] * np.sqrt(center_weight[bins])[:, None]
    else:
        bounds = np.zeros(len(bins) + 1, dtype=np.int64)
        np.cumsum(deg, out=bounds[1:])
        c0[bins] = -segment_sum(w[e_idx], bounds)


def rms_scale(nb: Neighbourhood, use: np.ndarray) -> np.ndarray:
    """RMS distance of the used entries of each bin (1 where there are none)."""
    r2 = np.einsum("ed,ed->e", nb.offsets, nb.offsets) * use
    k = segment_sum(use.astype(np.float64), nb.indptr)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.sqrt(segment_sum(r2, nb.indptr) / k)
    return np.where(np.isfinite(h) & (h > 0), h, 1.0)


def _power_weights(nb: Neighbourhood, use: np.ndarray, power: float, h: np.ndarray) -> np.ndarray:
    r = np.sqrt(np.einsum("ed,ed->e", nb.offsets, nb.offsets)) / h[nb.rows]
    with np.errstate(divide="ignore"):
        wt = np.where(use & (r > 0), r ** (-power) if power else 1.0, 0.0)
    return wt


def long_edges(nb: Neighbourhood, use: np.ndarray, cutoff: float) -> np.ndarray:
    """Entries longer than ``cutoff`` times the median used entry length of their bin.

    "Median length" is the square root of the median squared length (the mean of the two
    middle squared lengths for an even count), which needs no square root per entry.
    """
    if not np.isfinite(cutoff):
        return np.zeros(len(nb.rows), dtype=bool)
    r2 = np.einsum("ed,ed->e", nb.offsets, nb.offsets)
    med = _segment_median(np.where(use, r2, np.nan), nb.indptr)
    return r2 > cutoff * cutoff * med[nb.rows]


def _segment_median(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Median of the non-NaN values of each row (NaN for an empty row)."""
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    key = np.where(np.isnan(values), np.inf, values)
    order = np.lexsort((key, rows))
    srt = key[order]
    cnt = segment_sum((~np.isnan(values)).astype(np.int64), indptr)
    lo = indptr[:-1] + (cnt - 1) // 2
    hi = indptr[:-1] + cnt // 2
    ok = cnt > 0
    out = np.full(n, np.nan)
    out[ok] = 0.5 * (srt[lo[ok]] + srt[hi[ok]])
    return out


def _finish(
    nb: Neighbourhood, ok: np.ndarray, w: np.ndarray, c0: np.ndarray, flag: np.ndarray,
    cond: np.ndarray,
) -> Weights:
    w = np.where(ok[:, None], w, 0.0)
    return Weights(w, c0, flag.astype(np.int8), cond)


def _lsq_map(
    nb: Neighbourhood, use: np.ndarray, power: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = nb.ndim
    h = rms_scale(nb, use)
    wt = _power_weights(nb, use, power, h)
    z = nb.offsets / h[nb.rows][:, None]
    return ls_map(nb, z, wt, h, np.arange(d), np.ones(d), "constrained")


def lsq_weights(
    nb: Neighbourhood, ok: np.ndarray, *, power: float = 2.0, cutoff: float = np.inf
) -> Weights:
    """Weighted linear least squares through the bin's value (``method="lsq"``).

    Minimises ``sum_k w_k (y_k - y_i - g . o_k)^2`` over the measured stencil entries, with
    ``w_k = |o_k|^-power``; entries longer than ``cutoff`` times the median entry length of
    the bin are left out, unless leaving them out loses the span of the space.
    """
    d = nb.ndim
    long = long_edges(nb, ok, cutoff) & ok
    w, c0, rank, _, cond = _lsq_map(nb, ok & ~long, power)
    if long.any():
        had = segment_sum(long.astype(np.int64), nb.indptr) > 0
        lost = np.flatnonzero(had & (rank < d))
        if len(lost):
            w_f, c0_f, _, _, cond_f = _lsq_map(nb, ok, power)
            sel = np.isin(nb.rows, lost)
            w[sel] = w_f[sel]
            c0[lost], cond[lost] = c0_f[lost], cond_f[lost]
    defined = segment_sum(ok.astype(np.int64), nb.indptr) > 0
    return _finish(nb, ok, w, c0, np.where(defined, 0, 2), cond)


def lsq2_weights(
    nb: Neighbourhood, ok: np.ndarray, *, power: float = 2.0, cutoff: float = np.inf,
    fallback_power: float = 2.0, fallback_cutoff: float = np.inf,
) -> Weights:
    """Weighted quadratic least squares through the bin's value (``method="lsq2"``).

    Unknowns: the gradient ``g`` and the symmetric Hessian ``H`` (d + d(d+1)/2 of them);
    rows ``y_k - y_i = g . o_k + 1/2 o_k^T H o_k`` over the measured stencil entries (the
    2-ring, wider where it is small), weights ``|o_k|^-power``, in coordinates scaled by
    the RMS entry distance. Where the quadratic is not determined with redundancy (rank below
    the number of unknowns, or no more measured entries than unknowns), the bin falls back
    to :func:`lsq_weights` over its measured 1-ring (flag 1). Quantities: the d gradient
    components, then the Hessian entries ``H_jl`` (j <= l, row-major upper triangle).
    """
    d = nb.ndim
    nh = d * (d + 1) // 2
    p = d + nh
    use = ok.copy()
    long = long_edges(nb, use, cutoff) & use
    use = use & ~long
    h = rms_scale(nb, use)
    wt = _power_weights(nb, use, power, h)
    z = nb.offsets / h[nb.rows][:, None]
    phi = monomials(z, 2, constant=False)
    power_out = np.concatenate([np.ones(d), 2.0 * np.ones(nh)])
    w, c0, rank, not_det, cond = ls_map(nb, phi, wt, h, np.arange(p), power_out, "constrained")
    count = segment_sum(use.astype(np.int64), nb.indptr)
    fall = (rank < p) | (count <= p) | not_det[:, :d].any(axis=1)
    defined = segment_sum(ok.astype(np.int64), nb.indptr) > 0
    flag = np.where(fall, 1, 0)
    if fall.any():
        ring1 = nb.ring == 1
        sub = _restrict(nb, ring1)
        lw = lsq_weights(sub, ok[ring1], power=fallback_power, cutoff=fallback_cutoff)
        fb = np.flatnonzero(fall)
        sel = np.isin(nb.rows, fb)
        w[sel] = 0.0
        e1 = np.flatnonzero(ring1 & sel)
        w[e1, :d] = lw.w[np.searchsorted(np.flatnonzero(ring1), e1)]
        c0[fb] = np.nan
        c0[fb, :d] = lw.c0[fb]
        cond[fb] = lw.cond[fb]
    flag = np.where(defined, flag, 2)
    return _finish(nb, ok, w, c0, flag, cond)


def _restrict(nb: Neighbourhood, keep: np.ndarray) -> Neighbourhood:
    """The neighbourhood with only the entries ``keep`` (E,) bool."""
    cnt = segment_sum(keep.astype(np.int64), nb.indptr)
    indptr = np.zeros(nb.n + 1, dtype=np.int64)
    np.cumsum(cnt, out=indptr[1:])
    return Neighbourhood(
        indptr, nb.rows[keep], nb.src[keep], nb.targets, nb.offsets[keep], nb.own,
        nb.other[keep], None if nb.labels is None else nb.labels[keep], nb.ring[keep],
    )


def local_weights(
    nb: Neighbourhood, ok: np.ndarray, *, bandwidth: float, degree: int = 1
) -> Weights:
    """Gaussian-weighted local polynomial fit (``method="local"``): a kernel regression.

    Fits ``y = c + g . o (+ 1/2 o^T H o)`` to the bin's own value (weight 1) and its measured
    stencil entries (the bins within 3 bandwidths), with weights ``exp(-|o|^2 / 2 l^2)``,
    ``l = bandwidth``, the intercept free: the fit smooths the bin's own value too. Degree 2
    falls back to degree 1 where the quadratic is not determined with redundancy (flag 1).
    Quantities: the d gradient components, then the fitted value ``c`` (its coefficient on
    the bin's own value is the smoother's leverage, used by generalized cross-validation).
    """
    d = nb.ndim
    n = nb.n
    bw = float(bandwidth)
    z = nb.offsets / bw
    r2 = np.einsum("ed,ed->e", z, z)
    wt = np.where(ok, np.exp(-0.5 * r2), 0.0)
    scale = np.full(n, bw)
    one = np.ones(n)
    out_cols = np.concatenate([np.arange(1, d + 1), [0]])
    out_power = np.concatenate([np.ones(d), [0.0]])
    phi1 = monomials(z, 1, constant=True)
    count = segment_sum(ok.astype(np.int64), nb.indptr) + 1
    w, c0, rank, not_det, cond = ls_map(nb, phi1, wt, scale, out_cols, out_power, "free", one)
    flag = np.zeros(n, dtype=np.int8)
    if degree == 2:
        p2 = 1 + d + d * (d + 1) // 2
        phi2 = monomials(z, 2, constant=True)
        cols2 = np.concatenate([np.arange(1, d + 1), [0]])
        w2, c02, rank2, nd2, cond2 = ls_map(nb, phi2, wt, scale, cols2, out_power, "free", one)
        good = (rank2 == p2) & (count > p2) & ~nd2.any(axis=1)
        w = np.where(good[nb.rows][:, None], w2, w)
        c0 = np.where(good[:, None], c02, c0)
        cond = np.where(good, cond2, cond)
        flag = np.where(good, 0, 1).astype(np.int8)
    defined = count > 1
    flag = np.where(defined, flag, 2)
    return _finish(nb, ok, w, c0, flag, cond)

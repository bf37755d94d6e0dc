"""Optional compiled kernels (numba), used by :mod:`xtramgrad.kernels` when numba is installed.

Nothing here is public: :func:`xtramgrad.kernels.local_gradient` dispatches to these
functions and the pure-numpy kernels stay the reference (the tests compare both).

Each kernel makes one pass over the output bins. For a bin it reads its neighbours once
(positions, centers), decides their sides, then for every slice of the values gathers the
neighbours' values and applies the bin's local linear map, recomputing the map only when the
missing-value pattern of the neighbourhood changes from one slice to the next. Nothing of
size (edges, ...) is allocated: the cost is the gather of the neighbours' values and
centers, as for the numpy floor ``np.take``.

The arithmetic follows the numpy reference operation by operation (same expressions, same
summation order: edges in table order, then the bin itself), so both agree to rounding.
Two decisions are not left to compiled code:

* cone ties (``|u_j|`` within a narrow band of the threshold): the side is looked up in a
  table of decisions made by numpy's own ``arccos`` on TRamWAy's expression; a value missing
  from the table is reported back (``miss``) and the bin is recomputed once the caller has
  extended the table;
* gradn's pseudo-inverse: a well-conditioned normal matrix (positive definite, its squared
  Cholesky pivots within a factor ``cond_max`` of each other, so that no eigenvalue can be
  dropped) is solved by Cholesky for the rows of the linear terms; any other one (nearly
  degenerate or rank-deficient neighbourhoods) by LAPACK's SVD of the weighted design with
  the same singular-value cut as the numpy reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

KIND_CONE = 0
KIND_QUADRANTS = 1
KIND_HALFSPACE = 2
KIND_LABELS = 3

# cached to disk; float division by zero gives inf/NaN as in numpy
_jit = njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _edges(i, d, centers, neighbours, targets, own, nbr, off):
    """Present neighbours of output bin ``i``: fills ``nbr``, ``off``; returns their count."""
    t = targets[i]
    for a in range(d):
        own[a] = centers[t, a]
    deg = 0
    for r in range(neighbours.shape[1]):
        j = neighbours[i, r]
        if j < 0:
            continue
        nbr[deg] = j
        for a in range(d):
            off[deg, a] = centers[j, a] - own[a]
        deg += 1
    return deg


@_jit
def _find(table, x):
    """Position of ``x`` in the sorted ``table``, or -1."""
    lo = 0
    hi = table.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if table[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if lo < table.shape[0] and table[lo] == x:
        return lo
    return -1


@_jit
def _record_miss(u, miss, nmiss):
    for q in range(min(nmiss[0], miss.shape[0])):
        if miss[q] == u:
            return
    if nmiss[0] < miss.shape[0]:
        miss[nmiss[0]] = u
    nmiss[0] += 1


@_jit
def _sides(
    i, d, deg, kind, thr, band, off, neighbours, labels, tie_u, tie_code, side, miss, nmiss
):
    """Side of each edge along each axis (-1 below, +1 above, 0 neither) for the cone,
    quadrant and label rules. Returns False on a cone tie missing from the decision table."""
    ok = True
    if kind == KIND_CONE:
        # grad1_cone_single inlines a copy of this block for speed: change both together
        thr2 = thr * thr
        for e in range(deg):
            s2 = 0.0
            for a in range(d):
                s2 += off[e, a] * off[e, a]
            # |u^2 - thr^2| > 4 band implies |u - thr| > 2 band: away from ties, the side is
            # decided by signs and squares alone (branch-free: no sqrt, no division).
            lim = 4.0 * band * s2
            near = False
            for a in range(d):
                o = off[e, a]
                gap = o * o - thr2 * s2
                side[e, a] = np.int8(gap > 0) * (np.int8(o > 0) - np.int8(o < 0))
                near |= abs(gap) <= lim
            if not near:
                continue
            norm = math.sqrt(s2)
            for a in range(d):
                u = off[e, a] / norm  # as the reference computes it (NaN for a zero offset)
                code = 0
                if u > thr:
                    code = 1
                elif u < -thr:
                    code = -1
                if abs(abs(u) - thr) <= band:
                    pos = _find(tie_u, u)
                    if pos < 0:
                        _record_miss(u, miss, nmiss)
                        ok = False
                        code = 0
                    else:
                        code = tie_code[pos]
                side[e, a] = code
    elif kind == KIND_QUADRANTS:
        for e in range(deg):
            best = 0
            for a in range(1, d):
                if abs(off[e, a]) > abs(off[e, best]):
                    best = a
            for a in range(d):
                side[e, a] = 0
            if off[e, best] < 0:
                side[e, best] = -1
            elif off[e, best] > 0:
                side[e, best] = 1
    else:
        e = 0
        for r in range(neighbours.shape[1]):
            if neighbours[i, r] < 0:
                continue
            lab = labels[i, r]
            for a in range(d):
                side[e, a] = 0
                if lab == -(a + 1):
                    side[e, a] = -1
                elif lab == a + 1:
                    side[e, a] = 1
            e += 1
    return ok


@_jit
def _load_slice(values, s, nbr, deg, ok, yv, prev_ok):
    """Read slice ``s`` of a bin's neighbour values into ``yv`` (0 where missing) and their
    presence into ``ok``; True if the missing-value pattern equals ``prev_ok``'s (then the
    local map computed for the previous slice still applies)."""
    same = True
    for e in range(deg):
        y = values[s, nbr[e]]
        ok[e] = not math.isnan(y)
        yv[e] = y if ok[e] else 0.0
        if ok[e] != prev_ok[e]:
            same = False
    return same


@_jit
def _axis_coefficients(cnt_b, cnt_a, sum_b, sum_a, cb, ca, c0):
    """grad1's closed form per axis, from the side counts and offset sums.

    ``cb`` / ``ca`` are the weights of each neighbour below / above (the mean's weight over
    the count) and ``c0`` the bin's own weight; ``c0`` is NaN for an axis with no side.
    """
    for a in range(cb.shape[0]):
        nb = cnt_b[a]
        nab = cnt_a[a]
        lo = -sum_b[a] / nb
        hi = sum_a[a] / nab
        if nb > 0 and nab > 0:
            cb[a] = (-hi / (lo * (lo + hi))) / nb
            ca[a] = (lo / (hi * (lo + hi))) / nab
            c0[a] = (hi - lo) / (lo * hi)
        elif nb > 0:
            cb[a] = (-1.0 / lo) / nb
            ca[a] = 0.0
            c0[a] = 1.0 / lo
        elif nab > 0:
            cb[a] = 0.0
            ca[a] = (1.0 / hi) / nab
            c0[a] = -1.0 / hi
        else:
            cb[a] = 0.0
            ca[a] = 0.0
            c0[a] = np.nan


@_jit
def grad1(
    values, centers, neighbours, targets, labels,
    kind, param, thr, band, tie_u, tie_code, na, out, redo, miss, nmiss, dim_tag,
):
    """grad1 for every output bin and slice: ``out`` (S, n, d).

    Bins whose cone ties are missing from ``tie_u`` are flagged in ``redo`` and left unset.
    ``dim_tag`` is an empty array with one dimension per space dimension: its ``ndim`` is a
    compile-time constant, so each dimension gets its own machine code with unrolled loops
    over the axes.
    """
    d = dim_tag.ndim
    n = neighbours.shape[0]
    k = neighbours.shape[1]
    n_slices = values.shape[0]
    own = np.empty(d)
    nbr = np.empty(k, dtype=np.int64)
    off = np.empty((k, d))
    side = np.zeros((k, d), dtype=np.int8)
    ok = np.zeros(k, dtype=np.bool_)
    prev_ok = np.zeros(k, dtype=np.bool_)
    yv = np.empty(k)
    cb = np.empty(d)
    ca = np.empty(d)
    c0 = np.empty(d)
    cnt_b = np.empty(d)
    cnt_a = np.empty(d)
    sum_b = np.empty(d)
    sum_a = np.empty(d)
    we = np.empty((k, d))
    g = np.empty(d)
    for i in range(n):
        deg = _edges(i, d, centers, neighbours, targets, own, nbr, off)
        if kind == KIND_HALFSPACE:
            # compare absolute coordinates, exactly as the reference does
            for e in range(deg):
                j = nbr[e]
                for a in range(d):
                    other = centers[j, a]
                    side[e, a] = 0
                    if other < own[a] - param:
                        side[e, a] = -1
                    elif own[a] + param < other:
                        side[e, a] = 1
        else:
            if not _sides(
                i, d, deg, kind, thr, band, off, neighbours, labels, tie_u, tie_code, side, miss,
                nmiss,
            ):
                redo[i] = True
                continue
        t = targets[i]
        have = False  # whether cb/ca/c0 hold the map for pattern prev_ok
        defined = False
        for s in range(n_slices):
            y0 = values[s, t]
            if math.isnan(y0):
                for a in range(d):
                    out[s, i, a] = np.nan
                continue
            same = _load_slice(values, s, nbr, deg, ok, yv, prev_ok) and have
            if not same:
                defined = False
                for e in range(deg):
                    prev_ok[e] = ok[e]
                    if ok[e]:
                        defined = True
                for a in range(d):
                    cnt_b[a] = 0.0
                    cnt_a[a] = 0.0
                    sum_b[a] = 0.0
                    sum_a[a] = 0.0
                for e in range(deg):
                    okf = 1.0 if ok[e] else 0.0
                    for a in range(d):
                        # arithmetic selects (1.0 or 0.0; sides are unpredictable on
                        # irregular meshes): adding o * 0.0 leaves the sums exact
                        sd = side[e, a]
                        fb = okf * (sd < 0)
                        fa = okf * (sd > 0)
                        cnt_b[a] += fb
                        sum_b[a] += off[e, a] * fb
                        cnt_a[a] += fa
                        sum_a[a] += off[e, a] * fa
                _axis_coefficients(cnt_b, cnt_a, sum_b, sum_a, cb, ca, c0)
                for e in range(deg):
                    okf = 1.0 if ok[e] else 0.0
                    for a in range(d):
                        sd = side[e, a]
                        we[e, a] = okf * (cb[a] * (sd < 0) + ca[a] * (sd > 0))
                have = True
            if not defined:
                for a in range(d):
                    out[s, i, a] = np.nan
                continue
            for a in range(d):
                g[a] = 0.0
            for e in range(deg):
                for a in range(d):
                    g[a] += we[e, a] * yv[e]
            for a in range(d):
                out[s, i, a] = na if math.isnan(c0[a]) else g[a] + c0[a] * y0
    return out


@_jit
def _cholesky(mat, low, min_ratio):
    """Cholesky factor of a symmetric ``mat`` into ``low``. False unless positive definite
    with every squared pivot at least ``min_ratio`` times the largest (well conditioned)."""
    p = mat.shape[0]
    big = 0.0
    for c in range(p):
        for r in range(c, p):
            s = mat[r, c]
            for q in range(c):
                s -= low[r, q] * low[c, q]
            if r == c:
                if not s > 0.0:
                    return False
                big = max(big, s)
                low[c, c] = math.sqrt(s)
            else:
                low[r, c] = s / low[c, c]
    for c in range(p):
        if low[c, c] * low[c, c] < min_ratio * big:
            return False
    return True


@_jit
def _cholesky_solve_unit(low, col, x):
    """``x = mat^-1 e_col`` from the Cholesky factor ``low`` of ``mat``."""
    p = low.shape[0]
    for r in range(p):
        s = 1.0 if r == col else 0.0
        for q in range(r):
            s -= low[r, q] * x[q]
        x[r] = s / low[r, r]
    for r in range(p - 1, -1, -1):
        s = x[r]
        for q in range(r + 1, p):
            s -= low[q, r] * x[q]
        x[r] = s / low[r, r]


@_jit
def _gradn_map(
    deg, d, kk, r2, off, ok, iu, ju, rcond, cond_max, phi, normal, inv, low, pinv_l, w, diag
):
    """Local linear map of gradn for one bin and missing-value pattern: ``w``, ``diag``."""
    p = normal.shape[0]
    h = math.sqrt(r2 / kk)
    if not (math.isfinite(h) and h > 0):
        h = 1.0
    for e in range(deg):
        okf = 1.0 if ok[e] else 0.0
        phi[e, 0] = 1.0
        for a in range(d):
            phi[e, 1 + a] = off[e, a] / h
        for q in range(iu.shape[0]):
            phi[e, 1 + d + q] = phi[e, 1 + iu[q]] * phi[e, 1 + ju[q]]
        for q in range(p):
            phi[e, q] = phi[e, q] * okf  # wphi; phi itself is wphi / okf
    # normal = sum_e wphi phi^T, with phi = wphi where ok (wphi = 0 elsewhere)
    for q in range(p):
        for r in range(q, p):
            acc = 0.0
            for e in range(deg):
                acc += phi[e, q] * phi[e, r]
            normal[q, r] = acc
            normal[r, q] = acc
    normal[0, 0] += kk
    if _cholesky(normal, low, 1.0 / cond_max):
        # rows 1..d of the inverse (= its columns: the matrix is symmetric)
        for a in range(d):
            _cholesky_solve_unit(low, 1 + a, inv[a])
            for q in range(p):
                pinv_l[a, q] = inv[a, q]
    else:
        # ill-conditioned or rank-deficient: SVD of the weighted design itself (accuracy
        # eps * cond rather than the normal equations' eps * cond**2), as the numpy kernel
        # does; singular values below rcond times the largest are dropped.
        design = np.zeros((deg + 1, p))
        design[0, 0] = math.sqrt(kk)
        for e in range(deg):
            for q in range(p):
                design[e + 1, q] = phi[e, q]
        u, sv, vt = np.linalg.svd(design, False)
        for c in range(sv.shape[0]):
            sv[c] = 1.0 / sv[c] if sv[c] > rcond * sv[0] else 0.0
        for a in range(d):
            for r in range(deg + 1):
                acc = 0.0
                for c in range(sv.shape[0]):
                    acc += vt[c, 1 + a] * sv[c] * u[r, c]
                if r == 0:
                    diag[a] = acc * math.sqrt(kk) / h
                else:
                    w[r - 1, a] = acc / h
        return
    for e in range(deg):
        for a in range(d):
            acc = 0.0
            for q in range(p):
                acc += pinv_l[a, q] * phi[e, q]
            w[e, a] = acc / h
    for a in range(d):
        diag[a] = pinv_l[a, 0] * kk / h


@_jit
def gradn(values, centers, neighbours, targets, iu, ju, rcond, cond_max, out, dim_tag):
    """Corrected gradn for every output bin and slice: ``out`` (S, n, d); ``dim_tag`` as in
    :func:`grad1`."""
    d = dim_tag.ndim
    n = neighbours.shape[0]
    k = neighbours.shape[1]
    p = 1 + d + iu.shape[0]
    n_slices = values.shape[0]
    own = np.empty(d)
    nbr = np.empty(k, dtype=np.int64)
    off = np.empty((k, d))
    ok = np.zeros(k, dtype=np.bool_)
    prev_ok = np.zeros(k, dtype=np.bool_)
    yv = np.empty(k)
    phi = np.empty((k, p))
    normal = np.empty((p, p))
    inv = np.empty((p, p))
    low = np.zeros((p, p))
    pinv_l = np.empty((d, p))
    w = np.empty((k, d))
    diag = np.empty(d)
    for i in range(n):
        deg = _edges(i, d, centers, neighbours, targets, own, nbr, off)
        t = targets[i]
        have = False
        defined = False
        for s in range(n_slices):
            y0 = values[s, t]
            if math.isnan(y0):
                for a in range(d):
                    out[s, i, a] = np.nan
                continue
            same = _load_slice(values, s, nbr, deg, ok, yv, prev_ok) and have
            if not same:
                have = True
                kk = 0.0
                r2 = 0.0
                for e in range(deg):
                    prev_ok[e] = ok[e]
                    okf = 1.0 if ok[e] else 0.0
                    kk += okf
                    s2 = 0.0
                    for a in range(d):
                        s2 += off[e, a] * off[e, a]
                    r2 += s2 * okf
                defined = kk > 0
                if defined:
                    _gradn_map(deg, d, kk, r2, off, ok, iu, ju, rcond, cond_max, phi, normal,
                               inv, low, pinv_l, w, diag)
            if not defined:
                for a in range(d):
                    out[s, i, a] = np.nan
                continue
            for a in range(d):
                g = 0.0
                for e in range(deg):
                    g += w[e, a] * yv[e]
                g += diag[a] * y0
                out[s, i, a] = g
    return out


@_jit
def grad1_cone_single(
    values, centers, neighbours, targets, thr, band, tie_u, tie_code, na, out, redo, miss,
    nmiss, dim_tag,
):
    """:func:`grad1` for one slice and the cone rule, fused into two passes per bin.

    The first pass reads each neighbour once (position, center, value), decides its sides
    and accumulates the per-axis counts and offset sums; the second applies the weights.
    Same arithmetic, in the same order, as :func:`grad1`.
    """
    d = dim_tag.ndim
    n = neighbours.shape[0]
    k = neighbours.shape[1]
    own = np.empty(d)
    side = np.zeros((k, d), dtype=np.int8)
    yv = np.empty(k)
    cb = np.empty(d)
    ca = np.empty(d)
    c0 = np.empty(d)
    cnt_b = np.empty(d)
    cnt_a = np.empty(d)
    sum_b = np.empty(d)
    sum_a = np.empty(d)
    g = np.empty(d)
    thr2 = thr * thr
    for i in range(n):
        t = targets[i]
        y0 = values[0, t]
        if math.isnan(y0):
            for a in range(d):
                out[0, i, a] = np.nan
            continue
        for a in range(d):
            own[a] = centers[t, a]
            cnt_b[a] = 0.0
            cnt_a[a] = 0.0
            sum_b[a] = 0.0
            sum_a[a] = 0.0
        deg = 0
        defined = False
        tie_missing = False
        for r in range(k):
            j = neighbours[i, r]
            if j < 0:
                continue
            e = deg
            deg += 1
            y = values[0, j]
            oke = not math.isnan(y)
            yv[e] = y if oke else 0.0
            defined |= oke
            # The cone decision of _sides, inlined on purpose: the offsets stay in registers.
            # Calling a shared per-edge helper (even with inline="always") measured 2x slower
            # at 2*10^4 bins. Change both places together.
            s2 = 0.0
            for a in range(d):
                o = centers[j, a] - own[a]
                s2 += o * o
            lim = 4.0 * band * s2
            near = False
            for a in range(d):
                o = centers[j, a] - own[a]
                gap = o * o - thr2 * s2
                sd = np.int8(gap > 0) * (np.int8(o > 0) - np.int8(o < 0))
                side[e, a] = sd
                near |= abs(gap) <= lim
            if near:
                norm = math.sqrt(s2)
                for a in range(d):
                    u = (centers[j, a] - own[a]) / norm
                    code = 0
                    if u > thr:
                        code = 1
                    elif u < -thr:
                        code = -1
                    if abs(abs(u) - thr) <= band:
                        pos = _find(tie_u, u)
                        if pos < 0:
                            _record_miss(u, miss, nmiss)
                            tie_missing = True
                            code = 0
                        else:
                            code = tie_code[pos]
                    side[e, a] = code
            okf = 1.0 if oke else 0.0
            for a in range(d):
                o = centers[j, a] - own[a]
                sd = side[e, a]
                # arithmetic selects (1.0 or 0.0): adding o * 0.0 leaves the sums exact
                fb = okf * (sd < 0)
                fa = okf * (sd > 0)
                cnt_b[a] += fb
                sum_b[a] += o * fb
                cnt_a[a] += fa
                sum_a[a] += o * fa
                if not oke:
                    side[e, a] = 0
        if tie_missing:
            redo[i] = True
            continue
        if not defined:
            for a in range(d):
                out[0, i, a] = np.nan
            continue
        _axis_coefficients(cnt_b, cnt_a, sum_b, sum_a, cb, ca, c0)
        for a in range(d):
            g[a] = 0.0
        for e in range(deg):
            for a in range(d):
                sd = side[e, a]
                # arithmetic select: sides are unpredictable on irregular meshes, and
                # w + 0.0 * other == w exactly (weights are finite)
                w = cb[a] * (sd < 0) + ca[a] * (sd > 0)
                g[a] += w * yv[e]
        for a in range(d):
            out[0, i, a] = na if math.isnan(c0[a]) else g[a] + c0[a] * y0
    return out

"""Optional compiled kernels (numba), used by :mod:`xtramgrad.kernels.engine` when numba is
installed (``pip install -e ".[fast]"``).

Nothing here is public: the engine dispatches to these functions and the numpy functions
(:mod:`.tramway`, :mod:`.fits`) stay the reference; the tests compare both on every method.

Structure
---------
* **Rows and stencils.** :func:`row` reads one row of a padded ``(n, k)`` table, of a CSR
  table (``indptr``, ``indices``) or of gathered stencils (``(n, K, d)`` centers, NaN at
  padding): each layout compiles to its own specialisation of the same call.
  :func:`_stencil_capped` walks rings of the table from one bin, in the order of
  :mod:`.stencil` (ring 1 in table order, then each ring's bins' rows in order, first
  occurrence kept). Radius stencils come from a scan of the cells around the bin where
  the scan proves that the walk reaches the same bins (:func:`ball_index`,
  :func:`_ball_capped`), else from the walk, sorted in the same cell order.
* **Per-bin maps.** A method's compiled kernel is one function computing, for one bin and
  one missing-value pattern, its local linear map from the stencil's offsets:
  ``fn(deg, d, off, ok, ring, par, w, c0, work) -> (flag, cond)``, with ``w`` (K, Q) the
  coefficients of the stencil entries and ``c0`` (Q,) that of the bin's own value (NaN:
  quantity not determined). :func:`lsq_bin`, :func:`lsq2_bin`, :func:`local_bin` and
  :func:`gradn_bin` share one weighted least-squares solver (:func:`_ls_solve`).
* **Drivers.** :func:`drive_table` (a whole table: each bin's stencil is walked here) and
  :func:`drive_gathered` (stencils gathered beforehand, one padded row per bin, as the
  chunked path makes them), one body compiled per layout (:func:`_driver`), run the
  per-bin map of a method given by its code
  (:data:`METHOD_CODES`, dispatched by :func:`bin_map`) and apply it to every slice of the
  values, recomputing it only when the missing-value pattern of the stencil changes from
  one slice to the next. For the gradient of values (not its uncertainty nor other
  combinations), lsq, lsq2 and local skip the map's coefficients where their fit is well
  conditioned: the normal matrix is factored once and solved per slice (direct fits).
  (Passing the per-bin function itself as an argument would compile to first-class
  function types, which numba cannot cache.)
  Both call the same per-bin function on the same offsets in the same order, so eager and
  chunked results agree bit for bit. lsq2's gradient of one slice has kernels of its own,
  :func:`lsq2_single` and :func:`lsq2_gathered`, one body compiled per layout
  (:func:`_lsq2_kernel`).
* **grad1** has drivers of its own (:func:`grad1_table` and :func:`grad1_gathered`, one
  body compiled per layout: :func:`_grad1_driver`; and the fused single-slice cone kernels
  :func:`grad1_cone_single` on a table and :func:`grad1_cone_gathered` on gathered
  stencils, likewise: :func:`_grad1_cone_kernel`) because its selection rules decide
  sides with TRamWAy's float64 ties: the rule's side test is chosen by its code
  (:data:`RULE_CODES`, one per rule of :mod:`xtramgrad.selection`), and cone ties are
  looked up in a table of decisions made by numpy's own ``arccos``; a tie missing from
  the table is reported back (``miss``)
  and the bin recomputed once the caller has extended the table.

Nothing of size (edges, ...) is allocated: the cost is the gather of the stencils' values
and centers. The chunked path's gather itself (:func:`localize`, :func:`take_rows`,
:func:`take_values`) and its table scans (:func:`chunk_reach`, :func:`row_counts`,
:func:`row_problem`) are here too.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, uint64
from numba.extending import overload

# cached to disk; float division by zero gives inf/NaN as in numpy
_jit = njit(cache=True, nogil=True, error_model="numpy")
# the small per-bin helpers are inlined into their callers: a call boundary with array
# arguments costs numba ~50 ns per array (reference counting), more than the helpers' work
_inline = njit(cache=True, nogil=True, error_model="numpy", inline="always")

# mirror kernels.fits
RANK_RATIO = 1e-12
SVD_RATIO = 1e-6
NULL_MASS = 1e-8
CHOL_RATIO = 1e-4  # squared Cholesky pivots within this ratio: no eigenvalue is near zero

MODE_VALUES = 0
MODE_STD = 1
MODE_LEVERAGE = 2  # the bin's own coefficient (the smoother's leverage, for GCV)

# Gaussian weights exp(x), x <= 0, by exp(x) = 2^(j/64) 2^m e^r (|r| <= ln 2 / 128): no
# branch and no call, so that loops of weights vectorize (4x faster than libm's exp, which
# is most of ``local``'s time); within 1 ulp of numpy's exp on [-5, 0] (tests/test_kernels)
_EXP_J = np.array([2.0 ** (j / 64) for j in range(64)])
_EXP_M = np.array([math.ldexp(1.0, m) for m in range(-1074, 1)])
_EXP_INV = 64 / math.log(2.0)
_EXP_HI = 6.93147180369123816490e-01 / 64  # ln 2 / 64 split: k * _EXP_HI is exact
_EXP_LO = 1.90821492927058770002e-10 / 64


@_inline
def _undefined(out, flags, s, i, no):
    """Slice ``s`` of bin ``i`` has no gradient (its own value missing, or none of its
    neighbours' values present): NaN in its ``no`` outputs ``out[s, i]``, flag 2. ``no``
    is the caller's count: where that is a compile-time constant (``dim_tag.ndim``) the
    loop unrolls as the caller's own did (``out.shape[2]`` here cost the cone kernels 3-5%)."""
    for o in range(no):
        out[s, i, o] = np.nan
    flags[s, i] = 2


@_inline
def gauss_exp(x):
    """``exp(x)`` for ``x <= 0`` (0 below -745, 1 above 0), branch-free (see _EXP_J)."""
    xc = min(max(x, -745.5), 0.0)
    k = math.floor(xc * _EXP_INV + 0.5)
    n = np.int64(k)
    r = (xc - k * _EXP_HI) - k * _EXP_LO
    p = r + r * r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0))))
    t = _EXP_J[n & 63] * _EXP_M[max(n >> 6, -1074) + 1074]
    return t + t * p if x > -745.0 else 0.0


# =========================================================================== rows, stencils


def _row_padded(table, indptr, i, nbr, slot):
    c = 0
    for r in range(table.shape[1]):
        j = table[i, r]
        if j >= 0:
            nbr[c] = j
            slot[c] = r
            c += 1
    return c


def _row_csr(table, indptr, i, nbr, slot):
    lo = indptr[i]
    hi = indptr[i + 1]
    for e in range(lo, hi):
        nbr[e - lo] = table[e]
        slot[e - lo] = e
    return hi - lo


def _row_gathered(table, indptr, i, nbr, slot):
    k = table.shape[1]
    c = 0
    for r in range(k):
        if not math.isnan(table[i, r, 0]):
            nbr[c] = i * k + r
            slot[c] = r
            c += 1
    return c


def row(table, indptr, i, nbr, slot):
    """Present neighbours of bin ``i`` of a padded (n, k) or CSR (``indptr``, entries)
    table: fills ``nbr`` (positions) and ``slot`` (where each sits in the table: its
    label's place, and on gathered stencils its place in every gathered array); returns
    their count. Compiled code gets the layout's version by the overload
    below, resolved at compile time. A gathered stencil table (its entries' centers
    (n, k, d), NaN at padding: see :func:`lsq_single`) gives the positions
    ``i * k + slot`` of its present entries in the flattened gathered arrays.

    Examples
    --------
    >>> nbr, slot = np.empty(2, np.int64), np.empty(2, np.int64)
    >>> row(np.array([[1, -1], [0, 2], [1, -1]]), None, 1, nbr, slot), nbr.tolist()
    (2, [0, 2])
    """
    return _row_layout(table.ndim)(table, indptr, i, nbr, slot)


def _row_layout(ndim):
    return {1: _row_csr, 2: _row_padded, 3: _row_gathered}[ndim]


@overload(row, jit_options={"cache": True})  # type: ignore[typeddict-unknown-key]
def _row_overload(table, indptr, i, nbr, slot):
    return _row_layout(table.ndim)


def _span_copied(table, indptr, i, nbr, slot):
    return nbr, 0, row(table, indptr, i, nbr, slot)


def _span_csr(table, indptr, i, nbr, slot):
    return table, indptr[i], indptr[i + 1]


def row_span(table, indptr, i, nbr, slot):
    """Bin ``i``'s row as ``(entries, lo, hi)``: its present neighbours are
    ``entries[lo:hi]``. A CSR row is read in place; a padded row is copied into ``nbr``
    first (:func:`row`). For walks, which read many rows per bin."""
    return (_span_csr if table.ndim == 1 else _span_copied)(table, indptr, i, nbr, slot)


@overload(row_span, jit_options={"cache": True})  # type: ignore[typeddict-unknown-key]
def _row_span_overload(table, indptr, i, nbr, slot):
    return _span_csr if table.ndim == 1 else _span_copied


def _label_padded(labels, i, s):
    return labels[i, s]


def _label_csr(labels, i, s):
    return labels[s]


def label_of(labels, i, s):
    """The label of the entry at ``slot`` ``s`` of row ``i`` (padded (n, k) labels, or one
    per CSR entry); compiled code gets the layout's version by the overload below."""
    return (_label_padded if labels.ndim == 2 else _label_csr)(labels, i, s)


@overload(label_of, jit_options={"cache": True})  # type: ignore[typeddict-unknown-key]
def _label_overload(labels, i, s):
    return _label_padded if labels.ndim == 2 else _label_csr


@_inline
def _dist2(centers, i, j):
    s = 0.0
    for a in range(centers.shape[1]):
        o = centers[j, a] - centers[i, a]
        s += o * o
    return s


@_jit
def padded_to_csr(table):
    """``(indptr, indices)`` of a padded table (the walks of wide stencils visit many rows:
    reading them compressed skips the padding)."""
    n = table.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        c = 0
        for r in range(table.shape[1]):
            if table[i, r] >= 0:
                c += 1
        indptr[i + 1] = indptr[i] + c
    indices = np.empty(indptr[n], dtype=np.int64)
    for i in range(n):
        c = indptr[i]
        for r in range(table.shape[1]):
            j = table[i, r]
            if j >= 0:
                indices[c] = j
                c += 1
    return indptr, indices


@_jit
def _widest_row(table, indptr, n):
    """The widest row: a padded table's width, or the longest CSR row (at least 1).
    (Compiled apart, not inlined: numba prunes the layout branch on its own arguments.)"""
    k = table.shape[1] if table.ndim >= 2 else 1
    if table.ndim == 1:
        for b in range(n):
            k = max(k, indptr[b + 1] - indptr[b])
    return k


@_inline
def _walk_grown(i, table, indptr, centers, rings, widen_to, min_points, radius, mark, ids,
                ring_of, nbr, slot):
    """:func:`_stencil_capped` of bin ``i``, doubling ``ids`` and ``ring_of`` (and clearing
    ``mark``) until the stencil fits: ``(size, ids, ring_of)``."""
    while True:
        size = _stencil_capped(i, table, indptr, centers, rings, widen_to, min_points, radius,
                               mark, ids, ring_of, nbr, slot)
        if size >= 0:
            return size, ids, ring_of
        ids = np.empty(2 * ids.shape[0], dtype=np.int64)
        ring_of = np.empty(ids.shape[0], dtype=np.int8)
        mark[:] = -1


@_jit
def stencil_sizes(table, indptr, centers, rings, widen_to, min_points, radius, out):
    """Size of every bin's stencil (``out`` (n,)); returns the largest."""
    n = centers.shape[0]
    mark = np.full(n, -1, dtype=np.int64)
    cap = max(16, table.shape[1] if table.ndim == 2 else 16)
    ids = np.empty(cap, dtype=np.int64)
    ring_of = np.empty(cap, dtype=np.int8)
    kmax = _widest_row(table, indptr, n)
    nbr = np.empty(kmax, dtype=np.int64)
    slot = np.empty(kmax, dtype=np.int64)
    ball = ball_index(table, indptr, centers, radius)
    best = 0
    for i in range(n):
        size, ids, ring_of = _stencil_of(i, ball, table, indptr, centers, rings, widen_to,
                                         min_points, radius, mark, ids, ring_of, nbr, slot)
        out[i] = size
        best = max(best, size)
    return best


@_jit
def walk_stencils(table, indptr, centers, targets, rings, widen_to, min_points, radius):
    """The stencils of ``targets`` (distinct bins) as CSR ``(sindptr, ids, ring)``, in the
    order of :mod:`.stencil` (radius stencils: from the cells of the bins near the
    targets, :func:`ball_index_near`)."""
    n = centers.shape[0]
    mark = np.full(n, -1, dtype=np.int64)
    rowmax = _widest_row(table, indptr, n)
    nbr = np.empty(rowmax, dtype=np.int64)
    slot = np.empty(rowmax, dtype=np.int64)
    buf = np.empty(max(16, rowmax), dtype=np.int64)
    rbuf = np.empty(buf.shape[0], dtype=np.int8)
    m = targets.shape[0]
    sindptr = np.zeros(m + 1, dtype=np.int64)
    ids = np.empty(max(16, m * rowmax), dtype=np.int64)
    ring = np.empty(ids.shape[0], dtype=np.int8)
    ball = ball_index_near(table, indptr, centers, radius, targets)
    pos = 0
    for t in range(m):
        size, buf, rbuf = _stencil_of(targets[t], ball, table, indptr, centers, rings,
                                      widen_to, min_points, radius, mark, buf, rbuf, nbr,
                                      slot)
        while pos + size > ids.shape[0]:
            bigger = np.empty(2 * ids.shape[0], dtype=np.int64)
            bigger[:pos] = ids[:pos]
            ids = bigger
            rb = np.empty(ids.shape[0], dtype=np.int8)
            rb[:pos] = ring[:pos]
            ring = rb
        for e in range(size):
            ids[pos + e] = buf[e]
            ring[pos + e] = rbuf[e]
        pos += size
        sindptr[t + 1] = pos
    return sindptr, ids[:pos], ring[:pos]


@_jit
def walk_padded(table, indptr, centers, targets, rings, widen_to, min_points, radius, skip,
                lid_out, ring_out, center_out):
    """The stencils of ``targets`` (distinct bins), as in :func:`walk_stencils`, written
    into padded rows: ``lid_out`` (m, K) their
    entries (-1 padding), ``ring_out`` (m, K) their rings (0 at padding), ``center_out``
    (m, K, d) their centers (NaN at padding); rows with ``skip`` are left empty. Returns the
    widest stencil walked: when it exceeds K, the rows that did not fit are left empty and
    the caller raises. (K = 0: the widest stencil only.)"""
    n = centers.shape[0]
    d = centers.shape[1]
    m = targets.shape[0]
    width = lid_out.shape[1]
    mark = np.full(n, -1, dtype=np.int64)
    rowmax = _widest_row(table, indptr, n)
    nbr = np.empty(rowmax, dtype=np.int64)
    slot = np.empty(rowmax, dtype=np.int64)
    buf = np.empty(max(16, width), dtype=np.int64)
    rbuf = np.empty(buf.shape[0], dtype=np.int8)
    ball = ball_index_near(table, indptr, centers, radius, targets)
    widest = 0
    for t in range(m):
        size = 0
        cells = False  # from the cells: the centers read in their order (contiguous)
        if not skip[t]:
            if ball.ok:
                size = _ball_capped(targets[t], ball, table, indptr, centers, radius, mark,
                                    buf, rbuf, nbr, slot)
                cells = size >= 0
            if not cells:
                size, buf, rbuf = _stencil_of(targets[t], ball, table, indptr, centers,
                                              rings, widen_to, min_points, radius, mark, buf,
                                              rbuf, nbr, slot)
            widest = max(widest, size)
        if size > width:
            size = 0  # (left empty: the caller raises)
        for e in range(size):
            lid_out[t, e] = buf[e]
            ring_out[t, e] = rbuf[e]
        if cells:
            for e in range(size):
                q = ball.pos[e]
                for a in range(d):
                    center_out[t, e, a] = ball.pc[a, q]
        else:
            for e in range(size):
                j = buf[e]
                for a in range(d):
                    center_out[t, e, a] = centers[j, a]
        for e in range(size, width):
            lid_out[t, e] = -1
            ring_out[t, e] = 0
            for a in range(d):
                center_out[t, e, a] = np.nan
    return widest


@_jit
def _chunk_window(g, starts, stops, offset):
    """The chunk among the sorted chunks [``starts``, ``stops``) holding global id ``g``,
    as a window ``(lo, hi, shift)``: ids in [lo, hi) are in it, at local positions
    ``id + shift``; an empty window (hi <= lo) if no chunk holds ``g``. Callers keep the
    window in scalars and call this only when an id falls outside it (consecutive ids
    mostly fall in one chunk). Compiled apart, with scalars kept by the caller: an inlined
    lookup taking the arrays cost 13x the localization (numba's reference counts on
    them in the hot loop)."""
    lo = 0
    hi = starts.shape[0]
    while lo < hi:  # the last chunk starting at or before g
        mid = (lo + hi) // 2
        if starts[mid] <= g:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0 or g >= stops[lo - 1]:
        return 0, 0, 0
    c = lo - 1
    return starts[c], stops[c], offset[c] - starts[c]


@_jit
def loaded_csr(table, indptr, row_starts, row_stops, starts, stops, offset):
    """The loaded rows of a table (padded (R, k) with ``indptr`` empty, or CSR entries with
    ``indptr`` (R + 1,)), those of the sorted chunks [``row_starts``, ``row_stops``) in
    order, as a CSR table over the local numbering of the sorted chunks [``starts``,
    ``stops``) (``offset``: their first local positions): ``(lindptr, lind, bad)``, rows not
    loaded empty; ``bad`` the first global id, of a row or an entry, outside those chunks
    (else -1). One pass to count, one to fill: what the walks of a chunk read."""
    nl = offset[-1] + stops[-1] - starts[-1] if starts.shape[0] else 0
    nc = starts.shape[0]
    count = np.zeros(nl + 1, dtype=np.int64)
    nrows = 0
    for p in range(row_starts.shape[0]):
        nrows += row_stops[p] - row_starts[p]
    kmax = _widest_row(table, indptr, nrows)
    nbr = np.empty(kmax, dtype=np.int64)
    slot = np.empty(kmax, dtype=np.int64)
    row_local = np.empty(nrows, dtype=np.int64)
    r = 0
    c = 0
    for p in range(row_starts.shape[0]):
        for g in range(row_starts[p], row_stops[p]):
            while c < nc and stops[c] <= g:
                c += 1
            if c == nc or g < starts[c]:
                return count[:1], count[:0], g
            lr = g - starts[c] + offset[c]
            row_local[r] = lr
            count[lr + 1] = row(table, indptr, r, nbr, slot)
            r += 1
    for q in range(nl):
        count[q + 1] += count[q]
    lind = np.empty(count[nl], dtype=np.int64)
    wlo, whi, shift = 0, 0, 0  # the window of the last chunk hit (_chunk_window)
    for r in range(nrows):
        deg = row(table, indptr, r, nbr, slot)
        at = count[row_local[r]]
        for e in range(deg):
            g = nbr[e]
            if g < wlo or g >= whi:
                wlo, whi, shift = _chunk_window(g, starts, stops, offset)
                if whi <= wlo:
                    return count, lind, g
            lind[at + e] = g + shift
    return count, lind, -1


@_jit
def _stencil_capped(
    i, table, indptr, centers, rings, widen_to, min_points, radius, mark, ids, ring_of, nbr,
    slot,
):
    """The stencil of bin ``i`` (see :mod:`.stencil`): fills ``ids`` and ``ring_of`` and
    returns its size, or -1 (leaving ``mark`` dirty) if ``ids`` is too small. ``mark`` (n,)
    holds, for each bin, the last bin whose walk saw it (initially -1); ``radius`` > 0
    walks a radius instead of rings."""
    mark[i] = i
    size = 0
    cap = ids.shape[0]
    r2 = radius * radius
    depth = rings if radius <= 0 else 1 << 30
    walk_radius = radius > 0
    src, lo, hi = row_span(table, indptr, i, nbr, slot)
    for e in range(lo, hi):
        # branch-free: the entry is written at ``size`` and kept by advancing ``size`` (the
        # tests are unpredictable on irregular meshes); a full buffer reports -1 even when
        # the entry is not kept (the caller then only grows it once more)
        j = src[e]
        keep = mark[j] != i
        mark[j] = i
        if walk_radius:
            keep &= _dist2(centers, i, j) <= r2
        if size == cap:
            return -1
        ids[size] = j
        ring_of[size] = 1
        size += keep
    ring = 1
    front_lo = 0
    front_hi = size
    while True:
        if ring == rings and radius <= 0 and size < min_points and widen_to > rings:
            depth = widen_to
        if ring >= depth or front_hi == front_lo:
            break
        ring += 1
        for f in range(front_lo, front_hi):
            b = ids[f]
            src, lo, hi = row_span(table, indptr, b, nbr, slot)
            for e in range(lo, hi):
                j = src[e]
                keep = mark[j] != i
                mark[j] = i
                if walk_radius:
                    keep &= _dist2(centers, i, j) <= r2
                if size == cap:
                    return -1
                ids[size] = j
                ring_of[size] = ring
                size += keep
        front_lo = front_hi
        front_hi = size
    return size


# --------------------------------------------------------------------------- radius stencils
#
# A radius stencil is the set of bins that the walk reaches within the radius (see
# :mod:`.stencil`), ordered by cell: cells of side ``radius * (1 + BALL_SLACK)`` anchored
# at the origin, sorted by their last axis' index first, then by bin. Rather than walking
# ~6 rows per member, :func:`_ball_capped` scans the 3^d cells around the bin, which hold
# every bin of the ball in that order, and proves that the walk reaches each of them: a
# bin of the ball reached from a bin of the ball closer to the center is reached by
# induction (its distance to the center is smaller). The proof is one comparison per
# member where the member's in-neighbours surround it (2D: the bound ``rho2`` below),
# else a scan of its in-neighbours; where it fails (holes, disjoint parts overlapping,
# one-way tables), the walk itself decides and the cell order is kept.

#: Cells are this much wider than the radius, so that float rounding of ``x / side``
#: cannot put two bins within the radius more than one cell apart.
BALL_SLACK = 1e-6
#: Margin of the in-cell bound (relative): see :func:`_in_cell_bound`.
BALL_DELTA = 1e-6

_BallT = namedtuple("_BallT", "ok start order pc key dims rptr rind rho2 where pos pend")


@_jit
def _in_cell_bound(centers, rptr, rind, j, radius, ox, oy, key):
    """A squared distance beyond which some in-neighbour of bin ``j`` is closer than ``j``
    to any point, with a float margin (inf where not established). 2D only: with ``g``
    the widest angle between consecutive in-neighbour directions (< pi) and ``L`` the
    longest, a point at distance ``r > L / (2 cos(g/2)) (1 + delta)`` of ``j`` is closer
    to the in-neighbour within ``g/2`` of its direction by at least ``|o_k| delta L``,
    which is required to dwarf the rounding of squared distances."""
    k = rptr[j + 1] - rptr[j]
    if centers.shape[1] != 2 or k < 3 or k > ox.shape[0]:  # (hubs: the sort is quadratic)
        return np.inf
    lmax = 0.0
    lmin = np.inf
    for s in range(k):
        q = rind[rptr[j] + s]
        dx = centers[q, 0] - centers[j, 0]
        dy = centers[q, 1] - centers[j, 1]
        ln = math.sqrt(dx * dx + dy * dy)
        lmax = max(lmax, ln)
        lmin = min(lmin, ln)
        a = abs(dx) + abs(dy)
        t = dy / a if a > 0.0 else 0.0
        key[s] = (t if dy >= 0.0 else 4.0 + t) if dx >= 0.0 else 2.0 - t  # pseudo-angle
        ox[s] = dx
        oy[s] = dy
    tol = 64.0 * 2.2e-16 * radius * radius  # (differences are rounded relative to themselves)
    if not lmin * lmax * BALL_DELTA > tol:
        return np.inf
    for s in range(1, k):  # insertion sort by angle
        a = key[s]
        x = ox[s]
        y = oy[s]
        r = s - 1
        while r >= 0 and key[r] > a:
            key[r + 1] = key[r]
            ox[r + 1] = ox[r]
            oy[r + 1] = oy[r]
            r -= 1
        key[r + 1] = a
        ox[r + 1] = x
        oy[r + 1] = y
    cmin = 1.0
    for s in range(k):
        u = s + 1 if s + 1 < k else 0
        if ox[s] * oy[u] - oy[s] * ox[u] <= 0.0:  # a gap of pi or more: unbounded
            return np.inf
        cg = (ox[s] * ox[u] + oy[s] * oy[u]) / math.sqrt(
            (ox[s] * ox[s] + oy[s] * oy[s]) * (ox[u] * ox[u] + oy[u] * oy[u]))
        cmin = min(cmin, cg)
    ca = math.sqrt(max(0.0, 0.5 * (1.0 + cmin)))
    if ca < 1e-3:
        return np.inf
    rr = lmax / (2.0 * ca) * (1.0 + BALL_DELTA)
    return rr * rr


@_inline
def _block_of(k, dims):
    """The 3^d block of cells around cell ``k`` (clipped to the grid): the range of its
    index along axis 0 and the ranges along axes 1 and 2, ``(a0, b0, lo1, hi1, lo2, hi2)``
    inclusive (a block row, axis 0, is contiguous in the cell layout)."""
    c0 = k % dims[0]
    c1 = (k // dims[0]) % dims[1]
    c2 = k // (dims[0] * dims[1])
    return (max(c0 - 1, 0), min(c0 + 1, dims[0] - 1), max(c1 - 1, 0),
            min(c1 + 1, dims[1] - 1), max(c2 - 1, 0), min(c2 + 1, dims[2] - 1))


@_jit
def ball_index(table, indptr, centers, radius):
    """The cells of :func:`_ball_capped` over ``centers`` (n, d), with the table's
    in-neighbours (reverse CSR) and their bounds; ``ok`` False (the walk decides every
    stencil, sorted by cell) when ``radius`` <= 0, or when the cells would outnumber the
    bins by far or their indices would lose precision."""
    return _ball_of(table, indptr, centers, radius, np.ones(centers.shape[0], np.bool_))


@_jit
def ball_index_near(table, indptr, centers, radius, targets):
    """:func:`ball_index` over the bins near ``targets`` only (those in their bounding box
    grown by ``radius``): what the radius stencils of ``targets`` read. The stencils are
    the same: every bin within ``radius`` of a target is in the cells, and so is every
    in-neighbour the proof of :func:`_prove_pending` looks for (closer to the target than
    a member); fewer in-neighbours can only fail a proof, and the walk then decides, in the
    same order. (A chunk's walk loads its whole halo: this indexes a fraction of it.) When
    the bins near the targets outnumber them 16 to 1, no cells: the walk decides."""
    n, d = centers.shape
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for t in range(targets.shape[0]):
        for a in range(d):
            lo[a] = min(lo[a], centers[targets[t], a])
            hi[a] = max(hi[a], centers[targets[t], a])
    grow = radius * (1.0 + BALL_SLACK) * 2.0  # (a margin far above rounding)
    keep = np.zeros(n, dtype=np.bool_)
    kept = 0
    for i in range(n if radius > 0.0 else 0):
        near = True
        finite = True
        for a in range(d):
            v = centers[i, a]
            near &= lo[a] - grow <= v <= hi[a] + grow
            finite &= math.isfinite(v)
        keep[i] = near or not finite  # (a center not finite: no cells, as over all bins)
        kept += keep[i]
    # few targets spread out (a sample): indexing their box would cost more than walking
    # (~0.25 us per bin indexed): the walk decides
    return _ball_of(table, indptr, centers, radius if kept <= 16 * targets.shape[0] else 0.0,
                    keep)


@_jit
def _ball_of(table, indptr, centers, radius, keep):
    """:func:`ball_index` over the bins ``keep`` (the others: in no cell, their rows and
    in-neighbours ignored)."""
    n, d = centers.shape
    side = radius * (1.0 + BALL_SLACK)
    lo = np.zeros(3, dtype=np.int64)
    dims = np.ones(3, dtype=np.int64)
    cmax = 0.0
    finite = True
    kept = 0
    for i in range(n if radius > 0.0 else 0):
        if not keep[i]:
            continue
        kept += 1
        for a in range(d):
            v = centers[i, a]
            finite &= math.isfinite(v)
            cmax = max(cmax, abs(v))
    ok = radius > 0.0 and kept > 0 and d <= 3 and finite and cmax / side < 1e9
    key = np.zeros(n if ok else 0, dtype=np.int64)
    if ok:
        for a in range(d):
            lo_a = np.inf
            hi_a = -np.inf
            for i in range(n):
                if keep[i]:
                    f = math.floor(centers[i, a] / side)
                    lo_a = min(lo_a, f)
                    hi_a = max(hi_a, f)
            lo[a] = int(lo_a)
            dims[a] = int(hi_a) - int(lo_a) + 1
        limit = 4 * kept + 64  # cells at most: beyond, the walk decides (no overflow below)
        total = 1
        for a in range(d):
            ok = ok and dims[a] <= limit // total
            total *= dims[a] if ok else 1
    ncell = dims[0] * dims[1] * dims[2] if ok else 0
    start = np.zeros(ncell + 1, dtype=np.int64)
    order = np.empty(kept if ok else 0, dtype=np.int64)
    pc = np.empty((d, kept if ok else 0))  # by axis: the scan reads each contiguously
    if ok:
        for i in range(n):
            if not keep[i]:
                continue
            k = 0
            stride = 1
            for a in range(d):
                k += (int(math.floor(centers[i, a] / side)) - lo[a]) * stride
                stride *= dims[a]
            key[i] = k
            start[k + 1] += 1
        for c in range(ncell):
            start[c + 1] += start[c]
        fill = start[:-1].copy()
        for i in range(n):  # stable: by bin within a cell
            if not keep[i]:
                continue
            p = fill[key[i]]
            fill[key[i]] += 1
            order[p] = i
            for a in range(d):
                pc[a, p] = centers[i, a]
    # in-neighbours (the reverse table) and their bounds
    m = n if ok else 0
    rptr = np.zeros(m + 1, dtype=np.int64)
    kmax = _widest_row(table, indptr, n)
    nbr = np.empty(kmax, dtype=np.int64)
    slot = np.empty(kmax, dtype=np.int64)
    for i in range(m):
        if keep[i]:
            src, a, b = row_span(table, indptr, i, nbr, slot)
            for e in range(a, b):
                rptr[src[e] + 1] += 1
    for i in range(m):
        rptr[i + 1] += rptr[i]
    rind = np.empty(rptr[m], dtype=np.int64)
    fill = rptr[:-1].copy()
    for i in range(m):
        if keep[i]:
            src, a, b = row_span(table, indptr, i, nbr, slot)
            for e in range(a, b):
                j = src[e]
                rind[fill[j]] = i
                fill[j] += 1
    rho2 = np.empty(order.shape[0])
    widest = 32  # in-neighbours at most for a bound (beyond: inf)
    ox = np.empty(widest)
    oy = np.empty(widest)
    ang = np.empty(widest)
    for p in range(order.shape[0]):  # in cell order, as the scan reads them
        rho2[p] = _in_cell_bound(centers, rptr, rind, order[p], radius, ox, oy, ang)
    # scratch of the scan: the most bins any 3^d block of cells holds
    most = 0
    for k in range(ncell):
        a0, b0, lo1, hi1, lo2, hi2 = _block_of(k, dims)
        tot = 0
        for g2 in range(lo2, hi2 + 1):
            for g1 in range(lo1, hi1 + 1):
                base = (g2 * dims[1] + g1) * dims[0]
                tot += start[base + b0 + 1] - start[base + a0]
        most = max(most, tot)
    where = np.empty(n if ok else 0, dtype=np.int64)  # each bin's place in the cell order
    for q in range(order.shape[0]):
        where[order[q]] = q
    return _BallT(ok, start, order, pc, key, dims, rptr, rind, rho2, where,
                  np.empty(most, dtype=np.uint64), np.empty(most, dtype=np.int64))


@_inline
def _scan_cells(i, start, pc, key, dims, where, centers, r2, pos):
    """The scan of :func:`_ball_capped`: the places (in the cell order) of the bins within
    the radius (squared: ``r2``) of bin ``i`` among its 3^d block of cells, in cell order,
    into ``pos``; returns their count (``pos`` holds the block: it never overflows).

    Indices are unsigned: numba then leaves out the wrap-around of negative indices, which
    made this loop 2x slower. Its squared distances are summed as :func:`_ball_member`
    sums them."""
    d = centers.shape[1]
    a0, b0, lo1, hi1, lo2, hi2 = _block_of(key[i], dims)
    me = uint64(where[i])
    size = uint64(0)
    x0 = centers[i, 0]
    x1 = centers[i, 1] if d > 1 else 0.0
    for g2 in range(lo2, hi2 + 1):
        for g1 in range(lo1, hi1 + 1):
            base = (g2 * dims[1] + g1) * dims[0]
            lo = uint64(start[base + a0])
            hi = uint64(start[base + b0 + 1])
            for q in range(lo, hi):
                if d == 2:  # unrolled (the common case)
                    o = pc[0, q] - x0
                    s = 0.0 + o * o
                    o = pc[1, q] - x1
                    s += o * o
                else:
                    s = 0.0
                    for a in range(d):
                        o = pc[a, q] - centers[i, a]
                        s += o * o
                pos[size] = q
                size += uint64((s <= r2) & (q != me))
    return np.int64(size)


@_inline
def _ball_member(centers, pc, i, q):
    """The squared distance from bin ``i`` to the bin at place ``q`` of the cell order, as
    :func:`_scan_cells` sums it."""
    d = centers.shape[1]
    if d == 2:
        o = pc[0, q] - centers[i, 0]
        s = 0.0 + o * o
        o = pc[1, q] - centers[i, 1]
        return s + o * o
    s = 0.0
    for a in range(d):
        o = pc[a, q] - centers[i, a]
        s += o * o
    return s


@_jit
def _prove_pending(i, ball, table, indptr, centers, pos, pend, npend, mark, nbr, slot):
    """Whether the walk reaches the members ``pos[pend[:npend]]`` of bin ``i``'s scan (those
    within their in-cell bound, see :func:`_in_cell_bound`): each is in the row of ``i``, or
    has an in-neighbour closer to ``i`` than itself. (Compiled apart: inlined, it slowed the
    scan and the fits that call it 2x.)"""
    src, lo, hi = row_span(table, indptr, i, nbr, slot)
    for e in range(lo, hi):  # marked -2 - i (the walk, if it runs after, marks with i)
        mark[src[e]] = -2 - i
    for t in range(npend):
        q = pos[pend[t]]
        j = ball.order[q]
        if mark[j] == -2 - i:
            continue
        d2 = _ball_member(centers, ball.pc, i, q)
        found = False
        for s in range(ball.rptr[j], ball.rptr[j + 1]):
            if _dist2(centers, i, ball.rind[s]) < d2:
                found = True
                break
        if not found:
            return False
    return True


@_inline
def _ball_capped(i, ball, table, indptr, centers, radius, mark, ids, ring_of, nbr, slot):
    """The radius stencil of bin ``i`` from the cells, if they prove it (see above): its
    size, -1 if ``ids`` is too small, -2 if not proved (the walk decides)."""
    pos = ball.pos
    size = _scan_cells(i, ball.start, ball.pc, ball.key, ball.dims, ball.where, centers,
                       radius * radius, pos)
    if size > ids.shape[0]:
        return -1
    pend = ball.pend
    npend = 0
    rho2 = ball.rho2
    order = ball.order
    for e in range(size):
        q = pos[e]
        ids[e] = order[q]
        ring_of[e] = 1
        pend[npend] = e
        npend += _ball_member(centers, ball.pc, i, q) <= rho2[q]
    if npend and not _prove_pending(i, ball, table, indptr, centers, pos, pend, npend, mark,
                                    nbr, slot):
        return -2
    return size


@_jit
def ball_counts_max(ball, centers, radius, targets):
    """The most bins within ``radius`` of any of ``targets`` (themselves left out), by the
    scan of the cells: at least the largest of their radius stencils."""
    pos = np.empty(ball.pos.shape[0], dtype=np.uint64)  # scratch of its own: threads
    best = 0
    for t in range(targets.shape[0]):
        best = max(best, _scan_cells(targets[t], ball.start, ball.pc, ball.key, ball.dims,
                                     ball.where, centers, radius * radius, pos))
    return best


@_jit
def _walk_sorted(i, table, indptr, centers, radius, mark, ids, ring_of, nbr, slot):
    """The radius stencil of bin ``i`` by the walk, ordered by cell (the index along the
    last axis most significant, as the cells are laid out), then by bin:
    ``(size, ids, ring_of)``."""
    size, ids, ring_of = _walk_grown(i, table, indptr, centers, 1, 0, 0, radius, mark, ids,
                                     ring_of, nbr, slot)
    side = radius * (1.0 + BALL_SLACK)
    perm = np.arange(size)  # stable sorts, least significant first (bins: as walked)
    perm = perm[np.argsort(ids[:size], kind="mergesort")]
    for a in range(centers.shape[1]):
        cell = np.empty(size)
        for e in range(size):
            cell[e] = math.floor(centers[ids[perm[e]], a] / side)
        perm = perm[np.argsort(cell, kind="mergesort")]
    sorted_ids = ids[:size][perm]
    for e in range(size):
        ids[e] = sorted_ids[e]
        ring_of[e] = 1
    return size, ids, ring_of


@_inline
def _stencil_of(i, ball, table, indptr, centers, rings, widen_to, min_points, radius, mark,
                ids, ring_of, nbr, slot):
    """Bin ``i``'s stencil (rings, or a radius: from the cells where they prove it, else
    by the walk), growing the buffers as needed: ``(size, ids, ring_of)``."""
    if radius <= 0.0:
        return _walk_grown(i, table, indptr, centers, rings, widen_to, min_points, radius,
                           mark, ids, ring_of, nbr, slot)
    return _radius_stencil(i, ball, table, indptr, centers, radius, mark, ids, ring_of, nbr,
                           slot)


@_jit
def _radius_stencil(i, ball, table, indptr, centers, radius, mark, ids, ring_of, nbr, slot):
    """:func:`_stencil_of` for a radius (compiled apart: inlined, it slowed the drivers'
    ring walks by ~10%)."""
    while ball.ok:
        size = _ball_capped(i, ball, table, indptr, centers, radius, mark, ids, ring_of,
                            nbr, slot)
        if size >= 0:
            return size, ids, ring_of
        if size == -2:
            break
        ids = np.empty(2 * ids.shape[0], dtype=np.int64)
        ring_of = np.empty(ids.shape[0], dtype=np.int8)
    return _walk_sorted(i, table, indptr, centers, radius, mark, ids, ring_of, nbr, slot)


# =========================================================================== least squares


@_inline
def _cholesky(mat, low, p, min_ratio):
    """Cholesky factor of ``mat[:p, :p]`` into ``low``. False unless positive definite with
    every squared pivot at least ``min_ratio`` times the largest (well conditioned)."""
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


@_inline
def _cholesky_solve_unit(low, p, col, x):
    """``x = mat^-1 e_col`` from the Cholesky factor ``low`` of ``mat``."""
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


@_inline
def _normal_solve(nrm, low, xs, p):
    """Solve the normal equations ``nrm x = xs`` in place (``nrm``: its upper triangle,
    mirrored here) by :func:`_cholesky`, forward then back substitution (as
    :func:`direct_apply`); False where the factor is not well conditioned."""
    for a in range(p):
        for b in range(a + 1, p):
            nrm[b, a] = nrm[a, b]
    if not _cholesky(nrm, low, p, CHOL_RATIO):
        return False
    for r in range(p):
        v = xs[r]
        for q in range(r):
            v -= low[r, q] * xs[q]
        xs[r] = v / low[r, r]
    for r in range(p - 1, -1, -1):
        v = xs[r]
        for q in range(r + 1, p):
            v -= low[q, r] * xs[q]
        xs[r] = v / low[r, r]
    return True


@_inline
def _solve_scratch(d, nq, p):
    """Scratch of the single-slice fits: ``(c0, c0o, comb, ph, nrm, low, xs)``, the
    general path's center row, its output, the output combination (d, nq), then the
    direct fit's design row, normal matrix, factor and right-hand side (p)."""
    return (np.empty(nq), np.empty(d), np.eye(d, nq), np.empty(p), np.empty((p, p)),
            np.empty((p, p)), np.empty(p))


@_jit
def _ls_solve(m, p, phi, wt, constrained, cw, out_cols, nq, pinv_rows, work_normal, low, x):
    """Rows ``out_cols`` of the pseudo-inverse map of a weighted least-squares fit.

    Rows ``0..m-1`` of ``phi`` (design, scaled) with weights ``wt``; for a free center
    (``constrained`` False) one more row ``e_0`` of weight ``cw``. Fills ``pinv_rows``
    (nq, m + 1): column ``e`` < m is the coefficient of row ``e``'s value, column ``m`` that
    of the center row (free center only). Returns ``(rank, cond, null_ok)``: ``null_ok`` is
    a bit mask of the out rows that are determined.
    """
    for a in range(p):
        for b in range(a, p):
            work_normal[a, b] = 0.0
    for e in range(m):  # entry by entry: each design row read once (same sums, same order)
        we = wt[e]
        for a in range(p):
            pa = phi[e, a] * we
            for b in range(a, p):
                work_normal[a, b] += pa * phi[e, b]
    for a in range(p):
        for b in range(a + 1, p):
            work_normal[b, a] = work_normal[a, b]
    if not constrained:
        work_normal[0, 0] += cw
    if _cholesky(work_normal, low, p, CHOL_RATIO):
        for q in range(nq):
            _cholesky_solve_unit(low, p, out_cols[q], x)
            for e in range(m):
                acc = 0.0
                for a in range(p):
                    acc += x[a] * phi[e, a]
                pinv_rows[q, e] = acc * wt[e]
            pinv_rows[q, m] = x[0] * cw if not constrained else 0.0
        big = 0.0
        small = np.inf
        for c in range(p):
            v = low[c, c] * low[c, c]
            big = max(big, v)
            small = min(small, v)
        mask = (1 << nq) - 1
        return p, math.sqrt(big / small), mask
    # ill-conditioned or rank-deficient: SVD of the weighted design (rare: not inlined)
    return _ls_svd(m, p, phi, wt, constrained, cw, out_cols, nq, pinv_rows)


@_jit
def _ls_svd(m, p, phi, wt, constrained, cw, out_cols, nq, pinv_rows):
    """:func:`_ls_solve` by SVD of the weighted design (accuracy eps * cond)."""
    rows = m + (0 if constrained else 1)
    design = np.zeros((rows, p))
    for e in range(m):
        s = math.sqrt(wt[e])
        for a in range(p):
            design[e, a] = phi[e, a] * s
    if not constrained:
        design[m, 0] = math.sqrt(cw)
    u, sv, vt = np.linalg.svd(design, False)
    rank = 0
    lim = math.sqrt(RANK_RATIO) * sv[0] if sv.shape[0] else 0.0
    for c in range(sv.shape[0]):
        if sv[c] > lim and sv[c] > 0.0:
            rank += 1
    mask = 0
    for q in range(nq):
        col = out_cols[q]
        null = 0.0
        for c in range(rank, p):
            if c < vt.shape[0]:
                null += vt[c, col] * vt[c, col]
        if p > vt.shape[0]:
            # vt has min(rows, p) rows: the missing right-singular vectors span the rest
            covered = 0.0
            for c in range(vt.shape[0]):
                covered += vt[c, col] * vt[c, col]
            null += 1.0 - covered
        if null <= NULL_MASS:
            mask |= 1 << q
        for e in range(rows):
            acc = 0.0
            for c in range(rank):
                acc += vt[c, col] * u[e, c] / sv[c]
            if e < m:
                pinv_rows[q, e] = acc * math.sqrt(wt[e])
            else:
                pinv_rows[q, m] = acc * math.sqrt(cw)
        if constrained:
            pinv_rows[q, m] = 0.0
    cond = sv[0] / sv[rank - 1] if rank > 0 else np.inf
    if rank < p:
        cond = np.inf
    return rank, cond, mask


@_inline
def _monomials(z, d, degree, constant, out):
    """Design row of offsets ``z`` (d,) into ``out``; returns its length (see fits.monomials)."""
    c = 0
    if constant:
        out[c] = 1.0
        c += 1
    for a in range(d):
        out[c] = z[a]
        c += 1
    if degree >= 2:
        for a in range(d):
            for b in range(a, d):
                v = z[a] * z[b]
                out[c] = 0.5 * v if a == b else v
                c += 1
    return c


@_inline
def _three_smallest(v, l1, l2, l3):
    """The three smallest of ``l1 <= l2 <= l3`` and ``v``, in order."""
    if v < l3:
        if v < l2:
            if v < l1:
                return v, l1, l2
            return l1, v, l2
        return l1, l2, v
    return l1, l2, l3


@_inline
def _median_bound(m, l1, l2, l3):
    """A lower bound of the median of ``m`` values from their three smallest: the median
    (mean of the two middle ones) is at least the third smallest of 5 or more, the second
    of 3 or 4."""
    return l3 if m >= 5 else (l2 if m >= 3 else l1)


@_inline
def _long_limit(buf, m, hi, l1, l2, l3, cutoff):
    """The squared length above which an entry is long: ``cutoff**2`` times the median of
    the ``m`` squared lengths in ``buf`` (sorted in place), or inf without sorting when
    none can be (the longest, ``hi``, is within that of the median's lower bound from the
    three smallest ``l1 <= l2 <= l3``)."""
    if m == 0 or not hi > cutoff * cutoff * _median_bound(m, l1, l2, l3):
        return np.inf
    for a in range(1, m):  # insertion sort in place: rows are short
        v = buf[a]
        b = a - 1
        while b >= 0 and buf[b] > v:
            buf[b + 1] = buf[b]
            b -= 1
        buf[b + 1] = v
    return cutoff * cutoff * 0.5 * (buf[(m - 1) // 2] + buf[m // 2])


@_inline
def _long_entries(deg, d, off, use, cutoff, buf):
    """Drop (in ``use``) the entries longer than ``cutoff`` times the median used length,
    compared on squared lengths (see fits.long_edges); returns whether any was dropped."""
    m = 0
    l1 = np.inf
    l2 = np.inf
    l3 = np.inf
    hi = 0.0
    for e in range(deg):
        if use[e]:
            s = 0.0
            for a in range(d):
                s += off[e, a] * off[e, a]
            buf[m] = s
            l1, l2, l3 = _three_smallest(s, l1, l2, l3)
            hi = max(hi, s)
            m += 1
    lim = _long_limit(buf, m, hi, l1, l2, l3, cutoff)
    if lim == np.inf:  # none is long
        return False
    dropped = False
    for e in range(deg):
        if use[e]:
            s = 0.0
            for a in range(d):
                s += off[e, a] * off[e, a]
            if s > lim:
                use[e] = False
                dropped = True
    return dropped


@_inline
def _rms(deg, d, off, use):
    s = 0.0
    k = 0.0
    for e in range(deg):
        if use[e]:
            for a in range(d):
                s += off[e, a] * off[e, a]
            k += 1.0
    h = math.sqrt(s / k) if k > 0 else np.nan
    if not (math.isfinite(h) and h > 0):
        h = 1.0
    return h


@_inline
def _inverse_power(r2, power):
    """``|o|^-power`` from ``r2 = |o|^2`` (the usual exponents without ``pow``)."""
    if power == 0.0:
        return 1.0
    if power == 2.0:
        return 1.0 / r2
    if power == 1.0:
        return 1.0 / math.sqrt(r2)
    if power == 4.0:
        return 1.0 / (r2 * r2)
    return r2 ** (-0.5 * power)


@_jit
def _constrained_fit(deg, d, off, use, power, degree, qcols, nq, qpow, w, c0, work):
    """Weighted LS through the center over entries ``use``: fills ``w[:, :nq]``, ``c0``.
    Returns (rank, cond, mask)."""
    nh = d * (d + 1) // 2
    p = d + (nh if degree >= 2 else 0)
    h = _rms(deg, d, off, use)
    phi = work.phi
    wt = work.wt
    idx = work.idx
    m = np.int64(0)  # (not a literal 0: see _bin_general)
    z = work.z
    for e in range(deg):
        if not use[e]:
            continue
        r2 = 0.0
        for a in range(d):
            z[a] = off[e, a] / h
            r2 += z[a] * z[a]
        if r2 <= 0.0:
            continue
        _monomials(z, d, degree, False, phi[m])
        wt[m] = _inverse_power(r2, power)
        idx[m] = e
        m += 1
    for e in range(deg):
        for q in range(nq):
            w[e, q] = 0.0
    rank, cond, mask = _ls_solve(m, p, phi, wt, True, 0.0, qcols, nq, work.pinv, work.normal,
                                 work.low, work.x)
    for q in range(nq):
        s = h if qpow[q] == 1.0 else (h * h if qpow[q] == 2.0 else h ** qpow[q])
        tot = 0.0
        for r in range(m):
            v = work.pinv[q, r] / s
            w[idx[r], q] = v
            tot += v
        if mask & (1 << q):
            c0[q] = -tot
        else:
            c0[q] = np.nan
            for r in range(m):
                w[idx[r], q] = 0.0
    return rank, cond, mask


# per-driver scratch of the least-squares maps: phi (K+1, p), wt (K+1,), idx (K+1,), z (d,),
# pinv (Q, K+2), normal (p, p), low (p, p), x (p,), use (K,), buf (K+1,), use2 (K,),
# qcols (16,) int, qpow (16,), fpar (4,), need (1,): how many leading quantities the caller
# uses (the others are not computed), state (4,): the direct fits' (m, scale, p, free),
# wphi (p, K+1): weighted design columns; nothing is allocated per bin
_WorkT = namedtuple(
    "_WorkT", "phi wt idx z pinv normal low x use buf use2 qcols qpow fpar need state wphi"
)


@_jit
def _make_work(k, d, q):
    p = 1 + d + d * (d + 1) // 2
    return _WorkT(
        np.empty((k + 1, p)), np.empty(k + 1), np.empty(k + 1, dtype=np.int64), np.empty(d),
        np.empty((q, k + 2)), np.empty((p, p)), np.zeros((p, p)), np.empty(p),
        np.empty(k, dtype=np.bool_), np.empty(k + 1), np.empty(k, dtype=np.bool_),
        np.empty(16, dtype=np.int64), np.empty(16), np.empty(4),
        np.full(1, 1 << 30, dtype=np.int64), np.empty(4), np.empty((p, k + 1)),
    )


# the direct fits' scratch: the arrays of the work tuple they use, in a tuple of their own
# built once per driver (passing the whole work tuple into the inlined direct functions
# measured 1.5x slower on lsq)
_DirectT = namedtuple("_DirectT", "wt buf low state x phi idx z normal wphi use")


@_inline
def _direct_work(work):
    return _DirectT(work.wt, work.buf, work.low, work.state, work.x, work.phi, work.idx,
                    work.z, work.normal, work.wphi, work.use)


@_inline
def lsq_bin(deg, d, off, ok, ring, par, w, c0, work):
    """Per-bin map of ``lsq``: ``par = (power, cutoff)``. See fits.lsq_weights."""
    power = par[0]
    cutoff = par[1]
    use = work.use
    nused = 0
    for e in range(deg):
        use[e] = ok[e]
        nused += ok[e]
    if nused == 0:
        for a in range(d):
            c0[a] = np.nan
        return 2, np.nan
    qcols = work.qcols
    qpow = work.qpow
    for a in range(d):
        qcols[a] = a
        qpow[a] = 1.0
    had_long = False
    if math.isfinite(cutoff):
        had_long = _long_entries(deg, d, off, use, cutoff, work.buf)
    rank, cond = _linear_fit(deg, d, off, use, power, qcols, qpow, w, c0, work)
    if had_long and rank < d:
        for e in range(deg):
            use[e] = ok[e]
        rank, cond = _linear_fit(deg, d, off, use, power, qcols, qpow, w, c0, work)
    return 0, cond


#: a closed-form solve is used when the (Frobenius) condition number of the scaled normal
#: matrix is below this; otherwise the general path (Cholesky, then SVD) decides
LINEAR_COND_MAX = 1e6


@_inline
def _linear_fit(deg, d, off, use, power, qcols, qpow, w, c0, work):
    """:func:`_constrained_fit` of degree 1 (the gradient through the center), by the closed
    form of the d x d normal equations where they are well conditioned. Returns
    (rank, cond)."""
    done, cond = _linear_closed(deg, d, off, use, power, work.wt, w, c0)
    if done:
        return d, cond
    rank, cond, _ = _constrained_fit(deg, d, off, use, power, 1, qcols, d, qpow, w, c0, work)
    return rank, cond


@_jit
def _linear_closed(deg, d, off, use, power, wt, w, c0):
    """The closed form of :func:`_linear_fit`; returns (done, cond), not done (the
    general path then fills ``w`` and ``c0``) where the normal matrix is singular or its
    condition number is ``LINEAR_COND_MAX`` or more. Separate (not inlined) to keep the
    drivers' compile short; it takes arrays, not the work tuple, so the call costs little."""
    h = _rms(deg, d, off, use)
    m00 = 0.0
    m01 = 0.0
    m02 = 0.0
    m11 = 0.0
    m12 = 0.0
    m22 = 0.0
    for e in range(deg):
        w[e, 0] = 0.0
        for a in range(1, d):
            w[e, a] = 0.0
        if not use[e]:
            wt[e] = 0.0
            continue
        z0 = off[e, 0] / h
        z1 = off[e, 1] / h if d > 1 else 0.0
        z2 = off[e, 2] / h if d > 2 else 0.0
        r2 = z0 * z0 + z1 * z1 + z2 * z2
        if r2 <= 0.0:
            wt[e] = 0.0
            continue
        we = _inverse_power(r2, power)
        wt[e] = we
        m00 += we * z0 * z0
        m01 += we * z0 * z1
        m02 += we * z0 * z2
        m11 += we * z1 * z1
        m12 += we * z1 * z2
        m22 += we * z2 * z2
    # inverse by the adjugate
    if d == 1:
        det = m00
        i00 = 1.0 / m00
        i01 = i02 = i11 = i12 = i22 = 0.0
        fro = m00 * m00
    elif d == 2:
        det = m00 * m11 - m01 * m01
        i00 = m11 / det
        i01 = -m01 / det
        i11 = m00 / det
        i02 = i12 = i22 = 0.0
        fro = m00 * m00 + 2 * m01 * m01 + m11 * m11
    else:
        c00 = m11 * m22 - m12 * m12
        c01 = m02 * m12 - m01 * m22
        c02 = m01 * m12 - m02 * m11
        det = m00 * c00 + m01 * c01 + m02 * c02
        i00 = c00 / det
        i01 = c01 / det
        i02 = c02 / det
        i11 = (m00 * m22 - m02 * m02) / det
        i12 = (m01 * m02 - m00 * m12) / det
        i22 = (m00 * m11 - m01 * m01) / det
        fro = (m00 * m00 + m11 * m11 + m22 * m22
               + 2 * (m01 * m01 + m02 * m02 + m12 * m12))
    ifro = i00 * i00 + i11 * i11 + i22 * i22 + 2 * (i01 * i01 + i02 * i02 + i12 * i12)
    cond = math.sqrt(fro * ifro)
    if not (det > 0.0 and cond < LINEAR_COND_MAX):
        return False, cond
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    for e in range(deg):
        we = wt[e]
        if we == 0.0:
            continue
        z0 = off[e, 0] / h
        z1 = off[e, 1] / h if d > 1 else 0.0
        z2 = off[e, 2] / h if d > 2 else 0.0
        g0 = we * (i00 * z0 + i01 * z1 + i02 * z2) / h
        w[e, 0] = g0
        t0 += g0
        if d > 1:
            g1 = we * (i01 * z0 + i11 * z1 + i12 * z2) / h
            w[e, 1] = g1
            t1 += g1
        if d > 2:
            g2 = we * (i02 * z0 + i12 * z1 + i22 * z2) / h
            w[e, 2] = g2
            t2 += g2
    c0[0] = -t0
    if d > 1:
        c0[1] = -t1
    if d > 2:
        c0[2] = -t2
    return True, cond


@_jit
def gradn_bin(deg, d, off, ok, ring, par, w, c0, work):
    """Per-bin map of ``gradn`` (corrected, free center counted k times), with its linear
    fallback (``lsq`` with power 0) where the quadratic is not determined with redundancy."""
    p = 1 + d + d * (d + 1) // 2
    k = 0.0
    for e in range(deg):
        k += ok[e]
    if k == 0:
        for a in range(d):
            c0[a] = np.nan
        return 2, np.nan
    h = _rms(deg, d, off, ok)
    phi = work.phi
    wt = work.wt
    idx = work.idx
    z = work.z
    m = np.int64(0)  # (not a literal 0: see _bin_general)
    for e in range(deg):
        if not ok[e]:
            continue
        for a in range(d):
            z[a] = off[e, a] / h
        _monomials(z, d, 2, True, phi[m])
        wt[m] = 1.0
        idx[m] = e
        m += 1
    qcols = work.qcols
    for a in range(d):
        qcols[a] = a + 1
    rank, cond, mask = _ls_solve(m, p, phi, wt, False, k, qcols, d, work.pinv, work.normal,
                                 work.low, work.x)
    if rank == p and k + 1 > p and mask == (1 << d) - 1:
        for e in range(deg):
            for a in range(d):
                w[e, a] = 0.0
        for a in range(d):
            for r in range(m):
                w[idx[r], a] = work.pinv[a, r] / h
            c0[a] = work.pinv[a, m] / h
        return 0, cond
    fpar = work.fpar
    fpar[0] = 0.0
    fpar[1] = np.inf
    _, cond = lsq_bin(deg, d, off, ok, ring, fpar, w, c0, work)
    return 1, cond


@_jit
def lsq2_bin(deg, d, off, ok, ring, par, w, c0, work):
    """Per-bin map of ``lsq2``: ``par = (power, cutoff, fallback_power, fallback_cutoff)``;
    quantities: gradient, then Hessian (upper triangle). See fits.lsq2_weights."""
    nh = d * (d + 1) // 2
    p = d + nh
    use = work.use
    nok = 0
    for e in range(deg):
        use[e] = ok[e]
        nok += ok[e]
    if nok == 0:
        for q in range(p):
            c0[q] = np.nan
        return 2, np.nan
    cutoff = par[1]
    if math.isfinite(cutoff):
        _long_entries(deg, d, off, use, cutoff, work.buf)
    count = 0
    for e in range(deg):
        count += use[e]
    qcols = work.qcols
    qpow = work.qpow
    for q in range(p):
        qcols[q] = q
        qpow[q] = 1.0 if q < d else 2.0
    nq = min(p, max(d, work.need[0]))
    rank, cond, mask = _constrained_fit(deg, d, off, use, par[0], 2, qcols, nq, qpow, w, c0,
                                        work)
    good = rank == p and count > p
    for a in range(d):
        if not (mask & (1 << a)):
            good = False
    if good:
        return 0, cond
    # fallback: lsq over the measured 1-ring
    sub_ok = work.use2
    for e in range(deg):
        sub_ok[e] = ok[e] and ring[e] == 1
    fpar = work.fpar
    fpar[0] = par[2]
    fpar[1] = par[3]
    for e in range(deg):
        for q in range(p):
            w[e, q] = 0.0
    for q in range(p):
        c0[q] = np.nan
    _, cond = lsq_bin(deg, d, off, sub_ok, ring, fpar, w, c0, work)
    return 1, cond


@_jit
def local_bin(deg, d, off, ok, ring, par, w, c0, work):
    """Per-bin map of ``local``: ``par = (bandwidth, degree)``; quantities: gradient, then
    the fitted value. See fits.local_weights."""
    bw = par[0]
    degree = int(par[1])
    phi = work.phi
    wt = work.wt
    idx = work.idx
    z = work.z
    count = 1
    for e in range(deg):
        count += ok[e]
    if count == 1:
        for q in range(d + 1):
            c0[q] = np.nan
        return 2, np.nan
    p2 = 1 + d + d * (d + 1) // 2
    flag = 0
    use_degree = degree
    if degree == 2 and count <= p2:
        use_degree = 1
        flag = 1
    while True:
        p = 1 + d + (d * (d + 1) // 2 if use_degree == 2 else 0)
        m = np.int64(0)  # (not a literal 0: see _bin_general)
        for e in range(deg):
            if not ok[e]:
                continue
            r2 = 0.0
            for a in range(d):
                z[a] = off[e, a] / bw
                r2 += z[a] * z[a]
            _monomials(z, d, use_degree, True, phi[m])
            wt[m] = gauss_exp(-0.5 * r2)
            idx[m] = e
            m += 1
        qcols = work.qcols
        for a in range(d):
            qcols[a] = a + 1
        qcols[d] = 0
        nq = min(d + 1, max(d, work.need[0]))
        rank, cond, mask = _ls_solve(m, p, phi, wt, False, 1.0, qcols, nq, work.pinv,
                                     work.normal, work.low, work.x)
        if use_degree == 2 and (rank < p or (mask & ((1 << d) - 1)) != (1 << d) - 1):
            use_degree = 1
            flag = 1
            continue
        break
    for e in range(deg):
        for q in range(nq):
            w[e, q] = 0.0
    for q in range(nq):
        s = bw if q < d else 1.0
        if mask & (1 << q):
            for r in range(m):
                w[idx[r], q] = work.pinv[q, r] / s
            c0[q] = work.pinv[q, m] / s
        else:
            c0[q] = np.nan
    return flag, cond


# =========================================================================== direct fits

# A bin's gradient alone, from one slice of values, does not need the coefficients of its
# linear map: factor the normal matrix once per missing-value pattern (``direct_prepare``),
# then, per slice, solve it against sum_e wt_e phi_e (y_e - y0) (``direct_apply``). This
# is the same least-squares fit as the per-bin maps (same entries, weights, scaling and
# conditioning tests) with the work of the map's K x Q coefficients left out. Bins that the
# closed forms or the Cholesky factor do not settle (rank-deficient, ill-conditioned,
# fallbacks) go through the per-bin maps as before. Both drivers make the same choice on
# the same offsets, so eager and chunked results still agree bit for bit.


@_inline
def _direct_linear(deg, d, off, ok, power, cutoff, wt, buf, low, x, yv, y0, fused):
    """The linear fit through the center over the measured entries ``ok`` (long entries
    left out as :func:`_long_entries` does), by the closed form of its normal matrix: the
    inverse into ``low``, the weights into ``wt`` (0: unused), ``buf`` scratch. Offsets are
    not rescaled (the gradient is invariant; the condition number too). Returns cond, or -1
    where the closed form does not settle.

    ``fused``: also sum the right-hand side of the slice ``yv``, ``y0`` in the same pass
    (into ``x``; :func:`direct_apply` then uses it), the sums :func:`direct_apply` would
    make, in the same order.

    The scratch arrays are arguments, not the fields of the drivers' scratch tuple: taken
    from a tuple in this per-bin code, they cost lsq 1.4x (reference counting)."""
    l1 = np.inf  # the three smallest lengths: a lower bound of the median
    l2 = np.inf
    l3 = np.inf
    hi = 0.0
    m = 0
    for e in range(deg):
        if ok[e]:
            r2 = 0.0
            for a in range(d):
                r2 += off[e, a] * off[e, a]
            wt[e] = r2
            buf[m] = r2
            m += 1
            l1, l2, l3 = _three_smallest(r2, l1, l2, l3)
            hi = max(hi, r2)
        else:
            wt[e] = 0.0
    if m == 0:
        return -1.0
    lim = _long_limit(buf, m, hi, l1, l2, l3, cutoff) if math.isfinite(cutoff) else np.inf
    m00 = 0.0
    m01 = 0.0
    m02 = 0.0
    m11 = 0.0
    m12 = 0.0
    m22 = 0.0
    b0 = 0.0
    b1 = 0.0
    b2 = 0.0
    for e in range(deg):
        r2 = wt[e]
        if not (r2 > 0.0 and r2 <= lim):
            wt[e] = 0.0
            continue
        we = _inverse_power(r2, power)
        wt[e] = we
        z0 = off[e, 0]
        z1 = off[e, 1] if d > 1 else 0.0
        z2 = off[e, 2] if d > 2 else 0.0
        m00 += we * z0 * z0
        m01 += we * z0 * z1
        m02 += we * z0 * z2
        m11 += we * z1 * z1
        m12 += we * z1 * z2
        m22 += we * z2 * z2
        if fused:  # the right-hand side as direct_apply sums it (change both together)
            c = we * (yv[e] - y0)
            b0 += c * off[e, 0]
            if d > 1:
                b1 += c * off[e, 1]
            if d > 2:
                b2 += c * off[e, 2]
    x[0] = b0
    x[1] = b1 if d > 1 else 0.0
    x[2] = b2 if d > 2 else 0.0
    if d == 1:
        det = m00
        low[0, 0] = 1.0 / m00
        fro = m00 * m00
        ifro = low[0, 0] * low[0, 0]
    elif d == 2:
        det = m00 * m11 - m01 * m01
        low[0, 0] = m11 / det
        low[0, 1] = -m01 / det
        low[1, 0] = low[0, 1]
        low[1, 1] = m00 / det
        fro = m00 * m00 + 2 * m01 * m01 + m11 * m11
        ifro = low[0, 0] ** 2 + low[1, 1] ** 2 + 2 * low[0, 1] ** 2
    else:
        c00 = m11 * m22 - m12 * m12
        c01 = m02 * m12 - m01 * m22
        c02 = m01 * m12 - m02 * m11
        det = m00 * c00 + m01 * c01 + m02 * c02
        low[0, 0] = c00 / det
        low[0, 1] = low[1, 0] = c01 / det
        low[0, 2] = low[2, 0] = c02 / det
        low[1, 1] = (m00 * m22 - m02 * m02) / det
        low[1, 2] = low[2, 1] = (m01 * m02 - m00 * m12) / det
        low[2, 2] = (m00 * m11 - m01 * m01) / det
        fro = (m00 * m00 + m11 * m11 + m22 * m22
               + 2 * (m01 * m01 + m02 * m02 + m12 * m12))
        ifro = 0.0
        for a in range(3):
            for b in range(3):
                ifro += low[a, b] * low[a, b]
    cond = math.sqrt(fro * ifro)
    if not (det > 0.0 and cond < LINEAR_COND_MAX):
        return -1.0
    return cond


@_inline
def _weighted_gram(phi, wt, m, p, scratch, nrm):
    """``nrm[:p, :p] = sum_r wt[r] phi[r, a] phi[r, b]``, each entry summed over r in order
    with ``(phi[r, a] * wt[r]) * phi[r, b]`` (the rounding of the row-by-row update),
    in a register rather than through memory; ``scratch`` (>= p, >= m) holds the weighted
    column."""
    for a in range(p):
        for r in range(m):
            scratch[a, r] = phi[r, a] * wt[r]
    for a in range(p):
        for b in range(a, p):
            acc = 0.0
            for r in range(m):
                acc += scratch[a, r] * phi[r, b]
            nrm[a, b] = acc
            nrm[b, a] = acc


@_inline
def _direct_cholesky(deg, d, off, use, power, degree, free, scale, dw):
    """Cholesky factor (into ``dw.low``) of the weighted fit of ``degree`` over ``use``,
    through the center (``free`` False: ``power`` weights |z|^-power, offsets scaled by their
    RMS) or with a free center (Gaussian weights of bandwidth ``scale``). Returns cond, or
    -1 where the factor is not well conditioned (the per-bin map decides then)."""
    nh = d * (d + 1) // 2
    p = (1 if free else 0) + d + (nh if degree >= 2 else 0)
    h = scale if free else _rms(deg, d, off, use)
    ih = 1.0 / h
    phi = dw.phi
    wt = dw.wt
    idx = dw.idx
    z = dw.z
    m = 0
    for e in range(deg):
        if not use[e]:
            continue
        r2 = 0.0
        for a in range(d):
            z[a] = off[e, a] * ih
            r2 += z[a] * z[a]
        if free:
            we = gauss_exp(-0.5 * r2)
        else:
            if r2 <= 0.0:
                continue
            we = _inverse_power(r2, power)
        _monomials(z, d, degree, free, phi[m])
        wt[m] = we
        idx[m] = e
        m += 1
    nrm = dw.normal
    _weighted_gram(phi, wt, m, p, dw.wphi, nrm)
    if free:
        nrm[0, 0] += 1.0
    if not _cholesky(nrm, dw.low, p, CHOL_RATIO):
        return -1.0
    big = 0.0
    small = np.inf
    for c in range(p):
        v = dw.low[c, c] * dw.low[c, c]
        big = max(big, v)
        small = min(small, v)
    st = dw.state
    st[0] = m
    st[1] = h
    st[2] = p
    st[3] = 1.0 if free else 0.0
    return math.sqrt(big / small)


@_inline
def direct_prepare(code, deg, d, off, ok, par, dw):
    """Factor a bin's fit for :func:`direct_apply`; returns (done, cond). Not done: the
    per-bin map (:func:`bin_map`) handles the bin."""
    if code == 0:  # lsq
        cond = _direct_linear(deg, d, off, ok, par[0], par[1], dw.wt, dw.buf, dw.low, dw.x,
                              dw.buf, 0.0, False)
        if cond < 0.0:
            return False, cond
        st = dw.state
        st[0] = -1.0  # weights indexed by position in the stencil, offsets read from ``off``
        st[1] = 1.0
        st[2] = d
        st[3] = 0.0  # the slice's right-hand side is summed by direct_apply
        return True, cond
    use = dw.use
    nused = 0
    for e in range(deg):
        use[e] = ok[e]
        nused += ok[e]
    if nused == 0 or code == 2:
        return False, np.nan
    if code == 1:  # lsq2: the quadratic settled with redundancy, else its fallback
        if math.isfinite(par[1]):
            _long_entries(deg, d, off, use, par[1], dw.buf)
        count = 0
        for e in range(deg):
            count += use[e]
        if count <= d + d * (d + 1) // 2:
            return False, np.nan
        cond = _direct_cholesky(deg, d, off, use, par[0], 2, False, 1.0, dw)
        return cond >= 0.0, cond
    degree = int(par[1])  # local
    if degree == 2 and nused + 1 <= 1 + d + d * (d + 1) // 2:
        return False, np.nan
    cond = _direct_cholesky(deg, d, off, use, 0.0, degree, True, par[0], dw)
    return cond >= 0.0, cond


@_inline
def direct_apply(deg, d, no, off, yv, y0, out_row, dw):
    """The gradient (``no`` <= d leading components) of one slice from the factor that
    :func:`direct_prepare` left in ``dw``; ``yv`` the stencil's values (``deg``)."""
    st = dw.state
    h = st[1]
    x = dw.x
    phi = dw.phi
    wt = dw.wt
    low = dw.low
    if st[0] < 0.0:  # the closed-form linear fit: the inverse is in dw.low
        b0 = x[0]
        b1 = x[1]
        b2 = x[2]
        for e in range(deg if st[3] == 0.0 else 0):  # (fused: summed by _direct_linear)
            we = wt[e]
            if we == 0.0:
                continue
            # the sum of _direct_linear's fused pass, written out here too: a shared
            # inline helper returning the sums measured lsq 1.5x slower. Change both.
            c = we * (yv[e] - y0)
            b0 += c * off[e, 0]
            if d > 1:
                b1 += c * off[e, 1]
            if d > 2:
                b2 += c * off[e, 2]
        for o in range(no):
            v = low[o, 0] * b0
            if d > 1:
                v += low[o, 1] * b1
            if d > 2:
                v += low[o, 2] * b2
            out_row[o] = v / h
        return
    m = int(st[0])
    p = int(st[2])
    lead = int(st[3])  # the free center's constant comes first
    idx = dw.idx
    c = dw.buf
    for r in range(m):
        c[r] = wt[r] * (yv[idx[r]] - y0)
    for a in range(p):  # each sum over r in order, in a register
        acc = 0.0
        for r in range(m):
            acc += c[r] * phi[r, a]
        x[a] = acc
    for r in range(p):  # forward, then back substitution
        v = x[r]
        for q in range(r):
            v -= low[r, q] * x[q]
        x[r] = v / low[r, r]
    for r in range(p - 1, -1, -1):
        v = x[r]
        for q in range(r + 1, p):
            v -= low[q, r] * x[q]
        x[r] = v / low[r, r]
    for o in range(no):
        out_row[o] = x[lead + o] / h


# =========================================================================== dispatch

#: Codes of the methods with compiled per-bin maps (the ``compiled`` names of
#: :data:`xtramgrad.kernels.METHODS` entries).
METHOD_CODES = {"lsq": 0, "lsq2": 1, "gradn": 2, "local": 3}


@_inline
def bin_map(code, deg, d, off, ok, ring, par, w, c0, work):
    """The per-bin map of method ``code`` (see :data:`METHOD_CODES`)."""
    if code == 0:
        return lsq_bin(deg, d, off, ok, ring, par, w, c0, work)
    if code == 1:
        return lsq2_bin(deg, d, off, ok, ring, par, w, c0, work)
    if code == 2:
        return gradn_bin(deg, d, off, ok, ring, par, w, c0, work)
    return local_bin(deg, d, off, ok, ring, par, w, c0, work)


# =========================================================================== generic drivers


@_jit
def _needed(comb):
    """How many leading quantities ``comb`` (no, nq) uses."""
    need = 0
    for o in range(comb.shape[0]):
        for q in range(comb.shape[1]):
            if comb[o, q] != 0.0:
                need = max(need, q + 1)
    return need


@_jit
def _leading(comb):
    """Whether ``comb`` (no, nq) selects the first ``no`` quantities."""
    for o in range(comb.shape[0]):
        for q in range(comb.shape[1]):
            if comb[o, q] != (1.0 if q == o else 0.0):
                return False
    return True


@_inline
def _apply(deg, nq, no, comb, w, c0, yv, y0, sig, s0, mode, na, defined, out_row, wo, c0o,
           lead):
    """Combine (``comb`` (no, nq)) and apply one bin's map to one slice. ``lead``: ``comb``
    selects the first ``no`` quantities (the gradient), so they are applied directly."""
    if lead and mode == MODE_VALUES:
        for o in range(no):
            if not defined:
                out_row[o] = np.nan
            elif math.isnan(c0[o]):
                out_row[o] = na
            else:
                acc = 0.0
                for e in range(deg):
                    acc += w[e, o] * yv[e]
                out_row[o] = acc + c0[o] * y0
        return
    for o in range(no):
        nan = False
        acc0 = 0.0
        for q in range(nq):
            cq = comb[o, q]
            if cq != 0.0:
                if math.isnan(c0[q]):
                    nan = True
                acc0 += cq * c0[q]
        c0o[o] = np.nan if nan else acc0
        for e in range(deg):
            acc = 0.0
            for q in range(nq):
                cq = comb[o, q]
                if cq != 0.0:
                    acc += cq * w[e, q]
            wo[e, o] = acc
    for o in range(no):
        if not defined:
            out_row[o] = np.nan
            continue
        if math.isnan(c0o[o]):
            out_row[o] = na
            continue
        acc = 0.0
        if mode == MODE_VALUES:
            for e in range(deg):
                acc += wo[e, o] * yv[e]
            out_row[o] = acc + c0o[o] * y0
        elif mode == MODE_LEVERAGE:
            out_row[o] = c0o[o]
        else:
            for e in range(deg):
                acc += wo[e, o] * wo[e, o] * sig[e] * sig[e]
            out_row[o] = math.sqrt(acc + c0o[o] * c0o[o] * s0 * s0)


def dim_tag(d):
    """The ``dim_tag`` argument of :func:`drive_table` and :func:`drive_gathered`: 2D maps
    (the common case) get a specialisation with the dimension a compile-time constant (the
    loops over the axes unrolled: lsq2 1.2x faster), other dimensions share one compiled
    for any (each specialisation of these large drivers takes ~40 s to compile)."""
    return np.empty((0, 0)) if d == 2 else np.empty(0)


@_jit
def _drive_work(cap, d, nq, no, need):
    """Scratch of :func:`_driver` for stencils of up to ``cap`` entries: ``(off, ok, prev_ok,
    yv, sg, w, wo, work, dw)``."""
    work = _make_work(cap, d, nq)
    work.need[0] = need
    return (np.empty((cap, d)), np.zeros(cap, dtype=np.bool_), np.zeros(cap, dtype=np.bool_),
            np.empty(cap), np.empty(cap), np.zeros((cap, nq)), np.empty((cap, no)), work,
            _direct_work(work))


def _driver(gathered):
    """The driver of the per-bin methods on one layout of the stencils (``gathered``, a
    constant of the compiled code: numba prunes the other layout's branches before typing):
    :func:`drive_table` and :func:`drive_gathered`, one body. Arguments ``(code, values,
    sigma, centers, stencils, par, nq, comb, mode, na, out, flags, conds, dim_tag)``;
    ``out`` (S, n, no), ``flags`` (S, n), ``conds`` (S, n).

    ``stencils``, on a table: ``(table, indptr, rings, widen_to, min_points, radius,
    kmax)``, each bin's stencil walked here; ``kmax``: the largest stencil if known (a
    1-ring: the widest row), or 0: the buffers then start small and double when a stencil
    outgrows them (no sizing pass). Gathered: ``(nbr_values, nbr_sigma, nbr_center,
    ring_of)``, one padded row per bin: ``nbr_center`` (n, K, d) NaN at padding,
    ``nbr_values`` and ``nbr_sigma`` (S, n, K), ``ring_of`` (n, K) int8 ring of each
    entry."""

    @_jit
    def drive(code, values, sigma, centers, stencils, par, nq, comb, mode, na, out, flags,
              conds, dim_tag):
        n = centers.shape[0]
        if dim_tag.ndim == 2:  # pruned when compiled: a constant for 2D maps (see dim_tag)
            d = dim_tag.ndim
        else:
            d = centers.shape[1]
        s_count = values.shape[0]
        no = comb.shape[0]
        lead = _leading(comb)
        if gathered:
            nbr_values, nbr_sigma, nbr_center, ring_of = stencils
            cap = nbr_center.shape[1]
            flat = np.empty(cap, dtype=np.int64)  # row()'s positions in the flattened rows
            none = np.empty(0, dtype=np.int64)
        else:
            table, indptr, rings, widen_to, min_points, radius, kmax = stencils
            mark = np.full(n, -1, dtype=np.int64)
            rowmax = _widest_row(table, indptr, n)
            nbr = np.empty(rowmax, dtype=np.int64)
            slot = np.empty(rowmax, dtype=np.int64)
            cap = kmax if kmax > 0 else max(64, 4 * rowmax)
            ring1 = rings == 1 and widen_to <= 1 and radius <= 0
            ball = ball_index(table, indptr, centers, radius)
        ids = np.empty(cap, dtype=np.int64)  # the bins of a stencil (gathered: its slots)
        ring = np.empty(cap, dtype=np.int8)
        c0 = np.empty(nq)
        c0o = np.empty(no)
        need = _needed(comb)
        off, ok, prev_ok, yv, sg, w, wo, work, dw = _drive_work(cap, d, nq, no, need)
        direct_ok = lead and mode == MODE_VALUES and no <= d
        direct = False
        for i in range(n):
            if gathered:  # ids: the entries' slots
                deg = row(nbr_center, none, i, flat, ids)
            else:
                if ring1:  # the table row itself (no duplicates, no self: checked upstream)
                    deg = row(table, indptr, i, ids, slot)
                    for e in range(deg):
                        ring[e] = 1
                else:
                    deg, ids, ring = _stencil_of(i, ball, table, indptr, centers, rings,
                                                 widen_to, min_points, radius, mark, ids, ring,
                                                 nbr, slot)
                    if ids.shape[0] > cap:  # a wider stencil than any so far: bigger buffers
                        cap = ids.shape[0]
                        off, ok, prev_ok, yv, sg, w, wo, work, dw = _drive_work(cap, d, nq, no,
                                                                                need)
            for e in range(deg):  # (each ternary on gathered is pruned, as the branches)
                j = ids[e]
                if gathered:
                    ring[e] = ring_of[i, j]
                for a in range(d):
                    c = nbr_center[i, j, a] if gathered else centers[j, a]
                    off[e, a] = c - centers[i, a]
            have = False
            flag = 2
            cond = np.nan
            for s in range(s_count):
                y0 = values[s, i]
                if math.isnan(y0):
                    _undefined(out, flags, s, i, no)
                    conds[s, i] = np.nan
                    continue
                same = have
                for e in range(deg):
                    if gathered:
                        y = nbr_values[s, i, ids[e]]
                    else:
                        y = values[s, ids[e]]
                    oke = not math.isnan(y)
                    ok[e] = oke
                    yv[e] = y if oke else 0.0
                    if mode == MODE_STD:
                        if gathered:
                            sg[e] = nbr_sigma[s, i, ids[e]] if oke else 0.0
                        else:
                            sg[e] = sigma[s, ids[e]] if oke else 0.0
                    if oke != prev_ok[e]:
                        same = False
                if not same:
                    for e in range(deg):
                        prev_ok[e] = ok[e]
                    direct = False
                    if direct_ok:
                        direct, cond = direct_prepare(code, deg, d, off, ok, par, dw)
                    if direct:
                        flag = 0
                    else:
                        flag, cond = bin_map(code, deg, d, off, ok, ring, par, w, c0, work)
                    have = True
                if direct:
                    direct_apply(deg, d, no, off, yv, y0, out[s, i], dw)
                else:
                    s0 = sigma[s, i] if mode == MODE_STD else 0.0
                    _apply(deg, nq, no, comb, w, c0, yv, y0, sg, s0, mode, na, flag != 2,
                           out[s, i], wo, c0o, lead)
                flags[s, i] = flag
                conds[s, i] = cond
        return out

    return drive


#: :func:`_driver` on a whole table: ``stencils = (table, indptr, rings, widen_to,
#: min_points, radius, kmax)``
drive_table = _driver(False)
#: :func:`_driver` on gathered stencils: ``stencils = (nbr_values, nbr_sigma, nbr_center,
#: ring_of)``
drive_gathered = _driver(True)


@_inline
def _bin_general(code, deg, d, off, ok, ring, par, w, c0, work, comb, yv, y0, na, wo, c0o,
                 out, s, i):
    """Slice ``s`` of bin ``i``'s gradient (``comb``: the gradient's columns of the method's
    quantities) as :func:`drive_table` computes it: the direct fit, else the per-bin map.
    What the single-slice kernels do where their own fit does not settle (rare; compiled
    apart, :func:`_bin_general_apart`, so that its code stays out of their loops). Returns
    the flag.

    ``code`` and ``deg`` reach the compiled body as plain int64: numba compiles a function
    apart for each literal argument, and for the literal a counter holds before its type
    settles (``deg = 0`` ... ``deg += 1``). The callers' constants made five cold
    compilations of 27-74 s each (bench_methods) where one does."""
    return _bin_general_apart(np.int64(code), np.int64(deg), d, off, ok, ring, par, w, c0,
                              work, comb, yv, y0, na, wo, c0o, out, s, i)


@_jit
def _bin_general_apart(code, deg, d, off, ok, ring, par, w, c0, work, comb, yv, y0, na, wo,
                       c0o, out, s, i):
    """:func:`_bin_general`, compiled once per dimension for every method."""
    dw = _direct_work(work)
    direct, _ = direct_prepare(code, deg, d, off, ok, par, dw)
    if direct:
        direct_apply(deg, d, d, off, yv, y0, out[s, i], dw)
        return 0
    flag, _ = bin_map(code, deg, d, off, ok, ring, par, w, c0, work)
    _apply(deg, comb.shape[1], d, comb, w, c0, yv, y0, yv, 0.0, MODE_VALUES, na, flag != 2,
           out[s, i], wo, c0o, True)
    return flag


@_jit
def lsq_single(values, centers, src_values, src_centers, table, indptr, par, na, out, flags,
               dim_tag):
    """:func:`drive_table` for ``lsq``'s gradient of one slice over the rows of a table, with
    the loops that serve several slices, uncertainties and other stencils left out: the
    same direct fit (or per-bin map) on the same offsets, so the same numbers.

    Bin ``i``'s own center and value are ``centers[i]`` and ``values[0, i]``, its
    neighbours' ``src_centers[j]`` and ``src_values[0, j]`` for the positions ``j`` of its
    row of ``table``: the same arrays for a table, or for gathered stencils (the chunked
    path) the flattened gathered arrays, with the gathered centers (n, K, d) as the table
    (:func:`row`). ``dim_tag``: see :func:`dim_tag`.

    Its scratch is plain arrays, and the bins the closed form does not settle go through
    :func:`_bin_general`: the drivers' scratch tuple and the inlined per-bin maps made this
    loop 3.4x slower."""
    n = centers.shape[0]
    if dim_tag.ndim == 2:  # pruned when compiled: a constant for 2D maps (see dim_tag)
        d = dim_tag.ndim
    else:
        d = centers.shape[1]
    cap = max(_widest_row(table, indptr, n), 1)
    ids = np.empty(cap, dtype=np.int64)
    slot = np.empty(cap, dtype=np.int64)
    ring = np.ones(cap, dtype=np.int8)
    off = np.empty((cap, d))
    ok = np.zeros(cap, dtype=np.bool_)
    yv = np.empty(cap)
    wt = np.empty(cap)
    buf = np.empty(cap)
    low = np.empty((3, 3))
    x = np.empty(3)
    w = np.zeros((cap, d))
    c0 = np.empty(d)
    wo = np.empty((cap, d))
    c0o = np.empty(d)
    comb = np.eye(d)
    work = _make_work(cap, d, d)
    work.need[0] = d
    power = par[0]
    cutoff = par[1]
    for i in range(n):
        y0 = values[0, i]
        if math.isnan(y0):
            _undefined(out, flags, 0, i, d)
            continue
        deg = row(table, indptr, i, ids, slot)
        for e in range(deg):
            j = ids[e]
            for a in range(d):
                off[e, a] = src_centers[j, a] - centers[i, a]
            y = src_values[0, j]
            oke = not math.isnan(y)
            ok[e] = oke
            yv[e] = y if oke else 0.0
        cond = _direct_linear(deg, d, off, ok, power, cutoff, wt, buf, low, x, yv, y0, True)
        if cond >= 0.0:  # direct_apply's closed-form branch (its scale is 1)
            for o in range(d):
                v = low[o, 0] * x[0]
                if d > 1:
                    v += low[o, 1] * x[1]
                if d > 2:
                    v += low[o, 2] * x[2]
                out[0, i, o] = v / 1.0
            flags[0, i] = 0
        else:
            flags[0, i] = _bin_general(0, deg, d, off, ok, ring, par, w, c0, work, comb, yv,
                                       y0, na, wo, c0o, out, 0, i)
    return out


@_jit
def gauss_weights(rr, wt, m):
    """``wt[:m] = exp(-rr[:m] / 2)`` (:func:`gauss_exp`). Compiled apart: inlined into the
    fits, the loop was not vectorized (4x slower)."""
    for k in range(m):
        wt[k] = gauss_exp(-0.5 * rr[k])


@_inline
def _gauss_sums(m, d, p, degree, zz, rr, yy, wt, y0, ph, nrm, xs):
    """The normal matrix ``nrm`` (upper triangle) and right-hand side ``xs`` of ``local``'s
    fit over ``m`` measured entries: scaled offsets ``zz`` (m, d), their squared lengths
    ``rr`` and values ``yy``; Gaussian weights into ``wt``; design [1, z, (z z^T / 2)].
    The terms that :func:`_direct_cholesky`, :func:`_weighted_gram` and
    :func:`direct_apply` sum, with the same roundings in the same order, so the same
    numbers: the weights first (a loop that vectorizes), then the sums (2D, degree 1: in
    registers; arrays cost a load and a store per term)."""
    gauss_weights(rr, wt, m)
    if d == 2 and degree == 1:
        n00 = n01 = n02 = n11 = n12 = n22 = x0 = x1 = x2 = 0.0
        for k in range(m):
            we = wt[k]
            z0 = zz[k, 0]
            z1 = zz[k, 1]
            cr = we * (yy[k] - y0)
            pa = 1.0 * we
            n00 += pa * 1.0
            n01 += pa * z0
            n02 += pa * z1
            pa = z0 * we
            n11 += pa * z0
            n12 += pa * z1
            n22 += (z1 * we) * z1
            x0 += cr * 1.0
            x1 += cr * z0
            x2 += cr * z1
        nrm[0, 0] = n00
        nrm[0, 1] = n01
        nrm[0, 2] = n02
        nrm[1, 1] = n11
        nrm[1, 2] = n12
        nrm[2, 2] = n22
        xs[0] = x0
        xs[1] = x1
        xs[2] = x2
        return
    for a in range(p):
        xs[a] = 0.0
        for b in range(a, p):
            nrm[a, b] = 0.0
    ph[0] = 1.0
    for k in range(m):
        for a in range(d):
            ph[1 + a] = zz[k, a]
        if degree >= 2:
            c = 1 + d
            for a in range(d):
                for b in range(a, d):
                    v = ph[1 + a] * ph[1 + b]
                    ph[c] = 0.5 * v if a == b else v
                    c += 1
        we = wt[k]
        cr = we * (yy[k] - y0)
        for a in range(p):
            pa = ph[a] * we
            for b in range(a, p):
                nrm[a, b] += pa * ph[b]
            xs[a] += cr * ph[a]


@_inline
def _gauss_entry(k, o, d, ih, y, zz, rr, yy):
    """Keep a measured entry (offset ``o`` (d,), value ``y``) at ``k`` of the arrays of
    :func:`_gauss_sums`."""
    r2 = 0.0
    for a in range(d):
        z = o[a] * ih
        zz[k, a] = z
        r2 += z * z
    rr[k] = r2
    yy[k] = y


@_inline
def _gauss_solve(d, p, m, degree, h, nrm, xs, low, out, i):
    """Solve ``local``'s fit summed by :func:`_gauss_sums` over ``m`` measured entries and
    write bin ``i``'s gradient; False where :func:`direct_prepare` would not settle it (no
    entry, a quadratic without redundancy, a factor not well conditioned)."""
    if m == 0 or (degree == 2 and m + 1 <= p):
        return False
    nrm[0, 0] += 1.0  # the bin's own value, weight 1
    if not _normal_solve(nrm, low, xs, p):
        return False
    for o in range(d):
        out[0, i, o] = xs[1 + o] / h
    return True


@_jit
def _local_work(cap, d):
    """Scratch of :func:`local_single` for stencils of up to ``cap`` entries: that of
    :func:`_bin_general`, then that of :func:`_gauss_sums`."""
    return (np.empty(cap, dtype=np.int64), np.empty((cap, d)), np.zeros(cap, dtype=np.bool_),
            np.empty(cap), np.ones(cap, dtype=np.int8), np.zeros((cap, d + 1)),
            np.empty((cap, d)), _make_work(cap, d, d + 1)), (
            np.empty((cap, d)), np.empty(cap), np.empty(cap), np.empty(cap))


def degree_tag(degree):
    """The ``deg_tag`` argument of :func:`local_single` and :func:`local_gathered`: the
    degree of the fit as a compile-time constant (the loops over its terms unrolled)."""
    return np.empty((0,) * degree)


@_jit
def local_single(values, centers, table, indptr, par, na, out, flags, dim_tag, deg_tag):
    """:func:`drive_table` for ``local``'s gradient of one slice over the radius stencils of a
    table (``par = (bandwidth, degree, radius)``): the same fits on the same stencils, so
    the same numbers, in one pass per bin over the cells around it.

    A bin whose stencil the cells prove (:func:`_ball_capped`) is fitted while its members
    are read (:func:`_gauss_sums`); the others (the walk decides their stencil), and the fits
    that do not settle, go through :func:`_bin_general`."""
    n = centers.shape[0]
    if dim_tag.ndim == 2:  # pruned when compiled: a constant for 2D maps (see dim_tag)
        d = dim_tag.ndim
    else:
        d = centers.shape[1]
    bw = par[0]
    degree = deg_tag.ndim  # (= par[1])
    radius = par[2]
    r2 = radius * radius
    ih = 1.0 / bw
    p = 1 + d + (d * (d + 1) // 2 if degree >= 2 else 0)
    ball = ball_index(table, indptr, centers, radius)
    rowmax = _widest_row(table, indptr, n)
    nbr = np.empty(rowmax, dtype=np.int64)
    slot = np.empty(rowmax, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    cap = max(64, ball.pos.shape[0])
    (ids, off, ok, yv, ring, w, wo, work), (zz, rr, yy, wt) = _local_work(cap, d)
    work.need[0] = d
    c0, c0o, comb, ph, nrm, low, xs = _solve_scratch(d, d + 1, p)
    o = np.empty(d)
    pos = ball.pos
    pend = ball.pend
    rho2 = ball.rho2
    order = ball.order
    pc = ball.pc
    v0 = values[0]
    for i in range(n):
        y0 = v0[i]
        if math.isnan(y0):
            _undefined(out, flags, 0, i, d)
            continue
        proved = False
        size = 0
        if ball.ok:
            size = _scan_cells(i, ball.start, pc, ball.key, ball.dims, ball.where, centers,
                               r2, pos)
            m = 0
            npend = 0
            for e in range(size):
                q = pos[e]
                y = v0[uint64(order[q])]
                s2 = 0.0  # the squared distance of _ball_member
                for a in range(d):
                    o[a] = pc[a, q] - centers[i, a]
                    s2 += o[a] * o[a]
                pend[npend] = e
                npend += s2 <= rho2[q]
                if not math.isnan(y):
                    _gauss_entry(m, o, d, ih, y, zz, rr, yy)
                    m += 1
            _gauss_sums(m, d, p, degree, zz, rr, yy, wt, y0, ph, nrm, xs)
            proved = npend == 0 or _prove_pending(i, ball, table, indptr, centers, pos, pend,
                                                  npend, mark, nbr, slot)
            if proved and _gauss_solve(d, p, m, degree, bw, nrm, xs, low, out, i):
                flags[0, i] = 0
                continue
            if proved:  # the stencil of the cells, through the general path
                for e in range(size):
                    ids[e] = order[pos[e]]
        if not (ball.ok and proved):
            size, ids, ring = _walk_sorted(i, table, indptr, centers, radius, mark, ids,
                                           ring, nbr, slot)
            if size > cap:
                cap = ids.shape[0]
                (_, off, ok, yv, ring, w, wo, work), (zz, rr, yy, wt) = _local_work(cap, d)
                work.need[0] = d
        for e in range(size):
            j = ids[e]
            for a in range(d):
                off[e, a] = centers[j, a] - centers[i, a]
            y = v0[j]
            ok[e] = not math.isnan(y)
            yv[e] = y if ok[e] else 0.0
            ring[e] = 1
        flags[0, i] = _bin_general(3, size, d, off, ok, ring, par, w, c0, work, comb, yv, y0,
                                   na, wo, c0o, out, 0, i)
    return out


@_jit
def local_gathered(values, center, nbr_values, nbr_center, par, na, out, flags, dim_tag,
                   deg_tag):
    """:func:`local_single` on gathered stencils (the chunked path): ``nbr_center`` (n, K, d)
    NaN at padding, ``nbr_values`` (1, n, K). The same fits, summed in the same order."""
    n = center.shape[0]
    if dim_tag.ndim == 2:  # pruned when compiled: a constant for 2D maps (see dim_tag)
        d = dim_tag.ndim
    else:
        d = center.shape[1]
    kk = nbr_center.shape[1]
    bw = par[0]
    degree = deg_tag.ndim  # (= par[1])
    ih = 1.0 / bw
    p = 1 + d + (d * (d + 1) // 2 if degree >= 2 else 0)
    cap = max(kk, 1)
    (ids, off, ok, yv, ring, w, wo, work), (zz, rr, yy, wt) = _local_work(cap, d)
    work.need[0] = d
    c0, c0o, comb, ph, nrm, low, xs = _solve_scratch(d, d + 1, p)
    o = np.empty(d)
    for i in range(n):
        y0 = values[0, i]
        if math.isnan(y0):
            _undefined(out, flags, 0, i, d)
            continue
        m = 0
        for r in range(kk):
            if math.isnan(nbr_center[i, r, 0]):
                continue
            y = nbr_values[0, i, r]
            if math.isnan(y):
                continue
            for a in range(d):
                o[a] = nbr_center[i, r, a] - center[i, a]
            _gauss_entry(m, o, d, ih, y, zz, rr, yy)
            m += 1
        _gauss_sums(m, d, p, degree, zz, rr, yy, wt, y0, ph, nrm, xs)
        if _gauss_solve(d, p, m, degree, bw, nrm, xs, low, out, i):
            flags[0, i] = 0
            continue
        size = 0
        for r in range(kk):
            if math.isnan(nbr_center[i, r, 0]):
                continue
            for a in range(d):
                off[size, a] = nbr_center[i, r, a] - center[i, a]
            y = nbr_values[0, i, r]
            ok[size] = not math.isnan(y)
            yv[size] = y if ok[size] else 0.0
            size += 1
        flags[0, i] = _bin_general(3, size, d, off, ok, ring, par, w, c0, work, comb, yv, y0,
                                   na, wo, c0o, out, 0, i)
    return out


@_inline
def _quad_fit(deg, d, off, ok, yv, y0, power, cutoff, use, buf, zz, wt, yy, ph, nrm, xs, low,
              out, i):
    """``lsq2``'s direct fit of bin ``i`` (the quadratic through the center over its
    measured entries ``ok``, long entries left out, offsets scaled by their RMS, weights
    |z|^-power), written into ``out``: what :func:`direct_prepare` and :func:`direct_apply`
    compute, in the same order, so the same numbers. False where they would not settle it
    (too few entries for redundancy, a factor not well conditioned): the per-bin map then
    decides (:func:`_bin_general`)."""
    nh = d * (d + 1) // 2
    p = d + nh
    for e in range(deg):
        use[e] = ok[e]
    if math.isfinite(cutoff):
        _long_entries(deg, d, off, use, cutoff, buf)
    count = 0
    for e in range(deg):
        count += use[e]
    if count <= p:
        return False
    h = _rms(deg, d, off, use)
    ih = 1.0 / h
    m = 0
    for e in range(deg):  # the design rows of _direct_cholesky (scaled offsets, weights)
        if not use[e]:
            continue
        r2 = 0.0
        for a in range(d):
            z = off[e, a] * ih
            zz[m, a] = z
            r2 += z * z
        if r2 <= 0.0:
            continue
        wt[m] = _inverse_power(r2, power)
        yy[m] = yv[e]
        m += 1
    if d == 2:  # the sums of _weighted_gram and direct_apply, in registers
        n00 = n01 = n02 = n03 = n04 = n11 = n12 = n13 = n14 = 0.0
        n22 = n23 = n24 = n33 = n34 = n44 = x0 = x1 = x2 = x3 = x4 = 0.0
        for k in range(m):
            we = wt[k]
            f0 = zz[k, 0]
            f1 = zz[k, 1]
            v = f0 * f0
            f2 = 0.5 * v
            f3 = f0 * f1
            v = f1 * f1
            f4 = 0.5 * v
            g = f0 * we
            n00 += g * f0
            n01 += g * f1
            n02 += g * f2
            n03 += g * f3
            n04 += g * f4
            g = f1 * we
            n11 += g * f1
            n12 += g * f2
            n13 += g * f3
            n14 += g * f4
            g = f2 * we
            n22 += g * f2
            n23 += g * f3
            n24 += g * f4
            g = f3 * we
            n33 += g * f3
            n34 += g * f4
            n44 += (f4 * we) * f4
            c = we * (yy[k] - y0)
            x0 += c * f0
            x1 += c * f1
            x2 += c * f2
            x3 += c * f3
            x4 += c * f4
        nrm[0, 0], nrm[0, 1], nrm[0, 2], nrm[0, 3], nrm[0, 4] = n00, n01, n02, n03, n04
        nrm[1, 1], nrm[1, 2], nrm[1, 3], nrm[1, 4] = n11, n12, n13, n14
        nrm[2, 2], nrm[2, 3], nrm[2, 4], nrm[3, 3], nrm[3, 4], nrm[4, 4] = (
            n22, n23, n24, n33, n34, n44)
        xs[0], xs[1], xs[2], xs[3], xs[4] = x0, x1, x2, x3, x4
    else:
        for a in range(p):
            xs[a] = 0.0
            for b in range(a, p):
                nrm[a, b] = 0.0
        for k in range(m):
            for a in range(d):
                ph[a] = zz[k, a]
            c = d
            for a in range(d):
                for b in range(a, d):
                    v = ph[a] * ph[b]
                    ph[c] = 0.5 * v if a == b else v
                    c += 1
            we = wt[k]
            cr = we * (yy[k] - y0)
            for a in range(p):
                g = ph[a] * we
                for b in range(a, p):
                    nrm[a, b] += g * ph[b]
                xs[a] += cr * ph[a]
    if not _normal_solve(nrm, low, xs, p):
        return False
    for o in range(d):
        out[0, i, o] = xs[o] / h
    return True


@_jit
def _quad_work(cap, d):
    """Scratch of :func:`_lsq2_kernel` for stencils of up to ``cap`` entries: that of
    :func:`_bin_general`, then that of :func:`_quad_fit`."""
    nq = d + d * (d + 1) // 2
    return (np.empty((cap, d)), np.zeros(cap, dtype=np.bool_), np.empty(cap),
            np.zeros((cap, nq)), np.empty((cap, d)), _make_work(cap, d, nq)), (
            np.zeros(cap, dtype=np.bool_), np.empty(cap + 1), np.empty((cap, d)),
            np.empty(cap), np.empty(cap))


def _lsq2_kernel(gathered):
    """``lsq2``'s gradient of one slice on one layout of the stencils (``gathered``, a
    constant of the compiled code: numba prunes the other layout's branches before typing):
    :func:`lsq2_single` and :func:`lsq2_gathered`, one body. The same fits as
    :func:`drive_table` (``par`` = (power, cutoff, fallback power, fallback cutoff)), on a
    table the same walks, so the same numbers, without the loops that serve several slices
    and uncertainties (:func:`_quad_fit`). Arguments ``(values, centers, stencils, par,
    na, out, flags, dim_tag)``; ``out`` (1, n, d), ``flags`` (1, n).

    ``stencils``, on a CSR table: ``(table, indptr, rings, widen_to, min_points)``, each
    bin's stencil walked here (``rings``, widened to ``widen_to`` below ``min_points``).
    Gathered (the chunked path): ``(nbr_values, nbr_center, ring_of)``, ``nbr_center``
    (n, K, d) NaN at padding, ``nbr_values`` (1, n, K), ``ring_of`` (n, K) int8; the fits
    sum in the same order."""

    @_jit
    def kernel(values, centers, stencils, par, na, out, flags, dim_tag):
        n = centers.shape[0]
        if dim_tag.ndim == 2:  # pruned when compiled: a constant for 2D maps (see dim_tag)
            d = dim_tag.ndim
        else:
            d = centers.shape[1]
        nq = d + d * (d + 1) // 2
        p = nq
        if gathered:
            nbr_values, nbr_center, ring_of = stencils
            cap = max(nbr_center.shape[1], 1)
            flat = np.empty(cap, dtype=np.int64)  # row()'s positions in the flattened rows
            none = np.empty(0, dtype=np.int64)
        else:
            table, indptr, rings, widen_to, min_points = stencils
            rowmax = _widest_row(table, indptr, n)
            nbr = np.empty(rowmax, dtype=np.int64)
            slot = np.empty(rowmax, dtype=np.int64)
            mark = np.full(n, -1, dtype=np.int64)
            cap = max(64, 4 * rowmax)
        ids = np.empty(cap, dtype=np.int64)  # the bins of a stencil (gathered: its slots)
        ring = np.empty(cap, dtype=np.int8)
        (off, ok, yv, w, wo, work), (use, buf, zz, wt, yy) = _quad_work(cap, d)
        work.need[0] = d
        c0, c0o, comb, ph, nrm, low, xs = _solve_scratch(d, nq, p)
        power = par[0]
        cutoff = par[1]
        for i in range(n):
            y0 = values[0, i]
            if math.isnan(y0):
                _undefined(out, flags, 0, i, d)
                continue
            if gathered:  # ids: the entries' slots
                deg = row(nbr_center, none, i, flat, ids)
            else:
                deg, ids, ring = _walk_grown(i, table, indptr, centers, rings, widen_to,
                                             min_points, 0.0, mark, ids, ring, nbr, slot)
                if ids.shape[0] > cap:  # a wider stencil than any so far: bigger buffers
                    cap = ids.shape[0]
                    (off, ok, yv, w, wo, work), (use, buf, zz, wt, yy) = _quad_work(cap, d)
                    work.need[0] = d
            for e in range(deg):  # (each ternary on gathered is pruned, as the branches)
                j = ids[e]
                if gathered:
                    ring[e] = ring_of[i, j]
                for a in range(d):
                    c = nbr_center[i, j, a] if gathered else centers[j, a]
                    off[e, a] = c - centers[i, a]
                y = nbr_values[0, i, j] if gathered else values[0, j]
                oke = not math.isnan(y)
                ok[e] = oke
                yv[e] = y if oke else 0.0
            if _quad_fit(deg, d, off, ok, yv, y0, power, cutoff, use, buf, zz, wt, yy, ph, nrm,
                         xs, low, out, i):
                flags[0, i] = 0
            else:
                flags[0, i] = _bin_general(1, deg, d, off, ok, ring, par, w, c0, work, comb,
                                           yv, y0, na, wo, c0o, out, 0, i)
        return out

    return kernel


#: :func:`_lsq2_kernel` on a CSR table: ``stencils = (table, indptr, rings, widen_to,
#: min_points)``
lsq2_single = _lsq2_kernel(False)
#: :func:`_lsq2_kernel` on gathered stencils: ``stencils = (nbr_values, nbr_center,
#: ring_of)``
lsq2_gathered = _lsq2_kernel(True)


# =========================================================================== grad1


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


# --- side tests, one per rule of xtramgrad.selection: (deg, d, own, nbr, off, lab, thr,
# band, tie_u, tie_code, param, side, miss, nmiss) -> False on a cone tie missing from the
# decision table. ``side[e, a]``: -1 below, +1 above, 0 neither.


@_jit
def _cone_ties(off, e, s2, thr, band, tie_u, tie_code, miss, nmiss, side):
    """The cone sides ``side[e]`` of an edge near the cone's boundary (offset ``off[e]``,
    squared length ``s2``), decided as the reference decides them: by the cosine it
    computes, and within ``band`` of the threshold by the tabulated decisions
    ``tie_u`` / ``tie_code``. False when a tie is missing from the table (recorded in
    ``miss``, its side 0). Rarely reached: every kernel first decides by signs and squares
    (:func:`cone_sides`)."""
    ok = True
    norm = math.sqrt(s2)
    for a in range(off.shape[1]):
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
    return ok


@_jit
def cone_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param, side, miss,
               nmiss):
    # _grad1_cone_kernel repeats this first decision in its edge loop, for speed:
    # change them together
    ok = True
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
        if near:
            ok &= _cone_ties(off, e, s2, thr, band, tie_u, tie_code, miss, nmiss, side)
    return ok


@_jit
def quadrant_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param, side, miss,
                   nmiss):
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
    return True


@_jit
def halfspace_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param, side, miss,
                    nmiss):
    # compare absolute coordinates, exactly as the reference does
    for e in range(deg):
        for a in range(d):
            other = nbr[e, a]
            side[e, a] = 0
            if other < own[a] - param:
                side[e, a] = -1
            elif own[a] + param < other:
                side[e, a] = 1
    return True


@_jit
def label_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param, side, miss,
                nmiss):
    for e in range(deg):
        v = lab[e]
        for a in range(d):
            side[e, a] = 0
            if v == -(a + 1):
                side[e, a] = -1
            elif v == a + 1:
                side[e, a] = 1
    return True


#: Codes of the selection rules with compiled side tests (the ``compiled`` names of
#: :data:`xtramgrad.selection.RULES` entries).
RULE_CODES = {"cone": 0, "quadrants": 1, "halfspace": 2, "labels": 3}


@_jit
def sides(kind, deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param, side, miss,
          nmiss):
    """The side test of rule ``kind`` (see :data:`RULE_CODES`)."""
    if kind == 0:
        return cone_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param,
                          side, miss, nmiss)
    if kind == 1:
        return quadrant_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param,
                              side, miss, nmiss)
    if kind == 2:
        return halfspace_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param,
                               side, miss, nmiss)
    return label_sides(deg, d, own, nbr, off, lab, thr, band, tie_u, tie_code, param, side,
                       miss, nmiss)


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
def _grad1_slices(i, deg, d, off, side, values, nbr_values, ids, pos, t, s_count, na, out,
                  flags, ok, prev_ok, yv, cb, ca, c0, cnt_b, cnt_a, sum_b, sum_a, we, g,
                  gathered):
    """Apply grad1 to every slice of one bin whose sides are known."""
    have = False
    defined = False
    for s in range(s_count):
        y0 = values[s, t]
        if math.isnan(y0):
            _undefined(out, flags, s, i, d)
            continue
        same = have
        for e in range(deg):
            y = nbr_values[s, i, pos[e]] if gathered else values[s, ids[e]]
            oke = not math.isnan(y)
            ok[e] = oke
            yv[e] = y if oke else 0.0
            if oke != prev_ok[e]:
                same = False
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
                    # arithmetic selects (1.0 or 0.0; sides are unpredictable on irregular
                    # meshes): adding o * 0.0 leaves the sums exact
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
            _undefined(out, flags, s, i, d)
            continue
        for a in range(d):
            g[a] = 0.0
        for e in range(deg):
            for a in range(d):
                g[a] += we[e, a] * yv[e]
        for a in range(d):
            out[s, i, a] = na if math.isnan(c0[a]) else g[a] + c0[a] * y0
        flags[s, i] = 0


def _grad1_driver(gathered):
    """grad1 for every bin and every slice, any rule: ``out`` (S, n, d); one body for both
    layouts of the stencils, ``gathered`` a constant of the compiled code (numba prunes the
    other layout's branches before typing). Arguments ``(kind, values, centers, nbr_a,
    nbr_b, nbr_c, thr, band, tie_u, tie_code, param, na, out, flags, redo, miss, nmiss,
    dim_tag)``: ``nbr_a, nbr_b, nbr_c`` the table, its ``indptr`` (padded: empty) and its
    edge labels (none: empty), or the gathered 1-ring stencils ``nbr_values`` (S, n, K),
    ``nbr_center`` (n, K, d), NaN at padding, and ``nbr_label`` (n, K) (none: empty).

    Bins whose cone ties are missing from ``tie_u`` are flagged in ``redo`` and left unset.
    ``dim_tag`` is an empty array with one dimension per space dimension: its ``ndim`` is a
    compile-time constant, so each dimension gets its own machine code with unrolled loops
    over the axes.
    """

    @_jit
    def kernel(kind, values, centers, nbr_a, nbr_b, nbr_c, thr, band, tie_u, tie_code, param,
               na, out, flags, redo, miss, nmiss, dim_tag):
        d = dim_tag.ndim
        n = centers.shape[0]
        if gathered:
            k = nbr_b.shape[1]
            flat = np.empty(k, dtype=np.int64)  # row()'s positions in the flattened rows
            none = np.empty(0, dtype=np.int64)
        else:
            k = _widest_row(nbr_a, nbr_b, n)
            slot = np.empty(k, dtype=np.int64)
            dummy = np.empty((1, 1, 1))  # _grad1_slices reads the table's values
        s_count = values.shape[0]
        own = np.empty(d)
        ids = np.empty(k, dtype=np.int64)  # the neighbours (gathered: their slots)
        nbc = np.empty((k, d))
        off = np.empty((k, d))
        lab = np.zeros(k, dtype=np.int64)
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
        has_labels = nbr_c.size > 0
        for i in range(n):
            for a in range(d):
                own[a] = centers[i, a]
            if gathered:  # ids: the entries' slots
                deg = row(nbr_b, none, i, flat, ids)
            else:
                deg = row(nbr_a, nbr_b, i, ids, slot)
            for e in range(deg):  # (each ternary on gathered is pruned, as the branches)
                j = ids[e]
                for a in range(d):
                    c = nbr_b[i, j, a] if gathered else centers[j, a]
                    nbc[e, a] = c
                    off[e, a] = c - own[a]
                if has_labels:
                    lab[e] = label_of(nbr_c, i, j if gathered else slot[e])
            if not sides(kind, deg, d, own, nbc, off, lab, thr, band, tie_u, tie_code, param,
                         side, miss, nmiss):
                redo[i] = True
                continue
            if gathered:
                _grad1_slices(i, deg, d, off, side, values, nbr_a, ids, ids, i, s_count, na,
                              out, flags, ok, prev_ok, yv, cb, ca, c0, cnt_b, cnt_a, sum_b,
                              sum_a, we, g, True)
            else:
                _grad1_slices(i, deg, d, off, side, values, dummy, ids, ids, i, s_count, na,
                              out, flags, ok, prev_ok, yv, cb, ca, c0, cnt_b, cnt_a, sum_b,
                              sum_a, we, g, False)
        return out

    return kernel


#: :func:`_grad1_driver` on a table: ``(kind, values, centers, table, indptr, labels, thr,
#: band, tie_u, tie_code, param, na, out, flags, redo, miss, nmiss, dim_tag)``
grad1_table = _grad1_driver(False)
#: :func:`_grad1_driver` on gathered stencils (1-ring): ``(kind, values, center,
#: nbr_values, nbr_center, nbr_label, thr, ...)``, ``nbr_center`` (n, K, d) NaN at padding
grad1_gathered = _grad1_driver(True)


def _grad1_cone_kernel(gathered):
    """:func:`grad1_table` for one slice and the cone rule, fused into two passes per bin:
    the first reads each neighbour once (position, center, value), decides its sides and
    accumulates the per-axis counts and offset sums; the second applies the weights. Same
    arithmetic, in the same order, as :func:`grad1_table`.

    One body for both layouts of the stencils, ``gathered`` a constant of the compiled
    code (numba prunes the other layout's branches before typing). Arguments ``(values,
    centers, nbr_a, nbr_b, thr, band, tie_u, tie_code, na, out, flags, redo, miss, nmiss,
    dim_tag)``: ``values`` (1, n) and ``centers`` (n, d) of every bin; ``nbr_a, nbr_b`` the
    table and its ``indptr`` (padded: empty), or the gathered stencils ``nbr_values`` (1,
    n, K) and ``nbr_center`` (n, K, d), NaN at padding, read in place (walking them as a
    table of positions into flattened copies measured 1.35x slower). (The other way to
    share the code, helpers taking the scratch arrays called per edge or per bin by two
    kernels, measured 2.9-16x slower than this body.)"""

    @_jit
    def kernel(values, centers, nbr_a, nbr_b, thr, band, tie_u, tie_code, na, out, flags,
               redo, miss, nmiss, dim_tag):
        d = dim_tag.ndim
        n = centers.shape[0]
        if gathered:
            k = nbr_b.shape[1]
        else:
            k = _widest_row(nbr_a, nbr_b, n)
            nbr = np.empty(k, dtype=np.int64)
            slot = np.empty(k, dtype=np.int64)
        off = np.empty((k, d))
        fbs = np.empty((k, d))
        fas = np.empty((k, d))
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
            y0 = values[0, i]
            if math.isnan(y0):
                _undefined(out, flags, 0, i, d)
                continue
            for a in range(d):
                cnt_b[a] = 0.0
                cnt_a[a] = 0.0
                sum_b[a] = 0.0
                sum_a[a] = 0.0
            defined = False
            tie_missing = False
            if gathered:
                width = k
            else:
                width = row(nbr_a, nbr_b, i, nbr, slot)
            deg = 0
            for r in range(width):
                if gathered:
                    if math.isnan(nbr_b[i, r, 0]):  # padding
                        continue
                    y = nbr_a[0, i, r]
                else:
                    j = nbr[r]
                    y = values[0, j]
                e = deg
                deg += 1
                oke = not math.isnan(y)
                yv[e] = y if oke else 0.0
                defined |= oke
                s2 = 0.0
                for a in range(d):
                    if gathered:
                        o = nbr_b[i, r, a] - centers[i, a]
                    else:
                        o = centers[j, a] - centers[i, a]
                    off[e, a] = o
                    s2 += o * o
                lim = 4.0 * band * s2
                near = False
                okf = 1.0 if oke else 0.0
                for a in range(d):
                    o = off[e, a]
                    gap = o * o - thr2 * s2
                    # selectors 1.0 / 0.0 (branch-free: sides are unpredictable on
                    # irregular meshes); the sums below add o * 0.0 exactly. Through
                    # locals: written straight into the arrays, measured 1.25x slower
                    wide = gap > 0
                    fb = okf * (wide and o < 0)
                    fa = okf * (wide and o > 0)
                    fbs[e, a] = fb
                    fas[e, a] = fa
                    near |= abs(gap) <= lim
                if near:  # the reference's own decision
                    tie_missing |= not _cone_ties(off, e, s2, thr, band, tie_u, tie_code,
                                                  miss, nmiss, side)
                    for a in range(d):
                        fbs[e, a] = okf * (side[e, a] < 0)
                        fas[e, a] = okf * (side[e, a] > 0)
                for a in range(d):
                    o = off[e, a]
                    fb = fbs[e, a]  # read once: the sums' stores may alias the selectors
                    fa = fas[e, a]
                    cnt_b[a] += fb
                    sum_b[a] += o * fb
                    cnt_a[a] += fa
                    sum_a[a] += o * fa
            if tie_missing:
                redo[i] = True
                continue
            if not defined:
                _undefined(out, flags, 0, i, d)
                continue
            _axis_coefficients(cnt_b, cnt_a, sum_b, sum_a, cb, ca, c0)
            for a in range(d):
                g[a] = 0.0
            for e in range(deg):
                for a in range(d):
                    w = cb[a] * fbs[e, a] + ca[a] * fas[e, a]  # w + 0.0 * other == w
                    g[a] += w * yv[e]
            for a in range(d):
                out[0, i, a] = na if math.isnan(c0[a]) else g[a] + c0[a] * y0
            flags[0, i] = 0
        return out

    return kernel


#: :func:`_grad1_cone_kernel` on a table: ``(values, centers, table, indptr, thr, band,
#: tie_u, tie_code, na, out, flags, redo, miss, nmiss, dim_tag)``
grad1_cone_single = _grad1_cone_kernel(False)
#: :func:`_grad1_cone_kernel` on gathered stencils (1-ring): ``(values, center,
#: nbr_values, nbr_center, thr, ...)``, ``nbr_center`` (n, K, d) NaN at padding
grad1_cone_gathered = _grad1_cone_kernel(True)


# =========================================================================== table checks


@_jit
def row_problem(table, indptr, rows, n_bins):
    """The first problem of a block of table rows, as ``xtramgrad.topology.schema.row_problem``
    defines it: ``(kind, row, value)`` with kind 1 out of range, 2 self-loop, 3 duplicate
    (checked in that order within a row), or ``(0, -1, 0)`` when there is none. ``table``
    is a padded block (``indptr`` empty) or the edges of a ragged block (``indptr`` the
    block's offsets)."""
    padded = table.ndim == 2
    m = rows.shape[0]
    vals = np.empty(table.shape[1] if padded else 16, dtype=np.int64)
    for i in range(m):
        if padded:
            lo = 0
            hi = table.shape[1]
        else:
            lo = indptr[i] - indptr[0]
            hi = indptr[i + 1] - indptr[0]
            if hi - lo > vals.shape[0]:
                vals = np.empty(2 * (hi - lo), dtype=np.int64)
        # one pass: the range check, and the present entries in table order
        k = 0
        for e in range(lo, hi):
            j = table[i, e] if padded else table[e]
            if (j < -1 if padded else j < 0) or j >= n_bins:
                return 1, i, j
            if j >= 0:
                vals[k] = j
                k += 1
        for e in range(k):
            if vals[e] == rows[i]:
                return 2, i, vals[e]
        if k <= 32:
            for e in range(1, k):
                j = vals[e]
                for f in range(e):
                    if vals[f] == j:
                        return 3, i, j
        else:
            order = np.argsort(vals[:k], kind="mergesort")
            first = -1
            best = k
            for q in range(1, k):
                a = vals[order[q]]
                if a == vals[order[q - 1]]:
                    # the later of the two in table order is where the repeat shows
                    pos = max(order[q], order[q - 1])
                    if pos < best:
                        best = pos
                        first = a
            if first >= 0:
                return 3, i, first
    return 0, -1, 0


# =========================================================================== halo gather


@_jit
def localize(ids, starts, stops, offset, out):
    """Positions of global ``ids`` (m, K) in the concatenation of the sorted chunks
    [``starts``, ``stops``) (``offset`` their first local positions) into ``out``; -1 at
    padding (ids < 0). Returns the flat position of the first id outside every chunk, or
    -1 (the chunk of each id: :func:`_chunk_window`)."""
    m, k = ids.shape
    wlo, whi, shift = 0, 0, 0
    for i in range(m):
        for r in range(k):
            g = ids[i, r]
            if g < 0:
                out[i, r] = -1
                continue
            if g < wlo or g >= whi:
                wlo, whi, shift = _chunk_window(g, starts, stops, offset)
                if whi <= wlo:
                    return i * k + r
            out[i, r] = g + shift
    return -1


@_jit
def ring1_rows(table, indptr, skip, lo, n, starts, stops, offset, data, lid_out, center_out,
               dim_tag):
    """A chunk's 1-ring stencils from its rows of a padded (``indptr`` empty) or CSR
    (``indptr`` local) table (the chunk's first bin: ``lo``; ``n`` bins in all), in one
    pass: ``lid_out`` (m, K) the positions of each row's present entries (left-packed, -1
    padding; rows with ``skip`` empty) in the concatenation of the sorted chunks
    [``starts``, ``stops``) (as :func:`localize`), and ``center_out`` (m, K, d) their rows of
    ``data`` (the loaded centers; NaN at padding: :func:`take_rows`; ``d``:
    ``dim_tag.ndim``). Returns ``(bad, row, widest, suspect)``: the global id of the first
    entry outside every chunk and its row (local), or -1, -1; the widest row (if more than
    K, the rows past K are cut and the caller raises); and whether some row may hold a value
    out of range, a self-loop or a duplicate (the caller's full check says which: rows
    wider than 32 are flagged unchecked)."""
    m, k = lid_out.shape
    d = dim_tag.ndim
    padded = table.ndim == 2
    kmax = _widest_row(table, indptr, m)
    nbr = np.empty(kmax, dtype=np.int64)
    slot = np.empty(kmax, dtype=np.int64)
    widest = 0
    suspect = False
    wlo, whi, shift = 0, 0, 0  # the window of the last chunk hit (_chunk_window)
    for i in range(m):
        if padded:  # values below -1 are no padding: row() would skip them
            for r in range(table.shape[1]):
                suspect |= table[i, r] < -1
        deg = row(table, indptr, i, nbr, slot)
        me = lo + i
        if deg > 32:
            suspect = True
        else:
            for e in range(deg):
                g = nbr[e]
                hit = (g == me) | (g < 0) | (g >= n)
                for f in range(e):
                    hit |= nbr[f] == g
                suspect |= hit
        if skip[i]:
            deg = 0
        widest = max(widest, deg)
        for r in range(min(deg, k)):
            g = nbr[r]
            if g < wlo or g >= whi:
                wlo, whi, shift = _chunk_window(g, starts, stops, offset)
                if whi <= wlo:
                    return g, i, widest, suspect
            j = g + shift
            lid_out[i, r] = j
            for a in range(d):
                center_out[i, r, a] = data[j, a]
        for r in range(min(deg, k), k):
            lid_out[i, r] = -1
            for a in range(d):
                center_out[i, r, a] = np.nan
    return -1, -1, widest, suspect


@_jit
def block_refs(table, block, n):
    """The blocks of ``block`` bins that the entries of ``table`` (any shape, flattened)
    point into, sorted; entries outside 0..n-1 are ignored (see
    ``xtramgrad.chunked.locality._block_refs``)."""
    nb = -(-n // block)
    hit = np.zeros(nb, dtype=np.bool_)
    flat = table.reshape(-1)
    lo = 0  # the block of the last entry: most entries fall in it (no division)
    hi = 0
    for e in range(flat.shape[0]):
        j = flat[e]
        if (j < lo or j >= hi) and 0 <= j < n:
            b = j // block
            hit[b] = True
            lo = b * block
            hi = lo + block
    return np.flatnonzero(hit).astype(np.int64)


@_jit
def take_rows(lid, data, out):
    """``out[i, r] = data[lid[i, r]]`` (``data`` (L, d), ``out`` (m, K, d)), NaN at -1."""
    m, k = lid.shape
    d = data.shape[1]
    for i in range(m):
        for r in range(k):
            j = lid[i, r]
            if j < 0:
                for a in range(d):
                    out[i, r, a] = np.nan
            else:
                for a in range(d):
                    out[i, r, a] = data[j, a]
    return out


@_jit
def take_values(lid, data, out):
    """``out[b, i, r] = data[b, lid[i, r]]`` (``data`` (B, L), ``out`` (B, m, K)), NaN at
    -1."""
    m, k = lid.shape
    for b in range(data.shape[0]):
        for i in range(m):
            for r in range(k):
                j = lid[i, r]
                out[b, i, r] = np.nan if j < 0 else data[b, j]
    return out


@_jit
def chunk_reach(table, indptr, b, skip):
    """For each chunk [b[c], b[c+1]) of rows of a padded (``indptr`` empty) or CSR table,
    the other chunks its entries point into, as CSR ``(ptr, chunks)`` (sorted within a
    chunk); rows with ``skip[row]`` (when ``skip`` is not empty) are left out, and entries
    outside 0..n-1 ignored. One pass, the entry's chunk tried as the previous entry's first."""
    nc = b.shape[0] - 1
    n = b[nc]
    hit = np.zeros(nc, dtype=np.bool_)
    touched = np.empty(nc, dtype=np.int64)
    ptr = np.zeros(nc + 1, dtype=np.int64)
    out = np.empty(max(16, 4 * nc), dtype=np.int64)
    nbr = np.empty(_widest_row(table, indptr, n), dtype=np.int64)
    slot = np.empty(nbr.shape[0], dtype=np.int64)
    has_skip = skip.shape[0] > 0
    s = 0
    for c in range(nc):
        nt = 0
        for i in range(b[c], b[c + 1]):
            if has_skip and skip[i]:
                continue
            deg = row(table, indptr, i, nbr, slot)
            for e in range(deg):
                j = nbr[e]
                if j < 0 or j >= n:
                    continue
                if not (b[s] <= j < b[s + 1]):
                    lo = 0
                    hi = nc
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if b[mid] <= j:
                            lo = mid + 1
                        else:
                            hi = mid
                    s = lo - 1
                if s != c and not hit[s]:
                    hit[s] = True
                    touched[nt] = s
                    nt += 1
        touched[:nt].sort()
        if ptr[c] + nt > out.shape[0]:
            bigger = np.empty(2 * (ptr[c] + nt), dtype=np.int64)
            bigger[: ptr[c]] = out[: ptr[c]]
            out = bigger
        for t in range(nt):
            out[ptr[c] + t] = touched[t]
            hit[touched[t]] = False
        ptr[c + 1] = ptr[c] + nt
    return ptr, out[: ptr[nc]]


@_jit
def row_counts(table):
    """Present entries (>= 0) of each row of a padded table."""
    n, k = table.shape
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        c = 0
        for r in range(k):
            c += table[i, r] >= 0
        out[i] = c
    return out

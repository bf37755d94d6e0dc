"""Pure-numpy gradient kernels (no xarray, no dask).

Every built-in method is a *local linear map*: for a fixed tessellation, options and
missing-value pattern, the gradient of bin ``i`` along axis ``j`` is::

    g[i, j] = sum_e w[e, j] * y[dst[e]]  +  diag[i, j] * y[target[i]]

where ``e`` runs over the edges (neighbour pairs) of bin ``i``. The kernels compute the
weights ``w`` and ``diag`` from the geometry once, then apply them to any number of fields,
time steps or samples at the cost of one gather over the edges.

The kernels work on a *local problem* so that the eager path and the chunked (dask) path
run the very same code: ``values`` and ``centers`` describe ``m`` source bins, and
``neighbours`` / ``targets`` describe ``n`` output bins by positions into the source bins.
Eagerly ``m == n`` and ``targets`` is ``arange(n)``; a dask chunk passes its own bins plus
the halo of neighbours it needs from other chunks.

Shapes follow the "core dimensions last" habit: values ``(..., m)``, centers ``(m, d)``,
neighbours ``(n, k)`` padded with -1, results ``(..., n, d)``.

Two backends compute :func:`local_gradient` for the built-in methods: this module's numpy
code (the reference, run by blocks of output bins so that temporaries stay small) and, when
numba is installed (``pip install xtramgrad[fast]``), the compiled single-pass kernels of
:mod:`xtramgrad._fast`, which agree with it to rounding. :func:`set_backend` (or the
``XTRAMGRAD_BACKEND`` environment variable) chooses; the default uses numba when present.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "Selection",
    "Stencil",
    "build_stencil",
    "grad1_weights",
    "gradn_weights",
    "local_weights",
    "bin_defined",
    "missing_patterns",
    "apply_weights",
    "weights_to_csr",
    "local_gradient",
    "gather_neighbourhoods",
    "set_backend",
    "get_backend",
    "numba_available",
]

SELECTION_KINDS = ("cone", "quadrants", "halfspace", "labels")

# Relative width of the band around the cone threshold inside which the side of a neighbour
# is decided by TRamWAy's own float64 expression rather than by the precomputed threshold.
_TIE_BAND = 1e-9


@dataclass(frozen=True)
class Selection:
    """A resolved neighbour-selection rule.

    ``kind`` is one of ``"cone"`` (``value`` = selection angle in units of pi),
    ``"quadrants"`` (InferenceMAP's one-axis-per-neighbour rule, any dimension),
    ``"halfspace"`` (``value`` = exclusion margin eps >= 0) or ``"labels"`` (sides read from
    signed edge labels +-(j+1)).
    """

    kind: str
    value: float | None = None

    def describe(self) -> str:
        if self.kind == "cone":
            return f"cone(selection_angle={self.value})"
        if self.kind == "halfspace":
            return f"halfspace(eps={self.value})"
        return self.kind


class Stencil(NamedTuple):
    """Edges of a local problem and the side each neighbour falls on, per axis.

    Attributes
    ----------
    indptr : (n + 1,) int64
        Edges of output bin ``i`` are ``indptr[i]:indptr[i + 1]``, in neighbour-table order.
    rows : (E,) intp
        Output bin of each edge.
    dst : (E,) intp
        Source position of each edge's neighbour.
    targets : (n,) intp
        Source position of each output bin.
    offsets : (E, d) float64
        ``center[dst] - center[target[rows]]``.
    below, above : (E, d) bool
        Whether the neighbour counts on the lower / upper side of axis ``j``.
    """

    indptr: np.ndarray
    rows: np.ndarray
    dst: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    below: np.ndarray
    above: np.ndarray

    @property
    def n(self) -> int:
        return len(self.targets)

    @property
    def ndim(self) -> int:
        return self.offsets.shape[1]


# --------------------------------------------------------------------------- selection


def _cone_sides(
    offsets: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Angular sectors, decided by a comparison with a precomputed threshold.

    TRamWAy computes ``a = 1 - 2 * arccos(u) / pi`` with ``u = o / |o|`` and keeps a
    neighbour above if ``a > 1 - s`` and below if ``a < s - 1``. Mathematically this is
    ``u > cos(s * pi / 2)`` and ``u < -cos(s * pi / 2)``; away from the threshold both agree,
    and inside a narrow band around it (ties such as 45-degree grid diagonals) we evaluate
    TRamWAy's own float64 expression so that ties are decided exactly as TRamWAy decides.
    """
    norm = np.sqrt(np.sum(offsets * offsets, axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        u = offsets / norm  # NaN for a zero offset: it counts for no axis
    threshold = math.cos(angle * math.pi / 2.0)
    above = u > threshold
    below = u < -threshold
    tie = np.abs(np.abs(u) - threshold) <= _TIE_BAND
    if tie.any():
        with np.errstate(invalid="ignore"):
            a = 1.0 - 2.0 * np.arccos(u[tie]) / math.pi
        above[tie] = 1.0 - angle < a
        below[tie] = a < angle - 1.0
    return below, above


def _quadrant_sides(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each neighbour counts for the one axis where ``|o_j|`` is largest.

    Ties go to the lowest axis (``np.argmax``), so grid diagonals count for ``x``.
    """
    e, d = offsets.shape
    axis = np.argmax(np.abs(offsets), axis=1)
    along = offsets[np.arange(e), axis]
    below = np.zeros((e, d), dtype=bool)
    above = np.zeros((e, d), dtype=bool)
    below[np.arange(e), axis] = along < 0
    above[np.arange(e), axis] = along > 0
    return below, above


def _halfspace_sides(
    own: np.ndarray, other: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Half-spaces with an exclusion margin, compared on absolute coordinates as TRamWAy does."""
    return other < own - eps, own + eps < other


def _label_sides(labels: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    axes = np.arange(1, d + 1)
    return labels[:, None] == -axes, labels[:, None] == axes


def build_stencil(
    centers: np.ndarray,
    neighbours: np.ndarray,
    selection: Selection,
    targets: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> Stencil:
    """Edges of a local problem and their sides.

    Parameters
    ----------
    centers : (m, d) float
        Centers of the source bins.
    neighbours : (n, k) int
        Positions into the source bins, padded with -1.
    selection : Selection
        Neighbour-selection rule.
    targets : (n,) int, optional
        Source position of each output bin; ``arange(n)`` by default (then ``m == n``).
    labels : (n, k) int, optional
        Signed side labels, required by ``Selection("labels")``.

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
    if targets is None:
        targets = np.arange(n, dtype=np.intp)
    targets = np.asarray(targets, dtype=np.intp)
    present = neighbours >= 0
    rows, slots = np.nonzero(present)
    rows = rows.astype(np.intp, copy=False)
    dst = neighbours[rows, slots].astype(np.intp, copy=False)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    own = centers[targets[rows]]
    other = centers[dst]
    offsets = other - own
    if selection.kind == "cone":
        assert selection.value is not None
        below, above = _cone_sides(offsets, selection.value)
    elif selection.kind == "quadrants":
        below, above = _quadrant_sides(offsets)
    elif selection.kind == "halfspace":
        assert selection.value is not None
        below, above = _halfspace_sides(own, other, selection.value)
    elif selection.kind == "labels":
        if labels is None:
            raise ValueError("Selection('labels') needs the edge labels")
        below, above = _label_sides(np.asarray(labels)[rows, slots], centers.shape[1])
    else:
        raise ValueError(f"unknown selection kind {selection.kind!r}")
    return Stencil(indptr, rows, dst, targets, offsets, below, above)


# --------------------------------------------------------------------------- segment sums


def _segment_sum(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sum ``values`` (E, ...) over each row's edges, sequentially in edge order."""
    n = len(indptr) - 1
    out = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
    nonempty = indptr[1:] > indptr[:-1]
    if values.shape[0] and nonempty.any():
        out[nonempty] = np.add.reduceat(values, indptr[:-1][nonempty], axis=0)
    return out


# --------------------------------------------------------------------------- grad1


def grad1_weights(
    stencil: Stencil, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights of TRamWAy's per-axis regression (``grad1``), for P missing-value patterns.

    For axis ``j`` the neighbours below (above) are averaged into one point at distance
    ``a`` (``b``) from the center, and the gradient is the derivative at the center of
    the parabola through the three points, in closed form on centered coordinates::

        both sides:  g = (a^2 (y+ - y0) + b^2 (y0 - y-)) / (a b (a + b))
        one side:    g = (y0 - yS) / (x0 - xS)
        no side:     undefined (NaN)

    Parameters
    ----------
    stencil : Stencil
    valid : (m, P) bool
        Which source bins hold a measurement, for each of P patterns.

    Returns
    -------
    diag : (n, d, P) float64
        Coefficient of the bin's own value; NaN where the component is undefined for lack of
        a neighbour on either side (see :func:`local_weights` for the other cases).
    w : (E, d, P) float64
        Coefficient of each edge's neighbour value.
    """
    st = stencil
    edge_ok = valid[st.dst]  # (E, P)
    below = st.below[:, :, None] & edge_ok[:, None, :]  # (E, d, P)
    above = st.above[:, :, None] & edge_ok[:, None, :]
    off = st.offsets[:, :, None]
    n_below = _segment_sum(below.astype(np.float64), st.indptr)  # (n, d, P)
    n_above = _segment_sum(above.astype(np.float64), st.indptr)
    s_below = _segment_sum(np.where(below, off, 0.0), st.indptr)
    s_above = _segment_sum(np.where(above, off, 0.0), st.indptr)
    has_b = n_below > 0
    has_a = n_above > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        a = -s_below / n_below  # distance of the mean lower neighbour
        b = s_above / n_above  # distance of the mean upper neighbour
        both = has_b & has_a
        # coefficient on the mean value below / above, and on the center
        cb = np.where(both, -b / (a * (a + b)), -1.0 / a)
        ca = np.where(both, a / (b * (a + b)), 1.0 / b)
        c0 = np.where(both, (b - a) / (a * b), np.where(has_b, 1.0 / a, -1.0 / b))
        cb = np.where(has_b, cb / n_below, 0.0)
        ca = np.where(has_a, ca / n_above, 0.0)
    c0 = np.where(has_b | has_a, c0, np.nan)
    rows = st.rows
    w = np.where(below, cb[rows], 0.0) + np.where(above, ca[rows], 0.0)
    return c0, w


# --------------------------------------------------------------------------- gradn


def _monomials(x: np.ndarray) -> np.ndarray:
    """Design row ``[1, x_1..x_d, x_p x_q (p <= q)]`` for points ``x`` (..., d)."""
    d = x.shape[-1]
    iu, ju = np.triu_indices(d)
    ones = np.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    return np.concatenate([ones, x, x[..., iu] * x[..., ju]], axis=-1)


def gradn_weights(
    stencil: Stencil, valid: np.ndarray, rcond: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the multidimensional order-2 regression (``gradn``), corrected.

    Fits ``y = c + L.x + x^T Q x`` by least squares to the bin's center, counted ``k``
    times, and its ``k`` measured neighbours, as TRamWAy does, but in coordinates centered
    on the bin (and scaled by the RMS neighbour distance), so the gradient at the center is
    simply ``L``. TRamWAy reads the wrong coefficients and returns about 0 for every linear
    field; this returns the derivative of the same fit. Rank-deficient neighbourhoods (fewer
    than 6 distinct points in 2D, 10 in 3D) get the minimum-norm solution in those centered,
    scaled coordinates (singular values of the design below ``rcond`` times the largest are
    dropped).

    Well-conditioned neighbourhoods are solved through the normal equations (fast); those
    whose design has a condition number above ``1 / sqrt(_GRADN_NORMAL_RATIO)`` (nearly
    degenerate Voronoi neighbourhoods, rank-deficient borders) are solved by a singular value
    decomposition of the design itself, which keeps their accuracy at ``eps * cond`` instead
    of the normal equations' ``eps * cond**2``.

    Parameters and returns as :func:`grad1_weights`.
    """
    st = stencil
    d = st.ndim
    edge_ok = valid[st.dst]  # (E, P)
    okf = edge_ok.astype(np.float64)
    k = _segment_sum(okf, st.indptr)  # (n, P)
    # scale per bin and pattern: RMS distance of the measured neighbours
    r2 = np.sum(st.offsets * st.offsets, axis=1)[:, None] * okf
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.sqrt(_segment_sum(r2, st.indptr) / k)  # (n, P)
    h = np.where(np.isfinite(h) & (h > 0), h, 1.0)
    z = st.offsets[:, None, :] / h[st.rows][:, :, None]  # (E, P, d)
    phi = _monomials(z)  # (E, P, p)
    wphi = phi * okf[:, :, None]
    normal = _segment_sum(wphi[:, :, :, None] * phi[:, :, None, :], st.indptr)  # (n, P, p, p)
    normal[:, :, 0, 0] += k  # the center, counted k times, has design row (1, 0, ..., 0)
    # pseudo-inverse of the symmetric normal matrix, restricted to the rows of L
    lam, vec = np.linalg.eigh(normal)
    lam_max = lam[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(lam > rcond * rcond * lam_max, 1.0 / lam, 0.0)
    lin = slice(1, 1 + d)
    pinv_l = np.einsum("npik,npk,npjk->npij", vec[:, :, lin, :], inv, vec)  # (n, P, d, p)
    w = np.einsum("epdq,epq->edp", pinv_l[st.rows], wphi) / h[st.rows][:, None, :]
    diag = (pinv_l[:, :, :, 0] * k[:, :, None]).transpose(0, 2, 1) / h[:, None, :]
    # ill-conditioned (or rank-deficient) neighbourhoods: SVD of the design itself
    bad_b, bad_p = np.nonzero((lam[..., 0] < _GRADN_NORMAL_RATIO * lam_max[..., 0]) & (k > 0))
    if len(bad_b):
        _gradn_svd(st, bad_b, bad_p, phi, edge_ok, k, h, rcond, diag, w)
    return diag, w


# Below this ratio of the smallest to the largest eigenvalue of the normal matrix (design
# condition number above 100), gradn solves the neighbourhood by SVD of the design.
_GRADN_NORMAL_RATIO = 1e-4


def _gradn_svd(
    st: Stencil,
    bins: np.ndarray,
    pats: np.ndarray,
    phi: np.ndarray,
    edge_ok: np.ndarray,
    k: np.ndarray,
    h: np.ndarray,
    rcond: float,
    diag: np.ndarray,
    w: np.ndarray,
) -> None:
    """Overwrite gradn's weights of the (bin, pattern) pairs ``(bins, pats)`` in place with
    the minimum-norm least-squares solution computed by SVD of the weighted design: one row
    ``sqrt(k) * (1, 0, ..., 0)`` for the center counted ``k`` times (same normal equations,
    same minimum-norm solution), then one row per measured neighbour (zero rows elsewhere)."""
    d = st.ndim
    deg = np.diff(st.indptr)
    kmax = int(deg[bins].max())
    # padded edge table of the selected bins: (B, kmax) edge positions, -1 for padding
    slot = np.arange(kmax)
    edges = st.indptr[bins][:, None] + slot[None, :]
    present = slot[None, :] < deg[bins][:, None]
    edges = np.where(present, edges, -1)
    q_idx, s_idx = np.nonzero(present)
    e_idx = edges[q_idx, s_idx]
    design = np.zeros((len(bins), kmax + 1, phi.shape[2]))
    sqrt_k = np.sqrt(k[bins, pats])
    design[:, 0, 0] = sqrt_k
    ok = edge_ok[e_idx, pats[q_idx]]
    design[q_idx, s_idx + 1] = phi[e_idx, pats[q_idx]] * ok[:, None]
    u, sv, vt = np.linalg.svd(design, full_matrices=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(sv > rcond * sv[:, :1], 1.0 / sv, 0.0)
    # rows of L of the pseudo-inverse: (B, d, kmax + 1)
    x_l = np.einsum("bri,br,bkr->bik", vt[:, :, 1 : 1 + d], inv, u)
    scale = h[bins, pats]
    diag[bins, :, pats] = x_l[:, :, 0] * (sqrt_k / scale)[:, None]
    w[e_idx, :, pats[q_idx]] = x_l[q_idx, :, s_idx + 1] / scale[q_idx][:, None]


# --------------------------------------------------------------------------- applying

# Upper bound on the (E, d, slices) temporary of the multi-pattern path, in float64 items.
_BLOCK_ITEMS = 2**24


def apply_weights(
    stencil: Stencil,
    diag: np.ndarray,
    w: np.ndarray,
    values: np.ndarray,
    pattern: np.ndarray | None = None,
) -> np.ndarray:
    """Apply local linear maps to values.

    Parameters
    ----------
    diag, w : (n, d, P), (E, d, P)
        From :func:`local_weights`.
    values : (S, m) float
        Source values, one row per slice (NaN where missing).
    pattern : (S,) int, optional
        Which of the P weight sets each slice uses (all 0 by default).

    Returns
    -------
    (S, n, d) float64

    Notes
    -----
    With one pattern the map is one sparse product over all slices. With several, the
    slices are processed in blocks, gathering each slice's weights: a vectorised pass, with
    the same summation order (edges in table order, then the bin itself).
    """
    st = stencil
    s_count = values.shape[0]
    if pattern is None:
        pattern = np.zeros(s_count, dtype=np.intp)
    vals = np.where(np.isnan(values), 0.0, values)  # missing neighbours carry zero weight
    if diag.shape[2] == 1:
        csr = weights_to_csr(st, diag[:, :, 0], w[:, :, 0], n_source=values.shape[1])
        return (csr @ vals.T).T.reshape(s_count, st.n, st.ndim)
    out = np.empty((s_count, st.n, st.ndim), dtype=np.float64)
    step = max(1, _BLOCK_ITEMS // max(1, w.shape[0] * st.ndim))
    for lo in range(0, s_count, step):
        blk = slice(lo, min(lo + step, s_count))
        pat = pattern[blk]
        g = _segment_sum(w[:, :, pat] * vals[blk][:, st.dst].T[:, None, :], st.indptr)
        g += diag[:, :, pat] * vals[blk][:, st.targets].T[:, None, :]
        out[blk] = g.transpose(2, 0, 1)
    return out


def weights_to_csr(stencil: Stencil, diag: np.ndarray, w: np.ndarray, n_source: int) -> Any:
    """The local linear map as a ``scipy.sparse.csr_array`` of shape ``(n * d, m)``.

    Row ``i * d + j`` holds the coefficients of component ``j`` of bin ``i``: the edge weights
    in neighbour-table order, then the bin's own coefficient (last). A component that is
    undefined holds NaN on the bin's own column, so products propagate NaN.
    """
    from scipy import sparse

    st = stencil
    n, d = diag.shape
    deg = np.diff(st.indptr)
    # each bin's block: its edges, then itself
    block_ptr = st.indptr + np.arange(n + 1)
    last = np.zeros(block_ptr[-1], dtype=bool)
    last[block_ptr[1:] - 1] = True
    block_cols = np.empty(block_ptr[-1], dtype=np.intp)
    block_cols[~last] = st.dst
    block_cols[last] = st.targets
    block_data = np.empty((block_ptr[-1], d), dtype=np.float64)
    block_data[~last] = w
    block_data[last] = diag
    # row (i, j) takes bin i's block, column j
    row_len = np.repeat(deg + 1, d)
    indptr = np.zeros(n * d + 1, dtype=np.int64)
    np.cumsum(row_len, out=indptr[1:])
    slot = np.arange(indptr[-1]) - np.repeat(indptr[:-1], row_len)
    pos = np.repeat(np.repeat(block_ptr[:-1], d), row_len) + slot
    axis = np.repeat(np.tile(np.arange(d), n), row_len)
    return sparse.csr_array(
        (block_data[pos, axis], block_cols[pos], indptr), shape=(n * d, n_source)
    )


# --------------------------------------------------------------------------- user functions


def gather_neighbourhoods(
    centers: np.ndarray, values: np.ndarray, neighbours: np.ndarray, targets: np.ndarray
) -> dict[str, np.ndarray]:
    """Padded views of each bin's neighbourhood, as passed to vectorised user functions.

    Returns a dict with ``center`` (n, d), ``value`` (S, n), ``neighbour_center`` (n, k, d),
    ``neighbour_value`` (S, n, k) and ``neighbour_mask`` (S, n, k), where padding and
    missing neighbours are masked out (their values are NaN, their centers NaN).
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


WEIGHT_METHODS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "grad1": grad1_weights,
    "gradn": gradn_weights,
}


def bin_defined(stencil: Stencil, valid: np.ndarray) -> np.ndarray:
    """(n, P) bool: the bin has a measurement and at least one measured neighbour.

    Elsewhere the whole gradient is undefined (TRamWAy returns no gradient there).
    """
    any_nbr = _segment_sum(valid[stencil.dst].astype(np.int64), stencil.indptr) > 0
    return valid[stencil.targets] & any_nbr


def local_weights(
    stencil: Stencil, method: str, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of a built-in method for P missing-value patterns ``valid`` (m, P).

    Returns ``diag`` (n, d, P), ``w`` (E, d, P) and ``no_side`` (n, d, P), the components
    left undefined only for lack of a neighbour on either side (they take ``na``). Every
    other undefined component has a NaN ``diag``.
    """
    try:
        weights = WEIGHT_METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown gradient method {method!r}: expected one of {sorted(WEIGHT_METHODS)} "
            "or a callable"
        ) from None
    diag, w = weights(stencil, valid)
    defined = bin_defined(stencil, valid)[:, None, :]
    no_side = np.isnan(diag) & defined
    return np.where(defined, diag, np.nan), w, no_side


def missing_patterns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct missing-value patterns of ``values`` (S, m).

    Returns ``valid`` (m, P) bool and ``pattern`` (S,) int such that slice ``s`` has pattern
    ``pattern[s]``.
    """
    ok = ~np.isnan(values)
    if ok.all():
        return np.ones((values.shape[1], 1), dtype=bool), np.zeros(values.shape[0], np.intp)
    uniq, pattern = np.unique(ok, axis=0, return_inverse=True)
    return uniq.T.copy(), pattern.reshape(-1).astype(np.intp)


def local_gradient(
    values: np.ndarray,
    centers: np.ndarray,
    neighbours: np.ndarray,
    *,
    selection: Selection,
    method: str | Callable[..., np.ndarray] = "grad1",
    targets: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    na: float = np.nan,
    backend: str | None = None,
) -> np.ndarray:
    """Gradient of ``values`` on a local problem.

    Parameters
    ----------
    values : (..., m) float
        Measurements at the source bins; NaN marks a missing measurement.
    centers : (m, d) float
    neighbours : (n, k) int, positions into the source bins, padded with -1.
    selection : Selection
        Neighbour-selection rule (``grad1`` only).
    method : {"grad1", "gradn"} or callable
        A callable is a vectorised user gradient, see :func:`xtramgrad.grad`.
    targets : (n,) int, optional
        Source position of each output bin (default ``arange(n)``).
    labels : (n, k) int, optional
        Signed edge labels for ``Selection("labels")``.
    na : float
        Value of a component with no neighbour on either side (``grad1``).
    backend : {"auto", "numpy", "numba"}, optional
        Kernels for the built-in methods (default: :func:`get_backend`). ``"numba"`` makes
        one compiled pass over the bins; ``"numpy"`` is the reference, run by blocks of
        bins so that its temporaries stay small. Both agree to rounding.

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
    values = np.asarray(values, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    neighbours = np.asarray(neighbours)
    batch = values.shape[:-1]
    flat = values.reshape(-1, values.shape[-1])
    n, d = neighbours.shape[0], centers.shape[1]
    if targets is None:
        targets = np.arange(n, dtype=np.intp)
    if callable(method):
        hood = gather_neighbourhoods(centers, flat, neighbours, targets)
        out = np.asarray(method(**hood), dtype=np.float64)
        if out.shape != (flat.shape[0], n, d):
            raise ValueError(
                f"the user gradient function returned shape {out.shape}, expected "
                f"(slices, bins, space) = {(flat.shape[0], n, d)}"
            )
        out = np.where(np.isnan(hood["value"])[:, :, None], np.nan, out)
        return out.reshape(batch + (n, d))
    if method not in WEIGHT_METHODS:
        raise ValueError(
            f"unknown gradient method {method!r}: expected one of {sorted(WEIGHT_METHODS)} "
            "or a callable"
        )
    targets = np.asarray(targets, dtype=np.intp)
    if _resolve_backend(backend) == "numba":
        out = _numba_gradient(flat, centers, neighbours, selection, method, targets, labels, na)
    else:
        out = _numpy_gradient(flat, centers, neighbours, selection, method, targets, labels, na)
    return out.reshape(batch + (n, d))


# Output bins per block of the numpy path, as a number of neighbour-table cells: temporaries
# of size (edges, d, P) stay a few MB whatever the size of the problem.
_BLOCK_CELLS = 2**18


def _numpy_gradient(
    flat: np.ndarray,
    centers: np.ndarray,
    neighbours: np.ndarray,
    selection: Selection,
    method: str,
    targets: np.ndarray,
    labels: np.ndarray | None,
    na: float,
) -> np.ndarray:
    """The reference path: stencil, weights, application, by blocks of output bins."""
    n, k = neighbours.shape
    d = centers.shape[1]
    valid, pattern = missing_patterns(flat)
    out = np.empty((flat.shape[0], n, d), dtype=np.float64)
    step = max(1, _BLOCK_CELLS // max(1, k * valid.shape[1]))
    lab = None if labels is None else np.asarray(labels)
    for lo in range(0, max(n, 1), step):
        blk = slice(lo, min(lo + step, n))
        stencil = build_stencil(
            centers,
            neighbours[blk],
            selection,
            targets=targets[blk],
            labels=None if lab is None else lab[blk],
        )
        diag, w, no_side = local_weights(stencil, method, valid)
        g = apply_weights(stencil, diag, w, flat, pattern)
        if not np.isnan(na):
            g = np.where(no_side.transpose(2, 0, 1)[pattern], na, g)
        out[:, blk] = g
    return out


# --------------------------------------------------------------------------- backends

BACKENDS = ("auto", "numpy", "numba")
_backend = {"name": os.environ.get("XTRAMGRAD_BACKEND", "auto")}


def numba_available() -> bool:
    """Whether the optional compiled kernels (numba) can be used.

    Examples
    --------
    >>> isinstance(numba_available(), bool)
    True
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def set_backend(name: str) -> str:
    """Choose the kernels of :func:`local_gradient`; returns the previous choice.

    ``"numpy"`` is the pure-numpy reference; ``"numba"`` the compiled kernels (installed with
    the ``fast`` extra: ``pip install xtramgrad[fast]``); ``"auto"`` (default, or the
    ``XTRAMGRAD_BACKEND`` environment variable) uses numba when it is installed. Both give the
    same results to rounding.

    Examples
    --------
    >>> previous = set_backend("numpy")
    >>> get_backend()
    'numpy'
    >>> _ = set_backend(previous)
    """
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r}; expected one of {BACKENDS}")
    if name == "numba" and not numba_available():
        raise ValueError(
            "backend='numba' needs numba, which is not installed; install it with "
            "`pip install xtramgrad[fast]` (or `pip install numba`), or use 'numpy'."
        )
    previous = _backend["name"]
    _backend["name"] = name
    return previous


def get_backend() -> str:
    """The current choice of kernels (see :func:`set_backend`)."""
    return _backend["name"]


def _resolve_backend(backend: str | None) -> str:
    name = _backend["name"] if backend is None else backend
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r}; expected one of {BACKENDS}")
    if name == "auto":
        return "numba" if numba_available() else "numpy"
    if name == "numba" and not numba_available():
        raise ValueError(
            "backend='numba' needs numba, which is not installed; install it with "
            "`pip install xtramgrad[fast]`, or use 'numpy'."
        )
    return name


# Decisions for cone ties, keyed by selection angle: sorted u values and their side code
# (-1 below, +1 above, 0 neither), made with numpy's arccos exactly as _cone_sides does.
_TIE_TABLES: dict[float, tuple[np.ndarray, np.ndarray]] = {}
_MAX_MISSES = 4096
# gradn: normal matrices whose squared Cholesky pivots lie within this factor of each other
# are solved by Cholesky (no eigenvalue can be dropped there, and the solution agrees with
# the eigendecomposition to ~1e-13); the others go through eigh, as in gradn_weights.
_COND_MAX = 1e3


def _tie_codes(u: np.ndarray, angle: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        a = 1.0 - 2.0 * np.arccos(u) / math.pi
    return np.where(1.0 - angle < a, 1, np.where(a < angle - 1.0, -1, 0)).astype(np.int8)


def _selection_code(selection: Selection) -> tuple[int, float, float]:
    from . import _fast

    if selection.kind == "cone":
        assert selection.value is not None
        angle = float(selection.value)
        return _fast.KIND_CONE, angle, math.cos(angle * math.pi / 2.0)
    if selection.kind == "quadrants":
        return _fast.KIND_QUADRANTS, 0.0, 0.0
    if selection.kind == "halfspace":
        assert selection.value is not None
        return _fast.KIND_HALFSPACE, float(selection.value), 0.0
    if selection.kind == "labels":
        return _fast.KIND_LABELS, 0.0, 0.0
    raise ValueError(f"unknown selection kind {selection.kind!r}")


def _numba_gradient(
    flat: np.ndarray,
    centers: np.ndarray,
    neighbours: np.ndarray,
    selection: Selection,
    method: str,
    targets: np.ndarray,
    labels: np.ndarray | None,
    na: float,
) -> np.ndarray:
    """The compiled path (:mod:`xtramgrad._fast`): one pass, no (edges, ...) temporaries."""
    from . import _fast

    n = neighbours.shape[0]
    d = centers.shape[1]
    flat = np.ascontiguousarray(flat)
    centers = np.ascontiguousarray(centers)
    neighbours = np.ascontiguousarray(neighbours)
    if not np.issubdtype(neighbours.dtype, np.integer):
        neighbours = neighbours.astype(np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    out = np.empty((flat.shape[0], n, d), dtype=np.float64)
    if method == "gradn":
        iu, ju = np.triu_indices(d)
        _fast.gradn(
            flat, centers, neighbours, targets, iu.astype(np.int64), ju.astype(np.int64),
            1e-10, _COND_MAX, out, np.empty((0,) * d),
        )
        return out
    kind, param, thr = _selection_code(selection)
    if kind == _fast.KIND_LABELS:
        if labels is None:
            raise ValueError("Selection('labels') needs the edge labels")
        lab = np.ascontiguousarray(labels, dtype=np.int64)
    else:
        lab = np.zeros((0, 0), dtype=np.int64)
    tie_u, tie_code = _TIE_TABLES.get(param, (np.empty(0), np.empty(0, dtype=np.int8)))

    def run(rows: np.ndarray | slice, dest: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        redo = np.zeros(dest.shape[1], dtype=np.bool_)
        miss = np.empty(_MAX_MISSES, dtype=np.float64)
        nmiss = np.zeros(1, dtype=np.int64)
        if kind == _fast.KIND_CONE and flat.shape[0] == 1:
            _fast.grad1_cone_single(
                flat, centers, neighbours[rows], targets[rows], thr, _TIE_BAND, tie_u,
                tie_code, float(na), dest, redo, miss, nmiss, np.empty((0,) * d),
            )
            return redo, miss, int(nmiss[0])
        _fast.grad1(
            flat, centers, neighbours[rows], targets[rows],
            lab if kind != _fast.KIND_LABELS else lab[rows],
            kind, param, thr, _TIE_BAND, tie_u, tie_code, float(na), dest, redo, miss, nmiss,
            np.empty((0,) * d),
        )
        return redo, miss, int(nmiss[0])

    redo, miss, nmiss = run(slice(None), out)
    if nmiss:
        rows = np.flatnonzero(redo)
        if nmiss > _MAX_MISSES:
            # too many distinct tie values to tabulate: the reference decides these bins
            out[:, rows] = _numpy_gradient(
                flat, centers, neighbours[rows], selection, method, targets[rows],
                None if labels is None else np.asarray(labels)[rows], na,
            )
            return out
        new_u = np.union1d(tie_u, miss[:nmiss])
        tie_u, tie_code = new_u, _tie_codes(new_u, param)
        _TIE_TABLES[param] = (tie_u, tie_code)
        part = np.empty((flat.shape[0], len(rows), d), dtype=np.float64)
        again, _, left = run(rows, part)
        if left:  # cannot happen: every tie of these bins is in the table now
            raise RuntimeError("cone tie table incomplete after refresh")
        out[:, rows] = part
    return out

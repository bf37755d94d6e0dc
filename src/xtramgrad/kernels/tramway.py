"""TRamWAy's gradient methods, as local linear maps (numpy reference).

* :func:`grad1_weights`: TRamWAy's per-axis 3-point regression with 2-point fallback, the
  neighbours of each axis chosen by a selection rule (:mod:`xtramgrad.selection`);
* :func:`gradn_weights`: the multidimensional order-2 regression, with a correct derivative
  and a linear fallback where the quadratic is not determined with redundancy.

What TRamWAy computes, exactly, and where we deliberately differ: ``docs/differences.md``.
"""

from __future__ import annotations

import numpy as np

from ..selection import Selection
from .fits import (
    FLAG_FALLBACK,
    FLAG_OK,
    FLAG_UNDEFINED,
    Weights,
    ls_map,
    lsq_weights,
    monomials,
    rms_scale,
    segment_sum,
)
from .stencil import Neighbourhood

__all__ = ["grad1_weights", "gradn_weights"]


def grad1_weights(nb: Neighbourhood, ok: np.ndarray, *, selection: Selection) -> Weights:
    """Weights of TRamWAy's per-axis regression (``grad1``), for one missing-value pattern.

    For axis ``j`` the measured neighbours below (above) are averaged into one point at
    distance ``a`` (``b``) from the center, and the gradient is the derivative at the center
    of the parabola through the three points, in closed form on centered coordinates::

        both sides:  g = (a^2 (y+ - y0) + b^2 (y0 - y-)) / (a b (a + b))
        one side:    g = (y0 - yS) / (x0 - xS)
        no side:     not determined (``na``)

    Parameters
    ----------
    nb : Neighbourhood
        A 1-ring neighbourhood.
    ok : (E,) bool
        Whether each neighbour holds a measurement.
    selection : Selection
        The neighbour-selection rule.
    """
    rule = selection.rule
    if rule.needs_labels and nb.labels is None:
        raise ValueError(f"selection {rule.name!r} needs the edge labels (neighbour_label)")
    below, above = rule.sides(nb.offsets, nb.own[nb.rows], nb.other, nb.labels, selection.value)
    below = below & ok[:, None]
    above = above & ok[:, None]
    off = nb.offsets
    n_below = segment_sum(below.astype(np.float64), nb.indptr)  # (n, d)
    n_above = segment_sum(above.astype(np.float64), nb.indptr)
    s_below = segment_sum(np.where(below, off, 0.0), nb.indptr)
    s_above = segment_sum(np.where(above, off, 0.0), nb.indptr)
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
    rows = nb.rows
    w = np.where(below, cb[rows], 0.0) + np.where(above, ca[rows], 0.0)
    defined = segment_sum(ok.astype(np.int64), nb.indptr) > 0
    flag = np.where(defined, FLAG_OK, FLAG_UNDEFINED).astype(np.int8)
    return Weights(w, c0, flag, np.full(nb.n, np.nan))


def gradn_weights(nb: Neighbourhood, ok: np.ndarray) -> Weights:
    """Weights of the multidimensional order-2 regression (``gradn``), corrected.

    Fits ``y = c + L.x + x^T Q x`` by least squares to the bin's center, counted ``k``
    times, and its ``k`` measured neighbours, as TRamWAy does, but in coordinates centered
    on the bin (and scaled by the RMS neighbour distance), so the gradient at the center is
    simply ``L``. TRamWAy reads the wrong coefficients and returns about 0 for every linear
    field; this returns the derivative of the same fit.

    Where the quadratic is not determined with redundancy (its design has less than full
    rank, or there are no more distinct points than the 1 + d + d(d+1)/2 unknowns: 6 in 2D,
    10 in 3D), the fit would be biased (a minimum-norm guess) or would interpolate noise:
    those bins fall back to linear least squares through the bin's value over the same
    neighbours (``lsq`` with ``power=0``, exact for linear fields) and are flagged
    :data:`~xtramgrad.kernels.fits.FLAG_FALLBACK`.
    """
    d = nb.ndim
    p = 1 + d + d * (d + 1) // 2
    okf = ok.astype(np.float64)
    k = segment_sum(okf, nb.indptr)
    h = rms_scale(nb, ok)
    z = nb.offsets / h[nb.rows][:, None]
    phi = monomials(z, 2, constant=True)
    w, c0, rank, not_det, cond = ls_map(
        nb, phi, okf, h, np.arange(1, d + 1), np.ones(d), "free", center_weight=k
    )
    fall = (rank < p) | (k + 1 <= p) | not_det.any(axis=1)
    flag = np.where(fall, FLAG_FALLBACK, FLAG_OK)
    if fall.any():
        lw = lsq_weights(nb, ok, power=0.0)
        sel = fall[nb.rows]
        w = np.where(sel[:, None], lw.w, w)
        c0 = np.where(fall[:, None], lw.c0, c0)
        cond = np.where(fall, lw.cond, cond)
    w = np.where(ok[:, None], w, 0.0)
    flag = np.where(k > 0, flag, FLAG_UNDEFINED).astype(np.int8)
    return Weights(w, c0, flag, cond)

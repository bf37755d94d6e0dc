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

GCV targets the field, not its gradient: the bandwidth that minimises the error of a
gradient is larger than the one that minimises the error of the field (derivatives need more
smoothing). :data:`GRADIENT_FACTOR` scales the GCV choice to the gradient; its value was
measured on noisy maps (see ``docs/methods.md``, "Noise").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fits import local_weights
from .stencil import Radius, build_neighbourhood

__all__ = ["typical_spacing", "gcv_scores", "gcv_bandwidth", "SAMPLE", "GRADIENT_FACTOR"]

#: Bins on which the GCV score is estimated.
SAMPLE = 4000
#: Slices of the field pooled in the score.
MAX_SLICES = 8
#: Candidate bandwidths, in multiples of the typical spacing (then refined).
GRID = 2.0 ** np.arange(-1.0, 6.5, 0.5)
#: The gradient's bandwidth, in multiples of the field's GCV bandwidth.
GRADIENT_FACTOR = 1.0
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


def gcv_scores(
    values: np.ndarray, centers: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
    targets: np.ndarray, bandwidths: np.ndarray, degree: int,
) -> np.ndarray:
    """GCV score of each bandwidth, on bins ``targets`` of ``values`` (S, n)."""
    scores = np.full(len(bandwidths), np.inf)
    valid_all = ~np.isnan(values)
    for b, l in enumerate(bandwidths):
        nb = build_neighbourhood(Radius(REACH * float(l)), indptr, indices, centers, targets)
        res_sq = 0.0
        lev = 0.0
        count = 0
        patterns = {}
        for s in range(values.shape[0]):
            key = valid_all[s].tobytes() if not valid_all[s].all() else b""
            if key not in patterns:
                w = local_weights(nb, valid_all[s][nb.src], bandwidth=float(l), degree=degree)
                patterns[key] = w
            w = patterns[key]
            d = nb.ndim
            fit_w, fit_c = w.w[:, d], w.c0[:, d]
            y = values[s]
            y_src = np.where(np.isnan(y[nb.src]), 0.0, y[nb.src])
            from .fits import segment_sum

            yhat = segment_sum(fit_w * y_src, nb.indptr) + fit_c * y[nb.targets]
            ok = ~np.isnan(yhat) & ~np.isnan(y[nb.targets]) & (w.flag != 2)
            res_sq += float(np.sum((y[nb.targets][ok] - yhat[ok]) ** 2))
            lev += float(np.sum(fit_c[ok]))
            count += int(ok.sum())
        if count and lev < count:
            scores[b] = count * res_sq / (count - lev) ** 2
    return scores


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
    targets = np.sort(rng.choice(measured, size=min(SAMPLE, len(measured)), replace=False))
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
    return chosen * GRADIENT_FACTOR, info


def choose_bandwidth(ds: Any, field: Any, topo: Any, req: Any) -> tuple[float, dict[str, Any]]:
    """The ``bandwidth="auto"`` of a field of a tessellation Dataset (eager data)."""
    from ..topology import table_csr

    indptr, indices = table_csr(topo)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    batch = [d for d in field.dims if d != "bin"]
    vals = np.asarray(field.transpose(*batch, "bin").values, dtype=np.float64)
    return gcv_bandwidth(vals, centers, indptr, indices, int(req.options["degree"]))

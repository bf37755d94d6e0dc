"""Linear methods as sparse matrices (numpy reference weights, whole tessellation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .engine import _blocks, _combine, map_weights, weights_to_csr
from .methods import quantity_columns
from .stencil import build_neighbourhood

__all__ = ["operator", "quantity_matrix"]


def quantity_matrix(method: Any, quantity: str, ndim: int) -> np.ndarray:
    """``combine`` (Qo, Q): the rows of the method's estimates that make ``quantity``
    (``"gradient"``, ``"hessian"``, ``"fit"``, or ``"laplacian"``: the Hessian's trace).

    Examples
    --------
    >>> from xtramgrad.kernels.methods import METHODS
    >>> quantity_matrix(METHODS["lsq2"], "laplacian", 2).tolist()
    [[0.0, 0.0, 1.0, 0.0, 1.0]]
    """
    q = method.n_quantities(ndim)
    if quantity == "laplacian":
        cols = quantity_columns(method, "hessian", ndim)
        iu, ju = np.triu_indices(ndim)
        out = np.zeros((1, q))
        out[0, cols.start + np.flatnonzero(iu == ju)] = 1.0
        return out
    cols = quantity_columns(method, quantity, ndim)
    return np.eye(q)[cols]


def operator(arrays: dict[str, Any], req: Any, quantity: str, valid: np.ndarray | None) -> Any:
    """The ``(n * Qo, n)`` CSR matrix of ``req.method``'s ``quantity`` on a whole tessellation
    given as in-memory arrays (``centers``, ``indptr``, ``indices``, ``labels``); ``valid``
    (n,) marks the measured bins (all by default)."""
    from scipy import sparse

    centers = arrays["centers"]
    indptr, indices = arrays["indptr"], arrays["indices"]
    n, d = centers.shape
    method = req.method
    comb = quantity_matrix(method, quantity, d)
    ok_all = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    spec = method.stencil_for(d, req.options)
    parts = []
    for blk in _blocks(np.diff(indptr)):
        nb = build_neighbourhood(spec, indptr, indices, centers, np.arange(blk.start, blk.stop),
                                 arrays["labels"])
        res = map_weights(method, nb, ok_all[nb.src], ok_all[nb.targets], req.options,
                          req.selection)
        w, c0 = _combine(res.w, res.c0, comb)
        if not np.isnan(req.na):
            c0 = np.where(np.isnan(c0) & (res.flag != 2)[:, None], np.nan, c0)
        parts.append(weights_to_csr(nb, w, c0, n_source=n))
    if not parts:
        return sparse.csr_array((0, n))
    return sparse.vstack(parts, format="csr")

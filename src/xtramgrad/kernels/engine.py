"""Running a method: the numpy reference engine, the compiled dispatch, the backends.

:func:`run` takes a :class:`~xtramgrad.kernels.job.Job` and a
:class:`~xtramgrad.kernels.methods.Method` and returns the estimates ``(S, n, Qo)`` and the
per-bin flags ``(S, n)``. With the ``numba`` backend a method's compiled kernel runs when it
has one (and accepts the job); otherwise, and with the ``numpy`` backend, the numpy
reference runs: by blocks of bins (so that temporaries stay small), it builds each block's
:class:`~xtramgrad.kernels.stencil.Neighbourhood`, computes the method's local linear map
for each missing-value pattern present and applies it through a sparse product (edges in
stencil order, then the bin itself: the order of the compiled kernels).

:func:`set_backend` (or the ``XTRAMGRAD_BACKEND`` environment variable) chooses the backend;
the default uses numba when it is installed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .fits import FLAG_UNDEFINED, Weights
from .job import Job
from .stencil import Neighbourhood, as_csr, build_neighbourhood, gathered_neighbourhood

__all__ = [
    "run",
    "map_weights",
    "weights_to_csr",
    "missing_patterns",
    "set_backend",
    "get_backend",
    "numba_available",
    "compiled_kernels",
    "BACKENDS",
]

BACKENDS = ("auto", "numpy", "numba")
_backend = {"name": os.environ.get("XTRAMGRAD_BACKEND", "auto")}

# Stencil entries per block of the numpy engine: temporaries of size (entries, Q, ...) stay
# a few MB whatever the size of the problem.
_BLOCK_ENTRIES = 2**17


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
    """Choose the kernels of every gradient; returns the previous choice.

    ``"numpy"`` is the pure-numpy reference; ``"numba"`` the compiled kernels (installed with
    the ``fast`` extra: ``pip install -e ".[fast]"``); ``"auto"`` (default, or the
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
        raise ImportError(
            "backend='numba' needs numba, which is not installed; install it with "
            '`pip install -e ".[fast]"` from a checkout of xtramgrad (or `pip install '
            "numba`), or use 'numpy'."
        )
    previous = _backend["name"]
    _backend["name"] = name
    return previous


def get_backend() -> str:
    """The current choice of kernels (see :func:`set_backend`)."""
    return _backend["name"]


def resolve_backend(backend: str | None) -> str:
    """``"numpy"`` or ``"numba"``: the backend that runs (``backend`` or the current one)."""
    name = _backend["name"] if backend is None else backend
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r}; expected one of {BACKENDS}")
    if name == "auto":
        return "numba" if numba_available() else "numpy"
    if name == "numba" and not numba_available():
        raise ImportError(
            "backend='numba' needs numba, which is not installed; install it with "
            '`pip install -e ".[fast]"`, or use \'numpy\'.'
        )
    return name


def compiled_kernels() -> Any:
    """The compiled kernels (the ``_numba`` module) when the numba backend is in use, else
    None: the test every optional compiled path of the package makes."""
    if not (numba_available() and resolve_backend(None) == "numba"):
        return None
    from . import _numba

    return _numba


# --------------------------------------------------------------------------- dispatch


def run(job: Job, method: Any, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Estimates ``(S, n, Qo)`` and flags ``(S, n)`` of ``method`` for ``job``."""
    done = None
    if method.compiled is not None and resolve_backend(backend) == "numba":
        done = method.compiled(job)
    out, flags = done if done is not None else _run_numpy(job, method)
    # a bin none of whose outputs the method's own fit determined (e.g. a local fit whose
    # window holds too few bins) has no gradient; a fallback (flag 1) keeps its flag
    undefined = flags == 0
    for q in range(out.shape[-1]):  # not isnan(out).all(axis=-1): 5x slower on (S, n, 2)
        undefined &= np.isnan(out[..., q])
    if undefined.any():
        flags = flags.copy()
        flags[undefined] = FLAG_UNDEFINED
    return out, flags


def missing_patterns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct missing-value patterns of ``values`` (S, m).

    Returns ``valid`` (m, P) bool and ``pattern`` (S,) int such that slice ``s`` has pattern
    ``pattern[s]``.

    Examples
    --------
    >>> valid, pattern = missing_patterns(np.array([[1.0, np.nan], [2.0, 3.0], [0.0, np.nan]]))
    >>> valid.T.tolist(), pattern.tolist()
    ([[True, False], [True, True]], [0, 1, 0])
    """
    ok = ~np.isnan(values)
    if ok.all():
        return np.ones((values.shape[1], 1), dtype=bool), np.zeros(values.shape[0], np.intp)
    uniq, pattern = np.unique(ok, axis=0, return_inverse=True)
    return uniq.T.copy(), pattern.reshape(-1).astype(np.intp)


def map_weights(
    method: Any, nb: Neighbourhood, ok: np.ndarray, center_ok: np.ndarray,
    options: dict[str, Any], selection: Any,
) -> Weights:
    """The method's local linear map for one pattern, with the undefined bins marked: a bin
    whose own value is missing, or whose stencil holds no measurement, has flag
    FLAG_UNDEFINED and NaN coefficients."""
    kw = dict(options)
    if method.uses_selection:
        kw["selection"] = selection
    try:
        res = method.weights(nb, ok, **kw)
    except Exception as exc:
        if hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(f"(raised by the weight function of method {method.name!r})")
        raise
    if not isinstance(res, Weights):
        if not (isinstance(res, tuple) and len(res) == 2):
            raise TypeError(
                f"the weight function of method {method.name!r} returned {type(res).__name__}"
                f" {res!r:.80}; expected a Weights or a pair (w, c0) of arrays: w (edges, Q) "
                "and c0 (bins, Q)."
            )
        w, c0 = res
        w = np.asarray(w, dtype=np.float64)
        c0 = np.asarray(c0, dtype=np.float64)
        if w.ndim == 1:
            w, c0 = w[:, None], c0[:, None]
        res = Weights(w, c0, np.zeros(nb.n, np.int8), np.full(nb.n, np.nan))
    _check_weights(method, nb, res)
    from .fits import segment_sum

    any_ok = segment_sum(ok.astype(np.int64), nb.indptr) > 0
    defined = center_ok & any_ok & (res.flag != FLAG_UNDEFINED)
    flag = np.where(defined, res.flag, FLAG_UNDEFINED).astype(np.int8)
    c0 = np.where(defined[:, None], res.c0, np.nan)
    return Weights(res.w, c0, flag, res.cond)


def _check_weights(method: Any, nb: Neighbourhood, res: Weights) -> None:
    e, n = len(nb.rows), nb.n
    q = res.c0.shape[1] if res.c0.ndim == 2 else -1
    if res.w.shape != (e, q) or res.c0.shape != (n, q):
        raise ValueError(
            f"method {method.name!r}: its weight function returned w {res.w.shape} and c0 "
            f"{res.c0.shape}; expected (entries, Q) = ({e}, Q) and (bins, Q) = ({n}, Q)."
        )


def _combine(w: np.ndarray, c0: np.ndarray, comb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Output quantities ``comb`` (Qo, Q) of a map; NaN where a used quantity is NaN."""
    used = comb != 0
    nan = np.isnan(c0)
    c0o = np.where(nan, 0.0, c0) @ comb.T
    c0o[(nan.astype(np.int64) @ used.T.astype(np.int64)) > 0] = np.nan
    return w @ comb.T, c0o


def weights_to_csr(nb: Neighbourhood, w: np.ndarray, c0: np.ndarray, n_source: int) -> Any:
    """A local linear map as a ``scipy.sparse.csr_array`` of shape ``(n * Q, n_source)``.

    Row ``i * Q + q`` holds the coefficients of quantity ``q`` of bin ``i``: the stencil
    entries in stencil order, then the bin's own coefficient (last). A quantity that is
    undefined holds NaN on the bin's own column, so products propagate NaN.
    """
    from scipy import sparse

    n, q = c0.shape
    deg = np.diff(nb.indptr)
    block_ptr = nb.indptr + np.arange(n + 1)
    last = np.zeros(block_ptr[-1], dtype=bool)
    last[block_ptr[1:] - 1] = True
    block_cols = np.empty(block_ptr[-1], dtype=np.intp)
    block_cols[~last] = nb.src
    block_cols[last] = nb.targets
    block_data = np.empty((block_ptr[-1], q), dtype=np.float64)
    block_data[~last] = w
    block_data[last] = c0
    row_len = np.repeat(deg + 1, q)
    indptr = np.zeros(n * q + 1, dtype=np.int64)
    np.cumsum(row_len, out=indptr[1:])
    slot = np.arange(indptr[-1]) - np.repeat(indptr[:-1], row_len)
    pos = np.repeat(np.repeat(block_ptr[:-1], q), row_len) + slot
    axis = np.repeat(np.tile(np.arange(q), n), row_len)
    return sparse.csr_array(
        (block_data[pos, axis], block_cols[pos], indptr), shape=(n * q, n_source)
    )


def _blocks(sizes: np.ndarray) -> list[slice]:
    """Consecutive blocks of bins holding about _BLOCK_ENTRIES stencil entries each."""
    n = len(sizes)
    if n == 0:
        return []
    bounds = np.searchsorted(np.cumsum(sizes + 1), np.arange(1, n + 1) * _BLOCK_ENTRIES)
    cuts = sorted(set(int(b) + 1 for b in bounds if b + 1 < n))
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _run_numpy(job: Job, method: Any) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(job.values, dtype=np.float64)
    s_count, n = values.shape
    comb = np.asarray(job.combine, dtype=np.float64)
    no = comb.shape[0]
    out = np.empty((s_count, n, no), dtype=np.float64)
    flags = np.empty((s_count, n), dtype=np.int8)
    if n == 0:
        return out, flags
    if job.gathered is None:
        indptr, indices = (
            as_csr(job.table) if job.indptr.size == 0 else as_csr((job.indptr, job.table))
        )
        labels = None
        if job.labels is not None:
            lab = np.asarray(job.labels)
            labels = lab[np.asarray(job.table) >= 0] if lab.ndim == 2 else lab
        centers = np.asarray(job.centers, dtype=np.float64)
        src = values
        sig_src = None if job.sigma is None else np.asarray(job.sigma, dtype=np.float64)
        valid, pattern = missing_patterns(src)
        for blk in _blocks(np.diff(indptr)):
            nb = build_neighbourhood(
                job.spec, indptr, indices, centers, np.arange(blk.start, blk.stop), labels
            )
            _apply_block(job, method, nb, src, sig_src, valid, pattern, comb, out, flags, blk,
                         n)
        return out, flags
    g = job.gathered
    k = g.center.shape[1]
    for blk in _blocks(np.full(n, k)):
        nb = gathered_neighbourhood(
            np.asarray(job.centers, dtype=np.float64)[blk], g.center[blk],
            None if g.label is None else g.label[blk],
        )
        nb = nb._replace(ring=g.ring[blk][~np.isnan(g.center[blk][:, :, 0])])
        m = blk.stop - blk.start
        src = np.concatenate([values[:, blk], g.values[:, blk].reshape(s_count, m * k)], axis=1)
        sig_src = None
        if job.sigma is not None:
            assert g.sigma is not None
            sig_src = np.concatenate(
                [job.sigma[:, blk], g.sigma[:, blk].reshape(s_count, m * k)], axis=1
            )
        valid, pattern = missing_patterns(src)
        local_out = np.empty((s_count, m, no))
        local_flags = np.empty((s_count, m), dtype=np.int8)
        _apply_block(job, method, nb, src, sig_src, valid, pattern, comb, local_out,
                     local_flags, slice(0, m), src.shape[1])
        out[:, blk] = local_out
        flags[:, blk] = local_flags
    return out, flags


def _apply_block(
    job: Job, method: Any, nb: Neighbourhood, src: np.ndarray, sig_src: np.ndarray | None,
    valid: np.ndarray, pattern: np.ndarray, comb: np.ndarray, out: np.ndarray,
    flags: np.ndarray, blk: slice, n_source: int,
) -> None:
    vals = np.where(np.isnan(src), 0.0, src)  # missing entries carry zero weight
    for p in np.unique(pattern):
        s_idx = np.flatnonzero(pattern == p)
        ok = valid[nb.src, p]
        res = map_weights(method, nb, ok, valid[nb.targets, p], job.options, job.selection)
        w, c0 = _combine(res.w, res.c0, comb)
        undetermined = np.isnan(c0) & (res.flag != FLAG_UNDEFINED)[:, None]
        csr = weights_to_csr(nb, w, c0, n_source=n_source)
        if sig_src is None:
            g = (csr @ vals[s_idx].T).T
        else:
            sig = np.where(np.isnan(sig_src[s_idx]), 0.0, sig_src[s_idx])
            g = np.sqrt((csr.multiply(csr) @ (sig * sig).T).T)
        g = g.reshape(len(s_idx), nb.n, comb.shape[0])
        if not np.isnan(job.na):
            g = np.where(undetermined[None], job.na, g)
        out[s_idx, blk] = g
        flags[s_idx, blk] = res.flag[None, :]

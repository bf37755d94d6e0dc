"""Bridges from a :class:`~xtramgrad.kernels.job.Job` to the compiled kernels of
:mod:`xtramgrad.kernels._numba` (imported only when a compiled kernel runs).

A method's ``compiled`` attribute is one of these callables: ``kernel(job)`` returns
``(out (S, n, Qo), flags (S, n))``, or None when it cannot run this job (e.g. a selection
rule without a compiled side test), in which case the numpy reference runs instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..selection import TIE_BAND, Selection
from .job import Job
from .stencil import Radius, Rings

__all__ = ["generic", "grad1", "read_only", "stencil_arrays", "table_arrays"]

# Decisions for cone ties, keyed by selection angle: sorted u values and their side code
# (-1 below, +1 above, 0 neither), made with numpy's arccos exactly as the numpy rule does.
TIE_TABLES: dict[float, tuple[np.ndarray, np.ndarray]] = {}
_MAX_MISSES = 4096


def read_only(a: Any, dtype: Any = np.float64) -> np.ndarray:
    """``a`` as the compiled kernels read their inputs: C-contiguous, of ``dtype`` and
    read-only (no copy when ``a`` already has that dtype and layout: then a read-only view
    if it is writable).

    Numba compiles a kernel apart for read-only arrays (what dask and zarr hand out) and
    writable ones (numpy's own), and a cold compile of a driver takes about a minute: with
    the drivers' and the stencil walks' inputs read-only, a session that differentiates one
    map eagerly, then chunked, compiles each of them once.

    Examples
    --------
    >>> a = read_only([[1, 2]])
    >>> a.dtype, a.flags.c_contiguous, a.flags.writeable
    (dtype('float64'), True, False)
    """
    out = np.ascontiguousarray(a, dtype=dtype)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


def table_arrays(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """``(table, indptr)`` as the compiled kernels take them: a padded 2D table with an empty
    ``indptr``, or CSR ``indices`` with their ``indptr`` (int64, :func:`read_only`)."""
    return read_only(job.table, np.int64), read_only(job.indptr, np.int64)


def _csr_of(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` of a padded table, :func:`read_only` as every table."""
    from . import _numba

    indptr, indices = _numba.padded_to_csr(table)
    return read_only(indptr, np.int64), read_only(indices, np.int64)


def stencil_arrays(spec: Any) -> tuple[int, int, int, float]:
    """``(rings, widen_to, min_points, radius)`` of a stencil spec for the compiled walk."""
    if isinstance(spec, Radius):
        return 1, 0, 0, float(spec.radius)
    assert isinstance(spec, Rings)
    return spec.rings, spec.widen_to, spec.min_points, 0.0


def _ring1(spec: Any) -> bool:
    """Whether ``spec`` is the 1-ring (the table's own rows)."""
    rings, widen, _, radius = stencil_arrays(spec)
    return rings == 1 and widen <= 1 and radius <= 0


def _outputs(job: Job, no: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s_count, n = job.values.shape
    return (
        np.empty((s_count, n, no), dtype=np.float64),
        np.empty((s_count, n), dtype=np.int8),
        np.empty((s_count, n), dtype=np.float64),
    )


class _Generic:
    """A method whose per-bin map is compiled in ``_numba`` (code
    ``_numba.METHOD_CODES[name]``), run by the generic drivers."""

    def __init__(self, name: str, params: Callable[[Mapping[str, Any]], tuple[float, ...]]):
        self.name = name
        self.params = params

    def __repr__(self) -> str:
        return f"compiled({self.name})"

    def __call__(self, job: Job) -> tuple[np.ndarray, np.ndarray] | None:
        from . import _numba

        par = np.array(self.params(job.options), dtype=np.float64).reshape(-1)
        if par.size == 0:
            par = np.zeros(1)
        comb = read_only(job.combine, dtype=np.float64)
        nq = comb.shape[1]
        mode = _numba.MODE_VALUES if job.sigma is None else _numba.MODE_STD
        values = read_only(job.values, dtype=np.float64)
        sigma = values if job.sigma is None else read_only(job.sigma, np.float64)
        out, flags, conds = _outputs(job, comb.shape[0])
        na = float(job.na)
        d = job.centers.shape[1]
        single = (values.shape[0] == 1 and job.sigma is None
                  and np.array_equal(comb, np.eye(d, nq)))  # one slice's gradient
        if single and self.name == "local":
            return _local_single(job, values, par, na, out, flags)
        if single and self.name == "lsq2":
            return _lsq2_single(job, values, par, na, out, flags)
        single = single and self.name == "lsq"
        if job.gathered is not None and single and _ring1(job.spec):
            # the single-slice kernel on the gathered stencils (as eager, on the table)
            g = job.gathered
            n, k, d = g.center.shape
            nc = read_only(g.center, dtype=np.float64)
            _numba.lsq_single(
                values, read_only(job.centers, dtype=np.float64),
                read_only(g.values, dtype=np.float64).reshape(1, n * k),
                nc.reshape(n * k, d), nc, read_only(np.zeros(0), np.int64), par, na, out, flags,
                _numba.dim_tag(d),
            )
            return out, flags
        if job.gathered is not None:
            g = job.gathered
            nv = read_only(g.values, dtype=np.float64)
            ns = nv if g.sigma is None else read_only(g.sigma, dtype=np.float64)
            padded = (nv, ns, read_only(g.center, dtype=np.float64),
                      read_only(g.ring, dtype=np.int8))
            _numba.drive_gathered(
                _numba.METHOD_CODES[self.name], values, sigma,
                read_only(job.centers, dtype=np.float64), padded, par, nq, comb,
                mode, na, out, flags, conds, _numba.dim_tag(job.centers.shape[1]),
            )
            return out, flags
        table, indptr = table_arrays(job)
        centers = read_only(job.centers, dtype=np.float64)
        rings, widen, min_points, radius = stencil_arrays(job.spec)
        ring1 = _ring1(job.spec)
        if single and ring1:
            _numba.lsq_single(values, centers, values, centers, table, indptr, par, na, out,
                              flags, _numba.dim_tag(centers.shape[1]))
            return out, flags
        if ring1:  # the table's own rows
            kmax = table.shape[1] if table.ndim == 2 else int(np.diff(indptr).max(initial=0))
        else:
            if table.ndim == 2:  # wide walks visit many rows: read them without padding
                indptr, table = _csr_of(table)
            kmax = 0  # the driver grows its buffers with the stencils
        stencils = (table, indptr, rings, widen, min_points, radius, int(kmax))
        _numba.drive_table(
            _numba.METHOD_CODES[self.name], values, sigma, centers, stencils, par, nq, comb,
            mode, na, out, flags, conds, _numba.dim_tag(centers.shape[1]),
        )
        return out, flags


def _local_single(job: Job, values: np.ndarray, par: np.ndarray, na: float, out: np.ndarray,
                  flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``local``'s gradient of one slice by its single-slice kernels (same numbers as the
    generic drivers)."""
    from . import _numba

    centers = read_only(job.centers, dtype=np.float64)
    tag = (_numba.dim_tag(centers.shape[1]), _numba.degree_tag(int(par[1])))
    if job.gathered is not None:
        g = job.gathered
        _numba.local_gathered(values, centers, read_only(g.values, np.float64),
                              read_only(g.center, np.float64), par, na, out, flags,
                              *tag)
        return out, flags
    assert isinstance(job.spec, Radius)
    table, indptr = table_arrays(job)
    if table.ndim == 2:  # the walks visit many rows: read them without padding
        indptr, table = _csr_of(table)
    par3 = np.array([par[0], par[1], float(job.spec.radius)])
    _numba.local_single(values, centers, table, indptr, par3, na, out, flags, *tag)
    return out, flags


def _lsq2_single(job: Job, values: np.ndarray, par: np.ndarray, na: float, out: np.ndarray,
                 flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lsq2``'s gradient of one slice by its single-slice kernels (same numbers as the
    generic drivers)."""
    from . import _numba

    centers = read_only(job.centers, dtype=np.float64)
    tag = _numba.dim_tag(centers.shape[1])
    if job.gathered is not None:
        g = job.gathered
        padded = (read_only(g.values, np.float64),
                  read_only(g.center, np.float64),
                  read_only(g.ring, np.int8))
        _numba.lsq2_gathered(values, centers, padded, par, na, out, flags, tag)
        return out, flags
    rings, widen, min_points, _ = stencil_arrays(job.spec)
    table, indptr = table_arrays(job)
    if table.ndim == 2:  # the walks visit many rows: read them without padding
        indptr, table = _csr_of(table)
    _numba.lsq2_single(values, centers, (table, indptr, rings, widen, min_points), par, na,
                       out, flags, tag)
    return out, flags


def generic(name: str, params: Callable[[Mapping[str, Any]], tuple[float, ...]]) -> _Generic:
    """The compiled kernel of a method whose per-bin map is ``_numba.METHOD_CODES[name]``;
    ``params`` turns the method's options into its parameter vector."""
    return _Generic(name, params)


def _tie_codes(u: np.ndarray, angle: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        a = 1.0 - 2.0 * np.arccos(u) / math.pi
    return np.where(1.0 - angle < a, 1, np.where(a < angle - 1.0, -1, 0)).astype(np.int8)


def _selection_params(sel: Selection) -> tuple[float, float]:
    """``(param, threshold)`` of a rule for the compiled side tests."""
    if sel.kind == "cone":
        angle = float(sel.value)  # type: ignore[arg-type]
        return angle, math.cos(angle * math.pi / 2.0)
    return (0.0 if sel.value is None else float(sel.value)), 0.0


def grad1(job: Job) -> tuple[np.ndarray, np.ndarray] | None:
    """grad1's compiled kernels (table, gathered, fused single-slice cone)."""
    sel = job.selection
    assert sel is not None
    rule = sel.rule
    if rule.compiled is None:
        return None
    from . import _numba

    if job.sigma is not None or not np.array_equal(job.combine, np.eye(job.combine.shape[0])):
        return None  # uncertainty and combinations run on the numpy reference
    kind = _numba.RULE_CODES[rule.compiled]
    param, thr = _selection_params(sel)
    d = job.centers.shape[1]
    values = read_only(job.values, dtype=np.float64)
    centers = read_only(job.centers, dtype=np.float64)
    out, flags, _ = _outputs(job, d)
    na = float(job.na)
    tag = np.empty((0,) * d)
    gathered = job.gathered
    if gathered is None:
        table, indptr = table_arrays(job)
        if rule.needs_labels:
            labels = read_only(job.labels, dtype=np.int64)
        else:
            labels = read_only(np.zeros((0,) * table.ndim), np.int64)
    else:
        nv = read_only(gathered.values, dtype=np.float64)
        nc = read_only(gathered.center, dtype=np.float64)
        nl = (
            read_only(gathered.label, dtype=np.int64) if rule.needs_labels
            else read_only(np.zeros((0, 0)), np.int64)
        )
    tie_u, tie_code = TIE_TABLES.get(param, (np.empty(0), np.empty(0, dtype=np.int8)))

    def run(dest: np.ndarray, dflags: np.ndarray) -> int:
        redo = np.zeros(dest.shape[1], dtype=np.bool_)
        miss = np.empty(_MAX_MISSES, dtype=np.float64)
        nmiss = np.zeros(1, dtype=np.int64)
        single_cone = rule.name == "cone" and values.shape[0] == 1
        if gathered is not None and single_cone:
            _numba.grad1_cone_gathered(
                values, centers, nv, nc, thr, TIE_BAND, tie_u, tie_code, na, dest, dflags,
                redo, miss, nmiss, tag,
            )
        elif gathered is not None:
            _numba.grad1_gathered(
                kind, values, centers, nv, nc, nl, thr, TIE_BAND, tie_u, tie_code, param, na,
                dest, dflags, redo, miss, nmiss, tag,
            )
        elif single_cone:
            _numba.grad1_cone_single(
                values, centers, table, indptr, thr, TIE_BAND, tie_u, tie_code, na, dest,
                dflags, redo, miss, nmiss, tag,
            )
        else:
            _numba.grad1_table(
                kind, values, centers, table, indptr, labels, thr, TIE_BAND, tie_u, tie_code,
                param, na, dest, dflags, redo, miss, nmiss, tag,
            )
        missed[: min(int(nmiss[0]), _MAX_MISSES)] = miss[: int(nmiss[0])]
        return int(nmiss[0])

    missed = np.empty(_MAX_MISSES, dtype=np.float64)
    nmiss = run(out, flags)
    if nmiss:
        if nmiss > _MAX_MISSES:
            return None  # too many distinct tie values to tabulate: the reference decides
        new_u = np.union1d(tie_u, missed[:nmiss])
        tie_u, tie_code = new_u, _tie_codes(new_u, param)
        TIE_TABLES[param] = (tie_u, tie_code)
        if run(out, flags):  # cannot happen: every tie of these bins is in the table now
            raise RuntimeError("cone tie table incomplete after refresh")
    return out, flags

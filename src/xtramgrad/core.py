"""The xarray glue: every public function that turns a Dataset into labelled results.

Everything here normalises arguments, finds the tessellation (:mod:`xtramgrad.topology`),
and runs the pure-numpy kernels (:mod:`xtramgrad.kernels`) through ``xr.apply_ufunc``:

* **bin in one chunk** (numpy data, or dask data chunked only along other dims such as
  time): the kernel runs with ``bin`` as a core dimension, reading the neighbour table
  itself (``dask="parallelized"`` over the other dims' chunks);
* **bin chunked**: a halo-gather step (:mod:`xtramgrad.chunked.gather`) produces each bin's
  stencil values and centers as arrays chunked like ``bin``, and the kernel runs on them
  with ``dask="parallelized"`` over the bin chunks. Per bin, both kernels do the same
  arithmetic in the same order: chunked results equal eager ones.

Results are labelled in one place (:func:`_label`): the field's dims and coordinates plus
``space``, a name, ``long_name``, ``units`` and the method and its options in ``attrs``.
dask is imported only on the chunked path.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import kernels
from .errors import TessellationError
from .kernels import METHODS, Method, Rings, resolve_options
from .kernels.job import Gathered, Job
from .selection import DEFAULT_SELECTION_ANGLE, Selection, resolve_selection
from .topology import BIN, NBR, SPACE, Topology, topology

__all__ = [
    "grad",
    "grad_std",
    "grad_operator",
    "neighbour_values",
    "neighbour_offsets",
    "pointwise",
    "resolve_selection",
    "DEFAULT_SELECTION_ANGLE",
]

#: dim of gathered stencils wider than the table's own neighbours
STENCIL = "stencil"
_Q = "_xtramgrad_quantity"
_SCHEMA = ("center", "neighbours", "neighbour_label", "neighbour_count", "volume", "face_area")


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """A resolved gradient request: the method (or a user function), its options, the
    selection rule, and the value of undetermined components."""

    method: Method | None
    func: Callable[..., Any] | None
    options: dict[str, Any]
    selection: Selection | None
    na: float
    notes: tuple[tuple[str, Any], ...] = ()  # extra attrs (e.g. how a bandwidth was chosen)

    @property
    def name(self) -> str:
        if self.method is not None:
            return self.method.name
        return getattr(self.func, "__name__", type(self.func).__name__)

    def spec(self, ndim: int) -> Any:
        if self.method is None:
            return Rings(1)
        return self.method.stencil_for(ndim, self.options)

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"xtramgrad_method": self.name}
        if self.selection is not None:
            out["xtramgrad_selection"] = self.selection.describe()
        if self.options:
            out["xtramgrad_options"] = " ".join(f"{k}={v}" for k, v in self.options.items())
        if not np.isnan(self.na):
            out["xtramgrad_na"] = self.na
        out.update(self.notes)
        return out


def _check_na(na: Any) -> float:
    if isinstance(na, (bool, np.bool_)) or not isinstance(na, numbers.Real):
        raise ValueError(f"na={na!r}; expected a real number (default NaN).")
    return float(na)


def resolve_request(
    ndim: int,
    method: str | Callable[..., Any],
    selection: str | None,
    selection_angle: float | None,
    eps: float | None,
    na: Any,
    options: Mapping[str, Any],
    *,
    linear: bool = False,
) -> Request:
    """Check every option before any data is read (see :func:`grad`)."""
    na_f = _check_na(na)
    sel_given = selection is not None or selection_angle is not None or eps is not None
    if callable(method) and not isinstance(method, str):
        if linear:
            raise ValueError(
                "a user gradient function need not be linear: operators and uncertainty "
                "need a registered linear method "
                f"({sorted(m for m in METHODS if METHODS[m].linear)})."
            )
        if sel_given or options:
            raise ValueError(
                "selection options and method options apply to registered methods; a user "
                "function receives every measured neighbour. Drop them."
            )
        return Request(None, method, {}, None, na_f)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"method={method!r}; expected one of {sorted(METHODS)} or a callable (see "
            "xtramgrad.pointwise for a per-bin function)."
        )
    m = METHODS[method]
    if linear and not m.linear:
        raise ValueError(f"method {method!r} is not linear: it has no operator.")
    if not m.uses_selection and sel_given:
        raise ValueError(
            f"selection options apply to methods that select neighbours per axis (grad1); "
            f"method={method!r} uses every measured stencil entry. Drop "
            "selection/selection_angle/eps."
        )
    sel = resolve_selection(ndim, selection, selection_angle, eps) if m.uses_selection else None
    return Request(m, None, resolve_options(m, options), sel, na_f)


# --------------------------------------------------------------------------- fields


def _field(ds: xr.Dataset, name: Hashable) -> xr.DataArray:
    if name not in ds.data_vars and name not in ds.coords:
        raise TessellationError(
            f"the Dataset has no variable {name!r} to differentiate; its measurements are "
            f"{[v for v in ds.data_vars if BIN in ds[v].dims and v not in _SCHEMA]}."
        )
    if name in _SCHEMA[1:4]:
        raise TessellationError(
            f"variable {name!r} is part of the tessellation (a table of bin positions or "
            "side labels), not a measurement; differentiate a measurement such as "
            "ds['D'] = ('bin', values)."
        )
    da = ds[name]
    if BIN not in da.dims:
        raise TessellationError(
            f"variable {name!r} has dims {tuple(da.dims)} without 'bin'; a measurement to "
            "differentiate must be defined on the bins, e.g. ds['D'] = ('bin', values)."
        )
    if SPACE in da.dims:
        raise TessellationError(
            f"variable {name!r} has a 'space' dim {tuple(da.dims)}; gradients apply to "
            f"scalar fields. Select a component first, e.g. ds[{name!r}].sel(space='x')."
        )
    if not (np.issubdtype(da.dtype, np.floating) or np.issubdtype(da.dtype, np.integer)):
        raise TessellationError(
            f"variable {name!r} has dtype {da.dtype}; expected real numbers."
        )
    return da


def check_finite(values: np.ndarray, name: Hashable, what: str = "variable",
                 ids: np.ndarray | None = None) -> None:
    """Refuse +-inf (NaN means missing): a clear error naming the variable and the count.
    ``ids``: the positions along ``bin`` of the columns, when they are some of the bins (a
    chunk's, or the bins of wide stencils computed apart); the count is then theirs."""
    bad = np.isinf(values)
    if bad.any():
        count = int(bad.sum())
        first = np.unravel_index(int(np.argmax(bad)), bad.shape)
        col = int(first[-1])
        where = f"first at bin {col if ids is None else int(ids[col])}"
        if ids is not None and len(ids) and np.array_equal(ids, np.arange(ids[0], ids[-1] + 1)):
            where += f", in the chunk of bins {int(ids[0])}..{int(ids[-1])}"
        elif ids is not None:
            where += f", among {len(ids)} bins of wide stencils computed apart"
        raise TessellationError(
            f"{what} {name!r} holds {count} infinite value(s) ({where}); a gradient needs "
            "finite values, NaN for missing ones. To treat them as missing: "
            f"ds[{name!r}] = ds[{name!r}].where(np.isfinite(ds[{name!r}]))"
        )


def _count(topo: Topology) -> xr.DataArray | None:
    return getattr(topo, "count", None)


def _is_dask(*arrays: xr.DataArray | None) -> bool:
    return any(a is not None and a.chunks is not None for a in arrays)


def _bin_chunks(*arrays: xr.DataArray | None) -> tuple[int, ...] | None:
    """Chunks along bin if any of ``arrays`` is chunked along bin (several chunks)."""
    for arr in arrays:
        if arr is not None and arr.chunks is not None and BIN in arr.dims:
            c = arr.chunks[arr.get_axis_num(BIN)]
            if len(c) > 1:
                return tuple(int(x) for x in c)
    return None


def _table_vars(topo: Topology, labels: bool) -> tuple[list[xr.DataArray], list[list[str]]]:
    """The table (and labels) as apply_ufunc inputs with their core dims."""
    ragged = getattr(topo, "layout", "padded") == "ragged"
    args: list[xr.DataArray]
    dims: list[list[str]]
    if ragged:
        count = _count(topo)
        assert count is not None
        args = [count, topo.neighbours]
        dims = [[BIN], [str(topo.neighbours.dims[0])]]
    else:
        args = [topo.neighbours]
        dims = [[BIN, NBR]]
    if labels:
        assert topo.labels is not None
        args.append(topo.labels)
        dims.append([str(dim) for dim in topo.labels.dims])
    return args, dims


# --------------------------------------------------------------------------- kernels


def _table_kernel(
    values: np.ndarray, centers: np.ndarray, *tables: np.ndarray, sigma: bool, ragged: bool,
    labels: bool, req: Request, combine: np.ndarray, lazy: bool, var: Hashable,
) -> tuple[np.ndarray, np.ndarray]:
    """apply_ufunc kernel with ``bin`` as a core dim: values (..., n), centers (n, d),
    then the table (padded (n, k), or count (n,) and edges (E,)), labels, sigma (..., n)."""
    tables_l = list(tables)
    sig = tables_l.pop() if sigma else None
    lab = tables_l.pop() if labels else None
    shape: tuple[int, ...] = tuple(int(v) for v in np.shape(centers))
    n, d = shape[-2], shape[-1]
    centers = np.asarray(centers, dtype=np.float64).reshape(n, d)
    if ragged:
        count, edges = np.asarray(tables_l[0]), np.asarray(tables_l[1])
        count = count.reshape(-1)[-n:] if count.ndim > 1 else count
        table = np.asarray(edges).reshape(-1) if edges.ndim > 1 else edges
        indptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    else:
        table = np.asarray(tables_l[0])
        table = table.reshape(table.shape[-2:])
        indptr = np.zeros(0, dtype=np.int64)
    if lazy:
        _check_block(centers, table, indptr)
    batch = values.shape[:-1]
    flat = np.asarray(values, dtype=np.float64).reshape(-1, n)
    check_finite(flat, var)
    sig_flat = None
    if sig is not None:
        sig_flat = np.broadcast_to(np.asarray(sig, dtype=np.float64), values.shape).reshape(-1, n)
        _check_sigma(sig_flat, flat)
    if req.func is not None:
        out = _user_function_rows(req.func, centers, flat, table, indptr, d)
        flags = np.where(np.isnan(out).all(axis=-1), 2, 0).astype(np.int8)
    else:
        assert req.method is not None
        from .kernels.stencil import check_walk_cost

        spec = req.spec(d)
        check_walk_cost(table, indptr, spec, req.method.name)
        job = Job(flat, sig_flat, centers, table, indptr, lab, None, spec, req.options,
                  req.selection, req.na, combine)
        out, flags = kernels.run(job, req.method)
    return out.reshape(batch + out.shape[1:]), flags.reshape(batch + (n,))


def _user_function_rows(func: Callable[..., Any], centers: np.ndarray, flat: np.ndarray,
                        table: np.ndarray, indptr: np.ndarray, d: int) -> np.ndarray:
    """A vectorised user function on every bin's 1-ring, padded (n, K). A CSR table whose
    rows differ much in length (a hub) is padded by groups of rows of similar degree (a
    factor of 2 apart), so that no temporary is n x (widest row). (The chunked path pads
    each chunk to its own widest row: a function that reads only the unmasked entries gives
    the same numbers, up to the rounding of its sums over the padded axis.)"""
    from .kernels.stencil import pad_rows, size_groups

    n = len(centers)
    if indptr.size == 0:
        groups = [(np.arange(n), table)]
    else:
        deg = np.diff(indptr)
        widest = int(deg.max(initial=0))
        if n * widest <= max(8 * len(table), 2**24):
            groups = [(np.arange(n), pad_rows(indptr, table, max(1, widest)))]
        else:
            groups = [  # never a 0-wide neighbour axis
                (rows, pad_rows(sub, table[entries], max(1, int(deg[rows].max()))))
                for rows, sub, entries in size_groups(indptr)
            ]
    out = np.empty(flat.shape + (d,))
    for rows, padded in groups:
        hood = kernels.gather_neighbourhoods(centers, flat, padded, rows)
        out[:, rows] = kernels.call_user_function(
            func, hood["center"], hood["value"], hood["neighbour_center"],
            hood["neighbour_value"],
        )
    return out


def _gathered_kernel(
    values: np.ndarray, centers: np.ndarray, nbr_values: np.ndarray, nbr_center: np.ndarray,
    ring: np.ndarray, *rest: np.ndarray, sigma: bool, labels: bool, req: Request,
    combine: np.ndarray, var: Hashable, apart: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """apply_ufunc kernel on gathered stencils: values (..., n), centers (n, d), nbr_values
    (..., n, K), nbr_center (n, K, d), ring (n, K), positions along bin (n,), then labels
    (n, K), sigma (..., n) and nbr_sigma (..., n, K). ``apart``: positions (sorted) of the
    bins computed apart, whose rows here are empty (a user function never sees them)."""
    rest_l = list(rest)
    positions = np.asarray(rest_l.pop(0)).reshape(-1)  # of the bins along bin
    lab = rest_l.pop(0) if labels else None
    n, k, d = nbr_center.shape[-3:]
    batch = np.broadcast_shapes(values.shape[:-1], nbr_values.shape[:-2])
    size = math.prod(batch)  # not -1: a chunk may hold no bins
    flat = np.broadcast_to(values, batch + (n,)).reshape(size, n)
    check_finite(flat, var, ids=positions)
    nv = np.broadcast_to(nbr_values, batch + (n, k)).reshape(size, n, k)
    centers = np.asarray(centers, dtype=np.float64).reshape(n, d)
    if not np.isfinite(centers).all():
        from .topology import check_values

        check_values(centers, np.full((n, 0), -1), rows=positions)
    nbr_center = np.asarray(nbr_center).reshape(n, k, d)
    sig = nsig = None
    if sigma:
        sig = np.broadcast_to(rest_l[0], batch + (n,)).reshape(size, n)
        nsig = np.broadcast_to(rest_l[1], batch + (n, k)).reshape(size, n, k)
        _check_sigma(sig, flat)
    if req.func is not None:
        keep = np.ones(n, dtype=bool)
        if apart is not None and len(apart):
            keep[np.isin(positions, apart)] = False
        out = np.full(flat.shape + (d,), np.nan)
        out[:, keep] = kernels.call_user_function(req.func, centers[keep], flat[:, keep],
                                                  nbr_center[keep], nv[:, keep])
        flags = np.where(np.isnan(out).all(axis=-1), 2, 0).astype(np.int8)
    else:
        assert req.method is not None
        g = Gathered(nv, nsig, nbr_center, None if lab is None else lab.reshape(n, k),
                     np.asarray(ring).reshape(n, k).astype(np.int8))
        job = Job(flat, sig, centers, None, np.zeros(0, np.int64), None, g, req.spec(d),
                  req.options, req.selection, req.na, combine)
        out, flags = kernels.run(job, req.method)
    return out.reshape(batch + out.shape[1:]), flags.reshape(batch + (n,))


def _check_block(centers: np.ndarray, table: np.ndarray, indptr: np.ndarray) -> None:
    """Value checks of a lazily loaded tessellation, inside the task."""
    from .topology import check_values

    check_values(centers, table, count=None if indptr.size == 0 else np.diff(indptr))


def _check_sigma(sigma: np.ndarray, values: np.ndarray) -> None:
    bad = ~np.isnan(values) & ~(np.isfinite(sigma) & (sigma >= 0))
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise TessellationError(
            f"the standard deviations hold {int(bad.sum())} value(s) that are negative, "
            f"infinite or missing where the measurement is present (first at bin "
            f"{first[-1]}: {sigma[first]!r}); expected finite values >= 0 wherever the "
            "field has a value."
        )


# --------------------------------------------------------------------------- estimates


def estimate(
    field: xr.DataArray, topo: Topology, req: Request, combine: np.ndarray,
    sigma: xr.DataArray | None = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """The method's estimates ``(..., bin, q)`` (dim ``_xtramgrad_quantity``) and flags
    ``(..., bin)``, eager or chunked, through ``xr.apply_ufunc``."""
    labels = req.selection is not None and req.selection.rule.needs_labels
    # chunked like the field along bin; like the tessellation when the field is in memory
    if field.chunks is not None:
        chunks = tuple(int(c) for c in field.chunks[field.get_axis_num(BIN)])
    else:
        chunks = _bin_chunks(topo.center, topo.neighbours, _count(topo), sigma) or (0,)
    qo = combine.shape[0]
    if len(chunks) == 1:
        tables, tdims = _table_vars(topo, labels)
        args = [field, topo.center, *tables]
        dims = [[BIN], [BIN, SPACE], *tdims]
        if sigma is not None:
            args.append(sigma)
            dims.append([BIN])
        lazy = _is_dask(topo.center, topo.neighbours)
        kw = dict(sigma=sigma is not None, ragged=getattr(topo, "layout", "padded") == "ragged",
                  labels=labels, req=req, combine=combine, lazy=lazy, var=field.name)
        out, flags = xr.apply_ufunc(
            _table_kernel, *args, kwargs=kw, input_core_dims=dims,
            output_core_dims=[[BIN, _Q], [BIN]], dask="parallelized",
            output_dtypes=[np.float64, np.int8],
            # a tessellation chunked along bin, with the field in one chunk: load it whole
            dask_gufunc_kwargs={"output_sizes": {_Q: qo}, "allow_rechunk": True},
        )
        return out, flags
    return _estimate_chunked(field, topo, req, combine, sigma, chunks, labels)


def _along_bin(arr: xr.DataArray, chunks: tuple[int, ...]) -> xr.DataArray:
    """``arr`` chunked as ``chunks`` along bin. ``DataArray.chunk`` hashes every numpy
    coordinate (the ``bin`` index among them: 50 ms at 10^7 bins) even when nothing
    changes: an array whose data and dask coordinates are chunked so already is returned
    as it is."""
    want = tuple(chunks)

    def ready(v: xr.Variable) -> bool:
        return BIN not in v.dims or (v.chunks is not None
                                     and tuple(v.chunks[v.get_axis_num(BIN)]) == want)

    if arr.chunks is not None and ready(arr.variable) and all(
            ready(c.variable) for c in arr.coords.values() if c.chunks is not None):
        return arr
    return arr.chunk({BIN: chunks})


def _bare(arr: xr.DataArray) -> xr.DataArray:
    """``arr`` without coordinates: an apply_ufunc argument whose coordinates would only be
    compared with the field's (a cost on large dask-backed coordinates)."""
    return xr.DataArray(arr.data, dims=arr.dims)


def _estimate_chunked(
    field: xr.DataArray, topo: Topology, req: Request, combine: np.ndarray,
    sigma: xr.DataArray | None, chunks: tuple[int, ...], labels: bool,
) -> tuple[xr.DataArray, xr.DataArray]:
    from .chunked.gather import gather_plan, gather_values

    d = topo.ndim
    spec = req.spec(d)
    # bin last: apply_ufunc then passes the centers (bin, space) without broadcast axes
    field = _along_bin(field, chunks)
    field = field.transpose(*[dim for dim in field.dims if dim != BIN], BIN)
    batch = [dim for dim in field.dims if dim != BIN]
    fdata = field.transpose(*batch, BIN).data
    if sigma is not None:
        # with the field's other dims (broadcast), in its order: blockwise below then names
        # every dim of every argument
        sigma = _bare(_along_bin(sigma, chunks)).broadcast_like(field).transpose(*field.dims)
        sigma = sigma.chunk(field.chunksizes)
    # the arrays gathered below, as gathered (a guessed reach reads their chunks on demand)
    gathered = [fdata] if sigma is None else [fdata, sigma.data]
    plan = gather_plan(topo, spec, chunks, labels, split=True,
                       method=None if req.method is None else req.method.name,
                       fetch_from=gathered)
    kdim = NBR if isinstance(spec, Rings) and spec.depth == 1 else STENCIL
    center = _bare(_along_bin(topo.center, chunks))
    nv = xr.DataArray(gather_values(plan, fdata), dims=(*batch, BIN, kdim))
    nc = xr.DataArray(plan.center, dims=(BIN, kdim, SPACE))
    ring = xr.DataArray(plan.ring, dims=(BIN, kdim))
    import dask.array as da

    position = xr.DataArray(da.arange(int(sum(chunks)), chunks=(chunks,)), dims=(BIN,))
    args = [field, center, nv, nc, ring, position]
    dims = [[], [SPACE], [kdim], [kdim, SPACE], [kdim], []]
    if labels:
        args.append(xr.DataArray(plan.label, dims=(BIN, kdim)))
        dims.append([kdim])
    if sigma is not None:
        ns = xr.DataArray(gather_values(plan, sigma.data), dims=(*batch, BIN, kdim))
        args += [sigma, ns]
        dims += [[], [kdim]]
    kw = dict(sigma=sigma is not None, labels=labels, req=req, combine=combine, var=field.name,
              apart=None if plan.apart is None else plan.apart.rows)
    order = (*batch, BIN)  # the loop dims, as apply_ufunc orders them (bin last)
    index = [tuple(dim for dim in order if dim in a.dims) + tuple(core)
             for a, core in zip(args, dims, strict=True)]
    out, flags = xr.apply_ufunc(
        _map_gathered, *args, kwargs=dict(kernel=kw, index=index, loop=order,
                                          nq=combine.shape[0]),
        input_core_dims=dims, output_core_dims=[[_Q], []], dask="allowed",
    )
    if plan.apart is not None:
        a_out, a_flags = _estimate_apart(field, topo, req, combine, sigma, plan.apart, kdim)
        out = _put_rows(out, a_out, plan.apart.rows, chunks)
        flags = _put_rows(flags, a_flags, plan.apart.rows, chunks)
    return out, flags


def _map_gathered(*arrays: Any, kernel: dict[str, Any], index: list[tuple[str, ...]],
                  loop: tuple[str, ...], nq: int) -> tuple[Any, Any]:
    """:func:`_gathered_kernel` over the bin chunks of the gathered arrays (dask), by
    ``dask.array.blockwise`` with ``concatenate=False``: the kernel receives each chunk's
    gathered blocks as they are. (``dask="parallelized"`` maps it through
    ``apply_gufunc``, which copies every block of a core dimension absent from the output,
    the stencil axis here, even when it is a single block: 2.5 s of chunked ``local``'s
    11 s at 10^6 bins.) ``index``: each array's dims; returns the estimates (..., bin, q)
    and the flags (..., bin)."""
    import dask.array as da

    pairs = [x for arr, ind in zip(arrays, index, strict=True) for x in (arr, ind)]
    both = da.blockwise(
        _gathered_blocks, (*loop, _Q), *pairs, new_axes={_Q: nq + 1}, concatenate=False,
        dtype=np.float64, meta=np.empty((0,) * (len(loop) + 1)), **kernel,
    )
    return both[..., :nq], both[..., nq].astype(np.int8)


def _gathered_blocks(*blocks: Any, **kw: Any) -> np.ndarray:
    """:func:`_gathered_kernel` on one chunk's blocks (those of axes absent from the output
    come as nested lists of one block), its estimates and flags in one array (flags
    last)."""
    arrays = []
    for blk in blocks:
        while isinstance(blk, list):
            (blk,) = blk  # a single block: the stencil and space axes are not chunked
        arrays.append(blk)
    out, flags = _gathered_kernel(*arrays, **kw)
    return np.concatenate([out, flags[..., None].astype(np.float64)], axis=-1)


def _estimate_apart(
    field: xr.DataArray, topo: Topology, req: Request, combine: np.ndarray,
    sigma: xr.DataArray | None, apart: Any, kdim: str,
) -> tuple[xr.DataArray, xr.DataArray]:
    """The estimates ``(..., bin, q)`` and flags of the bins of a chunked gradient whose
    stencils are much wider than the others' (``apart``, see
    :func:`xtramgrad.chunked.gather.apart_rows`), in the order of ``apart.rows``: their
    stencils gathered by groups of similar size (a factor of 2 apart, so the padding at
    most doubles them) and run through the same gathered kernel as the chunks, so the
    numbers are the same as there and as on the eager path."""
    from .kernels.stencil import pad_rows, size_groups

    outs, flags, order = [], [], []
    center = topo.center.transpose(BIN, SPACE)
    for sel, sub, take in size_groups(apart.indptr):
        rows = apart.rows[sel]
        ids = pad_rows(sub, apart.ids[take])
        present = xr.DataArray(ids >= 0, dims=(BIN, kdim))
        safe = xr.DataArray(np.where(ids >= 0, ids, 0), dims=(BIN, kdim))
        ring = pad_rows(sub, apart.ring[take].astype(np.int64))
        own = {BIN: rows}
        args: list[Any] = [
            field.isel(own), center.isel(own), field.isel({BIN: safe}).where(present),
            center.isel({BIN: safe}).where(present),
            xr.DataArray(np.where(ids >= 0, ring, 0).astype(np.int8), dims=(BIN, kdim)),
            xr.DataArray(rows, dims=(BIN,)),
        ]
        dims = [[], [SPACE], [kdim], [kdim, SPACE], [kdim], []]
        if apart.label is not None:
            lab = pad_rows(sub, apart.label[take])
            args.append(xr.DataArray(np.where(ids >= 0, lab, 0), dims=(BIN, kdim)))
            dims.append([kdim])
        if sigma is not None:
            args += [sigma.isel(own), sigma.isel({BIN: safe}).where(present)]
            dims += [[], [kdim]]
        args = [_bare(a.chunk(dict.fromkeys(a.dims, -1)) if a.chunks is not None else a)
                for a in args]
        kw = dict(sigma=sigma is not None, labels=apart.label is not None, req=req,
                  combine=combine, var=field.name)
        o, f = xr.apply_ufunc(
            _gathered_kernel, *args, kwargs=kw, input_core_dims=dims,
            output_core_dims=[[_Q], []], dask="parallelized",
            output_dtypes=[np.float64, np.int8],
            dask_gufunc_kwargs={"output_sizes": {_Q: combine.shape[0]}},
        )
        outs.append(o)
        flags.append(f)
        order.append(sel)
    back = np.argsort(np.concatenate(order), kind="stable")
    out = xr.concat(outs, dim=BIN).isel({BIN: back})
    flag = xr.concat(flags, dim=BIN).isel({BIN: back})
    return out, flag


def _put_rows(out: xr.DataArray, part: xr.DataArray, rows: np.ndarray,
              chunks: tuple[int, ...]) -> xr.DataArray:
    """``out`` (..., bin[, q]) chunked along bin, with the rows ``rows`` (sorted) replaced
    by ``part`` (..., rows[, q]); one task per block of ``out``, each reading all of
    ``part``."""
    import dask.array as da

    part = part.transpose(*out.dims)
    axis = out.get_axis_num(BIN)
    letters = "abcdefghijklmnopqrstuvw"[: out.ndim]
    part_ind = letters[:axis] + "z" + letters[axis + 1 :]
    pdata = part.data
    if not isinstance(pdata, da.Array):
        pdata = da.from_array(pdata)
    pdata = pdata.rechunk(tuple(c if i != axis else -1
                                for i, c in enumerate(out.data.chunks)))
    position = da.arange(int(sum(chunks)), chunks=(chunks,))
    data = da.blockwise(
        _put_block_rows, letters, out.data, letters, pdata, part_ind, position,
        letters[axis], rows=rows, axis=axis, concatenate=True, dtype=out.dtype,
        meta=np.empty((0,) * out.ndim, out.dtype),
    )
    return out.copy(data=data)


def _put_block_rows(block: np.ndarray, part: np.ndarray, position: np.ndarray, *,
                    rows: np.ndarray, axis: int) -> np.ndarray:
    if not len(position):
        return block
    k0, k1 = np.searchsorted(rows, [position[0], position[-1] + 1])
    if k0 == k1:
        return block
    block = np.array(block, copy=True)
    take = [slice(None)] * block.ndim
    put = list(take)
    put[axis] = rows[k0:k1] - position[0]  # type: ignore[call-overload]
    take[axis] = slice(k0, k1)
    block[tuple(put)] = part[tuple(take)]
    return block


def _label(
    out: xr.DataArray, field: xr.DataArray, topo: Topology, req: Request, *,
    name: str, long_name: str, unit_power: int, quantity_dim: str | None,
) -> xr.DataArray:
    """Name, dims, coordinates and attrs of a result (the one place where results are
    labelled). ``quantity_dim`` is ``"space"`` (a gradient) or None (a scalar result)."""
    if quantity_dim is None:
        out = out.isel({_Q: 0}, drop=True)
    else:
        out = out.rename({_Q: quantity_dim})
        space = topo.center.coords.get(SPACE)
        out = out.assign_coords({SPACE: space if space is not None else topo.space})
    wanted = (*field.dims, *(() if quantity_dim is None else (quantity_dim,)))
    if out.dims != wanted:
        out = out.transpose(*wanted)
    label = field.attrs.get("long_name", field.name)
    attrs: dict[str, Any] = {"long_name": long_name.format(label=label)}
    fu, su = field.attrs.get("units"), topo.center.attrs.get("units")
    if fu is not None and su is not None:
        attrs["units"] = f"{fu} / {su}" if unit_power == 1 else f"{fu} / {su}^{unit_power}"
    attrs.update(req.attrs())
    out.attrs = attrs
    out.name = name
    return out


def pointwise(func: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Turn a per-bin gradient function into a vectorised one usable as ``method=``.

    ``func(center, value, neighbour_centers, neighbour_values)`` receives one bin's center
    ``(d,)``, its value (a float), and its *measured* neighbours' centers ``(k, d)`` and
    values ``(k,)``; it returns the gradient ``(d,)``. It is called once per bin and slice
    with a measurement, in Python: convenient, not fast (use a vectorised function for big
    maps).

    Examples
    --------
    TRamWAy's "Overloading grad" example, translated: a gradient by least-squares plane fit.

    >>> import numpy as np, xtramgrad
    >>> @xtramgrad.pointwise
    ... def plane_fit(center, value, nbr_centers, nbr_values):
    ...     dx = nbr_centers - center
    ...     g, *_ = np.linalg.lstsq(dx, nbr_values - value, rcond=None)
    ...     return g
    >>> ds = xtramgrad.grid((4, 4))
    >>> ds["V"] = 2 * ds.center.sel(space="x") - ds.center.sel(space="y")
    >>> ds.tram.grad("V", method=plane_fit).values[5].round(12).tolist()
    [2.0, -1.0]
    """

    def vectorised(
        center: np.ndarray,
        value: np.ndarray,
        neighbour_center: np.ndarray,
        neighbour_value: np.ndarray,
        neighbour_mask: np.ndarray,
    ) -> np.ndarray:
        s_count, n = value.shape
        out = np.full((s_count, n, center.shape[1]), np.nan)
        for s in range(s_count):
            for i in range(n):
                m = neighbour_mask[s, i]
                if np.isnan(value[s, i]) or not m.any():
                    continue
                out[s, i] = func(
                    center[i], float(value[s, i]), neighbour_center[i][m], neighbour_value[s, i][m]
                )
        return out

    vectorised.__name__ = getattr(func, "__name__", "pointwise")
    vectorised.__doc__ = func.__doc__
    vectorised._xtramgrad_pointwise = True  # type: ignore[attr-defined]
    return vectorised


def _names(variables: Hashable | Sequence[Hashable]) -> tuple[list[Hashable], bool]:
    if not isinstance(variables, str) and isinstance(variables, Sequence):
        return list(variables), True
    return [variables], False


def _resolve_auto(
    ds: xr.Dataset, field: xr.DataArray, topo: Topology, req: Request
) -> Request:
    """Resolve data-driven options (``bandwidth="auto"``) from the field itself."""
    if req.method is None or req.options.get("bandwidth") != "auto":
        return req
    from .kernels.bandwidth import GRADIENT_FACTOR, choose_bandwidth

    bw, info = choose_bandwidth(ds, field, topo, req)
    options = dict(req.options, bandwidth=bw)
    factor = GRADIENT_FACTOR[int(req.options["degree"])]
    notes = (
        ("xtramgrad_bandwidth", bw),
        ("xtramgrad_bandwidth_choice",
         f"auto: generalized cross-validation of {field.name} (bandwidth {info['gcv']:.4g}, "
         f"typical spacing {info['spacing']:.4g}) times {factor:.3g} for the gradient"),
    )
    return Request(req.method, req.func, options, req.selection, req.na, notes)


def grad(
    ds: xr.Dataset,
    variables: Hashable | Sequence[Hashable],
    *,
    method: str | Callable[..., Any] = "grad1",
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    na: float = np.nan,
    return_flags: bool = False,
    **options: Any,
) -> Any:
    """Spatial gradient of measurements defined on the bins of a tessellation.

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset (see :mod:`xtramgrad.topology`).
    variables : str or list of str
        The measurement(s) to differentiate. A list returns a Dataset.
    method : str or callable
        A registered method (``xtramgrad.kernels.METHODS``; see "Which method?" in the docs):

        * ``"grad1"`` (default): TRamWAy's per-axis 3-point regression with 2-point
          fallback, on the neighbours a selection rule picks. Exact on grids and hexagons
          only: on irregular meshes its error does not shrink with the bin size.
        * ``"gradn"``: TRamWAy's order-2 regression with a correct derivative; where the
          quadratic is not determined with redundancy, linear least squares (flagged).
        * ``"lsq"`` (``power=2``, ``cutoff=3``): weighted linear least squares over the
          1-ring: exact for linear fields, first order on irregular meshes.
        * ``"lsq2"`` (``power=4``, ``cutoff=4``): weighted quadratic least squares over the
          2-ring: exact for quadratic fields, second order on irregular meshes.
        * ``"local"`` (``bandwidth="auto"`` or a length, ``degree=1``): a Gaussian-weighted
          local polynomial fit, the bias-variance knob for noisy maps.

        A callable is a vectorised user gradient receiving keyword arrays ``center``
        (n, d), ``value`` (S, n), ``neighbour_center`` (n, k, d), ``neighbour_value``
        (S, n, k) and ``neighbour_mask`` (S, n, k) (False for padding and missing values),
        and returning (S, n, d); wrap a per-bin function with :func:`pointwise`.
    selection : str, optional
        Neighbour-selection rule of ``grad1`` (see :func:`resolve_selection` and
        ``xtramgrad.selection.RULES``).
    selection_angle : float, optional
        Angular sectors of top angle ``selection_angle * pi``, in [0.5, 1); default 0.9.
    eps : float, optional
        Half-spaces with exclusion margin ``eps`` (space units).
    na : float
        Value of a component the data do not determine (no neighbour on a side for grad1,
        neighbours that do not span the space for least squares). Default NaN.
    return_flags : bool
        Also return, per bin, how its gradient was obtained: 0 by the method itself, 1 by
        its documented fallback (gradn / lsq2: linear least squares; local degree 2:
        degree 1), 2 not at all (missing value, no measured neighbour).
    **options
        The method's options (e.g. ``power=1`` for ``"lsq"``, ``bandwidth=0.2`` for
        ``"local"``); unknown options are an error.

    Returns
    -------
    xarray.DataArray or xarray.Dataset (and the flags, with ``return_flags=True``)
        The field's dims plus ``space``. Bins without a measurement, or without any measured
        neighbour, have NaN gradients.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((5, 5), spacing=0.1)
    >>> ds["D"] = 1.0 + 2.0 * ds.center.sel(space="x") + ds.center.sel(space="y") ** 2
    >>> g = ds.tram.grad("D", selection_angle=0.9)
    >>> g.dims
    ('bin', 'space')
    >>> [round(float(v), 6) for v in g.isel(bin=12)]
    [2.0, 0.4]
    >>> [round(float(v), 6) for v in ds.tram.grad("D", method="lsq2").isel(bin=12)]
    [2.0, 0.4]
    """
    names, many = _names(variables)
    topo0 = _topology_ndim(ds)
    req = resolve_request(topo0, method, selection, selection_angle, eps, na, options)
    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    out, flags_out = {}, {}
    for var in names:
        field = _field(ds, var)
        if not _is_dask(field):
            check_finite(np.asarray(field.values), var)
        r = _resolve_auto(ds, field, topo, req)
        d = topo.ndim
        nq = d if r.method is None else r.method.n_quantities(d)
        combine = np.eye(d, nq)
        est, flags = estimate(field, topo, r, combine)
        res = _label(est, field, topo, r, name=f"grad_{var}", long_name="gradient of {label}",
                     unit_power=1, quantity_dim=SPACE)
        out[var] = res
        flags = flags.transpose(*field.dims)
        flags.name = f"grad_{var}_flag"
        flags.attrs = {
            "long_name": f"how the gradient of {field.attrs.get('long_name', var)} was obtained",
            "flag_values": np.array([0, 1, 2], dtype=np.int8),
            "flag_meanings": "method fallback undefined",
            **r.attrs(),
        }
        flags_out[var] = flags
    if many:
        result: Any = xr.Dataset({f"grad_{v}": r for v, r in out.items()})
        if return_flags:
            return result, xr.Dataset({f"grad_{v}_flag": f for v, f in flags_out.items()})
        return result
    if return_flags:
        return out[names[0]], flags_out[names[0]]
    return out[names[0]]


def _topology_ndim(ds: xr.Dataset) -> int:
    """The number of space dims, from the schema alone (so options are checked before any
    value is read)."""
    if not isinstance(ds, xr.Dataset):
        from .topology.schema import _require_dataset

        _require_dataset(ds)
    if "center" in ds.variables and SPACE in ds["center"].dims:
        return int(ds["center"].sizes[SPACE])
    return topology(ds).ndim


def grad_std(
    ds: xr.Dataset,
    variables: Hashable | Sequence[Hashable],
    *,
    std: Any,
    method: str = "grad1",
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    na: float = np.nan,
    **options: Any,
) -> Any:
    """Standard deviation of the gradient, propagated from independent per-bin errors.

    For a linear method, the gradient of bin ``i`` along axis ``j`` is
    ``sum_k G[ij, k] y_k``; with independent errors of standard deviation ``sigma_k`` on the
    ``y_k``, its standard deviation is ``sqrt(sum_k G[ij, k]^2 sigma_k^2)``. This computes
    it for every bin and component, eager or chunked, labelled like :func:`grad`. The
    missing-value pattern is the field's (missing values are dropped from the fits as in
    :func:`grad`). With ``bandwidth="auto"`` the bandwidth is chosen from the field as in
    :func:`grad` and then held fixed.

    Parameters
    ----------
    ds, variables, method, selection, selection_angle, eps, na, **options
        As in :func:`grad`.
    std : str, DataArray or float
        The per-bin standard deviations: the name of a variable of ``ds`` (e.g. ``"D_std"``),
        a DataArray broadcastable to the field, or one number for every bin.

    Examples
    --------
    Plain least squares on a 1D chain: the centered slope (y[i+1] - y[i-1]) / 2 inside, so
    with sigma = 1 its standard deviation is sqrt(2) / 2.

    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid(5, D=np.arange(5.0))
    >>> s = ds.tram.grad_std("D", std=1.0, method="lsq", power=0)
    >>> round(float(s.isel(bin=2, space=0)), 12)
    0.707106781187
    """
    names, many = _names(variables)
    req = resolve_request(_topology_ndim(ds), method, selection, selection_angle, eps, na,
                          options, linear=True)
    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    out = {}
    for var in names:
        field = _field(ds, var)
        sigma = _sigma(ds, std, field)
        r = _resolve_auto(ds, field, topo, req)
        d = topo.ndim
        assert r.method is not None
        combine = np.eye(d, r.method.n_quantities(d))
        est, _ = estimate(field, topo, r, combine, sigma=sigma)
        out[var] = _label(est, field, topo, r, name=f"grad_{var}_std",
                          long_name="standard deviation of the gradient of {label}",
                          unit_power=1, quantity_dim=SPACE)
    if many:
        return xr.Dataset({f"grad_{v}_std": r for v, r in out.items()})
    return out[names[0]]


def noise_gain(
    ds: xr.Dataset,
    variable: Hashable,
    *,
    method: str = "grad1",
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    **options: Any,
) -> xr.DataArray:
    """Per-bin reliability of a gradient: how much the bin's fit amplifies noise.

    ``gain[i] = h[i] * max_j sqrt(sum_k G[ij, k]^2)``, where ``G`` is the method's linear
    map (:func:`grad_operator`) for the field's missing-value pattern and ``h[i]`` the
    median distance from bin ``i`` to its table neighbours (the local spacing). With
    independent errors of standard deviation ``sigma`` on the values, the gradient's
    standard deviation is ``gain * sigma / h[i]`` for the worst component when ``sigma`` is
    uniform (see :func:`grad_std`). It is dimensionless and does not depend on the field's
    values, only on the geometry of the bin's stencil, so it is the diagnostic to threshold:

    * a centred difference on a regular 1D chain has ``gain = 1/sqrt(2) = 0.71``; on random
      Voronoi meshes (10^4 bins, measured) the median gain is 1.0 for ``lsq``, 1.5 for
      ``lsq2`` and ``grad1`` (a second-order fit pays for its smaller bias with variance) and
      0.06 for ``local`` with a bandwidth of 2 spacings (it averages many bins); the worst 1%
      of bins exceed 9 (``lsq``) to 24 (``lsq2``);
    * a gain of several times the median marks a bin whose neighbours are nearly collinear
      (or coplanar in 3D), or that lost neighbours to missing values: its gradient is noise
      along one direction. ``g.where(gain < 5 * gain.median())`` masks them.

    NaN where the gradient is undefined (flag 2 of :func:`grad`).

    Parameters
    ----------
    ds, variable, method, selection, selection_angle, eps, **options
        As in :func:`grad` (linear methods only; ``bandwidth="auto"`` is chosen from the
        field, then held fixed).

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid(5, D=np.arange(5.0))
    >>> gain = ds.tram.noise_gain("D", method="lsq", power=0)
    >>> [round(g, 6) for g in gain.values.tolist()]  # centred inside, one-sided at the ends
    [1.414214, 0.707107, 0.707107, 0.707107, 1.414214]
    """
    std = grad_std(ds, variable, std=1.0, method=method, selection=selection,
                   selection_angle=selection_angle, eps=eps, **options)
    off = neighbour_offsets(ds)
    nbr = str(off.dims[1])
    h = ((off**2).sum(SPACE, skipna=False) ** 0.5).median(nbr, skipna=True)
    gain = std.max(SPACE, skipna=False) * h
    gain.name = f"grad_{variable}_noise_gain"
    attrs = {k: v for k, v in std.attrs.items() if k.startswith("xtramgrad")}
    field = _field(ds, variable)
    label = field.attrs.get("long_name", variable)
    gain.attrs = {"long_name": f"noise gain of the gradient of {label}", "units": "1", **attrs}
    return gain


def _sigma(ds: xr.Dataset, std: Any, field: xr.DataArray) -> xr.DataArray:
    if isinstance(std, str):
        if std not in ds.variables:
            raise TessellationError(
                f"std={std!r}: the Dataset has no such variable; pass the name of a variable "
                "holding per-bin standard deviations, a DataArray, or a number."
            )
        sig = ds[std]
    elif isinstance(std, xr.DataArray):
        sig = std
    elif isinstance(std, numbers.Real) and not isinstance(std, bool):
        sig = xr.full_like(field, float(std), dtype=np.float64)
    else:
        raise ValueError(f"std={std!r}; expected a variable name, a DataArray or a number.")
    extra = set(sig.dims) - set(field.dims)
    if extra:
        raise TessellationError(
            f"the standard deviations have dims {tuple(sig.dims)}, not all of them dims of "
            f"{field.name!r} {tuple(field.dims)} ({sorted(map(str, extra))} extra)."
        )
    if BIN not in sig.dims:
        sig = sig.broadcast_like(field.isel({d: 0 for d in field.dims if d != BIN}, drop=True))
    return sig.astype(np.float64)


def grad_operator(
    ds: xr.Dataset,
    variable: Hashable | None = None,
    *,
    method: str = "grad1",
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    quantity: str = "gradient",
    **options: Any,
) -> Any:
    """The gradient as a sparse linear map: ``(G @ y).reshape(n, d)`` is ``grad(y)``.

    For a fixed tessellation, options and missing-value pattern, every linear method is a
    linear map of the measurements. This returns it as a ``scipy.sparse.csr_array`` of shape
    ``(n * d, n)``; row ``i * d + j`` gives component ``j`` (the ``space`` order) at bin
    ``i``. A component that is undefined (no neighbour on either side, no measured
    neighbour, or a missing measurement) holds a single NaN coefficient on its own bin's
    column, so products give NaN there, as :func:`grad` does; drop those rows with
    ``np.isnan(G.sum(axis=1))`` when building a penalty.

    Parameters
    ----------
    ds : xarray.Dataset
    variable : str, optional
        A measurement whose missing values (NaN) define the pattern; it must have the same
        pattern in every slice. By default every bin counts as measured.
    method, selection, selection_angle, eps, **options
        As in :func:`grad` (a registered linear method).
    quantity : {"gradient", "hessian"}
        ``"hessian"`` (methods that fit one, e.g. ``"lsq2"``): the Hessian's upper
        triangle per bin, ``d (d + 1) / 2`` rows per bin (xx, xy, yy in 2D).

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid((4, 3))
    >>> ds["D"] = ds.center.sel(space="x") ** 2
    >>> G = ds.tram.grad_operator()
    >>> G.shape
    (24, 12)
    >>> g = (G @ ds.D.values).reshape(12, 2)
    >>> bool(np.allclose(g, ds.tram.grad("D").values))
    True
    """
    from .kernels.operators import operator

    req = resolve_request(_topology_ndim(ds), method, selection, selection_angle, eps, np.nan,
                          options, linear=True)
    labels = req.selection is not None and req.selection.rule.needs_labels
    topo = topology(ds, labels=labels)
    valid = None
    if variable is not None:
        field = _field(ds, variable)
        n = topo.center.sizes[BIN]
        ok = ~np.isnan(np.asarray(field.transpose(..., BIN).values).reshape(-1, n))
        if not (ok == ok[:1]).all():
            raise TessellationError(
                f"variable {variable!r} has different missing-value patterns across its "
                f"dims {tuple(d for d in field.dims if d != BIN)}; the operator depends on "
                "the pattern. Select one slice, e.g. ds[var].isel(time=0)."
            )
        valid = ok[0]
        if req.options.get("bandwidth") == "auto":
            req = _resolve_auto(ds, field, topo, req)
    if req.options.get("bandwidth") == "auto":
        raise ValueError(
            "bandwidth='auto' is chosen from a field: pass variable= (the field), or a "
            "bandwidth in space units."
        )
    assert req.method is not None
    return operator(topo_arrays(topo, labels), req, quantity, valid)


def topo_arrays(topo: Topology, labels: bool) -> dict[str, Any]:
    """The tessellation as in-memory numpy arrays (centers, CSR table, labels)."""
    from .topology import table_csr

    indptr, indices = table_csr(topo)
    lab = None
    if labels:
        from .topology import edge_values

        assert topo.labels is not None
        lab = edge_values(topo, topo.labels)
    return {
        "centers": np.asarray(topo.center.values, dtype=np.float64),
        "indptr": indptr,
        "indices": indices,
        "labels": lab,
    }


# --------------------------------------------------------------------------- gathers


def neighbour_values(ds: xr.Dataset, variable: Hashable, *, rings: int = 1) -> xr.DataArray:
    """The values of each bin's neighbours: a DataArray ``(..., bin, nbr)``, NaN at padding.
    Each row holds its present neighbours first, in the table's order, then the padding
    (also where the table holds -1 between entries), eager and chunked alike.

    With ``rings=2`` (or more), the bins within that many steps of the table, in the
    stencil order of :mod:`xtramgrad.kernels.stencil`, along a dim ``stencil``. Eager on
    numpy data; chunked like ``bin`` on dask data, computed by the same halo gather as the
    chunked gradients (linear in the number of chunks). With :func:`neighbour_offsets`, it
    is what a kernel of your own needs: run it with ``xr.apply_ufunc(..., dask=
    "parallelized")`` over the bin chunks.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.grid(4, D=[0.0, 1.0, 4.0, 9.0])
    >>> ds.tram.neighbour_values("D").values.tolist()
    [[1.0, nan], [0.0, 4.0], [1.0, 9.0], [4.0, nan]]
    """
    topo = topology(ds)
    field = _field(ds, variable)
    ids, kdim = _stencil_ids(topo, rings)
    if isinstance(ids, np.ndarray):
        batch = [dim for dim in field.dims if dim != BIN]
        vals = np.asarray(field.transpose(*batch, BIN).values, dtype=np.float64)
        out = np.where(ids >= 0, vals[..., np.where(ids >= 0, ids, 0)], np.nan)
        res = xr.DataArray(out, dims=(*batch, BIN, kdim), coords=field.coords)
    else:
        from .chunked.gather import gather_values

        plan, chunks = ids
        field = _along_bin(field, chunks)
        batch = [dim for dim in field.dims if dim != BIN]
        data = gather_values(plan, field.transpose(*batch, BIN).data)
        res = xr.DataArray(data, dims=(*batch, BIN, kdim), coords=field.coords)
    res.name = f"{variable}_{kdim}"
    res.attrs = {"long_name": f"{field.attrs.get('long_name', variable)} of the neighbours"}
    if "units" in field.attrs:
        res.attrs["units"] = field.attrs["units"]
    return res


def neighbour_offsets(ds: xr.Dataset, *, rings: int = 1) -> xr.DataArray:
    """The offsets ``center[neighbour] - center[bin]`` of each bin's neighbours: a
    DataArray ``(bin, nbr, space)``, NaN at padding (see :func:`neighbour_values`).

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid(3, spacing=0.5)
    >>> ds.tram.neighbour_offsets().values[1, :, 0].tolist()
    [-0.5, 0.5]
    """
    topo = topology(ds)
    ids, kdim = _stencil_ids(topo, rings)
    center = topo.center.transpose(BIN, SPACE)
    if isinstance(ids, np.ndarray):
        c = np.asarray(center.values, dtype=np.float64)
        nbr = np.where((ids >= 0)[..., None], c[np.where(ids >= 0, ids, 0)], np.nan)
        data: Any = nbr - c[:, None, :]
    else:
        plan, chunks = ids
        cdata = _along_bin(center, chunks).data
        data = plan.center - cdata[:, None, :]
    coords = {k: v for k, v in center.coords.items()}
    res = xr.DataArray(data, dims=(BIN, kdim, SPACE), coords=coords, name=f"{kdim}_offset")
    res.attrs = {"long_name": "offset of the neighbour's center"}
    if "units" in center.attrs:
        res.attrs["units"] = center.attrs["units"]
    return res


def _left_packed(table: np.ndarray) -> np.ndarray:
    """The rows of a padded table with their present entries first, in their order, and
    the padding after them, as the chunked gather lays them out (a table may hold -1
    between entries).

    Examples
    --------
    >>> _left_packed(np.array([[-1, 2, -1, 5], [1, 3, -1, -1]])).tolist()
    [[2, 5, -1, -1], [1, 3, -1, -1]]
    """
    from .topology.tables import left_pack_order

    present = table >= 0
    if not (present[:, 1:] & ~present[:, :-1]).any():
        return table  # already left-packed: no copy
    return np.take_along_axis(table, left_pack_order(present), axis=1)


def _stencil_ids(topo: Topology, rings: int) -> tuple[Any, str]:
    if isinstance(rings, bool) or not isinstance(rings, (int, np.integer)) or rings < 1:
        raise ValueError(f"rings={rings!r}; expected a number of rings >= 1.")
    spec = Rings(int(rings))
    kdim = NBR if rings == 1 else STENCIL
    chunks = _bin_chunks(topo.center, topo.neighbours, _count(topo))
    if chunks is None:
        from .kernels.stencil import pad_rows, ring_stencil
        from .topology import table_csr

        indptr, indices = table_csr(topo)
        n = len(indptr) - 1
        if rings == 1 and getattr(topo, "layout", "padded") == "padded":
            return _left_packed(np.asarray(topo.neighbours.transpose(BIN, NBR).values)), kdim
        sp, ids, _ = ring_stencil(indptr, indices, np.arange(n), spec)
        return pad_rows(sp, ids), kdim
    from .chunked.gather import gather_plan

    return (gather_plan(topo, spec, chunks, False), chunks), kdim



"""The halo gather: each bin's stencil values and centers, as arrays chunked like ``bin``.

A chunked gradient runs in two steps. This module makes the first: for each chunk of bins,
the stencil of each of its bins (:mod:`xtramgrad.kernels.stencil`), then the stencil
entries' centers ``(bin, K, space)`` and values ``(..., bin, K)`` (NaN at padding), as dask
arrays chunked like ``bin``. The second step runs the method's kernel on those arrays with
``xr.apply_ufunc(..., dask="parallelized")`` (:mod:`xtramgrad.core`): the gathered arrays
are ordinary chunked arrays, so users can run kernels of their own the same way
(:func:`xtramgrad.neighbour_values`).

Graph: for each chunk ``c`` of bins, one task per output array (and per block of the other
dims for values)::

    stencil c       <-  table[c], table[s] for s in the chunks whose rows the walk reads
                         (ring 1: none), centers of those chunks (radius stencils)
    centers c       <-  stencil c, center[s] for s in reach(c)
    values b, c     <-  stencil c, values[b, s] for s in reach(c)

where ``reach(c)`` are the chunks that the stencils of ``c`` point into (see
:mod:`.locality`). Every task reads only its own chunk and those; the number of tasks is
linear in the number of chunks. Each stencil task checks its rows of the table (positions
in range, no self-loop, no duplicate) and that every position falls inside the declared
locality: a stale plan raises inside the task, it never gives wrong numbers.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

from ..errors import TessellationError
from ..kernels.stencil import (
    Radius,
    Rings,
    StencilSpec,
    as_csr,
    pad_rows,
    radius_stencil,
    ring_stencil,
    stencil_sizes,
)
from .locality import (
    bounds,
    chunk_boxes,
    chunk_dependencies,
    dependencies,
    expand,
    literal,
    radius_dependencies,
)

__all__ = ["GatherPlan", "gather_plan", "gather_values", "hub_rows", "stencil_width"]


class GatherPlan(NamedTuple):
    """The stencil side of a gather, shared by every field gathered on the same chunks.

    ``ids`` (bin, K) int64 dask array: global positions of each bin's stencil entries (-1
    padding); ``ring`` (bin, K) int8; ``center`` (bin, K, d) float64 (NaN at padding);
    ``label`` (bin, K) int64 or None; ``reach``: for each chunk, the chunks whose values its
    stencils read; ``chunks``: the chunks along bin; ``width``: K; ``hubs``: global
    positions (sorted) of the bins left out of the gather because their 1-ring is much
    wider than the others' (:func:`hub_rows`; their rows are empty here, and the caller
    computes them apart).
    """

    ids: Any
    ring: Any
    center: Any
    label: Any
    reach: list[tuple[int, ...]]
    chunks: tuple[int, ...]
    width: int
    hubs: np.ndarray


def _as_dask(data: Any, chunks: tuple[tuple[int, ...], ...]) -> Any:
    import dask.array as da

    if isinstance(data, da.Array):
        return data if data.chunks == chunks else data.rechunk(chunks)
    return da.from_array(np.asarray(data), chunks=chunks)


def _table_csr_literal(topo: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if getattr(topo, "layout", "padded") == "ragged":
        count = literal(topo.count.data)
        edges = literal(topo.neighbours.data)
        if count is None or edges is None:
            return None
        return np.concatenate([[0], np.cumsum(count)]).astype(np.int64), edges.astype(np.int64)
    data = literal(topo.neighbours.data)
    return None if data is None else as_csr(data)


def stencil_width(topo: Any, spec: StencilSpec) -> int | None:
    """K, the largest stencil of any bin (exact), when it is known without computing;
    None for wide stencils of a lazy table (:func:`gather_plan` then makes a pass)."""
    ragged = getattr(topo, "layout", "padded") == "ragged"
    if isinstance(spec, Rings) and spec.depth == 1:
        if ragged:
            count = literal(topo.count.data)
            count = np.asarray(topo.count.values) if count is None else count
            return int(count.max(initial=0))
        return int(topo.neighbours.sizes["nbr"])
    csr = _table_csr_literal(topo)
    centers = literal(topo.center.data)
    if csr is not None and (centers is not None or not isinstance(spec, Radius)):
        return int(stencil_sizes(spec, csr[0], csr[1], centers).max(initial=0))
    return None


#: A 1-ring wider than this (and than HUB_FACTOR x the median degree) makes its bin a hub
HUB_DEGREE = 64
#: see HUB_DEGREE
HUB_FACTOR = 16
#: Hubs are computed apart only while their rows hold at most this many entries in all
HUB_ENTRIES = 5 * 10**7


def hub_rows(count: np.ndarray) -> np.ndarray:
    """Positions of the bins whose 1-ring is far wider than the others' (hubs): more than
    ``HUB_DEGREE`` neighbours and more than ``HUB_FACTOR`` times the median degree (none
    when the hubs' rows would hold more than ``HUB_ENTRIES`` entries in all: the wide rows
    are then the table's ordinary ones).

    The gather pads every row of a chunk to its widest stencil; a hub (a bin adjacent to
    10^5 others) would make every row 10^5 wide. Hubs are left out of the gather and
    computed apart on their CSR rows, so no temporary is larger than the table.

    Examples
    --------
    >>> hub_rows(np.array([3, 3, 500, 4, 3])).tolist()
    [2]
    >>> hub_rows(np.array([3, 60, 4])).tolist()  # not more than 64 neighbours
    []
    """
    count = np.asarray(count)
    if count.size == 0:
        return np.zeros(0, dtype=np.int64)
    limit = max(HUB_DEGREE, HUB_FACTOR * float(np.median(count)))
    hubs = np.flatnonzero(count > limit).astype(np.int64)
    if count[hubs].sum() > HUB_ENTRIES:
        return np.zeros(0, dtype=np.int64)
    return hubs


# --------------------------------------------------------------------------- tasks


def _locate(ids: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, Any]:
    """Positions of global ``ids`` (>= 0) in the concatenation of chunks [starts, stops);
    ``bad`` is the first id outside them, or None."""
    which = np.searchsorted(starts, ids, side="right") - 1
    inside = (which >= 0) & (ids < stops[np.clip(which, 0, None)])
    if not inside.all():
        return np.zeros(0, np.intp), int(ids[~inside][0])
    offs = np.concatenate([[0], np.cumsum(stops - starts)])[:-1]
    return (offs[which] + ids - starts[which]).astype(np.intp), None


def _stale(j: int, row: int | None, lo: int, hi: int, starts: np.ndarray) -> TessellationError:
    where = f" (a neighbour of bin {row})" if row is not None else ""
    return TessellationError(
        f"variable 'neighbours' reaches bin {j}{where} from the chunk of bins {lo}..{hi - 1}, "
        f"outside the locality declared for that chunk (chunks starting at "
        f"{starts.tolist()}); the declared locality (attributes xtramgrad_plan_* or "
        "xtramgrad_halo of 'neighbours') is stale or wrong. Recompute it with "
        "ds = xtramgrad.plan(ds), or load the table into memory."
    )


def _check_rows(table: np.ndarray, indptr: np.ndarray | None, lo: int, n: int, d: int) -> None:
    """The value checks of a chunk's rows of the table, inside its task."""
    from ..topology import check_values

    m = table.shape[0] if indptr is None else len(indptr) - 1
    count = None if indptr is None else np.diff(indptr)
    check_values(np.zeros((0, d)), table, None, rows=np.arange(lo, lo + m), n_bins=n,
                 count=count)


def _without_rows(indptr: np.ndarray, entries: np.ndarray, drop: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A CSR block (``indptr`` local) with rows ``drop`` (local) emptied."""
    if not len(drop):
        return indptr, entries
    deg = np.diff(indptr)
    keep = np.ones(len(deg), dtype=bool)
    keep[drop] = False
    deg = np.where(keep, deg, 0)
    new = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    return new, entries[np.repeat(keep, np.diff(indptr))]


def _ring1_task(table: Any, *, lo: int, n: int, d: int, starts: np.ndarray, stops: np.ndarray,
                indptr: np.ndarray | None, width: int, drop: np.ndarray) -> np.ndarray:
    """The 1-ring of a chunk: its (checked) table rows, padded to ``width``; the rows
    ``drop`` (hubs, local positions) are left empty."""
    table = np.asarray(table)
    _check_rows(table, indptr, lo, n, d)
    if indptr is not None:
        table = pad_rows(*_without_rows(indptr - indptr[0], table, drop), width)
    present = table[table >= 0]
    if len(present):
        _, bad = _locate(present, starts, stops)
        if bad is not None:
            row = lo + int(np.argwhere(table == bad)[0][0])
            raise _stale(bad, row, lo, lo + table.shape[0], starts)
    return table.astype(np.int64, copy=False)


def _walk_task(table_parts: list[Any], center_parts: list[Any], *, lo: int, hi: int, n: int,
               d: int, spec: StencilSpec, width: int | None, table_chunks: np.ndarray,
               center_chunks: np.ndarray, indptrs: list[np.ndarray | None]) -> np.ndarray:
    """Stencils (rings or radius) of a chunk, walking the loaded rows: (m, K, 2) [ids, ring]."""
    rows_csr = []
    loaded = []
    for part, (a, b), ip in zip(table_parts, table_chunks, indptrs, strict=True):
        part = np.asarray(part)
        if a == lo:
            _check_rows(part, ip, lo, n, d)
        p_indptr, p_ind = as_csr(part) if ip is None else (ip - ip[0], part.astype(np.int64))
        rows_csr.append((p_indptr, p_ind))
        loaded.append(np.arange(a, b, dtype=np.int64))
    order = np.argsort([a for a, _ in table_chunks], kind="stable")
    indptr = np.zeros(1, dtype=np.int64)
    indices = []
    for i in order:
        p_indptr, p_ind = rows_csr[i]
        indptr = np.concatenate([indptr, indptr[-1] + p_indptr[1:]])
        indices.append(p_ind)
    ind = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    loaded_ids = np.concatenate([loaded[i] for i in order])
    cstarts = np.array([a for a, _ in center_chunks], dtype=np.int64)
    cstops = np.array([b for _, b in center_chunks], dtype=np.int64)
    corder = np.argsort(cstarts, kind="stable")
    cstarts, cstops = cstarts[corder], cstops[corder]
    cdata = np.concatenate([np.asarray(center_parts[i], dtype=np.float64) for i in corder])
    targets = np.arange(lo, hi, dtype=np.int64)

    def center_of(ids: np.ndarray) -> np.ndarray:
        pos, bad = _locate(ids, cstarts, cstops)
        if bad is not None:
            raise _stale(bad, None, lo, hi, cstarts)
        return cdata[pos]

    # every position the walk may expand must be loaded
    reached = ind[ind >= 0]
    if len(reached):
        _, bad = _locate(reached, cstarts, cstops)
        if bad is not None:
            raise _stale(bad, None, lo, hi, cstarts)
    compiled = _compiled_walk(indptr, ind, loaded_ids, cstarts, cstops, cdata, targets, spec)
    if compiled is not None:
        sp, ids, ring = compiled
    elif isinstance(spec, Radius):
        sp, ids, ring = radius_stencil(indptr, ind, cdata, targets, spec.radius,
                                       loaded=loaded_ids, center_of=center_of)
    else:
        sp, ids, ring = ring_stencil(indptr, ind, targets, spec, loaded=loaded_ids)
    m = hi - lo
    deg = np.diff(sp)
    if width is None:
        return np.array([[[int(deg.max(initial=0))]]])
    out = np.full((m, width, 2), -1, dtype=np.int64)
    if len(deg) and deg.max(initial=0) > width:
        raise TessellationError(
            f"a stencil of the chunk of bins {lo}..{hi - 1} has {int(deg.max())} entries, "
            f"more than the {width} measured when the graph was built: the table changed "
            "since. Rebuild the gradient (and recompute any stored plan)."
        )
    rows = np.repeat(np.arange(m), deg)
    slots = np.arange(len(ids)) - np.repeat(sp[:-1], deg)
    out[rows, slots, 0] = ids
    out[rows, slots, 1] = ring
    out[:, :, 1] = np.where(out[:, :, 0] >= 0, out[:, :, 1], 0)
    return out


def _compiled_walk(indptr: np.ndarray, ind: np.ndarray, loaded_ids: np.ndarray,
                   cstarts: np.ndarray, cstops: np.ndarray, cdata: np.ndarray,
                   targets: np.ndarray, spec: StencilSpec) -> Any:
    """The chunk's stencils by the compiled walk (same stencils, same order as the numpy
    walk), in the local numbering of the loaded centers; None without numba."""
    from ..kernels.engine import numba_available, resolve_backend

    if not (numba_available() and resolve_backend(None) == "numba"):
        return None
    from ..kernels import _numba

    sizes = cstops - cstarts
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def local(g: np.ndarray) -> np.ndarray:
        k = np.searchsorted(cstarts, g, side="right") - 1
        return (g - cstarts[k] + offset[k]).astype(np.int64)

    m = int(sizes.sum())
    count = np.zeros(m, dtype=np.int64)
    count[local(loaded_ids)] = np.diff(indptr)
    lindptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(count, out=lindptr[1:])
    lind = np.empty(len(ind), dtype=np.int64)
    starts = lindptr[local(loaded_ids)]
    deg = np.diff(indptr)
    dst = np.repeat(starts, deg) + (np.arange(len(ind)) - np.repeat(indptr[:-1], deg))
    lind[dst] = local(ind)
    if isinstance(spec, Radius):
        args = (1, 0, 0, float(spec.radius))
    else:
        args = (int(spec.rings), int(spec.widen_to), int(spec.min_points), 0.0)
    sp, lids, ring = _numba.walk_stencils(lind, lindptr, np.ascontiguousarray(cdata),
                                          local(targets), *args)
    to_global = np.concatenate([np.arange(a, b, dtype=np.int64)
                                for a, b in zip(cstarts, cstops, strict=True)])
    return sp, to_global[lids], ring


def _gather_task(ids: Any, parts: list[Any], *, chunks_: np.ndarray, lo: int, trailing: bool
                 ) -> np.ndarray:
    """Entries ``ids`` (m, K) of the concatenated chunks ``parts``: along their first axis
    (centers, ``trailing=False``: (m, K, d)) or last axis (values: (..., m, K))."""
    ids = np.asarray(ids)
    if ids.ndim == 3:
        ids = ids[..., 0]
    starts = np.array([a for a, _ in chunks_], dtype=np.int64)
    stops = np.array([b for _, b in chunks_], dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    starts, stops = starts[order], stops[order]
    present = ids >= 0
    pos, bad = _locate(ids[present], starts, stops)
    if bad is not None:
        raise _stale(bad, None, lo, lo + ids.shape[0], starts)
    if trailing:
        data = np.concatenate([np.asarray(parts[i], dtype=np.float64) for i in order], axis=-1)
        out = np.full(data.shape[:-1] + ids.shape, np.nan)
        out[..., present] = data[..., pos]
    else:
        data = np.concatenate([np.asarray(parts[i], dtype=np.float64) for i in order], axis=0)
        out = np.full(ids.shape + data.shape[1:], np.nan)
        out[present] = data[pos]
    return out


def _label_task(labels: Any, table: Any, *, indptr: np.ndarray | None, width: int,
                drop: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if indptr is not None:
        return pad_rows(*_without_rows(indptr - indptr[0], labels.astype(np.int64), drop),
                        width)
    return np.where(np.asarray(table) >= 0, labels, 0).astype(np.int64)


def _ring_of(stencil: Any) -> np.ndarray:
    return np.asarray(stencil)[..., 1].astype(np.int8)


def _ids_of(stencil: Any) -> np.ndarray:
    return np.asarray(stencil)[..., 0]


# --------------------------------------------------------------------------- graph


def _array(name: str, tasks: dict[Any, Any], deps: list[Any], chunks: Any, dtype: Any) -> Any:
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    layers: dict[str, Any] = {}
    dependencies: dict[str, set[str]] = {}
    for a in deps:
        hlg = a.__dask_graph__()
        layers.update(hlg.layers)
        dependencies.update(hlg.dependencies)
    layers[name] = tasks
    dependencies[name] = {a.name for a in deps}
    ndim = len(chunks)
    return da.Array(
        HighLevelGraph(layers, dependencies), name, chunks=chunks, dtype=dtype,
        meta=np.empty((0,) * ndim, dtype=dtype),
    )


def gather_plan(topo: Any, spec: StencilSpec, chunks: tuple[int, ...], labels: bool, *,
                split_hubs: bool = False) -> GatherPlan:
    """The stencils of every chunk of bins, and their entries' centers (and labels).

    ``split_hubs``: leave the 1-rings of hubs (:func:`hub_rows`, ragged tables only) out of
    the gather, listed in ``plan.hubs``, for a caller that computes them apart."""
    import dask.array as da
    from dask.base import tokenize

    n = int(sum(chunks))
    d = int(topo.center.sizes["space"])
    b = bounds(chunks)
    nc = len(chunks)
    ragged = getattr(topo, "layout", "padded") == "ragged"
    center = _as_dask(topo.center.transpose("bin", "space").data, (chunks, (d,)))
    indptr_full = None
    if ragged:
        count = literal(topo.count.data)
        count = np.asarray(topo.count.values) if count is None else count
        indptr_full = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
        edge_chunks = tuple(int(indptr_full[b[c + 1]] - indptr_full[b[c]]) for c in range(nc))
        table = _as_dask(topo.neighbours.data, (edge_chunks,))
        def tkey(s: int) -> tuple[Any, ...]:
            return (table.name, s)
    else:
        k = int(topo.neighbours.sizes["nbr"])
        table = _as_dask(topo.neighbours.transpose("bin", "nbr").data, (chunks, (k,)))
        def tkey(s: int) -> tuple[Any, ...]:  # type: ignore[misc]
            return (table.name, s, 0)

    def ip(c: int) -> np.ndarray | None:
        return None if indptr_full is None else indptr_full[b[c] : b[c + 1] + 1]

    deps1 = dependencies(topo, chunks)
    ring1 = isinstance(spec, Rings) and spec.depth == 1
    rng = lambda cs: np.array([(b[s], b[s + 1]) for s in cs], dtype=np.int64)  # noqa: E731
    width = stencil_width(topo, spec)
    hubs = np.zeros(0, dtype=np.int64)
    if split_hubs and ring1 and indptr_full is not None:
        count = np.diff(indptr_full)
        hubs = hub_rows(count)
        if len(hubs):
            rest = np.ones(n, dtype=bool)
            rest[hubs] = False
            width = int(count[rest].max(initial=0))
            csr = _table_csr_literal(topo)
            if csr is not None:  # the hubs' chunks need not read what only the hubs reach
                deps1 = chunk_dependencies(_without_rows(*csr, hubs), chunks)

    def drop(c: int) -> np.ndarray:
        return hubs[(hubs >= b[c]) & (hubs < b[c + 1])] - b[c]
    if ring1:
        assert width is not None
        token = tokenize(table.name, center.name, spec, width, chunks)
        reach = [tuple(sorted({c, *deps1[c]})) for c in range(nc)]
        name = f"xtramgrad-stencil-{token}"
        tasks = {}
        for c in range(nc):
            r = np.array(reach[c])
            tasks[(name, c, 0)] = (
                functools.partial(
                    _ring1_task, lo=int(b[c]), n=n, d=d, starts=b[r], stops=b[r + 1],
                    indptr=ip(c), width=width, drop=drop(c),
                ),
                tkey(c),
            )
        ids = _array(name, tasks, [table], (chunks, (width,)), np.int64)
        ring = da.ones((n, width), chunks=(chunks, (width,)), dtype=np.int8)
    else:
        if isinstance(spec, Radius):
            boxes = chunk_boxes(topo.center.transpose("bin", "space").data, chunks)
            rows_reach = radius_dependencies(boxes, spec.radius, deps1)
            table_reach = [tuple(sorted({c, *rows_reach[c]})) for c in range(nc)]
            reach = [
                tuple(sorted({s for t in table_reach[c] for s in (t, *deps1[t])}))
                for c in range(nc)
            ]
        else:
            table_reach = [
                tuple(sorted({c, *x})) for c, x in enumerate(expand(deps1, spec.depth - 1))
            ]
            reach = [tuple(sorted({c, *x})) for c, x in enumerate(expand(deps1, spec.depth))]
        def walk_tasks(name: str, width: int | None) -> dict[Any, Any]:
            tasks = {}
            for c in range(nc):
                tr, cr = table_reach[c], reach[c]
                tasks[(name, c, 0, 0)] = (
                    functools.partial(
                        _walk_task, lo=int(b[c]), hi=int(b[c + 1]), n=n, d=d, spec=spec,
                        width=width, table_chunks=rng(tr), center_chunks=rng(cr),
                        indptrs=[ip(s) for s in tr],
                    ),
                    [tkey(s) for s in tr],
                    [(center.name, s, 0) for s in cr],
                )
            return tasks

        if width is None:
            import logging

            import dask

            logging.getLogger("xtramgrad").warning(
                "xtramgrad: the table is lazy: one pass over it, chunk by chunk, to measure "
                "the widest stencil (%s) before building the gradient.", spec,
            )
            sname = f"xtramgrad-walk-size-{tokenize(table.name, center.name, spec, chunks)}"
            sizes = _array(sname, walk_tasks(sname, None), [table, center],
                           ((1,) * nc, (1,), (1,)), np.int64)
            width = int(dask.compute(sizes)[0].max(initial=0))
        token = tokenize(table.name, center.name, spec, width, chunks)
        name = f"xtramgrad-walk-{token}"
        tasks = walk_tasks(name, width)
        packed = _array(name, tasks, [table, center], (chunks, (width,), (2,)), np.int64)
        ids = packed.map_blocks(_ids_of, drop_axis=2, dtype=np.int64)
        ring = packed.map_blocks(_ring_of, drop_axis=2, dtype=np.int8)
    _check_gather_size(width, chunks, d, spec)
    # centers of the stencil entries
    cname = f"xtramgrad-gather-center-{token}"
    ctasks = {}
    for c in range(nc):
        ctasks[(cname, c, 0, 0)] = (
            functools.partial(_gather_task, chunks_=rng(reach[c]), lo=int(b[c]), trailing=False),
            (ids.name, c, 0),
            [(center.name, s, 0) for s in reach[c]],
        )
    nbr_center = _array(cname, ctasks, [ids, center], (chunks, (width,), (d,)), np.float64)
    label = None
    if labels:
        if not ring1:
            raise ValueError("edge labels apply to 1-ring stencils only")
        lab_da = topo.labels
        lab = (
            _as_dask(lab_da.data, (table.chunks[0],)) if ragged
            else _as_dask(lab_da.transpose("bin", "nbr").data, table.chunks)
        )
        lname = f"xtramgrad-gather-label-{token}"
        ltasks = {
            (lname, c, 0): (
                functools.partial(_label_task, indptr=ip(c), width=width, drop=drop(c)),
                (lab.name, c) if ragged else (lab.name, c, 0),
                tkey(c),
            )
            for c in range(nc)
        }
        label = _array(lname, ltasks, [lab, table], (chunks, (width,)), np.int64)
    return GatherPlan(ids, ring, nbr_center, label, reach, tuple(chunks), width, hubs)


#: Largest gathered block (one chunk's stencil centers, (bins, K, d) float64) allowed, bytes
GATHER_LIMIT = 2 * 2**30
#: Largest number of padded stencil entries (bins x K) of a chunked gradient
PADDED_LIMIT = 4 * 10**9


def _check_gather_size(width: int, chunks: tuple[int, ...], d: int, spec: StencilSpec) -> None:
    """Refuse, before anything is computed, a gather whose blocks would not fit in memory:
    every row of a chunk is padded to the widest stencil ``width``. Hubs (a few bins far
    wider than the rest, :func:`hub_rows`) are already left out; what remains here is a
    table whose wide rows are common, or a multi-ring stencil around a hub."""
    big = max(chunks, default=0)
    need = big * width * d * 8
    padded = sum(chunks) * width  # entries the kernels loop over, padding included
    if need <= GATHER_LIMIT and padded <= PADDED_LIMIT:
        return
    fit = max(1, GATHER_LIMIT // max(1, width * d * 8))
    smaller = (
        f"chunk along bin by at most {fit} bins (ds.chunk(bin=...)), or "
        if padded <= PADDED_LIMIT else ""
    )
    raise TessellationError(
        f"the widest stencil ({spec}) has {width} entries, and the chunked path pads every "
        f"row of a chunk to it: chunks of {big} bins would gather {need / 2**30:.1f} GiB "
        f"each (limit {GATHER_LIMIT / 2**30:.0f} GiB), {padded:.2g} padded entries in all "
        f"(limit {PADDED_LIMIT:.0e}). To go on, {smaller}load the tessellation (ds.load(): "
        "the eager path stores the table as CSR and handles any degree), or check the table "
        "for bins that should not have so many neighbours."
    )


def gather_values(plan: GatherPlan, values: Any) -> Any:
    """The stencil entries' values ``(..., bin, K)`` of ``values`` ``(..., bin)`` (NaN at
    padding and where missing), chunked like ``plan`` along bin."""
    import dask.array as da
    from dask.base import tokenize

    chunks = plan.chunks
    b = bounds(chunks)
    if isinstance(values, da.Array):
        batch_chunks = tuple(values.chunks[:-1])
    else:
        batch_chunks = tuple((int(s),) for s in np.shape(values)[:-1])
    vals = _as_dask(values, (*batch_chunks, chunks))
    name = f"xtramgrad-gather-values-{tokenize(vals.name, plan.ids.name)}"
    tasks = {}
    for c in range(len(chunks)):
        r = plan.reach[c]
        part = functools.partial(
            _gather_task, chunks_=np.array([(b[s], b[s + 1]) for s in r], dtype=np.int64),
            lo=int(b[c]), trailing=True,
        )
        for blk in np.ndindex(*vals.numblocks[:-1]):
            tasks[(name, *blk, c, 0)] = (
                part, (plan.ids.name, c, 0), [(vals.name, *blk, s) for s in r],
            )
    return _array(name, tasks, [plan.ids, vals], (*batch_chunks, chunks, (plan.width,)),
                  np.float64)

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
locality: a stale plan raises inside the task, it never gives wrong numbers. A *guessed*
reach (1-ring stencils of a lazy table without a plan:
:func:`.locality.guessed_dependencies`) is not a declaration: the rows reaching beyond it
read the chunks they need inside their own task (:class:`Fetch`), and the value gathers
read those chunks' values the same way.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import TessellationError
from ..kernels.compiled import read_only
from ..kernels.engine import compiled_kernels
from ..kernels.stencil import (
    Radius,
    Rings,
    StencilSpec,
    as_csr,
    check_walk_cost,
    pad_rows,
    radius_stencil,
    ring_stencil,
    row_entries,
    stencil_sizes,
)
from .locality import (
    GUESS_SAMPLES,
    bounds,
    chunk_boxes,
    chunk_dependencies,
    dependencies,
    expand,
    guessed_dependencies,
    has_locality,
    literal,
    radius_dependencies,
)

__all__ = ["Apart", "GatherPlan", "apart_rows", "gather_plan", "gather_values", "stencil_width"]


class GatherPlan(NamedTuple):
    """The stencil side of a gather, shared by every field gathered on the same chunks.

    ``ids`` (bin, K) int64 dask array: global positions of each bin's stencil entries (-1
    padding); ``ring`` (bin, K) int8; ``center`` (bin, K, d) float64 (NaN at padding);
    ``label`` (bin, K) int64 or None; ``reach``: for each chunk, the chunks whose values its
    stencils read; ``chunks``: the chunks along bin; ``width``: K; ``apart``: the bins
    left out of the gather because their stencils are much wider than the others'
    (:func:`apart_rows`; their rows are empty here, the caller computes them apart), or
    None; ``local`` (bin, K) int64: the entries' positions in the concatenation of their
    chunk's ``reach`` chunks (-1 padding), what the stencil tasks make and the value
    gathers read (``ids`` is derived from it, computed only if asked for); ``fetch``: the
    reach was guessed (:func:`.locality.guessed_dependencies`), so ``local`` may hold
    entries read on demand (:func:`_code`) and the value gathers read their chunks.
    """

    ids: Any
    ring: Any
    center: Any
    label: Any
    reach: list[tuple[int, ...]]
    chunks: tuple[int, ...]
    width: int
    apart: Apart | None
    local: Any
    fetch: bool = False


class Apart(NamedTuple):
    """The bins of a chunked gradient whose stencils are computed apart: ``rows`` (sorted
    global positions) and their stencils as CSR over ``rows``: ``indptr``, global ``ids``,
    ``ring`` (int8) and, for 1-ring stencils with edge labels, ``label``."""

    rows: np.ndarray
    indptr: np.ndarray
    ids: np.ndarray
    ring: np.ndarray
    label: np.ndarray | None


def _as_dask(data: Any, chunks: tuple[tuple[int, ...], ...]) -> Any:
    import dask.array as da

    if isinstance(data, da.Array):
        data = inline_reader(data)
        return data if data.chunks == chunks else data.rechunk(chunks)
    return da.from_array(np.asarray(data), chunks=chunks)


def inline_reader(data: Any) -> Any:
    """``data`` as xarray's ``inline_array=True`` reads it. A dask array that only reads an
    array object chunk by chunk, with the object in a task of its own before every chunk's
    read (what ``xr.open_zarr`` and ``xr.open_dataset(..., chunks=...)`` build by default),
    gets the object in each chunk's read instead, under the same keys; anything else is
    returned as it is.

    Why: with that one task before every read, dask orders a graph with a single output
    (``ds.to_zarr(out, compute=False)``, then ``.compute()``) by reading every chunk of one
    array first, and every chunk's stencils are then gathered before any is used. At 10^7
    bins that held 3.2 GB instead of 0.9 GB (dask's own ``map_overlap`` does the same).
    Only the arrays the gather reads (:func:`_as_dask`: centers, table, gathered values)
    are read this way: the field and centers that the kernel takes as they are keep their
    reader's task, since inlining those too changed the order of the plain ``to_zarr`` and
    raised its peak memory at 10^8 bins from 1.5 to 2.3 GB.

    Examples
    --------
    >>> import dask.array as da
    >>> class Stored:  # an array read chunk by chunk, as a zarr array is
    ...     shape, dtype, ndim = (6,), np.dtype(float), 1
    ...     def __getitem__(self, key):
    ...         return np.arange(6.0)[key]
    >>> x = da.from_array(Stored(), chunks=3, name="x", inline_array=False)
    >>> sorted(x.__dask_graph__().layers)
    ['original-x', 'x']
    >>> y = inline_reader(x)
    >>> list(y.__dask_graph__().layers), y.name == x.name, bool((y == x).all())
    (['x'], True, True)
    """
    import dask.array as da

    if not isinstance(data, da.Array):
        return data
    graph = data.__dask_graph__()
    layers = getattr(graph, "layers", None)  # a HighLevelGraph's
    root = f"original-{data.name}"
    if layers is None or set(layers) != {root, data.name} or len(layers[root]) != 1:
        return data
    source = layers[root][root]
    plain = da.from_array(source, chunks=data.chunks, name=data.name, inline_array=False,
                          meta=data._meta)
    if dict(plain.__dask_graph__()) != dict(graph):
        return data  # read otherwise (a lock, a getter of its own): left alone
    return da.from_array(source, chunks=data.chunks, name=data.name, inline_array=True,
                         meta=data._meta)


def _table_literal(topo: Any) -> Any:
    """The table as :func:`.locality.chunk_dependencies` takes it (padded, or CSR), when it
    is in memory; else None."""
    if getattr(topo, "layout", "padded") == "ragged":
        return _table_csr_literal(topo)
    data = literal(topo.neighbours.transpose("bin", "nbr").data)
    return None if data is None else np.asarray(data)


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
    None for wide stencils of a lazy table and for radius stencils (:func:`gather_plan`
    then measures it in one task per chunk, in parallel)."""
    ragged = getattr(topo, "layout", "padded") == "ragged"
    if isinstance(spec, Rings) and spec.depth == 1:
        if ragged:
            count = literal(topo.count.data)
            count = np.asarray(topo.count.values) if count is None else count
            return int(count.max(initial=0))
        return int(topo.neighbours.sizes["nbr"])
    csr = _table_csr_literal(topo)
    if csr is None:
        return None
    if not isinstance(spec, Radius):
        return int(stencil_sizes(spec, csr[0], csr[1], None).max(initial=0))
    centers = literal(topo.center.transpose("bin", "space").data)
    return None if centers is None else _widest_radius(spec, *csr, np.asarray(centers))


def _widest_radius(spec: Radius, indptr: np.ndarray, indices: np.ndarray,
                   centers: np.ndarray) -> int:
    """At least the largest radius stencil of an in-memory table: the most bins within the
    radius of any bin (a radius stencil holds the bins its walk reaches among those),
    counted on the cells of the compiled scan, on as many threads as cores; where the
    cells do not serve (sparse domains), the compiled walk; else the numpy walk."""
    n = len(centers)
    _numba = compiled_kernels()
    if _numba is None or n == 0:
        return int(stencil_sizes(spec, indptr, indices, centers).max(initial=0))
    import os
    from concurrent.futures import ThreadPoolExecutor

    # read-only, as the drivers' inputs: the walks they call compile once
    indices, indptr = read_only(indices, np.int64), read_only(indptr, np.int64)
    centers = read_only(centers)
    radius = float(spec.radius)
    ball = _numba.ball_index(indices, indptr, centers, radius)
    parts = np.array_split(np.arange(n, dtype=np.int64), max(1, min(os.cpu_count() or 1, 4)))

    def widest(targets: np.ndarray) -> int:
        if ball.ok:
            return int(_numba.ball_counts_max(ball, centers, radius, targets))
        m = len(targets)  # 0-wide outputs: the walk only measures
        return int(_numba.walk_padded(indices, indptr, centers, targets, 1, 0, 0, radius,
                                      np.zeros(m, np.bool_), np.empty((m, 0), np.int64),
                                      np.empty((m, 0), np.int8), np.empty((m, 0, 0))))

    with ThreadPoolExecutor(len(parts)) as pool:
        return max(pool.map(widest, parts))


#: The gather's width is the 99.9th percentile of the stencil sizes (at most HUB_DEGREE or
#: HUB_FACTOR x the median, whichever is larger); wider stencils are computed apart when
#: the widest is more than APART_RATIO times that width
APART_QUANTILE = 0.999
#: see APART_QUANTILE
HUB_DEGREE = 64
#: see APART_QUANTILE
HUB_FACTOR = 16
#: see APART_QUANTILE
APART_RATIO = 1.25
#: Stencils are computed apart only while they hold at most this many entries in all
APART_ENTRIES = 5 * 10**7


def apart_rows(sizes: np.ndarray) -> np.ndarray:
    """Positions of the bins whose stencils are far wider than the others': wider than the
    99.9th percentile of the sizes (capped at ``max(HUB_DEGREE, HUB_FACTOR x median)``, so
    that a hub stands out in a small table too), when the widest is more than
    ``APART_RATIO`` times that. None are when their stencils would hold more than
    ``APART_ENTRIES`` entries in all.

    The gather pads every row to the widest stencil: on random Delaunay meshes a few bins
    at the convex hull have 2-rings of 150 bins where the median has 19, and a hub (a bin
    adjacent to 10^5 others) would make every row 10^5 wide. These few bins are left out of
    the gather and computed apart, so no temporary is much larger than the stencils.

    Examples
    --------
    >>> apart_rows(np.array([3, 3, 500, 4, 3])).tolist()  # a hub
    [2]
    >>> apart_rows(np.array([3, 60, 4])).tolist()  # not more than 64 neighbours
    []
    """
    sizes = np.asarray(sizes)
    if sizes.size == 0:
        return np.zeros(0, dtype=np.int64)
    quantile, median = _quantile_median(sizes, APART_QUANTILE)
    usual = min(quantile, max(HUB_DEGREE, HUB_FACTOR * median))
    if sizes.max() <= APART_RATIO * usual:
        return np.zeros(0, dtype=np.int64)
    rows = np.flatnonzero(sizes > usual).astype(np.int64)
    if sizes[rows].sum() > APART_ENTRIES:
        return np.zeros(0, dtype=np.int64)
    return rows


def _quantile_median(sizes: np.ndarray, q: float) -> tuple[float, float]:
    """``np.quantile(sizes, q, method="higher")`` and ``np.median(sizes)`` of non-negative
    integer sizes, from their counts (no sort of the sizes)."""
    top = int(sizes.max())
    if top > 64 * sizes.size or sizes.min() < 0:  # sparse values: sort
        return (float(np.quantile(sizes, q, method="higher")), float(np.median(sizes)))
    cum = np.cumsum(np.bincount(sizes, minlength=top + 1))

    def at(k: int) -> float:  # the k-th smallest (0-based)
        return float(np.searchsorted(cum, k, side="right"))

    m = sizes.size
    return at(int(np.ceil(q * (m - 1)))), 0.5 * (at((m - 1) // 2) + at(m // 2))


def _stencil_sizes_known(topo: Any, spec: StencilSpec, indptr_full: np.ndarray | None
                         ) -> np.ndarray | None:
    """Every bin's stencil size when it is known without a pass over a lazy table."""
    if isinstance(spec, Rings) and spec.depth == 1:
        if indptr_full is not None:
            return np.diff(indptr_full)
        data = literal(topo.neighbours.data)
        if data is None:
            return None
        nb = compiled_kernels()
        if nb is not None:
            return nb.row_counts(np.ascontiguousarray(data, dtype=np.int64))
        return (np.asarray(data) >= 0).sum(axis=1)
    csr = _table_csr_literal(topo)
    if csr is None or isinstance(spec, Radius):  # radius: sized by the tasks, in parallel
        return None
    return stencil_sizes(spec, csr[0], csr[1], None)


def _apart(topo: Any, spec: StencilSpec, rows: np.ndarray, indptr_full: np.ndarray | None,
           labels: bool, n: int) -> Apart:
    """The stencils of ``rows`` (read from the table; for a lazy ragged 1-ring table, only
    those rows are read)."""
    from ..topology import check_values

    d = int(topo.center.sizes["space"])
    lab = None
    if isinstance(spec, Rings) and spec.depth == 1:
        if indptr_full is not None:
            entries = row_entries(indptr_full, rows)
            dim = str(topo.neighbours.dims[0])
            ids = np.asarray(topo.neighbours.isel({dim: entries}).values, dtype=np.int64)
            deg = indptr_full[rows + 1] - indptr_full[rows]
            check_values(np.zeros((0, d)), ids, None, rows=rows, n_bins=n, count=deg)
            if labels:
                lab = np.asarray(topo.labels.isel({dim: entries}).values, dtype=np.int64)
            indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
        else:
            block = np.asarray(literal(topo.neighbours.transpose("bin", "nbr").data))[rows]
            check_values(np.zeros((0, d)), block, None, rows=rows, n_bins=n)
            indptr, ids = as_csr(block)
            if labels:
                lab_all = np.asarray(topo.labels.transpose("bin", "nbr").values)[rows]
                lab = lab_all[block >= 0].astype(np.int64)
        return Apart(rows, indptr, ids, np.ones(len(ids), dtype=np.int8), lab)
    csr = _table_csr_literal(topo)
    assert csr is not None
    if isinstance(spec, Radius):
        centers = np.asarray(literal(topo.center.transpose("bin", "space").data), np.float64)
        sp, ids, ring = radius_stencil(csr[0], csr[1], centers, rows, spec.radius)
    else:
        sp, ids, ring = ring_stencil(csr[0], csr[1], rows, spec)
    return Apart(rows, sp.astype(np.int64), ids.astype(np.int64), ring.astype(np.int8), None)


# --------------------------------------------------------------------------- tasks


class _Stale(TessellationError):
    """An entry outside the chunks a task was given (a stale or guessed locality)."""


def _stale(j: int, row: int | None, lo: int, hi: int, starts: np.ndarray) -> TessellationError:
    where = f" (a neighbour of bin {row})" if row is not None else ""
    return _Stale(
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


def _narrow(block: np.ndarray, table: np.ndarray, drop: np.ndarray, width: int, lo: int
            ) -> np.ndarray:
    """A padded (m, k) ``block`` of the table (or of its labels, laid out like ``table``)
    with the rows ``drop`` emptied, the present entries of each row moved left, cut to
    ``width`` columns (-1 padding; 0 for labels)."""
    present = table >= 0
    if len(drop):
        present = present.copy()
        present[drop] = False
    deg = present.sum(axis=1)
    if deg.max(initial=0) > width:
        raise _too_many(lo + int(np.argmax(deg)), int(deg.max()), width)
    indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    out = pad_rows(indptr, block[present], width)
    if block is not table:  # labels: 0 at padding
        out = np.where(pad_rows(indptr, table[present], width) >= 0, out, 0)
    return out


def _too_many(row: int, deg: int, width: int) -> TessellationError:
    return TessellationError(
        f"bin {row} has {deg} neighbours, more than the {width} measured when the graph was "
        "built: the table changed since. Rebuild the gradient (and recompute any stored "
        "plan)."
    )


def _offsets(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The first local position of each of the sorted chunks [starts, stops)."""
    return np.concatenate([[0], np.cumsum(stops - starts)[:-1]]).astype(np.int64)


class Fetch:
    """Chunks of a dask array read inside a task, on demand: those that the stencils of a
    chunk reach outside the chunks its task was given (a guessed reach:
    :func:`.locality.guessed_dependencies`). One object per array, in the graph once;
    ``bounds``: the chunks' bounds along bin."""

    def __init__(self, array: Any, bounds: np.ndarray) -> None:
        self.array = array
        self.bounds = bounds

    def chunks_of(self, ids: np.ndarray) -> np.ndarray:
        """The chunks holding the global ids ``ids`` (sorted, distinct)."""
        return np.unique(np.searchsorted(self.bounds, ids, side="right") - 1)

    def block(self, index: tuple[int, ...]) -> np.ndarray:
        """Block ``index`` of the array, computed here (its own graph, synchronously)."""
        return np.asarray(self.array.blocks[index].compute(scheduler="sync"))

    def __dask_tokenize__(self) -> Any:
        return ("xtramgrad-fetch", self.array.name)


#: most tasks a chunk read on demand may take (its own graph, culled)
READ_TASKS = 32


def readable(array: Any) -> bool:
    """Whether the chunks of a dask array can be read on demand inside a task (a
    :class:`Fetch`): each chunk's own graph is small (at most :data:`READ_TASKS` tasks for
    the first chunk: read from a store, and elementwise operations; not a reduction over
    ``bin``, which every read would redo) and holds no distributed future (data persisted
    on a cluster: a task's own synchronous compute cannot resolve it). Numpy data is. The
    first and the last chunks are looked at (a cumulative sum along bin grows)."""
    import dask.array as da

    if not isinstance(array, da.Array):
        return True
    if any(n == 0 for n in array.numblocks):
        return True
    for at in {(0,) * array.ndim, tuple(n - 1 for n in array.numblocks)}:
        one = array.blocks[at]
        graph = dict(one.__dask_graph__().cull({(one.name, *(0,) * one.ndim)}))
        if len(graph) > READ_TASKS or any(type(v).__name__ == "Future"
                                          for v in graph.values()):
            return False
    return True


def _code(g: np.ndarray) -> np.ndarray:
    """Local position of an entry read on demand: its global id ``g`` as ``-2 - g``."""
    return -2 - g


def _with_fetched(table: np.ndarray, center_parts: list[Any], starts: np.ndarray,
                  stops: np.ndarray, fetch: Fetch
                  ) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """The chunks that a block of rows (padded, or CSR entries) reaches beyond [starts,
    stops), fetched and merged in:
    ``(center_parts, starts, stops, fetched)`` sorted by position, ``fetched`` marking the
    chunks read here."""
    entries = table.reshape(-1)
    entries = entries[(entries >= 0) & (entries < fetch.bounds[-1])]
    have = set(zip(starts.tolist(), stops.tolist(), strict=True))
    b = fetch.bounds
    extra = np.array([c for c in fetch.chunks_of(entries).tolist()
                      if (int(b[c]), int(b[c + 1])) not in have], dtype=np.int64)
    parts = list(center_parts) + [fetch.block((int(c), 0)) for c in extra]
    fetched = np.concatenate([np.zeros(len(starts), bool), np.ones(len(extra), bool)])
    starts = np.concatenate([starts, b[extra]])
    stops = np.concatenate([stops, b[extra + 1]])
    order = np.argsort(starts, kind="stable")
    return [parts[i] for i in order], starts[order], stops[order], fetched[order]


def _coded(lid: np.ndarray, starts: np.ndarray, stops: np.ndarray, fetched: np.ndarray
           ) -> np.ndarray:
    """``lid``, positions in the sorted chunks [starts, stops) of which some were
    ``fetched``, as positions in the others alone (the chunks the task was given), the
    entries in fetched chunks as :func:`_code` of their global ids."""
    g = _global_ids(lid, starts=starts, stops=stops)
    given = _local_numbering(starts[~fetched], stops[~fetched])(g)  # -1: in a fetched chunk
    return np.where(lid < 0, -1, np.where(given < 0, _code(g), given))


def _ring1_task(table: Any, center_parts: list[Any], fetch: Fetch | None = None, *, lo: int,
                n: int, d: int, starts: np.ndarray, stops: np.ndarray,
                indptr: np.ndarray | None, width: int, drop: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The 1-ring of a chunk: its (checked) table rows, left-packed and padded to ``width``
    (the rows ``drop``, local positions computed apart, empty), as local positions ``lid``
    in the chunks [starts, stops) (sorted), and the entries' centers from
    ``center_parts``, those chunks' centers. Every entry must fall in them, unless
    ``fetch`` reads the chunks they miss: those entries' ``lid`` is then :func:`_code` of
    their global id. (Global ids, if asked for, are :func:`_global_ids` of ``lid``.)"""
    table = np.asarray(table)
    if fetch is not None:
        try:
            return _ring1_task(table, center_parts, lo=lo, n=n, d=d, starts=starts,
                               stops=stops, indptr=indptr, width=width, drop=drop)
        except _Stale:  # rows reach beyond the guess (their values checked): read them
            parts, starts, stops, fetched = _with_fetched(table, center_parts, starts,
                                                          stops, fetch)
            lid, centers = _ring1_task(table, parts, lo=lo, n=n, d=d, starts=starts,
                                       stops=stops, indptr=indptr, width=width, drop=drop)
            return _coded(lid, starts, stops, fetched).astype(np.int64), centers
    nb = compiled_kernels()
    if nb is None or table.dtype.kind not in "iu":
        _check_rows(table, indptr, lo, n, d)
        if indptr is not None:
            ids = pad_rows(*_without_rows(indptr - indptr[0], table, drop), width)
        else:
            ids = _narrow(table, table, drop, width, lo)
        lid = _localize(ids.astype(np.int64, copy=False), starts, stops, lo)
        return lid, _take(lid, center_parts, trailing=False)
    m = table.shape[0] if indptr is None else len(indptr) - 1
    skip = np.zeros(m, dtype=np.bool_)
    skip[drop] = True
    lid = np.empty((m, width), dtype=np.int64)
    data = np.concatenate([np.asarray(p, dtype=np.float64) for p in center_parts])
    centers = np.empty((m, width, data.shape[1]))
    local_ptr = np.zeros(0, np.int64) if indptr is None else indptr - indptr[0]
    bad, row, widest, suspect = nb.ring1_rows(
        np.ascontiguousarray(table, dtype=np.int64), local_ptr, skip, lo, n, starts, stops,
        _offsets(starts, stops), data, lid, centers, np.empty((0,) * data.shape[1]))
    if suspect or bad >= 0 or widest > width:
        _check_rows(table, indptr, lo, n, d)  # the rows' own problems come first
    if widest > width:
        deg = np.diff(local_ptr) if indptr is not None else (table >= 0).sum(axis=1)
        deg[skip] = 0
        raise _too_many(lo + int(np.argmax(deg)), int(deg.max()), width)
    if bad >= 0:
        raise _stale(int(bad), lo + int(row), lo, lo + m, starts)
    return lid, centers


def _warm_ring1(d: int) -> None:
    """Load the compiled 1-ring gather (numba reads a kernel's cache at its first call,
    about 0.4 s, during which every other thread calling it waits): :func:`_ring1_task`
    on a two-bin table in ``d`` dimensions, as the chunks' tasks call it. Nothing without
    numba."""
    if compiled_kernels() is None:
        return
    lid, _ = _ring1_task(np.array([[1], [0]]), [np.zeros((2, d))], lo=0, n=2, d=d,
                         starts=np.array([0]), stops=np.array([2]), indptr=None, width=1,
                         drop=np.zeros(0, dtype=np.int64))
    _take(lid, [np.zeros((1, 2))], trailing=True)


def _walk_task(table_parts: list[Any], center_parts: list[Any], *, lo: int, hi: int, n: int,
               d: int, spec: StencilSpec, width: int | None, table_chunks: np.ndarray,
               center_chunks: np.ndarray, indptrs: list[np.ndarray | None],
               drop: np.ndarray) -> Any:
    """Stencils (rings or radius) of a chunk, walking the loaded rows: ``(lid (m, K), ring
    (m, K), centers (m, K, d))`` (the entries' positions in the loaded centers, their
    rings, their centers), or the widest stencil as a (1, 1, 1) array when ``width`` is
    None; the rows ``drop`` (local positions, computed apart) are left empty. Table and
    center chunks come sorted by position."""
    parts = [np.asarray(p) for p in table_parts]
    for part, (a, _), ip in zip(parts, table_chunks, indptrs, strict=True):
        if a == lo:
            _check_rows(part, ip, lo, n, d)
    cstarts = np.ascontiguousarray(center_chunks[:, 0], dtype=np.int64)
    cstops = np.ascontiguousarray(center_chunks[:, 1], dtype=np.int64)
    cdata = np.concatenate([np.asarray(p, dtype=np.float64) for p in center_parts])
    m = hi - lo
    nb = compiled_kernels()
    if nb is not None:
        return _compiled_walk(nb, parts, indptrs, table_chunks, cstarts, cstops, cdata, lo,
                              hi, spec, width, drop)
    indptr, ind, loaded_ids = _loaded_rows(parts, indptrs, table_chunks)
    targets = np.arange(lo, hi, dtype=np.int64)
    local = _local_numbering(cstarts, cstops)
    lind = local(ind)
    outside = (lind < 0) & (ind >= 0)
    if outside.any():  # every position the walk may expand must be loaded
        raise _stale(int(ind[np.argmax(outside)]), None, lo, hi, cstarts)

    def center_of(ids: np.ndarray) -> np.ndarray:
        lid = local(ids)
        if (lid < 0).any():
            raise _stale(int(ids[np.argmax(lid < 0)]), None, lo, hi, cstarts)
        return cdata[lid]

    if isinstance(spec, Radius):
        sp, ids, ring = radius_stencil(indptr, ind, cdata, targets, spec.radius,
                                       loaded=loaded_ids, center_of=center_of)
    else:
        sp, ids, ring = ring_stencil(indptr, ind, targets, spec, loaded=loaded_ids)
    deg = np.diff(sp)
    if len(drop):
        keep = np.ones(m, dtype=bool)
        keep[drop] = False
        ids, ring = ids[np.repeat(keep, deg)], ring[np.repeat(keep, deg)]
        deg = np.where(keep, deg, 0)
        sp = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    if width is None:
        return np.array([[[int(deg.max(initial=0))]]])
    if len(deg) and deg.max(initial=0) > width:
        raise _too_wide(lo, hi, int(deg.max()), width)
    pids = np.full((m, width), -1, dtype=np.int64)
    pring = np.zeros((m, width), dtype=np.int8)
    rows = np.repeat(np.arange(m), deg)
    slots = np.arange(len(ids)) - np.repeat(sp[:-1], deg)
    pids[rows, slots] = ids
    pring[rows, slots] = ring
    plid = _localize(pids, cstarts, cstops, lo)
    return plid, pring, _take(plid, [cdata], trailing=False)


def _loaded_rows(parts: list[np.ndarray], indptrs: list[np.ndarray | None],
                 table_chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loaded rows of the table as one CSR table ``(indptr, entries)`` (global ids) and
    their global positions."""
    indptr = np.zeros(1, dtype=np.int64)
    indices = []
    for part, ip in zip(parts, indptrs, strict=True):
        p_indptr, p_ind = as_csr(part) if ip is None else (ip - ip[0], part.astype(np.int64))
        indptr = np.concatenate([indptr, indptr[-1] + p_indptr[1:]])
        indices.append(p_ind)
    ind = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    loaded = [np.arange(a, b, dtype=np.int64) for a, b in table_chunks]
    return indptr, ind, np.concatenate(loaded) if loaded else np.zeros(0, np.int64)


def _too_wide(lo: int, hi: int, widest: int, width: int) -> TessellationError:
    return TessellationError(
        f"a stencil of the chunk of bins {lo}..{hi - 1} has {widest} entries, more than the "
        f"{width} measured when the graph was built: the table changed since. Rebuild the "
        "gradient (and recompute any stored plan)."
    )


def _compiled_walk(nb: Any, parts: list[np.ndarray], indptrs: list[np.ndarray | None],
                   table_chunks: np.ndarray, cstarts: np.ndarray, cstops: np.ndarray,
                   cdata: np.ndarray, lo: int, hi: int, spec: StencilSpec, width: int | None,
                   drop: np.ndarray) -> Any:
    """:func:`_walk_task` by the compiled kernels: the loaded rows in the local numbering
    of the loaded centers (:func:`~xtramgrad.kernels._numba.loaded_csr`), then the walks
    (same stencils, same order as the numpy walk)."""
    if indptrs and indptrs[0] is not None:  # CSR parts: their entries and local indptr
        table = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        ptr = np.concatenate([[0], np.cumsum(np.concatenate(
            [np.diff(ip) for ip in indptrs if ip is not None]))]).astype(np.int64)
    else:
        table = np.ascontiguousarray(np.concatenate(parts), dtype=np.int64)
        ptr = np.zeros(0, dtype=np.int64)
    offset = _offsets(cstarts, cstops)
    lindptr, lind, bad = nb.loaded_csr(
        table, ptr, np.ascontiguousarray(table_chunks[:, 0], dtype=np.int64),
        np.ascontiguousarray(table_chunks[:, 1], dtype=np.int64), cstarts, cstops, offset)
    if bad >= 0:
        raise _stale(int(bad), None, lo, hi, cstarts)
    if isinstance(spec, Radius):
        args = (1, 0, 0, float(spec.radius))
    else:
        args = (int(spec.rings), int(spec.widen_to), int(spec.min_points), 0.0)
    own = int(np.searchsorted(cstarts, lo))  # the chunk's own place among the loaded
    ltargets = np.arange(hi - lo, dtype=np.int64) + offset[own]
    skip = np.zeros(len(ltargets), dtype=np.bool_)
    skip[drop] = True
    k = 0 if width is None else width
    m, d = len(ltargets), cdata.shape[1]
    lid = np.empty((m, k), dtype=np.int64)
    ring = np.empty((m, k), dtype=np.int8)
    centers = np.empty((m, k, d))
    widest = int(nb.walk_padded(read_only(lind, np.int64), read_only(lindptr, np.int64),
                                read_only(cdata), ltargets, *args, skip, lid, ring, centers))
    if width is None:
        return np.array([[[widest]]])
    if widest > width:
        raise _too_wide(lo, hi, widest, width)
    return lid, ring, centers


def _global_ids(lid: Any, *, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Global positions of the local positions ``lid`` (-1 padding) in the sorted chunks
    [starts, stops) (entries read on demand carry theirs: :func:`_code`)."""
    lid = np.asarray(lid)
    offset = _offsets(starts, stops)
    c = np.clip(np.searchsorted(offset, lid, side="right") - 1, 0, None)
    other = np.where(lid < -1, _code(lid), -1)  # read on demand: the code of its global id
    return np.where(lid >= 0, lid - offset[c] + starts[c], other).astype(np.int64)


def _local_numbering(starts: np.ndarray, stops: np.ndarray) -> Any:
    """``local(g)``: positions of global ids ``g`` in the concatenation of the sorted
    chunks [starts, stops), -1 outside them (a dense lookup over their span when it is not
    much larger than they are, else a search)."""
    sizes = stops - starts
    offset = _offsets(starts, stops)
    first, last = (int(starts[0]), int(stops[-1])) if len(starts) else (0, 0)
    if last - first <= 4 * int(sizes.sum()) + 4096:
        lookup = np.full(last - first, -1, dtype=np.int64)
        for a, b, o in zip(starts, stops, offset, strict=True):
            lookup[a - first : b - first] = np.arange(o, o + b - a)

        def dense(g: np.ndarray) -> np.ndarray:
            if not len(lookup):  # only empty chunks: nothing is inside
                return np.full(np.shape(g), -1, dtype=np.int64)
            at = g - first
            outside = (at < 0) | (at >= len(lookup))
            return np.where(outside, -1, lookup.take(np.clip(at, 0, max(len(lookup) - 1, 0))))

        return dense

    def search(g: np.ndarray) -> np.ndarray:
        k = np.searchsorted(starts, g, side="right") - 1
        kk = np.clip(k, 0, None)
        inside = (k >= 0) & (g < stops[kk])
        return np.where(inside, g - starts[kk] + offset[kk], -1).astype(np.int64)

    return search


def _localize(ids: np.ndarray, starts: np.ndarray, stops: np.ndarray, lo: int) -> np.ndarray:
    """Positions of ``ids`` (m, K; -1 padding) of the chunk starting at bin ``lo`` in the
    concatenation of the sorted chunks [starts, stops) (-1 at padding); a position outside
    them raises the stale-locality error, naming the bin whose row holds it."""
    nb = compiled_kernels()
    if nb is not None:
        offset = _offsets(starts, stops)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        lid = np.empty(ids.shape, dtype=np.int64)
        bad = int(nb.localize(ids, starts, stops, offset, lid))
    else:
        lid = _local_numbering(starts, stops)(ids)
        wrong = ((lid < 0) & (ids >= 0)).ravel()
        bad = int(np.argmax(wrong)) if wrong.any() else -1
    if bad >= 0:
        row = bad // max(ids.shape[1], 1)
        raise _stale(int(ids.flat[bad]), lo + row, lo, lo + ids.shape[0], starts)
    return lid


def _take(lid: np.ndarray, parts: list[Any], *, trailing: bool) -> np.ndarray:
    """Entries ``lid`` (m, K; local positions, -1 padding) of the concatenated chunks
    ``parts`` (sorted by position): along their first axis (centers, ``trailing=False``:
    (m, K, d)) or last axis (values: (..., m, K)); NaN at padding."""
    nb = compiled_kernels()
    axis = -1 if trailing else 0
    data = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts], axis=axis)
    if nb is not None:
        lid = np.ascontiguousarray(lid, dtype=np.int64)
        if trailing:
            flat = np.ascontiguousarray(
                data.reshape(int(np.prod(data.shape[:-1])), data.shape[-1]))
            out = np.empty((flat.shape[0], *lid.shape))
            nb.take_values(lid, flat, out)
            return out.reshape(data.shape[:-1] + lid.shape)
        out = np.empty(lid.shape + data.shape[1:])
        row = int(np.prod(data.shape[1:]))
        nb.take_rows(lid, np.ascontiguousarray(data.reshape(len(data), row)),
                     out.reshape(*lid.shape, row))
        return out
    missing = lid < 0  # padding
    safe = np.maximum(lid, 0)
    if trailing:
        out = data.take(safe, axis=-1) if data.shape[-1] else np.full(
            data.shape[:-1] + lid.shape, np.nan)
        out[..., missing] = np.nan
    else:
        out = data.take(safe, axis=0) if len(data) else np.full(
            lid.shape + data.shape[1:], np.nan)
        out[missing] = np.nan
    return out


def _take_task(lid: Any, parts: list[Any], fetch: Fetch | None = None, *, trailing: bool,
               index: tuple[int, ...] = ()) -> np.ndarray:
    """A chunk's value gather (:func:`_take`); with ``fetch``, the entries read on demand
    (:func:`_code`) come from the blocks ``(*index, chunk)`` that hold them, read here."""
    lid = np.asarray(lid)
    out = _take(lid, parts, trailing=trailing)
    if fetch is not None and lid.size and lid.min() < -1:  # (a min: cheaper than nonzero)
        rows, cols = np.nonzero(lid < -1)
        g = _code(lid[rows, cols])
        extra = fetch.chunks_of(g)
        data = np.concatenate([fetch.block((*index, int(c))) for c in extra], axis=-1)
        at = _local_numbering(fetch.bounds[extra], fetch.bounds[extra + 1])(g)
        out[..., rows, cols] = data[..., at]
    return out


def _label_task(labels: Any, table: Any, *, indptr: np.ndarray | None, width: int,
                drop: np.ndarray, lo: int, n: int, d: int) -> np.ndarray:
    """A chunk's (checked) edge labels, laid out like its 1-ring stencils."""
    from ..topology import check_values

    labels = np.asarray(labels)
    table_block = np.asarray(table)
    m = table_block.shape[0] if indptr is None else len(indptr) - 1
    check_values(np.zeros((0, d)), table_block, labels, rows=np.arange(lo, lo + m),
                 n_bins=n, count=None if indptr is None else np.diff(indptr))
    if indptr is not None:
        return pad_rows(*_without_rows(indptr - indptr[0], labels.astype(np.int64), drop),
                        width)
    table = np.asarray(table)
    labels = np.where(table >= 0, labels, 0).astype(np.int64)
    return _narrow(labels, table, drop, width, lo)




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
                split: bool = False, method: str | None = None,
                fetch_from: Sequence[Any] = ()) -> GatherPlan:
    """The stencils of every chunk of bins, and their entries' centers (and labels).

    ``split``: leave the stencils much wider than the others (:func:`apart_rows`; when the
    sizes are known without a pass over a lazy table) out of the gather, described in
    ``plan.apart``, for a caller that computes them apart. ``method``: the method's name,
    to refuse a multi-ring stencil around a hub of a ragged table before anything is built
    (:func:`~xtramgrad.kernels.stencil.check_walk_cost`). ``fetch_from``: the arrays
    (besides the centers) whose values will be gathered on this plan; when every one of
    them, and the centers, can be read chunk by chunk on their own (:func:`readable`), a
    1-ring stencil of a lazy table without a plan starts from a guessed reach instead of a
    planning pass (:func:`.locality.guessed_dependencies`)."""
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
        from ..topology import check_counts

        indptr_full = check_counts(count, int(topo.neighbours.size))
        if method is not None:
            check_walk_cost(np.zeros(0, np.int64), indptr_full, spec, method)
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

    ring1 = isinstance(spec, Rings) and spec.depth == 1
    rng = lambda cs: np.array([(b[s], b[s + 1]) for s in cs], dtype=np.int64)  # noqa: E731
    apart = None
    drops = np.zeros(0, dtype=np.int64)
    sizes = _stencil_sizes_known(topo, spec, indptr_full) if split else None
    width = stencil_width(topo, spec) if sizes is None else int(sizes.max(initial=0))
    if sizes is not None:
        drops = apart_rows(sizes)
        if len(drops):
            rest = np.ones(n, dtype=bool)
            rest[drops] = False
            width = int(sizes[rest].max(initial=0))
            apart = _apart(topo, spec, drops, indptr_full, labels, n)
    lit = _table_literal(topo) if ring1 and len(drops) else None
    guess = None
    if (ring1 and lit is None and fetch_from and not has_locality(topo.neighbours)
            and all(readable(a) for a in (center, *fetch_from))):
        guess = guessed_dependencies(topo, chunks, warm=functools.partial(_warm_ring1, d))
    if lit is not None:  # the chunks need not read what only the bins apart reach
        deps1 = chunk_dependencies(lit, chunks, skip=drops)
    elif guess is not None:
        deps1 = guess
        import logging

        logging.getLogger("xtramgrad").info(
            "xtramgrad: the neighbour table (%d bins) is lazy and carries no plan: each "
            "chunk reads the chunks that %d sampled chunks' rows reach (offsets %s), and "
            "rows that reach further read what they need in their task. `xtramgrad plan "
            "STORE` (or saving ds = xtramgrad.plan(ds)) stores the exact reach.", n,
            min(nc, GUESS_SAMPLES),
            sorted({x - c for c, xs in enumerate(guess) for x in xs}),
        )
    else:
        deps1 = dependencies(topo, chunks)
    if width is not None:
        width = max(1, width)  # a table of isolated bins still has a neighbour axis

    def drop(c: int) -> np.ndarray:
        return drops[(drops >= b[c]) & (drops < b[c + 1])] - b[c]

    if ring1:
        assert width is not None
        reach = [tuple(sorted({c, *deps1[c]})) for c in range(nc)]
        # the keys name the reach: plans of the same table with other reaches (guessed,
        # stored, exact) number their entries otherwise and may meet in one graph
        token = tokenize(table.name, center.name, spec, width, chunks, reach,
                         guess is not None)
        name = f"xtramgrad-stencil-{token}"
        tasks: dict[Any, Any] = {}
        fetch_key: tuple[Any, ...] = ()
        if guess is not None:  # the center chunks beyond the guess, read on demand
            fetch_key = (f"xtramgrad-fetch-{tokenize(center.name, chunks)}",)
            tasks[fetch_key[0]] = Fetch(center, b)
        for c in range(nc):
            r = np.array(reach[c])
            tasks[(name, c, 0, 0)] = (
                functools.partial(
                    _ring1_task, lo=int(b[c]), n=n, d=d, starts=b[r], stops=b[r + 1],
                    indptr=ip(c), width=width, drop=drop(c),
                ),
                tkey(c),
                [(center.name, s, 0) for s in reach[c]],
                *fetch_key,
            )
        # each task returns (lid, centers): two arrays reading its items, no copies
        local, nbr_center = (
            _array(f"{name}-{part}", {**tasks, **_items(name, part, i, nc, nd)},
                   [table, center], (chunks, (width,), (d,))[:nd], dtype)
            for i, (part, nd, dtype) in enumerate(
                [("local", 2, np.int64), ("center", 3, np.float64)])
        )
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
                        indptrs=[ip(s) for s in tr], drop=drop(c),
                    ),
                    [tkey(s) for s in tr],
                    [(center.name, s, 0) for s in cr],
                )
            return tasks

        if width is None:
            import logging

            import dask

            if literal(topo.neighbours.data) is None:
                logging.getLogger("xtramgrad").warning(
                    "xtramgrad: the table is lazy: one pass over it, chunk by chunk, to "
                    "measure the widest stencil (%s) before building the gradient.", spec,
                )
            sname = f"xtramgrad-walk-size-{tokenize(table.name, center.name, spec, chunks)}"
            sizes = _array(sname, walk_tasks(sname, None), [table, center],
                           ((1,) * nc, (1,), (1,)), np.int64)
            width = int(dask.compute(sizes)[0].max(initial=0))
        token = tokenize(table.name, center.name, spec, width, chunks, reach)
        name = f"xtramgrad-walk-{token}"
        tasks = walk_tasks(name, width)
        # each walk task returns (lid, ring, centers): arrays reading its items
        local, ring, nbr_center = (
            _array(f"{name}-{part}", {**tasks, **_items(name, part, i, nc, nd)},
                   [table, center], (chunks, (width,), (d,))[:nd], dtype)
            for i, (part, nd, dtype) in enumerate(
                [("local", 2, np.int64), ("ring", 2, np.int8), ("center", 3, np.float64)])
        )
    gname = f"xtramgrad-stencil-ids-{token}"  # global positions, made if asked for
    ids = _array(gname, {
        (gname, c, 0): (functools.partial(_global_ids, starts=b[list(reach[c])],
                                          stops=b[[s + 1 for s in reach[c]]]),
                        (local.name, c, 0))
        for c in range(nc)}, [local], (chunks, (width,)), np.int64)
    _check_gather_size(width, chunks, d, spec)
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
                functools.partial(_label_task, indptr=ip(c), width=width, drop=drop(c),
                                  lo=int(b[c]), n=n, d=d),
                (lab.name, c) if ragged else (lab.name, c, 0),
                tkey(c),
            )
            for c in range(nc)
        }
        label = _array(lname, ltasks, [lab, table], (chunks, (width,)), np.int64)
    return GatherPlan(ids, ring, nbr_center, label, reach, tuple(chunks), width, apart, local,
                      fetch=guess is not None)


def _items(name: str, part: str, i: int, nc: int, ndim: int) -> dict[Any, Any]:
    """Tasks taking item ``i`` of each stencil task's tuple ``(name, c, 0, 0)`` as block
    ``c`` of the array ``name-part`` (ndim dims)."""
    return {(f"{name}-{part}", c, *(0,) * (ndim - 1)): (operator.getitem, (name, c, 0, 0), i)
            for c in range(nc)}


#: Largest gathered block (one chunk's stencil centers, (bins, K, d) float64) allowed, bytes
GATHER_LIMIT = 2 * 2**30
#: Largest number of padded stencil entries (bins x K) of a chunked gradient
PADDED_LIMIT = 4 * 10**9


def _check_gather_size(width: int, chunks: tuple[int, ...], d: int, spec: StencilSpec) -> None:
    """Refuse, before anything is computed, a gather whose blocks would not fit in memory:
    every row of a chunk is padded to the widest stencil ``width``. A few bins far wider
    than the rest (:func:`apart_rows`) are already left out; what remains here is a table
    whose wide rows are common, or a lazy table whose stencil sizes are not known."""
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
    if isinstance(values, da.Array):
        batch_chunks = tuple(values.chunks[:-1])
    else:
        batch_chunks = tuple((int(s),) for s in np.shape(values)[:-1])
    vals = _as_dask(values, (*batch_chunks, chunks))
    name = f"xtramgrad-gather-values-{tokenize(vals.name, plan.local.name)}"
    tasks: dict[Any, Any] = {}
    fetch_key: tuple[Any, ...] = ()
    if plan.fetch:  # entries beyond the guessed reach: their chunks read on demand
        if not readable(vals):  # a caller's error: gather_plan was not told of vals
            raise ValueError(
                "internal: a gather plan with a guessed reach was given values it was not "
                "built for (gather_plan(..., fetch_from=[values]) must list them)"
            )
        fetch_key = (f"xtramgrad-fetch-{tokenize(vals.name, chunks)}",)
        tasks[fetch_key[0]] = Fetch(vals, bounds(chunks))
    for c in range(len(chunks)):
        r = plan.reach[c]
        for blk in np.ndindex(*vals.numblocks[:-1]):
            part = functools.partial(_take_task, trailing=True, index=tuple(blk))
            tasks[(name, *blk, c, 0)] = (
                part, (plan.local.name, c, 0), [(vals.name, *blk, s) for s in r], *fetch_key,
            )
    return _array(name, tasks, [plan.local, vals], (*batch_chunks, chunks, (plan.width,)),
                  np.float64)

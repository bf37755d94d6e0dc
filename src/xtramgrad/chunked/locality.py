"""Locality of a neighbour table: which chunks of bins each chunk needs, known up front.

A bin's stencil lives in the bins its table rows point into, which for a chunk of bins are
usually a few nearby chunks (for bins in a locality-preserving order: grids in C order,
tessellations sorted with :func:`xtramgrad.sort`). The chunked path builds a graph in which
each chunk reads only those chunks, so it must know them *before* computing anything. For
each chunk ``c``, ``deps(c)`` (the other chunks its rows point into) comes from, in order of
preference:

1. **an in-memory table**: a numpy table, or a dask array whose blocks are literal numpy
   arrays in its graph (what ``ds.chunk(...)`` makes of in-memory data): ``deps(c)`` is
   computed exactly at graph construction;
2. **a stored plan**: attributes of the ``neighbours`` variable written by :func:`plan`
   (``xtramgrad_plan_block``, ``_bins``, ``_indptr``, ``_indices``): for each block of
   ``xtramgrad_plan_block`` consecutive bins, the blocks its neighbours fall into. It travels
   with the Dataset into zarr or netCDF, and any later chunking can use it;
3. **a declared band**: ``neighbours.attrs["xtramgrad_halo"] = h`` says that every neighbour
   ``j`` of bin ``i`` has ``|j - i| <= h`` (:func:`xtramgrad.grid` declares it);
4. otherwise, for a lazy table (e.g. opened with ``xr.open_zarr``), 1-ring stencils of a
   padded table start from a **guessed band** (:func:`guessed_dependencies`): the offsets
   between chunks seen in a few sampled chunks' rows; a row that points further reads the
   chunks it needs inside its own task (:mod:`.gather`), so a wrong guess costs reads, never
   numbers. When the sample is not band-like, and for wider stencils, the plan is **derived
   when needed**: one chunked pass over the table (memory bounded by a chunk), logged with
   a line saying how to save it and skip that pass next time.

Declarations are checked inside each task: a table that points outside its declared
locality (a stale plan after editing the table) raises, it never gives wrong numbers.

Wider stencils (2-ring, radius) need the chunks within several hops (:func:`expand`) or
within a distance (:func:`radius_dependencies`, from the chunks' bounding boxes).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from ..topology import BIN, NEIGHBOURS

__all__ = [
    "HALO_ATTR",
    "PLAN_ATTRS",
    "plan",
    "chunk_dependencies",
    "dependencies",
    "guessed_dependencies",
    "expand",
    "radius_dependencies",
    "literal",
    "bounds",
]

log = logging.getLogger("xtramgrad")

HALO_ATTR = "xtramgrad_halo"
PLAN_ATTRS = (
    "xtramgrad_plan_block",
    "xtramgrad_plan_bins",
    "xtramgrad_plan_indptr",
    "xtramgrad_plan_indices",
)
_DEFAULT_PLAN_BLOCK = 4096


#: literal() of dask arrays still alive, by id (assembling the blocks costs a copy)
_LITERALS: dict[int, np.ndarray | None] = {}


def literal(arr: Any) -> np.ndarray | None:
    """The numpy array behind ``arr`` if no compute is needed to get it, else None.

    True for numpy arrays and for dask arrays whose every block is a literal array in the
    graph (``da.from_array`` / ``ds.chunk()`` on in-memory data). The result for a dask
    array is kept while the array lives (building a gradient asks several times).
    """
    if isinstance(arr, np.ndarray):
        return arr
    if not hasattr(arr, "__dask_graph__"):
        return np.asarray(arr) if isinstance(arr, (list, tuple)) else None
    key = id(arr)
    if key in _LITERALS:
        return _LITERALS[key]
    out = _assemble(arr)
    try:
        weakref.finalize(arr, _LITERALS.pop, key, None)
    except TypeError:  # not weak-referenceable: not cached
        return out
    _LITERALS[key] = out
    return out


def _assemble(arr: Any) -> np.ndarray | None:
    from dask.core import flatten

    graph = arr.__dask_graph__()
    blocks = np.empty(arr.numblocks, dtype=object)
    for index, key in zip(np.ndindex(*arr.numblocks), flatten(arr.__dask_keys__()), strict=True):
        try:
            value = graph[key]
        except KeyError:
            return None
        value = getattr(value, "value", value)  # task-spec DataNode
        if not isinstance(value, np.ndarray):
            return None
        blocks[index] = value
    try:
        out = np.block(blocks.tolist()) if blocks.size else np.empty(arr.shape, arr.dtype)
    except ValueError:
        return None
    return out if out.shape == arr.shape else None


def bounds(chunks: Sequence[int]) -> np.ndarray:
    """Start of each chunk, then the total: ``[0, c0, c0 + c1, ...]``."""
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def chunk_dependencies(table: Any, chunks: Sequence[int], skip: np.ndarray | None = None
                       ) -> list[tuple[int, ...]]:
    """For each chunk of bins, the other chunks that its neighbour rows point into.

    Parameters
    ----------
    table : (n, k) int or (indptr, indices)
        The neighbour table, padded with -1, or in CSR form.
    chunks : sequence of int
        Chunk sizes along ``bin`` (summing to n).
    skip : int array, optional
        Rows whose neighbours do not count (bins computed apart).

    Examples
    --------
    >>> table = np.array([[1, -1], [0, 2], [1, 3], [2, -1]])
    >>> chunk_dependencies(table, (2, 2))
    [(1,), (0,)]
    >>> chunk_dependencies(table, (1, 1, 1, 1))
    [(1,), (0, 2), (1, 3), (2,)]
    """
    b = bounds(chunks)
    nc = len(chunks)
    n = int(b[-1])
    fast = _compiled_reach(table, b, skip)
    if fast is not None:
        return fast
    chunk_of = np.repeat(np.arange(nc, dtype=np.int32 if nc < 2**31 else np.int64),
                         np.asarray(chunks, dtype=np.int64))
    csr = isinstance(table, tuple)
    if csr:
        indptr, indices = (np.asarray(t) for t in table)
    else:
        table = np.asarray(table)
        table = table.reshape(len(table), -1)
    deps: list[tuple[int, ...]] = []
    hit = np.zeros(nc, dtype=bool)
    skip = np.zeros(0, dtype=np.int64) if skip is None else np.asarray(skip, dtype=np.int64)
    for c in range(nc):  # each chunk's rows: which chunks they reach (no sort, no unique)
        mine = skip[(skip >= b[c]) & (skip < b[c + 1])] - b[c]
        if csr:
            block = indices[indptr[b[c]] : indptr[b[c + 1]]]
            if len(mine):  # the rows' own entries only
                deg = np.diff(indptr[b[c] : b[c + 1] + 1])
                keep = np.ones(len(deg), dtype=bool)
                keep[mine] = False
                block = block[np.repeat(keep, deg)]
            valid = (block >= 0) & (block < n)
        else:
            rows = table[b[c] : b[c + 1]]
            valid = (rows >= 0) & (rows < n)
            if len(mine):
                valid[mine] = False
            block, valid = rows.reshape(-1), valid.reshape(-1)
        inside = block[valid]
        hit[:] = False
        hit[chunk_of[inside]] = True
        hit[c] = False
        deps.append(tuple(np.flatnonzero(hit).tolist()))
    return deps


def _compiled_reach(table: Any, b: np.ndarray, skip: np.ndarray | None
                    ) -> list[tuple[int, ...]] | None:
    """:func:`chunk_dependencies` by one compiled pass (None without numba)."""
    from ..kernels.engine import compiled_kernels

    _numba = compiled_kernels()
    if _numba is None:
        return None
    n = int(b[-1])
    if isinstance(table, tuple):
        indptr, entries = (np.ascontiguousarray(t, dtype=np.int64) for t in table)
    else:
        entries = np.asarray(table)
        entries = np.ascontiguousarray(entries.reshape(len(entries), -1), dtype=np.int64)
        indptr = np.zeros(0, dtype=np.int64)
    mask = np.zeros(0, dtype=np.bool_)
    if skip is not None and len(skip):
        mask = np.zeros(n, dtype=np.bool_)
        mask[np.asarray(skip, dtype=np.int64)] = True
    ptr, reach = _numba.chunk_reach(entries, indptr, b, mask)
    return [tuple(reach[ptr[c] : ptr[c + 1]].tolist()) for c in range(len(b) - 1)]


def _band_dependencies(halo: int, chunks: Sequence[int]) -> list[tuple[int, ...]]:
    b = bounds(chunks)
    out: list[tuple[int, ...]] = []
    for c in range(len(chunks)):
        lo, hi = b[c], b[c + 1]
        if hi == lo:
            out.append(())
            continue
        first = int(np.searchsorted(b, max(lo - halo, 0), side="right")) - 1
        last = int(np.searchsorted(b, min(hi - 1 + halo, b[-1] - 1), side="right")) - 1
        out.append(tuple(s for s in range(first, last + 1) if s != c and chunks[s] > 0))
    return out


def _plan_arrays(attrs: dict[str, Any], n: int) -> tuple[int, np.ndarray, np.ndarray]:
    """The plan attributes, checked: a corrupt plan is a clear error naming the attribute."""

    def bad(name: str, what: str) -> TessellationError:
        return TessellationError(
            f"attribute {name!r} of variable 'neighbours' {what}; the stored plan is corrupt. "
            "Recompute it with ds = xtramgrad.plan(ds) (and save it with the data), or drop "
            "the xtramgrad_plan_* attributes."
        )

    try:
        block = int(np.asarray(attrs[PLAN_ATTRS[0]]).reshape(()))
    except (TypeError, ValueError):
        raise bad(PLAN_ATTRS[0], f"is {attrs[PLAN_ATTRS[0]]!r}, not an integer") from None
    if block < 1:
        raise bad(PLAN_ATTRS[0], f"is {block}, expected a block size >= 1")
    try:
        bins = int(np.asarray(attrs[PLAN_ATTRS[1]]).reshape(()))
    except (TypeError, ValueError):
        raise bad(PLAN_ATTRS[1], f"is {attrs[PLAN_ATTRS[1]]!r}, not an integer") from None
    if bins != n:
        raise TessellationError(
            f"variable 'neighbours' carries a plan for {bins} bins but has {n}; the plan is "
            "stale. Recompute it: ds = xtramgrad.plan(ds)."
        )
    try:
        indptr = np.asarray(attrs[PLAN_ATTRS[2]], dtype=np.int64).reshape(-1)
        indices = np.asarray(attrs[PLAN_ATTRS[3]], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise bad(PLAN_ATTRS[2] + "/_indices", "does not hold integers") from None
    nblocks = -(-n // block) if n else 0
    if len(indptr) != nblocks + 1 or (len(indptr) and indptr[0] != 0):
        raise bad(PLAN_ATTRS[2], f"has {len(indptr)} entries, expected {nblocks + 1} "
                  f"starting at 0 ({n} bins in blocks of {block})")
    if np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices):
        raise bad(PLAN_ATTRS[2], f"is not a non-decreasing sequence ending at "
                  f"len({PLAN_ATTRS[3]}) = {len(indices)}")
    if len(indices) and (indices.min() < 0 or indices.max() >= max(nblocks, 1)):
        raise bad(PLAN_ATTRS[3], f"holds block numbers outside [0, {nblocks - 1}]")
    return block, indptr, indices


def _plan_dependencies(attrs: dict[str, Any], chunks: Sequence[int]) -> list[tuple[int, ...]]:
    b = bounds(chunks)
    n = int(b[-1])
    block, indptr, indices = _plan_arrays(attrs, n)
    out: list[tuple[int, ...]] = []
    for c in range(len(chunks)):
        lo, hi = int(b[c]), int(b[c + 1])
        if hi == lo:
            out.append(())
            continue
        blocks = np.unique(indices[indptr[lo // block] : indptr[(hi - 1) // block + 1]])
        starts = blocks * block
        stops = np.minimum(starts + block, n)
        first = np.searchsorted(b, starts, side="right") - 1
        last = np.searchsorted(b, stops - 1, side="right") - 1
        need: set[int] = set()
        for a, z in zip(first.tolist(), last.tolist(), strict=True):
            need.update(range(a, z + 1))
        need.discard(c)
        out.append(tuple(sorted(s for s in need if chunks[s] > 0)))
    return out


def has_locality(table: xr.DataArray) -> bool:
    """Whether ``deps`` can be known without reading the table."""
    attrs = table.attrs
    return (
        literal(table.data) is not None
        or all(a in attrs for a in PLAN_ATTRS)
        or HALO_ATTR in attrs
    )


def dependencies(topo: Any, chunks: Sequence[int]) -> list[tuple[int, ...]]:
    """``deps(c)`` for each chunk (see the module docstring); derives a plan when needed."""
    table = topo.neighbours
    layout = getattr(topo, "layout", "padded")
    if layout == "ragged":
        count = literal(topo.count.data)
        edges = literal(table.data)
        if count is not None and edges is not None:
            indptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
            return chunk_dependencies((indptr, edges), chunks)
    else:
        data = literal(table.data)
        if data is not None:
            return chunk_dependencies(data, chunks)
    attrs = dict(table.attrs)
    n = int(sum(chunks))
    if all(a in attrs for a in PLAN_ATTRS):
        return _plan_dependencies(attrs, chunks)
    if HALO_ATTR in attrs:
        try:
            halo = int(np.asarray(attrs[HALO_ATTR]).reshape(()))
        except (TypeError, ValueError):
            halo = -1
        if halo < 0:
            raise TessellationError(
                f"attribute {HALO_ATTR!r} of variable 'neighbours' is {attrs[HALO_ATTR]!r}; "
                "expected a number of bins >= 0. Fix it with xtramgrad.plan(ds, halo=h), or "
                "recompute a plan with xtramgrad.plan(ds)."
            )
        return _band_dependencies(halo, chunks)
    log.warning(
        "xtramgrad: the neighbour table (%d bins) is lazy and carries no plan: reading it "
        "once, chunk by chunk, to find each chunk's neighbours. Save ds = xtramgrad.plan(ds) "
        "with the store (or run `xtramgrad plan STORE`) to skip this pass next time.", n,
    )
    block = int(chunks[0]) if len(chunks) else _DEFAULT_PLAN_BLOCK
    attrs = _compute_plan(topo, block)
    return _plan_dependencies(attrs, chunks)


#: chunks whose rows are read to guess the band of a lazy table without a plan
GUESS_SAMPLES = 8
#: widest band guessed, in chunks either side; a wider sample derives the plan instead
GUESS_REACH = 4


def _chunk_refs(rows: Any, b: np.ndarray, warmed: object = None) -> np.ndarray:
    """The chunks (bounds ``b``) that the entries of a block of padded rows point into
    (sorted), or ``[-1]`` when an entry is out of range (the plan pass and the tasks report
    those). One counting pass, no sort, in numpy: the compiled kernels' first load is left
    to a task of its own (:func:`guessed_dependencies`' ``warm``), not added before the
    sample; ``warmed`` is its result (nothing), passed to order the tasks."""
    rows = np.asarray(rows).reshape(-1)
    n = int(b[-1])
    if len(rows) and (rows.min() < -1 or rows.max() >= n):
        return np.array([-1])
    sizes = np.diff(b)
    if len(sizes) and (sizes[:-1] == sizes[0]).all() and sizes[-1] <= sizes[0]:
        return _bucket_refs(rows, int(sizes[0]), len(sizes))  # regular chunks
    chunk = np.searchsorted(b, rows[rows >= 0], side="right") - 1
    return np.flatnonzero(np.bincount(chunk, minlength=len(sizes)))


def _bucket_refs(entries: np.ndarray, block: int, nb: int) -> np.ndarray:
    """The blocks of ``block`` bins (``nb`` of them) that ``entries`` (all in -1..n-1)
    point into, sorted: -1 (padding) counts in bucket 0, block ``k`` in bucket ``k + 1``,
    so that no mask is made."""
    hit = np.bincount((entries + block) // block, minlength=nb + 1)[1:]
    return np.flatnonzero(hit).astype(np.int64)


def guessed_dependencies(
    topo: Any, chunks: Sequence[int], warm: Callable[[], object] | None = None
) -> list[tuple[int, ...]] | None:
    """``deps(c)`` of a lazy padded table without a plan, guessed from a sample: the rows
    of up to :data:`GUESS_SAMPLES` chunks spread along ``bin`` are read (one compute, a
    chunk per task), the chunk offsets their entries reach are collected, and every chunk
    ``c`` gets the chunks ``c + offset``. None when the sample reaches further than
    :data:`GUESS_REACH` chunks either side, or holds invalid entries (derive the plan), or
    when the table is ragged. With at most :data:`GUESS_SAMPLES` chunks every chunk is read
    and the result is exact. Rows outside the guess read what they need in their task
    (:func:`xtramgrad.chunked.gather.gather_plan`); the guess only decides what each task
    is given up front.

    ``warm``: a task run in the sample's compute, first (every count depends on it), while
    the other thread reads: the caller loads its compiled kernels there, instead of in its
    first tasks, where every thread would wait for them. Only on the threaded scheduler,
    whose threads the later tasks share.

    Examples
    --------
    A 30 x 20 lattice in C order, lazy and without a plan, in chunks of 100 bins: each
    chunk's rows reach the chunks before and after it.

    >>> import xtramgrad
    >>> from xtramgrad.topology import topology
    >>> ds = xtramgrad.grid((30, 20)).chunk(bin=100)
    >>> ds["neighbours"] = ds.neighbours * 1  # computed: no literal blocks, no plan
    >>> guessed_dependencies(topology(ds), (100,) * 6)[:3]
    [(1,), (0, 2), (1, 3)]
    """
    import dask
    import dask.threaded
    from dask.base import get_scheduler

    if getattr(topo, "layout", "padded") == "ragged":
        return None
    nc = len(chunks)
    b = bounds(chunks)
    data = topo.neighbours.transpose(BIN, ...).data
    data = data.rechunk({0: tuple(chunks), 1: -1})
    spread = np.unique(np.linspace(0, nc - 1, min(nc, GUESS_SAMPLES)).round().astype(int))
    sample = [int(c) for c in spread if chunks[c] > 0]
    parts = data.to_delayed().ravel()  # one graph for the sample, not one per block
    warmed = None
    if warm is not None and get_scheduler(collections=[data]) is dask.threaded.get:
        # a dependency of every count, so that dask's order starts it first (a task beside
        # them started at random: after the reads in about half the runs, 0.2 s later)
        warmed = dask.delayed(warm)()
    tasks = [dask.delayed(_chunk_refs)(parts[c], b, warmed) for c in sample]
    refs = dask.compute(*tasks)
    shifts: set[int] = set()
    for c, r in zip(sample, refs, strict=True):
        if len(r) and r[0] < 0:
            return None
        shifts.update(int(x) - c for x in r)
    if len(sample) == nc:  # every chunk read: exact, however far the rows reach
        by_chunk = dict(zip(sample, refs, strict=True))
        return [tuple(int(x) for x in by_chunk.get(c, ()) if x != c) for c in range(nc)]
    if any(abs(x) > GUESS_REACH for x in shifts):
        return None
    return [
        tuple(c + x for x in sorted(shifts) if x != 0 and 0 <= c + x < nc and chunks[c + x])
        for c in range(nc)
    ]


def expand(deps: list[tuple[int, ...]], hops: int) -> list[tuple[int, ...]]:
    """The chunks within ``hops`` steps of each chunk (``hops=1``: ``deps`` itself).

    Examples
    --------
    >>> expand([(1,), (0, 2), (1,)], 2)
    [(1, 2), (0, 2), (0, 1)]
    """
    if hops <= 1:
        return [tuple(d) for d in deps]
    out = []
    for c in range(len(deps)):
        reach = {c}
        front = {c}
        for _ in range(hops):
            front = {s for f in front for s in deps[f]} - reach
            reach |= front
        reach.discard(c)
        out.append(tuple(sorted(reach)))
    return out


def chunk_boxes(center: Any, chunks: Sequence[int]) -> np.ndarray:
    """Bounding box of the centers of each chunk: (nc, 2, d), NaN for an empty chunk."""
    data = literal(center)
    b = bounds(chunks)
    if data is None:
        import dask
        import dask.array as da

        arr = center if isinstance(center, da.Array) else da.asarray(center)
        arr = arr.rechunk({0: tuple(chunks), 1: -1})
        log.warning(
            "xtramgrad: reading the (lazy) centers once to find which chunks lie within the "
            "stencil radius of each chunk."
        )
        parts = dask.compute(*[
            dask.delayed(_box)(blk) for blk in arr.to_delayed().ravel()
        ])
        return np.stack(parts)
    return np.stack([_box(data[b[c] : b[c + 1]]) for c in range(len(chunks))])


def _box(block: np.ndarray) -> np.ndarray:
    block = np.asarray(block, dtype=np.float64)
    if len(block) == 0:
        return np.full((2, block.shape[1]), np.nan)
    return np.stack([block.min(axis=0), block.max(axis=0)])


def radius_dependencies(
    boxes: np.ndarray, radius: float, deps: list[tuple[int, ...]]
) -> list[tuple[int, ...]]:
    """The chunks holding bins within ``radius`` of some bin of each chunk, reachable
    through the table: chunks whose box is within ``radius`` of the chunk's box, restricted
    to those connected to it through ``deps`` within that distance."""
    nc = len(boxes)
    out: list[tuple[int, ...]] = []
    for c in range(nc):
        lo, hi = boxes[c]
        if np.isnan(lo).any():
            out.append(())
            continue
        gap = np.maximum(0.0, np.maximum(boxes[:, 0] - hi, lo - boxes[:, 1]))
        near = set(np.flatnonzero(np.sqrt(np.nansum(gap * gap, axis=1)) <= radius).tolist())
        reach = {c}
        front = {c}
        while front:
            front = {s for f in front for s in deps[f] if s in near} - reach
            reach |= front
        reach.discard(c)
        out.append(tuple(sorted(reach)))
    return out


def _block_refs(table: np.ndarray, block: int, n: int) -> np.ndarray:
    """The blocks of ``block`` bins that the entries of ``table`` point into (sorted); entries
    outside 0..n-1 (padding, or invalid: the value checks report those) are ignored. One
    counting pass, no sort."""
    t = np.asarray(table).reshape(-1)
    nb = -(-n // block)
    if t.size == 0 or nb == 0:
        return np.zeros(0, dtype=np.int64)
    from ..kernels.engine import compiled_kernels

    compiled = compiled_kernels()
    if compiled is not None and t.dtype.kind in "iu":
        return compiled.block_refs(np.ascontiguousarray(t, dtype=np.int64), int(block), int(n))
    if t.min() < -1 or t.max() >= n:
        t = t[(t >= -1) & (t < n)]
    return _bucket_refs(t, block, nb)


def _compute_plan(topo: Any, block: int) -> dict[str, Any]:
    """The plan attributes of a table (one chunked pass when it is lazy)."""
    table = topo.neighbours
    n = int(topo.center.sizes[BIN])
    block = max(1, min(int(block), max(n, 1)))
    layout = getattr(topo, "layout", "padded")
    if layout == "ragged":
        count = np.asarray(topo.count.values, dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
        edges = table.data
        starts = list(range(0, max(n, 1), block))
        pieces = [edges[indptr[lo] : indptr[min(lo + block, n)]] for lo in starts]
        data = literal(edges)
        if data is not None:
            refs = [_block_refs(np.asarray(p), block, n) for p in pieces]
        else:
            import dask

            refs = list(dask.compute(*[dask.delayed(_block_refs)(p, block, n) for p in pieces]))
    else:
        data = literal(table.data)
        if data is not None:
            refs = [
                _block_refs(data[lo : lo + block], block, n) for lo in range(0, max(n, 1), block)
            ]
        else:
            import dask

            arr = table.data.rechunk({0: block, 1: -1})
            refs = list(
                dask.compute(
                    *[dask.delayed(_block_refs)(b, block, n) for b in arr.to_delayed().ravel()]
                )
            )
    indptr_p = np.concatenate([[0], np.cumsum([len(r) for r in refs])]).astype(np.int64)
    indices = np.concatenate(refs) if refs else np.zeros(0, np.int64)
    return {
        PLAN_ATTRS[0]: block,
        PLAN_ATTRS[1]: int(n),
        PLAN_ATTRS[2]: indptr_p.tolist(),
        PLAN_ATTRS[3]: indices.astype(np.int64).tolist(),
    }


def plan(ds: xr.Dataset, *, block: int | None = None, halo: int | None = None) -> xr.Dataset:
    """Record the locality of the neighbour table, so lazy tables chunk without a pass.

    Returns a shallow copy of ``ds`` whose ``neighbours`` variable carries, as attributes,
    for each block of ``block`` consecutive bins the blocks its neighbours fall into (or,
    with ``halo=``, a declared band). Chunked gradients read these attributes at graph
    construction instead of reading the (lazy) table; save the Dataset (zarr, netCDF) to
    keep them. A table that later points outside its plan raises inside the task.

    Parameters
    ----------
    ds : xarray.Dataset
    block : int, optional
        Bins per plan block; default: the table's chunk size along ``bin`` if it is
        dask-backed, else 4096. Chunks of at least this size give the tightest graphs.
    halo : int, optional
        Declare, without reading the table, that every neighbour ``j`` of bin ``i`` has
        ``|j - i| <= halo`` (true of lattices in C order with ``halo`` one row stride plus
        one). Checked inside each task.

    Returns
    -------
    xarray.Dataset

    Notes
    -----
    Without ``halo``, this reads the table once, one block per task (one dask compute,
    memory bounded by a block). Without a plan, a chunked gradient of a lazy table derives
    one itself (and says so), at the cost of that same pass.

    Examples
    --------
    A 10 x 10 lattice in blocks of 20 bins: each block needs its two neighbour blocks.

    >>> import xtramgrad
    >>> ds = xtramgrad.plan(xtramgrad.grid((10, 10)), block=20)
    >>> ds.neighbours.attrs["xtramgrad_plan_indptr"]
    [0, 2, 5, 8, 11, 13]
    >>> ds.neighbours.attrs["xtramgrad_plan_indices"]
    [0, 1, 0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4]
    """
    from ..topology import topology

    topo = topology(ds)
    table = topo.neighbours
    out = ds.copy()
    attrs = {k: v for k, v in table.attrs.items() if k not in (*PLAN_ATTRS, HALO_ATTR)}
    if halo is not None:
        if isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
            raise ValueError(f"halo={halo!r}; expected a number of bins >= 0.")
        attrs[HALO_ATTR] = int(halo)
        out[NEIGHBOURS].attrs = attrs
        return out
    if block is not None and (
        isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1
    ):
        raise ValueError(f"block={block!r}; expected a number of bins >= 1.")
    if block is None:
        chunks = topo.center.chunks or table.chunks
        lazy = literal(table.data) is None
        block = int(chunks[0][0]) if (lazy and chunks) else _DEFAULT_PLAN_BLOCK
    attrs.update(_compute_plan(topo, int(block)))
    out[NEIGHBOURS].attrs = attrs
    return out

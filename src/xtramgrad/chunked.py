"""Out-of-core gradients: dask graphs that gather each chunk's halo, and only that.

A bin's gradient needs its neighbours' values and centers, and the neighbours of the bins
of one chunk often live in other chunks. Dask's generic fancy indexing
(``values[neighbours]``) either builds a graph quadratic in the number of chunks or loads
the whole field. This module builds the graph itself, so that:

* each output chunk ``c`` (the field's chunks along ``bin``) depends only on the source
  chunks that its rows of the neighbour table point into, ``deps(c)``;
* the number of tasks is linear in the number of chunks (one per output chunk, plus the
  input chunks), and no task reads more than its own chunk and the chunks in ``deps(c)``;
* every chunk runs the very kernel of the eager path,
  :func:`xtramgrad.kernels.local_gradient`, on a *local problem*: its own bins followed by
  the halo bins it needs, with the neighbour table remapped to those local positions and
  ``targets`` the positions of its own bins. Per bin, the arithmetic is the eager one, in
  the same order, so the chunked result equals the eager one: bit for bit without missing
  values, and to within rounding (about 1e-16 relative) with them, because the kernel
  applies its weights through a sparse product when a block holds one missing-value
  pattern and through a gather otherwise, and a chunk can hold fewer patterns than the
  whole field.

Graph: one task per output chunk ``c`` (and per block ``b`` of the extra dims)::

    gradient b,c  <-  neighbours[c], labels[c], center[c], values[b, c],
                      center[s], values[b, s]   for s in deps(c)

The task checks its rows of the table, picks from each source chunk ``s`` only the halo
bins its rows point to, remaps the rows to local positions and runs the kernel. There are
no intermediate results to keep: the graph is the input chunks plus one task per output
chunk, and dask's ordering streams through it with a few chunks in memory per thread
(``1 + |deps(c)|`` chunks of values and centers per task).

The graph is built with :class:`dask.highlevelgraph.HighLevelGraph` rather than
``xr.apply_ufunc(dask="parallelized")`` because the gathered sources of a chunk have a size
that depends on the *values* of the neighbour table; ``apply_ufunc`` needs chunk shapes up
front. The result is wrapped back into a labelled DataArray.

Locality: knowing ``deps(c)`` without computing anything
--------------------------------------------------------
Which chunks a chunk needs depends on the values of the neighbour table, which may itself be
lazy (opened from zarr). Building the graph never computes; ``deps(c)`` comes from, in
order of preference:

1. **an in-memory table**: a numpy table, or a dask array whose blocks are literal numpy
   arrays in its graph (what ``ds.chunk(...)`` makes of in-memory data). ``deps(c)`` is
   computed exactly, with numpy, at graph construction.
2. **a stored plan**: attributes of the ``neighbours`` variable written by :func:`plan`
   (``xtramgrad_plan_block``, ``_bins``, ``_indptr``, ``_indices``): for each block of
   ``xtramgrad_plan_block`` consecutive bins, the blocks its neighbours fall into. It is
   computed once, chunk by chunk, and travels with the Dataset into zarr or netCDF. Any
   later chunking works (a chunk depends on the blocks referenced by the blocks it
   overlaps); chunks no smaller than the plan's block give the tightest graphs.
3. **a declared band**: ``neighbours.attrs["xtramgrad_halo"] = h`` says that every
   neighbour ``j`` of bin ``i`` satisfies ``|j - i| <= h``. :func:`xtramgrad.grid` declares
   it (``h`` = one row stride plus one for the 8-neighbour lattice), and ``plan(ds, halo=h)``
   sets it by hand.

A lazy table with none of these raises :class:`~xtramgrad.TessellationError` saying how to
get one. Declarations are checked inside each chunk's task: a table that points outside
its declared locality (a stale plan after editing the table) raises, it never gives wrong
numbers.

Memory: open big stores with ``inline_array=True``
--------------------------------------------------
``xr.open_zarr(store)`` puts each variable's store array in one shared root task that every
chunk read depends on; dask's task ordering then tends to read all chunks of the
neighbour table before computing anything (measured: memory growing with the number of
chunks). ``xr.open_dataset(store, engine="zarr", chunks={}, inline_array=True)`` makes each
chunk read an independent task, and the computation streams through the chunks with
memory bounded by a few chunks per thread. Likewise, write the result with
``dask.array.store`` into the arrays that ``to_zarr(compute=False)`` creates
(:func:`xtramgrad.store_zarr`): dask orders that graph chunk after chunk, while
the graph of ``to_zarr`` itself gets a scattered order that keeps the halo chunks of
half-finished neighbours in memory. The command line (``python -m xtramgrad grad``) does
both.

When to sort
------------
Bins of an irregular tessellation often come in random order, and then every chunk touches
every other chunk (quadratic graphs, every task reading everything). Reorder them along a
space-filling curve first, with :func:`xtramgrad.sort` (``ds.tram.sort()``), before
chunking or writing to zarr; the original positions stay in the ``bin_id`` coordinate and
:func:`xtramgrad.unsort` maps results back.

Examples
--------
>>> import xtramgrad
>>> ds = xtramgrad.grid((6, 5))
>>> ds["D"] = ds.center.sel(space="x") ** 2
>>> g = ds.chunk({"bin": 7}).tram.grad("D")
>>> g.chunks
((7, 7, 7, 7, 2), (2,))
>>> bool((g.compute() == ds.tram.grad("D")).all())
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import kernels
from .kernels import Selection
from .topology import BIN, NEIGHBOURS, SPACE, TessellationError, Topology, check_values

__all__ = ["grad_chunked", "plan", "chunk_dependencies", "HALO_ATTR", "PLAN_ATTRS"]

HALO_ATTR = "xtramgrad_halo"
PLAN_ATTRS = (
    "xtramgrad_plan_block",
    "xtramgrad_plan_bins",
    "xtramgrad_plan_indptr",
    "xtramgrad_plan_indices",
)
_DEFAULT_PLAN_BLOCK = 4096


# --------------------------------------------------------------------------- locality


def _literal(arr: Any) -> np.ndarray | None:
    """The numpy array behind ``arr`` if no compute is needed to get it, else None.

    True for numpy arrays and for dask arrays whose every block is a literal array in the
    graph (``da.from_array`` / ``ds.chunk()`` on in-memory data).
    """
    if isinstance(arr, np.ndarray):
        return arr
    if not hasattr(arr, "__dask_graph__"):
        return np.asarray(arr) if isinstance(arr, (list, tuple)) else None
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


def _bounds(chunks: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def chunk_dependencies(
    table: np.ndarray, chunks: Sequence[int]
) -> list[tuple[int, ...]]:
    """For each chunk of bins, the other chunks that its neighbour rows point into.

    Parameters
    ----------
    table : (n, k) int
        The neighbour table, padded with -1.
    chunks : sequence of int
        Chunk sizes along ``bin`` (summing to n).

    Examples
    --------
    >>> table = np.array([[1, -1], [0, 2], [1, 3], [2, -1]])
    >>> chunk_dependencies(table, (2, 2))
    [(1,), (0,)]
    >>> chunk_dependencies(table, (1, 1, 1, 1))
    [(1,), (0, 2), (1, 3), (2,)]
    """
    table = np.asarray(table)
    bounds = _bounds(chunks)
    nc = len(chunks)
    row_chunk = np.repeat(np.arange(nc, dtype=np.int64), np.asarray(chunks, dtype=np.int64))
    rows, slots = np.nonzero((table >= 0) & (table < bounds[-1]))
    src = np.searchsorted(bounds, table[rows, slots], side="right") - 1
    pair = np.unique(row_chunk[rows] * nc + src)
    deps: list[list[int]] = [[] for _ in range(nc)]
    for c, s in zip((pair // nc).tolist(), (pair % nc).tolist(), strict=True):
        if c != s:
            deps[c].append(s)
    return [tuple(d) for d in deps]


def _band_dependencies(halo: int, chunks: Sequence[int]) -> list[tuple[int, ...]]:
    bounds = _bounds(chunks)
    out: list[tuple[int, ...]] = []
    for c in range(len(chunks)):
        lo, hi = bounds[c], bounds[c + 1]
        if hi == lo:
            out.append(())
            continue
        first = int(np.searchsorted(bounds, max(lo - halo, 0), side="right")) - 1
        last = int(np.searchsorted(bounds, min(hi - 1 + halo, bounds[-1] - 1), side="right")) - 1
        out.append(tuple(s for s in range(first, last + 1) if s != c and chunks[s] > 0))
    return out


def _plan_dependencies(attrs: dict[str, Any], chunks: Sequence[int]) -> list[tuple[int, ...]]:
    block = int(attrs[PLAN_ATTRS[0]])
    indptr = np.asarray(attrs[PLAN_ATTRS[2]], dtype=np.int64).reshape(-1)
    indices = np.asarray(attrs[PLAN_ATTRS[3]], dtype=np.int64).reshape(-1)
    bounds = _bounds(chunks)
    n = int(bounds[-1])
    out: list[tuple[int, ...]] = []
    for c in range(len(chunks)):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        if hi == lo:
            out.append(())
            continue
        blocks = np.unique(indices[indptr[lo // block] : indptr[(hi - 1) // block + 1]])
        starts = blocks * block
        stops = np.minimum(starts + block, n)
        first = np.searchsorted(bounds, starts, side="right") - 1
        last = np.searchsorted(bounds, stops - 1, side="right") - 1
        need: set[int] = set()
        for a, b in zip(first.tolist(), last.tolist(), strict=True):
            need.update(range(a, b + 1))
        need.discard(c)
        out.append(tuple(sorted(s for s in need if chunks[s] > 0)))
    return out


_NO_LOCALITY = (
    "the neighbour table is dask-backed (lazy) and declares no locality, so xtramgrad cannot "
    "tell which chunks each chunk needs without reading it. Either compute a plan once and "
    "keep it with the data: ds = xtramgrad.plan(ds) (it reads the table chunk by chunk; "
    "save the result, e.g. to zarr, to reuse it), or declare a band with "
    "xtramgrad.plan(ds, halo=h) when every neighbour j of bin i has |j - i| <= h, or load "
    "the table into memory: ds['neighbours'] = ds.neighbours.load()."
)


def _dependencies(table: xr.DataArray, chunks: Sequence[int]) -> list[tuple[int, ...]]:
    """``deps(c)`` for each chunk, without computing anything (see the module docstring)."""
    data = _literal(table.data)
    if data is not None:
        return chunk_dependencies(data, chunks)
    attrs = dict(table.attrs)
    if all(a in attrs for a in PLAN_ATTRS):
        n = int(np.asarray(attrs[PLAN_ATTRS[1]]).reshape(()))
        if n != sum(chunks):
            raise TessellationError(
                f"variable 'neighbours' carries a plan for {n} bins but has "
                f"{sum(chunks)}; the plan is stale. Recompute it: ds = xtramgrad.plan(ds)."
            )
        return _plan_dependencies(attrs, chunks)
    if HALO_ATTR in attrs:
        return _band_dependencies(int(np.asarray(attrs[HALO_ATTR]).reshape(())), chunks)
    raise TessellationError(_NO_LOCALITY)


def plan(
    ds: xr.Dataset, *, block: int | None = None, halo: int | None = None
) -> xr.Dataset:
    """Record the locality of the neighbour table, so lazy tables chunk without computing.

    Returns a shallow copy of ``ds`` whose ``neighbours`` variable carries, as attributes,
    for each block of ``block`` consecutive bins the blocks its neighbours fall into (or,
    with ``halo=``, a declared band). Chunked gradients read these attributes at graph
    construction instead of the (lazy) table; save the Dataset (zarr, netCDF) to keep them.
    A table that later points outside its plan raises inside the task (see
    :mod:`xtramgrad.chunked`).

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
    memory bounded by a block).

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
    from .topology import topology

    topo = topology(ds)
    table = topo.neighbours
    n = table.sizes[BIN]
    out = ds.copy()
    attrs = {k: v for k, v in ds[NEIGHBOURS].attrs.items() if k not in (*PLAN_ATTRS, HALO_ATTR)}
    if halo is not None:
        if int(halo) < 0:
            raise TessellationError(f"halo={halo}; expected a number of bins >= 0.")
        attrs[HALO_ATTR] = int(halo)
        out[NEIGHBOURS].attrs = attrs
        return out
    data = _literal(table.data)
    if block is None:
        block = int(table.chunks[0][0]) if data is None and table.chunks else _DEFAULT_PLAN_BLOCK
    block = max(1, min(int(block), max(n, 1)))
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
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in refs])]).astype(np.int64)
    indices = np.concatenate(refs) if refs else np.zeros(0, np.int64)
    attrs.update(
        {
            PLAN_ATTRS[0]: block,
            PLAN_ATTRS[1]: int(n),
            PLAN_ATTRS[2]: indptr.tolist(),
            PLAN_ATTRS[3]: indices.astype(np.int64).tolist(),
        }
    )
    out[NEIGHBOURS].attrs = attrs
    return out


def _block_refs(table: np.ndarray, block: int, n: int) -> np.ndarray:
    t = np.asarray(table)
    t = t[(t >= 0) & (t < n)]
    return np.unique(t // block).astype(np.int64)


# --------------------------------------------------------------------------- tasks


def _halo_plan(
    table: np.ndarray,
    center: np.ndarray,
    labels: np.ndarray | None,
    lo: int,
    sources: tuple[tuple[int, int], ...],
    n: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Check a chunk's rows and remap them to local positions (own bins, then the halo).

    Returns the local neighbour table and, for each source chunk ``(start, stop)``, the
    positions within that chunk of the halo bins taken from it (ascending).
    """
    table = np.asarray(table)
    m = table.shape[0]
    check_values(np.asarray(center), table, labels, rows=np.arange(lo, lo + m), n_bins=n)
    present = table >= 0
    own = present & (table >= lo) & (table < lo + m)
    ext = present & ~own
    wanted = table[ext]
    halo = np.unique(wanted)
    starts = np.array([s for s, _ in sources], dtype=np.int64)
    stops = np.array([e for _, e in sources], dtype=np.int64)
    which = np.searchsorted(starts, halo, side="right") - 1
    inside = (which >= 0) & (halo < stops[np.clip(which, 0, None)]) if len(starts) else (
        np.zeros(len(halo), dtype=bool)
    )
    if not inside.all():
        j = int(halo[~inside][0])
        row = lo + int(np.argwhere(table == j)[0][0])
        raise TessellationError(
            f"variable 'neighbours' lists bin {j} as a neighbour of bin {row}, outside the "
            f"locality declared for bins {lo}..{lo + m - 1} (source bins {list(sources)}); "
            "the declared locality (attributes xtramgrad_plan_* or xtramgrad_halo of "
            "'neighbours') is stale or wrong. Recompute it with xtramgrad.plan(ds), or "
            "load the table into memory."
        )
    local = np.full(table.shape, -1, dtype=np.intp)
    local[own] = table[own] - lo
    local[ext] = m + np.searchsorted(halo, wanted)
    parts = [halo[which == i] - starts[i] for i in range(len(starts))]
    return local, parts


def _gradient_block(
    table: np.ndarray,
    labels: np.ndarray | None,
    center: np.ndarray,
    values: np.ndarray,
    source_centers: list[np.ndarray],
    source_values: list[np.ndarray],
    *,
    lo: int,
    sources: tuple[tuple[int, int], ...],
    n: int,
    selection: Selection,
    method: str | Callable[..., Any],
    na: float,
) -> np.ndarray:
    """One output chunk: gather its halo from the source chunks, run the eager kernel."""
    center = np.asarray(center)
    values = np.asarray(values)
    local, parts = _halo_plan(table, center, labels, lo, sources, n)
    m = local.shape[0]
    if m == 0:
        return np.empty(values.shape[:-1] + (0, center.shape[1]), dtype=np.float64)
    centers = np.concatenate(
        [center, *(np.asarray(c)[p] for c, p in zip(source_centers, parts, strict=True))],
        axis=0,
    )
    vals = np.concatenate(
        [values, *(np.asarray(v)[..., p] for v, p in zip(source_values, parts, strict=True))],
        axis=-1,
    )
    return kernels.local_gradient(
        vals,
        centers,
        local,
        selection=selection,
        method=method,
        targets=np.arange(m, dtype=np.intp),
        labels=None if labels is None else np.asarray(labels),
        na=na,
    )


# --------------------------------------------------------------------------- graph


def _bin_chunks(field: xr.DataArray, topo: Topology) -> tuple[int, ...]:
    for arr in (field, topo.neighbours, topo.center, topo.labels):
        if arr is not None and arr.chunks is not None:
            return tuple(int(c) for c in arr.chunks[arr.get_axis_num(BIN)])
    return (int(field.sizes[BIN]),)


def _as_dask(data: Any, chunks: tuple[tuple[int, ...], ...]) -> Any:
    import dask.array as da

    if isinstance(data, da.Array):
        return data if data.chunks == chunks else data.rechunk(chunks)
    return da.from_array(np.asarray(data), chunks=chunks)


def grad_chunked(
    field: xr.DataArray,
    topo: Topology,
    sel: Selection,
    method: str | Callable[..., Any],
    na: float,
) -> xr.DataArray:
    """Gradient of a dask-backed field (or tessellation), chunked like the field along bin.

    Called by :func:`xtramgrad.grad` when any input is dask-backed; see the module
    docstring for the graph and the locality rules. Builds the graph only: nothing is
    computed.

    Parameters
    ----------
    field : xarray.DataArray
        The measurement, with a ``bin`` dim and any other dims (chunked or not).
    topo : Topology
        From :func:`xtramgrad.topology.topology`.
    sel, method, na
        As resolved by :func:`xtramgrad.grad`.

    Returns
    -------
    xarray.DataArray
        dask-backed, dims of ``field`` plus ``space``, chunked like ``field`` along ``bin``
        (like the neighbour table when the field is in memory).
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    from .core import _wrap

    batch = [dim for dim in field.dims if dim != BIN]
    bin_chunks = _bin_chunks(field, topo)
    n = int(field.sizes[BIN])
    d = topo.ndim
    k = int(topo.neighbours.sizes["nbr"])
    fdata = field.transpose(*batch, BIN).data
    if isinstance(fdata, da.Array):
        batch_chunks = tuple(fdata.chunks[:-1])
    else:
        batch_chunks = tuple((int(s),) for s in fdata.shape[:-1])
    values = _as_dask(fdata, (*batch_chunks, bin_chunks))
    center = _as_dask(topo.center.transpose(BIN, SPACE).data, (bin_chunks, (d,)))
    table = _as_dask(topo.neighbours.data, (bin_chunks, (k,)))
    labels = None
    if topo.labels is not None and sel.kind == "labels":
        labels = _as_dask(topo.labels.data, (bin_chunks, (k,)))
    deps = _dependencies(topo.neighbours, bin_chunks)
    bounds = _bounds(bin_chunks)

    token = tokenize(
        values.name, center.name, table.name, None if labels is None else labels.name,
        sel, method, na,
    )
    out_name = f"xtramgrad-grad-{token}"
    out_layer: dict[Any, Any] = {}
    batch_blocks = list(np.ndindex(*values.numblocks[:-1]))
    for c in range(len(bin_chunks)):
        sources = tuple((int(bounds[s]), int(bounds[s + 1])) for s in deps[c])
        compute = functools.partial(
            _gradient_block, lo=int(bounds[c]), sources=sources, n=n,
            selection=sel, method=method, na=na,
        )
        lab_key = None if labels is None else (labels.name, c, 0)
        for b in batch_blocks:
            out_layer[(out_name, *b, c, 0)] = (
                compute,
                (table.name, c, 0),
                lab_key,
                (center.name, c, 0),
                (values.name, *b, c),
                [(center.name, s, 0) for s in deps[c]],
                [(values.name, *b, s) for s in deps[c]],
            )
    inputs = [a for a in (values, center, table, labels) if a is not None]
    layers: dict[str, Any] = {}
    dependencies: dict[str, set[str]] = {}
    for a in inputs:
        hlg = a.__dask_graph__()
        layers.update(hlg.layers)
        dependencies.update(hlg.dependencies)
    layers[out_name] = out_layer
    dependencies[out_name] = {a.name for a in inputs}
    graph = HighLevelGraph(layers, dependencies)
    ndim = len(batch) + 2
    g = da.Array(
        graph,
        out_name,
        chunks=(*batch_chunks, bin_chunks, (d,)),
        dtype=np.float64,
        meta=np.empty((0,) * ndim, dtype=np.float64),
    )
    return _wrap(g, field, topo, batch)


def store_zarr(result: Any, path: str) -> list[Any]:
    """Lazily write a dask-backed Dataset to a new zarr store; return dask collections.

    Compute them with ``dask.compute(*parts)`` (each chunk's task returns an empty array).
    Use it instead of ``to_zarr`` for gradients of very large tessellations: memory stays
    bounded by a few chunks per thread.

    The store's metadata and in-memory coordinates are written at once by
    ``Dataset.to_zarr(compute=False)``; the data are written by :func:`dask.array.store`
    (aligned chunks, no lock). The result is the same store as ``to_zarr`` would write,
    but dask orders this graph chunk after chunk, whereas the graph of ``to_zarr`` itself
    gets a scattered order in which the halo chunks read for one output chunk stay in
    memory until their own turn comes (memory growing with the number of chunks).
    """
    import dask.array as da
    import zarr

    result.to_zarr(path, mode="w", compute=False)
    group = zarr.open_group(path, mode="r+")
    names = [name for name, var in result.variables.items() if var.chunks is not None]
    sources = [result[name].data for name in names]
    targets: list[Any] = [group[str(name)] for name in names]
    stored = da.store(sources, targets, lock=False, compute=False)
    return list(stored) if isinstance(stored, (tuple, list)) else [stored]

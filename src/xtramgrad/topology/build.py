"""Constructors of tessellation Datasets: from tables, adjacencies, points (Voronoi) and grids."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from .schema import BIN, CENTER, DEFAULT_SPACE, LABEL, NBR, NEIGHBOURS, SPACE, topology


def _space_labels(space: Sequence[Hashable] | None, d: int) -> list[Hashable]:
    if space is None:
        if d > 3:
            raise TessellationError(f"centers have {d} columns; expected 1, 2 or 3")
        return list(DEFAULT_SPACE[:d])
    space = list(space)
    if len(space) != d:
        raise TessellationError(
            f"space={space!r} names {len(space)} coordinates but the centers have {d} "
            f"columns; pass {d} names."
        )
    return space


def _as_centers(centers: Any) -> np.ndarray:
    arr = np.asarray(centers, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] not in (1, 2, 3):
        raise TessellationError(
            f"centers has shape {np.shape(centers)}, expected (n_bins, d) with d = 1, 2 or 3."
        )
    return arr


def _dataset(
    centers: np.ndarray,
    table: np.ndarray,
    labels: np.ndarray | None,
    space: Sequence[Hashable] | None,
    measurements: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    space = _space_labels(space, centers.shape[1])
    ds = xr.Dataset(
        {
            CENTER: ((BIN, SPACE), centers),
            NEIGHBOURS: (
                (BIN, NBR),
                table,
                {"long_name": "neighbour bin positions", "start_index": 0, "fill_value": -1},
            ),
        },
        coords={SPACE: space},
        attrs=dict(attrs or {}),
    )
    if labels is not None:
        ds[LABEL] = ((BIN, NBR), labels, {"long_name": "neighbour side label +-(axis+1)"})
    for name, value in measurements.items():
        ds[name] = value if isinstance(value, (xr.DataArray, tuple)) else (BIN, value)
    topology(ds, labels=labels is not None)
    return ds


def _pad(indptr: np.ndarray, indices: np.ndarray, n: int) -> np.ndarray:
    deg = np.diff(indptr)
    k = int(deg.max()) if n else 0
    table = np.full((n, k), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), deg)
    slots = np.arange(len(indices)) - np.repeat(indptr[:-1], deg)
    table[rows, slots] = indices
    return table


def from_adjacency(
    centers: Any,
    adjacency: Any,
    *,
    space: Sequence[Hashable] | None = None,
    **measurements: Any,
) -> xr.Dataset:
    """Tessellation Dataset from bin centers and an adjacency.

    Parameters
    ----------
    centers : array-like (n, d)
        Bin centers.
    adjacency : scipy.sparse matrix or array, or ``(indptr, indices)``
        Row ``i`` lists the neighbours of bin ``i`` (stored entries; explicit zeros count
        as edges, the diagonal must be empty). Neighbour order is kept as stored.
    space : sequence of str, optional
        Names of the coordinates (default ``x``, ``y``, ``z``).
    **measurements
        Variables to add, each an array over bins or an ``(dims, values)`` tuple.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    >>> ds = from_adjacency([0.0, 1.0, 2.0], A, D=[1.0, 2.0, 4.0])
    >>> ds.neighbours.values.tolist()
    [[1, -1], [0, 2], [1, -1]]
    """
    centers = _as_centers(centers)
    n = len(centers)
    if isinstance(adjacency, tuple) and len(adjacency) == 2:
        indptr, indices = (np.asarray(a) for a in adjacency)
    else:
        from scipy import sparse

        if not sparse.issparse(adjacency):
            adjacency = np.asarray(adjacency)
            if adjacency.ndim != 2:
                raise TessellationError(
                    f"adjacency has shape {adjacency.shape}; expected a square (n, n) matrix "
                    "or an (indptr, indices) pair."
                )
            adjacency = sparse.csr_array(adjacency)
        csr = sparse.csr_array(adjacency)
        if csr.shape != (n, n):
            raise TessellationError(
                f"adjacency has shape {csr.shape}, expected ({n}, {n}) for {n} centers."
            )
        indptr, indices = csr.indptr, csr.indices
    if indptr.shape != (n + 1,) or indptr[-1] != len(indices):
        raise TessellationError(
            f"adjacency indptr has shape {indptr.shape} and ends at {indptr[-1]}; expected "
            f"({n + 1},) ending at len(indices) = {len(indices)}."
        )
    table = _pad(indptr.astype(np.int64), indices.astype(np.int64), n)
    return _dataset(centers, table, None, space, measurements)


def from_neighbours(
    centers: Any,
    neighbours: Any,
    labels: Any = None,
    *,
    space: Sequence[Hashable] | None = None,
    start_index: int = 0,
    fill_value: int | None = None,
    **measurements: Any,
) -> xr.Dataset:
    """Tessellation Dataset from bin centers and a padded neighbour table.

    Parameters
    ----------
    centers : array-like (n, d)
    neighbours : array-like (n, k) of int
        Neighbour positions padded with ``fill_value`` (default -1).
    labels : array-like (n, k) of int, optional
        Signed side labels ``+-(j+1)`` for labelled adjacency.
    space : sequence of str, optional
    start_index : int
        0 for zero-based positions (default), 1 for one-based tables (UGRID's ``start_index``).
    fill_value : int, optional
        Padding value of the given table (default -1); it becomes -1.
    **measurements
        Variables to add.

    Examples
    --------
    >>> ds = from_neighbours([[0.0, 0.0], [1.0, 0.0]], [[1], [0]], D=[1.0, 3.0])
    >>> float(ds.tram.grad("D").sel(space="x")[0])
    2.0
    """
    centers = _as_centers(centers)
    table = np.asarray(neighbours)
    if table.ndim != 2 or table.shape[0] != len(centers):
        raise TessellationError(
            f"neighbours has shape {table.shape}, expected ({len(centers)}, k) for "
            f"{len(centers)} centers."
        )
    if not np.issubdtype(table.dtype, np.integer):
        if np.issubdtype(table.dtype, np.floating) and np.all(
            np.isnan(table) | (table == np.round(table))
        ):
            table = np.where(np.isnan(table), -1 if fill_value is None else fill_value, table)
        else:
            raise TessellationError(
                f"neighbours has dtype {table.dtype}, expected integer bin positions."
            )
    table = table.astype(np.int64)
    pad = table == (-1 if fill_value is None else fill_value)
    table = np.where(pad, -1, table - start_index)
    lab = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != table.shape or not np.issubdtype(lab.dtype, np.integer):
            raise TessellationError(
                f"labels has shape {lab.shape} and dtype {lab.dtype}, expected integers of "
                f"the neighbour table's shape {table.shape}."
            )
        lab = np.where(pad, 0, lab).astype(np.int64)
    return _dataset(centers, table, lab, space, measurements)


def voronoi(
    points: Any, *, space: Sequence[Hashable] | None = None, **measurements: Any
) -> xr.Dataset:
    """Voronoi tessellation around the given centers (Delaunay adjacency).

    Two bins are neighbours when their Voronoi cells share a face, i.e. when their centers
    share a Delaunay edge (as in TRamWAy's kmeans, gwr and hexagon tessellations). In 1D the
    neighbours are the previous and next points in coordinate order.

    Examples
    --------
    >>> import numpy as np
    >>> ds = voronoi(np.random.default_rng(0).random((50, 2)))
    >>> ds.sizes["bin"], bool((ds.neighbours >= 0).sum("nbr").min() >= 2)
    (50, True)
    """
    pts = _as_centers(points)
    n, d = pts.shape
    if d == 1:
        order = np.argsort(pts[:, 0], kind="stable")
        left = np.full(n, -1)
        right = np.full(n, -1)
        left[order[1:]] = order[:-1]
        right[order[:-1]] = order[1:]
        table = np.stack([left, right], axis=1)
        table = np.take_along_axis(table, np.argsort(table < 0, axis=1, kind="stable"), axis=1)
        return _dataset(pts, table.astype(np.int64), None, space, measurements)
    from scipy.spatial import Delaunay, QhullError

    try:
        tri = Delaunay(pts)
    except QhullError as err:
        raise TessellationError(
            f"points ({n} in {d}D) admit no Delaunay triangulation (duplicate, collinear or "
            f"too few points): {str(err).splitlines()[0]}"
        ) from err
    indptr, indices = tri.vertex_neighbor_vertices
    table = _pad(indptr.astype(np.int64), indices.astype(np.int64), n)
    return _dataset(pts, table, None, space, measurements)


GRID_CONNECTIVITY = ("inference", "faces")


def grid_offsets(d: int, connectivity: str) -> np.ndarray:
    """Neighbour offsets of a regular grid, in lexicographic order.

    ``"inference"`` is TRamWAy's diagonal adjacency (2 in 1D, 8 in 2D, 18 in 3D: the
    offsets with at most two non-zero entries); ``"faces"`` keeps face neighbours only
    (2, 4, 6).
    """
    if connectivity not in GRID_CONNECTIVITY:
        raise TessellationError(
            f"connectivity={connectivity!r}; expected one of {GRID_CONNECTIVITY}."
        )
    steps = np.array(np.meshgrid(*([[-1, 0, 1]] * d), indexing="ij")).reshape(d, -1).T
    nonzero = (steps != 0).sum(axis=1)
    keep = (nonzero >= 1) & (nonzero <= (1 if connectivity == "faces" else 2))
    return steps[keep]


def grid(
    shape: int | Sequence[int],
    spacing: float | Sequence[float] = 1.0,
    origin: float | Sequence[float] = 0.0,
    connectivity: str = "inference",
    *,
    space: Sequence[Hashable] | None = None,
    chunks: int | None = None,
    **measurements: Any,
) -> xr.Dataset:
    """A regular grid of bins (C order: the last axis varies fastest).

    Parameters
    ----------
    shape : int or sequence of int
        Number of bins along each axis (1 to 3 axes).
    spacing, origin : float or sequence of float
        Bin size and center of the first bin, per axis.
    connectivity : {"inference", "faces"}
        ``"inference"`` (default): TRamWAy's diagonal adjacency used for inference, 8
        neighbours in 2D and 18 in 3D; ``"faces"``: 4 in 2D and 6 in 3D.
    space : sequence of str, optional
    chunks : int, optional
        Build ``center`` and ``neighbours`` lazily as dask arrays with this many bins per
        chunk: nothing of size n is allocated up front.
    **measurements
        Variables to add.

    Examples
    --------
    >>> ds = grid(3, spacing=2.0)
    >>> ds.center.values[:, 0].tolist(), ds.neighbours.values.tolist()
    ([0.0, 2.0, 4.0], [[1, -1], [0, 2], [1, -1]])
    """
    if isinstance(shape, (int, np.integer)):
        shape_t: tuple[int, ...] = (int(shape),)
    else:
        shape_t = tuple(int(s) for s in shape)
    d = len(shape_t)
    if d not in (1, 2, 3) or min(shape_t) < 1:
        raise TessellationError(
            f"shape={shape!r}; expected 1 to 3 positive sizes, e.g. (100, 80)."
        )
    spacing_a = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (d,))
    origin_a = np.broadcast_to(np.asarray(origin, dtype=np.float64), (d,))
    if not (np.all(spacing_a > 0) and np.all(np.isfinite(spacing_a))):
        raise TessellationError(f"spacing={spacing!r}; expected positive finite sizes.")
    offsets = grid_offsets(d, connectivity)
    n = int(np.prod(shape_t))
    if chunks is not None:
        center, table = _lazy_grid(shape_t, spacing_a, origin_a, offsets, int(chunks))
    else:
        center, table = _grid_block(0, n, shape_t, spacing_a, origin_a, offsets)
    ds = xr.Dataset(
        {
            CENTER: ((BIN, SPACE), center),
            NEIGHBOURS: (
                (BIN, NBR),
                table,
                {
                    "long_name": "neighbour bin positions",
                    "start_index": 0,
                    "fill_value": -1,
                    # declared locality for chunked gradients (see xtramgrad.chunked)
                    "xtramgrad_halo": int(np.abs(offsets @ _strides(shape_t)).max()),
                },
            ),
        },
        coords={SPACE: _space_labels(space, d)},
        attrs={
            "tessellation": "grid",
            "grid_shape": list(shape_t),
            "grid_spacing": spacing_a.tolist(),
            "grid_origin": origin_a.tolist(),
            "connectivity": connectivity,
        },
    )
    for name, value in measurements.items():
        ds[name] = value if isinstance(value, (xr.DataArray, tuple)) else (BIN, value)
    return ds


def _strides(shape: tuple[int, ...]) -> np.ndarray:
    """Flat-position strides of a C-order grid."""
    return np.array([int(np.prod(shape[j + 1 :])) for j in range(len(shape))], dtype=np.int64)


def _grid_block(
    start: int,
    stop: int,
    shape: tuple[int, ...],
    spacing: np.ndarray,
    origin: np.ndarray,
    offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Centers and neighbour table of grid bins ``start:stop`` (flat C order)."""
    flat = np.arange(start, stop, dtype=np.int64)
    idx = np.stack(np.unravel_index(flat, shape), axis=1)  # (m, d)
    center = origin + idx * spacing
    nb = idx[:, None, :] + offsets[None, :, :]  # (m, k, d)
    inside = np.all((nb >= 0) & (nb < np.asarray(shape)), axis=2)
    lin = np.ravel_multi_index(
        tuple(np.clip(nb, 0, np.asarray(shape) - 1).transpose(2, 0, 1)), shape
    )
    lin = np.where(inside, lin, -1)
    # pack present neighbours first, keeping their (ascending) order
    order = np.argsort(~inside, axis=1, kind="stable")
    table = np.take_along_axis(lin, order, axis=1)
    return center, table


def _lazy_grid(
    shape: tuple[int, ...],
    spacing: np.ndarray,
    origin: np.ndarray,
    offsets: np.ndarray,
    chunks: int,
) -> tuple[Any, Any]:
    import dask.array as da

    n = int(np.prod(shape))
    if chunks < 1:
        raise TessellationError(f"chunks={chunks}; expected a positive number of bins.")
    bounds = list(range(0, n, chunks)) + [n]
    sizes = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    d, k = len(shape), len(offsets)

    def block(which: str, block_info: Any = None) -> np.ndarray:
        lo, hi = block_info[None]["array-location"][0]
        center, table = _grid_block(lo, hi, shape, spacing, origin, offsets)
        return center if which == "center" else table

    center = da.map_blocks(
        block, "center", chunks=(sizes, (d,)), dtype=np.float64, meta=np.empty((0, 0))
    )
    table = da.map_blocks(
        block, "table", chunks=(sizes, (k,)), dtype=np.int64,
        meta=np.empty((0, 0), dtype=np.int64),
    )
    return center, table



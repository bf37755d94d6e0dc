"""The tessellation Dataset: its schema, validation and constructors.

A tessellation Dataset is an ordinary :class:`xarray.Dataset` with

========================  ==================  ==================================================
variable                  dims                meaning
========================  ==================  ==================================================
``center``                ``(bin, space)``    float bin centers; ``space`` has size d = 1, 2, 3
                                              and coordinate labels such as ``"x"``, ``"y"``
``neighbours``            ``(bin, nbr)``      integer, zero-based positions of each bin's
                                              neighbours along ``bin``, padded with -1
``neighbour_label``       ``(bin, nbr)``      optional signed labels ``+-(j+1)``: the neighbour is
                                              above / below the bin along axis j
``volume``                ``(bin,)``          optional bin volume (area in 2D)
measurements              ``(bin, ...)``      any variable with a ``bin`` dimension
========================  ==================  ==================================================

These names are the public schema: a Dataset written by hand with them (to zarr, netCDF,
or in memory) works with the ``.tram`` accessor.

Examples
--------
>>> import xtramgrad
>>> ds = xtramgrad.grid((3, 4), spacing=0.5)
>>> ds.sizes["bin"], ds.sizes["space"], ds.sizes["nbr"]
(12, 2, 8)
>>> ds.neighbours.values[0].tolist()
[1, 4, 5, -1, -1, -1, -1, -1]
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

__all__ = [
    "BIN",
    "SPACE",
    "NBR",
    "CENTER",
    "NEIGHBOURS",
    "LABEL",
    "VOLUME",
    "TessellationError",
    "Topology",
    "topology",
    "validate",
    "from_adjacency",
    "from_neighbours",
    "voronoi",
    "grid",
    "sort",
    "unsort",
]

BIN = "bin"
SPACE = "space"
NBR = "nbr"
CENTER = "center"
NEIGHBOURS = "neighbours"
LABEL = "neighbour_label"
VOLUME = "volume"
DEFAULT_SPACE = ("x", "y", "z")
SCHEMA_VARIABLES = (CENTER, NEIGHBOURS, LABEL, VOLUME)


class TessellationError(ValueError):
    """A tessellation Dataset or argument does not follow xtramgrad's schema."""


class Topology(NamedTuple):
    """The tessellation variables of a Dataset, checked and normalised."""

    center: xr.DataArray  # (bin, space) float64
    neighbours: xr.DataArray  # (bin, nbr) integer
    labels: xr.DataArray | None  # (bin, nbr) integer

    @property
    def ndim(self) -> int:
        return int(self.center.sizes[SPACE])

    @property
    def space(self) -> list[Hashable]:
        if SPACE in self.center.coords:
            return list(self.center.coords[SPACE].values)
        return list(DEFAULT_SPACE[: self.ndim])


# --------------------------------------------------------------------------- checks


def _is_lazy(da: xr.DataArray) -> bool:
    return not isinstance(da.variable._data, np.ndarray) and hasattr(da.data, "dask")


def _require(ds: xr.Dataset, name: str, dims: tuple[str, ...], fix: str) -> xr.DataArray:
    if name not in ds.variables:
        raise TessellationError(
            f"the Dataset has no {name!r} variable; expected {name}{dims}. {fix}"
        )
    da = ds[name]
    if tuple(da.dims) != dims:
        if set(da.dims) == set(dims):
            return da.transpose(*dims)
        raise TessellationError(
            f"variable {name!r} has dims {tuple(da.dims)}, expected {dims}. {fix}"
        )
    return da


_BUILD_HINT = (
    "Build the Dataset with xtramgrad.from_neighbours, from_adjacency, voronoi or grid, "
    "or see the data model in xtramgrad.topology."
)


def _require_dataset(ds: Any) -> None:
    if not isinstance(ds, xr.Dataset):
        raise TessellationError(
            f"expected an xarray.Dataset holding a tessellation, got {type(ds).__name__}. "
            + _BUILD_HINT
        )


def topology(ds: xr.Dataset, labels: bool = False) -> Topology:
    """Find and check the tessellation variables, cheaply.

    Checks names, dims, dtypes and sizes only (never loads dask-backed data); for numpy
    data, also the values of the neighbour table and the centers (see :func:`validate`).

    Parameters
    ----------
    ds : xarray.Dataset
    labels : bool
        Require the ``neighbour_label`` variable.

    Raises
    ------
    TessellationError
    """
    _require_dataset(ds)
    center = _require(ds, CENTER, (BIN, SPACE), _BUILD_HINT)
    table = _require(ds, NEIGHBOURS, (BIN, NBR), _BUILD_HINT)
    if not np.issubdtype(center.dtype, np.floating):
        if np.issubdtype(center.dtype, np.integer):
            center = center.astype(np.float64)
        else:
            raise TessellationError(
                f"variable 'center' has dtype {center.dtype}, expected float. "
                "Convert it with ds['center'] = ds.center.astype(float)."
            )
    d = center.sizes[SPACE]
    if d not in (1, 2, 3):
        raise TessellationError(
            f"variable 'center' has {d} entries along 'space', expected 1, 2 or 3 "
            "(the number of spatial dimensions). Transpose it to dims (bin, space)."
        )
    if SPACE in ds.coords and ds.sizes[SPACE] != d:  # pragma: no cover - xarray forbids it
        raise TessellationError("coordinate 'space' does not match variable 'center'")
    if not np.issubdtype(table.dtype, np.integer):
        raise TessellationError(
            f"variable 'neighbours' has dtype {table.dtype}, expected integer bin positions "
            "padded with -1. A float table usually comes from NaN padding: convert it with "
            "ds['neighbours'] = ds.neighbours.fillna(-1).astype('int64')."
        )
    label = None
    if labels:
        if LABEL not in ds.variables:
            raise TessellationError(
                "selection='labels' needs a 'neighbour_label' variable with dims (bin, nbr) "
                "holding +-(j+1) for a neighbour above/below along axis j; the Dataset has "
                "none. Pass labels= to xtramgrad.from_neighbours, or choose another selection."
            )
        label = _require(ds, LABEL, (BIN, NBR), _BUILD_HINT)
        if not np.issubdtype(label.dtype, np.integer):
            raise TessellationError(
                f"variable 'neighbour_label' has dtype {label.dtype}, expected integer labels "
                "+-(j+1) (0 for none). Convert it with .astype('int64')."
            )
    topo = Topology(center, table, label)
    if not _is_lazy(center) and not _is_lazy(table):
        check_values(
            np.asarray(center.values), np.asarray(table.values),
            None if label is None else np.asarray(label.values),
        )
    return topo


def check_values(
    centers: np.ndarray,
    neighbours: np.ndarray,
    labels: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    n_bins: int | None = None,
) -> None:
    """Check the values of (a block of) the tessellation variables.

    ``rows`` are the global positions of the table's rows (``arange`` by default), and
    ``n_bins`` the total number of bins (``len(centers)`` by default). Used eagerly on whole
    arrays and, for dask-backed Datasets, inside each chunk's task.
    """
    n = len(centers) if n_bins is None else n_bins
    if rows is None:
        rows = np.arange(neighbours.shape[0])
    if not np.isfinite(centers).all():
        finite = np.isfinite(centers).all(axis=1)
        bad = np.flatnonzero(~finite)
        raise TessellationError(
            f"variable 'center' holds non-finite values at {len(bad)} bin(s) (first: bin "
            f"{rows[bad[0]] if len(centers) == len(rows) else bad[0]}); every bin needs a "
            "finite center. Drop those bins, or fill their centers."
        )
    if neighbours.size:
        lo, hi = neighbours.min(), neighbours.max()
        if lo < -1 or hi >= n:
            bad = np.argwhere((neighbours < -1) | (neighbours >= n))[0]
            raise TessellationError(
                f"variable 'neighbours' holds position {neighbours[tuple(bad)]} at bin "
                f"{rows[bad[0]]}, outside [0, {n - 1}] (the 'bin' dimension has {n} bins); "
                "expected zero-based positions padded with -1. If the table is one-based, "
                "subtract 1 (see from_neighbours(start_index=1))."
            )
        own = neighbours == rows[:, None]
        if own.any():
            bad = np.argwhere(own)[0]
            raise TessellationError(
                f"variable 'neighbours' lists bin {rows[bad[0]]} as its own neighbour; a bin "
                "cannot neighbour itself. Remove self-loops (e.g. the diagonal of an "
                "adjacency matrix)."
            )
    if labels is not None:
        d = centers.shape[1]
        pad = neighbours < 0
        bad_lab = (~pad) & ((np.abs(labels) > d) | (labels == 0))
        if bad_lab.any():
            bad = np.argwhere(bad_lab)[0]
            raise TessellationError(
                f"variable 'neighbour_label' holds {labels[tuple(bad)]} for a neighbour of bin "
                f"{rows[bad[0]]}; expected +-(j+1) with j < {d} (the axis and side)."
            )


def validate(ds: xr.Dataset) -> xr.Dataset:
    """Check a tessellation Dataset thoroughly; return it unchanged.

    Beyond :func:`topology`'s checks, this also checks dask-backed variables (it computes
    their reductions chunk by chunk), duplicate neighbours, and measurement dims.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((2, 2))
    >>> ds = ds.tram.validate()
    >>> bad = ds.copy()
    >>> bad["neighbours"] = bad.neighbours.where(bad.neighbours != 3, 9)
    >>> bad.tram.validate()
    Traceback (most recent call last):
    ...
    xtramgrad.topology.TessellationError: variable 'neighbours' holds position 9 at bin 0, ...
    """
    _require_dataset(ds)
    topo = topology(ds, labels=LABEL in ds.variables)
    if _is_lazy(topo.center) or _is_lazy(topo.neighbours):
        import dask.array as da

        lab = None if topo.labels is None else topo.labels.data
        checks = da.map_blocks(
            _check_block,
            topo.neighbours.data,
            *(() if lab is None else (lab,)),
            n_bins=topo.center.shape[0],
            centers=topo.center.data,
            drop_axis=1,
            dtype=bool,
            meta=np.array((), dtype=bool),
            has_labels=lab is not None,
        )
        finite = da.isfinite(topo.center.data).all()
        bad_center, _ = da.compute(~finite, checks.sum())
        if bad_center:
            check_values(np.asarray(topo.center.values), np.zeros((0, 0), int))
    table = np.asarray(topo.neighbours.values) if not _is_lazy(topo.neighbours) else None
    if table is not None and table.shape[1] > 1:
        srt = np.sort(table, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            row = int(np.argwhere(dup)[0][0])
            raise TessellationError(
                f"variable 'neighbours' lists a neighbour twice for bin {row}; each neighbour "
                "must appear once per row. Deduplicate the table (np.unique per row)."
            )
    if VOLUME in ds.variables and tuple(ds[VOLUME].dims) != (BIN,):
        raise TessellationError(
            f"variable 'volume' has dims {tuple(ds[VOLUME].dims)}, expected ('bin',)."
        )
    return ds


def _check_block(table, *rest, n_bins, centers, has_labels, block_info=None):
    """Per-chunk value checks of a dask-backed table (raises inside the task)."""
    loc = block_info[0]["array-location"][0]
    rows = np.arange(loc[0], loc[1])
    labels = rest[0] if has_labels else None
    d = centers.shape[1]
    check_values(np.zeros((0, d)), table, labels, rows=rows, n_bins=n_bins)
    return np.ones(table.shape[0], dtype=bool)


# --------------------------------------------------------------------------- constructors


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


# --------------------------------------------------------------------------- bin order

BIN_ID = "bin_id"
CURVES = ("hilbert", "morton")


def _quantize(centers: np.ndarray, bits: int) -> np.ndarray:
    """Integer coordinates in ``[0, 2**bits)``, one scale for every axis (isotropic)."""
    lo = centers.min(axis=0)
    extent = float((centers.max(axis=0) - lo).max()) if len(centers) else 0.0
    scale = (2**bits - 1) / extent if extent > 0 else 0.0
    q = np.floor((centers - lo) * scale)
    return np.clip(q, 0, 2**bits - 1).astype(np.uint64)


def _interleave(x: np.ndarray, bits: int) -> np.ndarray:
    """Bits of the columns of ``x`` (n, d) interleaved, most significant first."""
    n, d = x.shape
    key = np.zeros(n, dtype=np.uint64)
    one = np.uint64(1)
    for b in range(bits - 1, -1, -1):
        for j in range(d):
            key = (key << one) | ((x[:, j] >> np.uint64(b)) & one)
    return key


def hilbert_key(coords: np.ndarray, bits: int) -> np.ndarray:
    """Position along the Hilbert curve of integer points ``coords`` (n, d) < ``2**bits``.

    J. Skilling's transform ("Programming the Hilbert curve", AIP Conf. Proc. 707, 2004),
    vectorised over points. Consecutive keys are face-adjacent cells.

    Examples
    --------
    >>> xy = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], dtype=np.uint64)
    >>> hilbert_key(xy, 1).tolist()
    [0, 1, 2, 3]
    """
    x = np.array(coords, dtype=np.uint64, copy=True)
    n, d = x.shape
    if d == 1:
        return x[:, 0].copy()
    q = 1 << (bits - 1)
    while q > 1:  # inverse undo
        p = np.uint64(q - 1)
        for i in range(d):
            high = (x[:, i] & np.uint64(q)) != 0
            if i == 0:
                x[:, 0] = np.where(high, x[:, 0] ^ p, x[:, 0])
                continue
            t = (x[:, 0] ^ x[:, i]) & p
            x[:, 0] = np.where(high, x[:, 0] ^ p, x[:, 0] ^ t)
            x[:, i] = np.where(high, x[:, i], x[:, i] ^ t)
        q >>= 1
    for i in range(1, d):  # Gray encode
        x[:, i] ^= x[:, i - 1]
    t = np.zeros(n, dtype=np.uint64)
    q = 1 << (bits - 1)
    while q > 1:
        t = np.where((x[:, d - 1] & np.uint64(q)) != 0, t ^ np.uint64(q - 1), t)
        q >>= 1
    x ^= t[:, None]
    return _interleave(x, bits)


def _renumber(table: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows ``order`` of a neighbour table, its positions renamed to the new order."""
    new_pos = np.empty(len(order), dtype=np.int64)
    new_pos[order] = np.arange(len(order), dtype=np.int64)
    rows = table[order]
    return np.where(rows >= 0, new_pos[np.clip(rows, 0, None)], -1).astype(table.dtype)


def _reorder(ds: xr.Dataset, order: np.ndarray) -> xr.Dataset:
    out = ds.isel({BIN: order})
    table = np.asarray(ds[NEIGHBOURS].transpose(BIN, NBR).values)
    out[NEIGHBOURS] = ((BIN, NBR), _renumber(table, order), dict(ds[NEIGHBOURS].attrs))
    for attr in [a for a in out[NEIGHBOURS].attrs if a.startswith("xtramgrad_")]:
        del out[NEIGHBOURS].attrs[attr]  # locality declarations do not survive a reorder
    return out


def sort(ds: xr.Dataset, curve: str = "hilbert") -> xr.Dataset:
    """Reorder the bins along a space-filling curve, for chunk locality.

    Bins of irregular tessellations often come in random order; chunked along ``bin``,
    every chunk then neighbours every other chunk. Along a Hilbert (or Morton, "Z-order")
    curve, bins close in space are close in order, so a chunk's neighbours lie in a few
    nearby chunks. Use it before chunking, before writing a big tessellation to zarr, and
    before :func:`xtramgrad.plan`. Gradients are unchanged bin by bin.

    Every variable along ``bin`` is reordered and the neighbour table renumbered; the
    original positions are kept in the ``bin_id`` coordinate (composed if the Dataset was
    already sorted), and :func:`unsort` restores the original order of a Dataset or of
    any result. The table is loaded into memory (n x k integers).

    Parameters
    ----------
    ds : xarray.Dataset
    curve : {"hilbert", "morton"}

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.voronoi(np.random.default_rng(0).random((100, 2)))
    >>> ds["D"] = ds.center.sel(space="x") ** 2
    >>> s = ds.tram.sort()
    >>> s.bin_id.values[:5].tolist()
    [1, 10, 29, 34, 50]
    >>> g = xtramgrad.unsort(s.tram.grad("D"))
    >>> bool((g == ds.tram.grad("D")).all())
    True
    """
    if curve not in CURVES:
        raise TessellationError(f"curve={curve!r}; expected one of {CURVES}.")
    topo = topology(ds)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    n, d = centers.shape
    bits = 64 // d if d > 1 else 63
    coords = _quantize(centers, bits)
    key = hilbert_key(coords, bits) if curve == "hilbert" else _interleave(coords, bits)
    order = np.argsort(key, kind="stable")
    if BIN_ID not in ds.coords:
        ds = ds.assign_coords({BIN_ID: (BIN, np.arange(n, dtype=np.int64))})
    out = _reorder(ds, order)
    out[BIN_ID].attrs.update(
        {"long_name": "original bin position", "xtramgrad_curve": curve}
    )
    return out


def unsort(obj: xr.Dataset | xr.DataArray) -> Any:
    """Undo :func:`sort`: put bins back in the order of their ``bin_id`` coordinate.

    Works on the sorted Dataset (the neighbour table is renumbered back) and on any
    result computed from it (a gradient DataArray or Dataset). ``bin_id`` is dropped.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((3, 3))
    >>> back = xtramgrad.unsort(ds.tram.sort())
    >>> back.equals(ds)
    True
    """
    if BIN_ID not in obj.coords:
        raise TessellationError(
            f"no {BIN_ID!r} coordinate to restore the bin order from; unsort applies to "
            "Datasets sorted with xtramgrad.sort (ds.tram.sort()) and their results."
        )
    order = np.argsort(np.asarray(obj[BIN_ID].values), kind="stable")
    out: xr.Dataset | xr.DataArray
    if isinstance(obj, xr.Dataset) and NEIGHBOURS in obj.variables:
        out = _reorder(obj, order)
    else:
        out = obj.isel({BIN: order})
    return out.drop_vars(BIN_ID)

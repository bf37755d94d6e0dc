"""Constructors of tessellation Datasets: from tables, adjacencies, points (Voronoi) and grids.

Every constructor gives the Dataset a ``bin`` coordinate 0..n-1 (a range index: constant
memory), takes ``units=`` (the space units, stored as ``center.attrs["units"]``) and
``layout=`` (``"auto"``, ``"padded"`` or ``"ragged"``: see
:func:`~xtramgrad.topology.tables.choose_layout`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from .schema import (
    BIN,
    CENTER,
    DEFAULT_SPACE,
    FACE_AREA,
    LABEL,
    NBR,
    NEIGHBOURS,
    PROBLEM_RANGE,
    SPACE,
    VOLUME,
    _problem_message,
    topology,
)
from .tables import bin_coordinate, choose_layout, left_pack_order, table_variables


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


def _as_centers(centers: Any, what: str = "centers") -> np.ndarray:
    arr = np.asarray(centers, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] not in (1, 2, 3):
        raise TessellationError(
            f"{what} has shape {np.shape(centers)}, expected (n_bins, d) with d = 1, 2 or 3."
        )
    if len(arr) == 0:
        raise TessellationError(
            f"{what} is empty (0 bins); a tessellation needs at least one bin."
        )
    return arr


def _check_units(units: Any) -> None:
    if units is not None and not isinstance(units, str):
        raise ValueError(f"units={units!r}; expected a string such as 'um', or None.")


def _dataset(
    centers: np.ndarray,
    tables: Mapping[Hashable, xr.Variable],
    space: Sequence[Hashable] | None,
    units: str | None,
    measurements: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
    check: bool = True,
) -> xr.Dataset:
    """Assemble a tessellation Dataset and run the cheap checks."""
    _check_units(units)
    n, d = centers.shape
    center_attrs = {} if units is None else {"units": units}
    coords = bin_coordinate(n).assign({SPACE: _space_labels(space, d)})
    ds = xr.Dataset({CENTER: ((BIN, SPACE), centers, center_attrs)}, coords=coords,
                    attrs=dict(attrs or {}))
    for name, var in tables.items():
        ds[name] = var
    for name, value in measurements.items():
        ds[name] = _measurement(name, value, n)
    if check:
        topology(ds, labels=LABEL in ds.variables)
    return ds


def _measurement(name: str, value: Any, n: int) -> Any:
    """A measurement argument, positional along ``bin`` (its own ``bin`` labels dropped)."""
    if isinstance(value, xr.DataArray):
        if BIN in value.dims and value.sizes[BIN] != n:
            raise TessellationError(
                f"measurement {name!r} has {value.sizes[BIN]} entries along 'bin' but the "
                f"tessellation has {n} bins."
            )
        return value.drop_vars([c for c in (BIN, "bin_id") if c in value.coords])
    if isinstance(value, tuple):
        return value
    arr = np.asarray(value)
    if arr.ndim != 1 or len(arr) != n:
        raise TessellationError(
            f"measurement {name!r} has shape {arr.shape}, expected ({n},) (one value per "
            "bin); pass (dims, values) for more dims, e.g. (('bin', 'time'), values)."
        )
    return (BIN, arr)


def _units_attrs(units: str | None, power: int) -> dict[str, str]:
    if units is None:
        return {}
    if power == 0:
        return {"units": "1"}
    return {"units": units if power == 1 else f"{units}^{power}"}


def _csr_from_padded(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, mask of present entries) of a padded table (-1 padding)."""
    present = table >= 0
    indptr = np.zeros(len(table) + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    return indptr, table[present].astype(np.int64), present


def _repeats(indptr: np.ndarray, indices: np.ndarray, n: int) -> np.ndarray:
    """Mask of the entries that repeat an earlier entry of the same row."""
    owner = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    inside = (indices >= 0) & (indices < n)  # others are refused later, as out of range
    key = np.where(inside, owner * n + np.where(inside, indices, 0), -1 - np.arange(len(owner)))
    if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):
        return np.zeros(len(key), dtype=bool)
    order = np.argsort(key, kind="stable")
    srt = key[order]
    later = np.zeros(len(key), dtype=bool)
    later[order[1:]] = srt[1:] == srt[:-1]
    return later


def _dedupe(
    indptr: np.ndarray,
    indices: np.ndarray,
    n: int,
    dedupe: bool,
    what: str,
    edge: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Refuse (or, with ``dedupe=True``, drop) repeated entries of CSR rows."""
    edge = dict(edge or {})
    rep = _repeats(indptr, indices, n)
    if not rep.any():
        return indptr, indices, edge
    if not dedupe:
        e = int(np.argmax(rep))
        row = int(np.searchsorted(indptr, e, side="right") - 1)
        raise TessellationError(
            f"{what} lists bin {int(indices[e])} twice as a neighbour of bin {row} "
            f"({int(rep.sum())} repeated entries in all); a repeated neighbour counts twice "
            "in the gradient. Pass dedupe=True to drop the repeats (the first occurrence "
            "is kept)."
        )
    keep = ~rep
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[keep]
    new_ptr = np.zeros(len(indptr), dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(indptr) - 1), out=new_ptr[1:])
    return new_ptr, indices[keep], {k: v[keep] for k, v in edge.items()}


def _geometry_attrs(units: str | None, d: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """attrs of ``face_area`` and ``volume`` in d dimensions."""
    face = {"long_name": "measure of the face shared with the neighbour (length in 2D, "
                         "area in 3D, 1 in 1D)", **_units_attrs(units, d - 1)}
    vol = {"long_name": "cell volume (length in 1D, area in 2D)", **_units_attrs(units, d)}
    return face, vol


# --------------------------------------------------------------------------- from_adjacency


def _is_row_lists(adjacency: Any, n: int) -> bool:
    """A list (not a tuple: ``(indptr, indices)``) of per-bin neighbour lists, e.g.
    ``[[1], [0, 2], [1]]``: rows of different lengths, or rows not of length ``n`` (a list
    of ``n`` rows of length ``n`` is a dense matrix)."""
    if not (isinstance(adjacency, list) and len(adjacency) > 0):
        return False
    rows = [r for r in adjacency if isinstance(r, (list, tuple, np.ndarray))]
    if not rows:
        return False
    return len(rows) < len(adjacency) or len({len(r) for r in rows}) > 1 or len(rows[0]) != n


def _row_list(r: Any, i: int) -> np.ndarray:
    """Row ``i`` of a list of neighbour lists, as int64; a clear error otherwise."""
    try:
        arr = np.asarray(r)
    except ValueError:
        arr = np.asarray([None])
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TessellationError(
            f"adjacency row {i} is {r!r}; expected a flat list of integer positions of the "
            f"neighbours of bin {i} (e.g. [1, 4])."
        )
    return arr.astype(np.int64)


def _adjacency_csr(adjacency: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of an adjacency, rows' entries in stored order, repeats kept."""
    if _is_row_lists(adjacency, n):
        lists = [_row_list(r, i) for i, r in enumerate(adjacency)]
        if len(lists) != n:
            raise TessellationError(
                f"adjacency has {len(lists)} rows of neighbours, expected one per center ({n})."
            )
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(r) for r in lists], out=indptr[1:])
        indices = np.concatenate(lists)
    elif isinstance(adjacency, tuple) and len(adjacency) == 2:
        indptr, indices = (np.asarray(a) for a in adjacency)
        if indptr.ndim != 1 or indices.ndim != 1:
            raise TessellationError(
                f"adjacency (indptr, indices) have shapes {indptr.shape} and "
                f"{indices.shape}; expected 1-D arrays."
            )
    else:
        from scipy import sparse

        if not sparse.issparse(adjacency):
            dense = np.asarray(adjacency)
            if dense.ndim != 2:
                raise TessellationError(
                    f"adjacency has shape {dense.shape}; expected a square (n, n) matrix "
                    "or an (indptr, indices) pair."
                )
            adjacency = sparse.csr_array(dense)
        if adjacency.shape != (n, n):
            raise TessellationError(
                f"adjacency has shape {adjacency.shape}, expected ({n}, {n}) for {n} centers."
            )
        if adjacency.format == "csr":
            indptr, indices = adjacency.indptr, adjacency.indices
        else:  # coo keeps its entries (and their repeats) in stored order; others convert
            coo = adjacency if adjacency.format == "coo" else adjacency.tocoo()
            rows = np.asarray(coo.row if hasattr(coo, "row") else coo.coords[0])
            cols = np.asarray(coo.col if hasattr(coo, "col") else coo.coords[1])
            order = np.argsort(rows, kind="stable")
            indices = cols[order]
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    if indptr.shape != (n + 1,) or indptr[-1] != len(indices) or indptr[0] != 0:
        raise TessellationError(
            f"adjacency indptr has shape {indptr.shape} and ends at "
            f"{indptr[-1] if indptr.size else None}; expected ({n + 1},) from 0 to "
            f"len(indices) = {len(indices)}."
        )
    if not np.issubdtype(np.asarray(indices).dtype, np.integer):
        raise TessellationError(
            f"adjacency indices have dtype {np.asarray(indices).dtype}; expected integers."
        )
    return indptr.astype(np.int64), np.asarray(indices).astype(np.int64)


def from_adjacency(
    centers: Any,
    adjacency: Any,
    *,
    space: Sequence[Hashable] | None = None,
    units: str | None = None,
    layout: str = "auto",
    dedupe: bool = False,
    **measurements: Any,
) -> xr.Dataset:
    """Tessellation Dataset from bin centers and an adjacency.

    Parameters
    ----------
    centers : array-like (n, d)
        Bin centers.
    adjacency : scipy.sparse matrix or array, ``(indptr, indices)``, or a list of lists
        Row ``i`` lists the neighbours of bin ``i`` (stored entries; explicit zeros count
        as edges, the diagonal must be empty). Neighbour order is kept as stored. A list
        of per-bin neighbour lists of different lengths (``[[1], [0, 2], [1]]``) is read
        as such; a list of equal-length rows is a dense (n, n) matrix.
    space : sequence of str, optional
        Names of the coordinates (default ``x``, ``y``, ``z``).
    units : str, optional
        Space units (``center.attrs["units"]``), e.g. ``"um"``.
    layout : {"auto", "padded", "ragged"}
        Neighbour table layout; ``"auto"`` goes ragged only when padding every row to the
        widest would waste a lot (see :func:`xtramgrad.topology.tables.choose_layout`).
    dedupe : bool
        Drop repeated entries of a row (e.g. a COO matrix holding an entry twice) instead
        of refusing them.
    **measurements
        Variables to add, each an array over bins or an ``(dims, values)`` tuple.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    >>> ds = from_adjacency([0.0, 1.0, 2.0], A, units="um", D=[1.0, 2.0, 4.0])
    >>> ds.neighbours.values.tolist(), ds.center.attrs["units"]
    ([[1, -1], [0, 2], [1, -1]], 'um')
    """
    centers = _as_centers(centers)
    n = len(centers)
    indptr, indices = _adjacency_csr(adjacency, n)
    indptr, indices, _ = _dedupe(indptr, indices, n, dedupe, "adjacency")
    tables = table_variables(indptr, indices, {}, layout)
    return _dataset(centers, tables, space, units, measurements)


# --------------------------------------------------------------------------- from_neighbours


def from_neighbours(
    centers: Any,
    neighbours: Any,
    labels: Any = None,
    *,
    space: Sequence[Hashable] | None = None,
    units: str | None = None,
    start_index: int = 0,
    fill_value: int | None = None,
    layout: str = "auto",
    dedupe: bool = False,
    face_area: Any = None,
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
    units : str, optional
        Space units (``center.attrs["units"]``).
    start_index : int
        0 for zero-based positions (default), 1 for one-based tables (UGRID's ``start_index``).
    fill_value : int, optional
        Padding value of the given table (default -1); it becomes -1.
    layout : {"auto", "padded", "ragged"}
        Layout of the stored table (``"auto"``: ragged only when padding wastes a lot).
    dedupe : bool
        Drop repeated neighbours of a row (keeping the first) instead of refusing them.
    face_area : array-like (n, k), optional
        Area of the face shared with each neighbour, aligned with the table.
    **measurements
        Variables to add.

    Examples
    --------
    >>> ds = from_neighbours([[0.0, 0.0], [1.0, 0.0]], [[1], [0]], D=[1.0, 3.0])
    >>> float(ds.tram.grad("D").sel(space="x")[0])
    2.0
    """
    centers = _as_centers(centers)
    n = len(centers)
    table = np.asarray(neighbours)
    if table.ndim != 2 or table.shape[0] != n:
        raise TessellationError(
            f"neighbours has shape {table.shape}, expected ({n}, k) for {n} centers."
        )
    fill = -1 if fill_value is None else int(fill_value)
    if np.issubdtype(table.dtype, np.unsignedinteger):
        top = int(table.max()) if table.size else 0
        if fill_value is None and top >= n + start_index:
            raise TessellationError(
                f"neighbours has unsigned dtype {table.dtype}, which cannot hold -1 padding, "
                f"and holds {top}, past the last bin; if {top} is its padding value, pass "
                f"fill_value={top} (it becomes -1)."
            )
    elif not np.issubdtype(table.dtype, np.integer):
        if np.issubdtype(table.dtype, np.floating) and np.all(
            np.isnan(table) | (table == np.round(table))
        ):
            table = np.where(np.isnan(table), fill, table)
        else:
            raise TessellationError(
                f"neighbours has dtype {table.dtype}, expected integer bin positions."
            )
    pad = table == fill
    table = np.where(pad, -1, np.where(pad, 0, table).astype(np.int64) - start_index)
    edge: dict[str, np.ndarray] = {}
    edge_attrs: dict[str, dict[str, Any]] = {}
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != table.shape or not np.issubdtype(lab.dtype, np.integer):
            raise TessellationError(
                f"labels has shape {lab.shape} and dtype {lab.dtype}, expected integers of "
                f"the neighbour table's shape {table.shape}."
            )
        edge[LABEL] = np.where(pad, 0, lab).astype(np.int64)
        edge_attrs[LABEL] = {"long_name": "neighbour side label +-(axis+1)"}
    if face_area is not None:
        area = np.asarray(face_area, dtype=np.float64)
        if area.shape != table.shape:
            raise TessellationError(
                f"face_area has shape {area.shape}, expected the neighbour table's shape "
                f"{table.shape}."
            )
        edge[FACE_AREA] = np.where(pad, np.nan, area)
        edge_attrs[FACE_AREA] = {"long_name": "area of the face shared with the neighbour",
                                 **_units_attrs(units, centers.shape[1] - 1)}
    out_of_range = (table < -1) | (table >= n)
    if out_of_range.any():  # before looking for repeats: the clearer message
        row, slot = (int(v) for v in np.argwhere(out_of_range)[0])
        raise TessellationError(
            _problem_message(PROBLEM_RANGE, row, int(table[row, slot]), n, False, table)
        )
    indptr, indices, present = _csr_from_padded(table)
    flat = {k: v[present] for k, v in edge.items()}
    new_ptr, new_ind, flat = _dedupe(indptr, indices, n, dedupe, "neighbours", flat)
    resolved = choose_layout(layout, n, table.shape[1], len(new_ind))
    if resolved == "padded" and len(new_ind) == len(indices):  # keep the table as given
        tables: dict[Hashable, xr.Variable] = {
            NEIGHBOURS: xr.Variable(
                (BIN, NBR), table,
                {"long_name": "neighbour bin positions", "start_index": 0, "fill_value": -1},
            )
        }
        for name, values in edge.items():
            tables[name] = xr.Variable((BIN, NBR), values, edge_attrs[name])
    else:
        tables = table_variables(
            new_ptr, new_ind, {k: (v, edge_attrs[k]) for k, v in flat.items()}, resolved
        )
    return _dataset(centers, tables, space, units, measurements)


# --------------------------------------------------------------------------- voronoi


def _check_coincident(pts: np.ndarray) -> None:
    """Refuse coincident points, naming them."""
    uniq, inverse, counts = np.unique(pts, axis=0, return_inverse=True, return_counts=True)
    if len(uniq) == len(pts):
        return
    inverse = np.asarray(inverse).reshape(-1)
    group = int(np.flatnonzero(counts[inverse] > 1)[0])
    same = np.flatnonzero(inverse == inverse[group])
    where = ", ".join(f"{x:g}" for x in pts[group])
    extra = int((counts - 1)[counts > 1].sum())
    raise TessellationError(
        f"points {', '.join(str(int(i)) for i in same[:5])}"
        f"{' ...' if len(same) > 5 else ''} coincide at ({where}) ({extra} repeated "
        f"point(s) in all); each Voronoi cell needs its own center (a repeated point gets no "
        "cell, no neighbours, or one-sided stencils). Merge or drop the repeats first, e.g. "
        "points, first = np.unique(points, axis=0, return_index=True)."
    )


def voronoi(
    points: Any,
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
    space: Sequence[Hashable] | None = None,
    units: str | None = None,
    layout: str = "auto",
    geometry: bool = True,
    **measurements: Any,
) -> xr.Dataset:
    """Voronoi tessellation around the given centers (Delaunay adjacency), with its cells'
    exact geometry.

    Two bins are neighbours when their Voronoi cells share a face, i.e. when their centers
    share a Delaunay edge (as in TRamWAy's kmeans, gwr and hexagon tessellations). In 1D the
    neighbours are the previous and next points in coordinate order. Points must be
    distinct. The cells, clipped to ``bounds``, give ``volume(bin)`` and ``face_area`` (the
    measure of the face shared with each neighbour; 0 for Delaunay neighbours whose cells
    meet only outside the box or at a point) from
    :func:`xtramgrad.topology.geometry.voronoi_geometry`.

    Parameters
    ----------
    points : array-like (n, d)
    bounds : sequence of d ``(lo, hi)`` pairs, optional
        The box the cells are clipped to (default: the points' bounding box).
    space : sequence of str, optional
    units : str, optional
        Space units (``center.attrs["units"]``; ``face_area`` and ``volume`` get its powers).
    layout : {"auto", "padded", "ragged"}
        Neighbour table layout (``"auto"``: ragged only for very uneven degrees, e.g. a
        point adjacent to all others).
    geometry : bool
        Compute ``face_area`` and ``volume`` (default; about twice the cost of the
        triangulation). With a ragged table only ``volume`` is computed (the face areas
        need a padded table).
    **measurements
        Variables to add.

    Examples
    --------
    >>> import numpy as np
    >>> ds = voronoi(np.random.default_rng(0).random((50, 2)), bounds=[(0, 1), (0, 1)])
    >>> ds.sizes["bin"], bool((ds.neighbours >= 0).sum("nbr").min() >= 2)
    (50, True)
    >>> round(float(ds.volume.sum()), 12)
    1.0
    """
    pts = _as_centers(points, "points")
    if not np.isfinite(pts).all():
        i = int(np.flatnonzero(~np.isfinite(pts).all(axis=1))[0])
        raise TessellationError(
            f"points[{i}] = {pts[i].tolist()} is not finite; every point needs a finite "
            "position. Drop or fix it."
        )
    n, d = pts.shape
    _check_coincident(pts)
    if d == 1:
        order = np.argsort(pts[:, 0], kind="stable")
        left = np.full(n, -1)
        right = np.full(n, -1)
        left[order[1:]] = order[:-1]
        right[order[:-1]] = order[1:]
        table = np.stack([left, right], axis=1)
        table = np.take_along_axis(table, left_pack_order(table >= 0), axis=1)
        indptr, indices, _ = _csr_from_padded(table.astype(np.int64))
        tables = _voronoi_tables(pts, indptr, indices, layout, bounds, units, geometry)
        return _dataset(pts, tables, space, units, measurements)
    from scipy.spatial import Delaunay, QhullError

    try:
        tri = Delaunay(pts)
    except QhullError as err:
        raise TessellationError(
            f"points ({n} in {d}D) admit no Delaunay triangulation (collinear/coplanar or "
            f"too few points): {str(err).splitlines()[0]}"
        ) from err
    unused = np.setdiff1d(np.arange(n), np.unique(tri.simplices))
    if len(unused):
        from scipy.spatial import cKDTree

        i = int(unused[0])
        dist, near = cKDTree(pts).query(pts[i], k=2)
        j = int(near[1] if near[0] == i else near[0])
        raise TessellationError(
            f"point {i} at ({', '.join(f'{x:g}' for x in pts[i])}) is not a vertex of the "
            f"Delaunay triangulation ({len(unused)} such point(s)): it is {float(max(dist)):.3g} "
            f"from point {j}, too close for qhull to separate, and would get no neighbours. "
            "Merge nearly coincident points first."
        )
    indptr, indices = tri.vertex_neighbor_vertices
    tables = _voronoi_tables(
        pts, indptr.astype(np.int64), indices.astype(np.int64), layout, bounds, units, geometry
    )
    return _dataset(pts, tables, space, units, measurements)


def _voronoi_tables(
    pts: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    layout: str,
    bounds: Sequence[tuple[float, float]] | None,
    units: str | None,
    geometry: bool,
) -> dict[Hashable, xr.Variable]:
    """The table in its layout, with ``face_area`` and ``volume`` when asked."""
    n, d = pts.shape
    resolved = choose_layout(layout, n, int(np.diff(indptr).max()), len(indices))
    if not geometry:
        return table_variables(indptr, indices, {}, resolved)
    from .geometry import voronoi_geometry

    face_attrs, vol_attrs = _geometry_attrs(units, d)
    # areas aligned with the compressed rows, then laid out like the table
    face, volume = voronoi_geometry(pts, (indptr, indices), bounds)
    tables = table_variables(indptr, indices, {FACE_AREA: (face, face_attrs)}, resolved)
    tables[VOLUME] = xr.Variable((BIN,), volume, vol_attrs)
    return tables


# --------------------------------------------------------------------------- grid


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
    units: str | None = None,
    chunks: int | None = None,
    layout: str = "auto",
    geometry: bool = True,
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
    units : str, optional
        Space units (``center.attrs["units"]``).
    chunks : int, optional
        Build ``center`` and ``neighbours`` lazily as dask arrays with this many bins per
        chunk: nothing of size n is allocated up front.
    layout : {"auto", "padded", "ragged"}
        A grid's degrees are even, so ``"auto"`` is padded; ``"ragged"`` (in memory only)
        stores the table as an edge list.
    geometry : bool
        Add the cells' exact ``face_area`` (the product of the other spacings for a face
        neighbour, 0 for a diagonal one) and ``volume`` (the product of the spacings), from
        :func:`xtramgrad.topology.geometry.grid_geometry` (lazily with ``chunks=``).
    **measurements
        Variables to add.

    Examples
    --------
    >>> ds = grid(3, spacing=2.0, units="um")
    >>> ds.center.values[:, 0].tolist(), ds.neighbours.values.tolist()
    ([0.0, 2.0, 4.0], [[1, -1], [0, 2], [1, -1]])
    >>> ds.bin.values.tolist(), ds.center.attrs["units"]
    ([0, 1, 2], 'um')
    >>> ds.volume.values.tolist(), ds.volume.attrs["units"]
    ([2.0, 2.0, 2.0], 'um')
    """
    if isinstance(shape, (int, np.integer)):
        shape_t: tuple[int, ...] = (int(shape),)
    else:
        shape_t = tuple(int(s) for s in shape)
    d = len(shape_t)
    if d not in (1, 2, 3) or min(shape_t) < 1:
        raise TessellationError(
            f"shape={shape!r}; expected 1 to 3 positive sizes, e.g. (100, 80) (a "
            "tessellation needs at least one bin)."
        )
    _check_units(units)
    spacing_a = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (d,))
    origin_a = np.broadcast_to(np.asarray(origin, dtype=np.float64), (d,))
    if not (np.all(spacing_a > 0) and np.all(np.isfinite(spacing_a))):
        raise TessellationError(f"spacing={spacing!r}; expected positive finite sizes.")
    offsets = grid_offsets(d, connectivity)
    n = int(np.prod(shape_t))
    # a grid's degrees are even (interior rows full): padding wastes at most the border
    resolved = choose_layout(layout, n, len(offsets), n * len(offsets))
    if chunks is not None and resolved == "ragged":
        raise ValueError(
            "layout='ragged' and chunks= cannot be combined: a lazy grid is built padded "
            "(its degrees are even); drop one of them."
        )
    if chunks is not None:
        center, table = _lazy_grid(shape_t, spacing_a, origin_a, offsets, int(chunks))
    else:
        center, table = _grid_block(0, n, shape_t, spacing_a, origin_a, offsets)
    table_attrs = {
        "long_name": "neighbour bin positions",
        "start_index": 0,
        "fill_value": -1,
        # declared locality for chunked gradients (see xtramgrad.chunked)
        "xtramgrad_halo": int(np.abs(offsets @ _strides(shape_t)).max()),
    }
    face_attrs, vol_attrs = _geometry_attrs(units, d)
    face = volume = None
    if geometry:
        face, volume = _grid_geometry(shape_t, spacing_a, table)
    if resolved == "ragged":
        indptr, indices, present = _csr_from_padded(np.asarray(table))
        edge: dict[Hashable, tuple[np.ndarray, dict[str, Any]]] = (
            {} if face is None else {FACE_AREA: (np.asarray(face)[present], face_attrs)}
        )
        tables = table_variables(indptr, indices, edge, "ragged", table_attrs)
    else:
        tables = {NEIGHBOURS: xr.Variable((BIN, NBR), table, table_attrs)}
        if face is not None:
            tables[FACE_AREA] = xr.Variable((BIN, NBR), face, face_attrs)
    if volume is not None:
        tables[VOLUME] = xr.Variable((BIN,), volume, vol_attrs)
    center_attrs = {} if units is None else {"units": units}
    ds = xr.Dataset(
        {CENTER: ((BIN, SPACE), center, center_attrs)},
        coords=bin_coordinate(n).assign({SPACE: _space_labels(space, d)}),
        attrs={
            "tessellation": "grid",
            "grid_shape": list(shape_t),
            "grid_spacing": spacing_a.tolist(),
            "grid_origin": origin_a.tolist(),
            "connectivity": connectivity,
        },
    )
    for name, var in tables.items():
        ds[name] = var
    for name, value in measurements.items():
        ds[name] = _measurement(name, value, n)
    return ds


def _grid_geometry(shape: tuple[int, ...], spacing: np.ndarray, table: Any) -> tuple[Any, Any]:
    """``face_area`` and ``volume`` of a grid, block by block when the table is lazy."""
    from .geometry import grid_geometry

    steps = [float(x) for x in spacing]
    if isinstance(table, np.ndarray):
        return grid_geometry(shape, steps, table)
    import dask.array as da

    def block(t: np.ndarray, block_info: Any = None) -> np.ndarray:
        start = block_info[0]["array-location"][0][0]
        return grid_geometry(shape, steps, t, start=start)[0]

    face = da.map_blocks(block, table, dtype=np.float64, meta=np.empty((0, 0)))
    volume = da.full(table.shape[0], float(np.prod(spacing)), chunks=(table.chunks[0],))
    return face, volume


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
    inside = np.ones((len(flat), len(offsets)), dtype=bool)
    for j, size in enumerate(shape):  # one axis at a time: no (m, k, d) temporaries
        moved = idx[:, j, None] + offsets[None, :, j]
        inside &= (moved >= 0) & (moved < size)
    lin = np.where(inside, flat[:, None] + (offsets @ _strides(shape))[None, :], -1)
    # pack present neighbours first, keeping their (ascending) order
    table = np.take_along_axis(lin, left_pack_order(inside), axis=1)
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


__all__ = [
    "GRID_CONNECTIVITY",
    "from_adjacency",
    "from_neighbours",
    "grid",
    "grid_offsets",
    "voronoi",
]

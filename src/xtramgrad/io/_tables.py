"""Table helpers shared by the importers (numpy and scipy.sparse; no xarray, no dask).

The importers meet the same few table operations in different clothes: a CSR adjacency or
a list of polygons to pad into a ``(rows, width)`` table, a table whose valid entries are
scattered to pack, a file's one-based or ``_FillValue``-padded connectivity to convert, a
row listing the same neighbour twice to deduplicate, and polygon rings (the edges of each
face) for areas, centroids and shared edges. They live here, once.

Conventions: a *table* is an integer array ``(rows, width)`` of zero-based positions padded
with -1, padding allowed anywhere in a row unless a function says otherwise.

Examples
--------
>>> import numpy as np
>>> pad_csr(np.array([0, 2, 3]), np.array([4, 5, 6])).tolist()
[[4, 5], [6, -1]]
>>> pack(np.array([[-1, 3, -1, 1], [-1, -1, -1, -1]])).tolist()
[[3, 1], [-1, -1]]
>>> dedupe(np.array([[2, 1, 2, -1], [1, 1, 0, 3]]), self_index=True).tolist()
[[2, 1], [0, 3]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Names of the optional geometry variables of the tessellation schema, as the importers
# write them (the same strings as in xtramgrad.topology.schema).
VOLUME, FACE_AREA, VERTEX, CELL_VERTEX = "volume", "face_area", "vertex", "cell_vertex"
VERTEX_DIM, CORNER = "vertex", "corner"
GEOMETRY_VARIABLES = (VOLUME, FACE_AREA, VERTEX, CELL_VERTEX)

__all__ = [
    "CELL_VERTEX",
    "CORNER",
    "FACE_AREA",
    "GEOMETRY_VARIABLES",
    "VERTEX",
    "VERTEX_DIM",
    "VOLUME",
    "boundary_lengths",
    "neighbour_entries",
    "dedupe",
    "face_adjacency",
    "node_means",
    "pack",
    "pad_csr",
    "pad_ragged",
    "polygon_areas",
    "polygon_centroids",
    "rings",
    "shared_edge_lengths",
    "zero_based",
]


def pad_csr(indptr: Any, indices: Any, width: int | None = None) -> np.ndarray:
    """A CSR structure (``indptr``, ``indices``) as a table padded with -1, row order kept.

    ``width`` defaults to the widest row (0 for no rows).

    Examples
    --------
    >>> pad_csr([0, 0, 1], [7], width=3).tolist()
    [[-1, -1, -1], [7, -1, -1]]
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    deg = np.diff(indptr)
    n = len(deg)
    k = (int(deg.max()) if n else 0) if width is None else int(width)
    table = np.full((n, k), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), deg)
    slots = np.arange(len(indices)) - np.repeat(indptr[:-1], deg)
    table[rows, slots] = indices
    return table


def pad_ragged(rows: Sequence[Any], width: int | None = None) -> np.ndarray:
    """A list of integer sequences as a table padded with -1.

    Examples
    --------
    >>> pad_ragged([[3, 4, 5], [], [1]]).tolist()
    [[3, 4, 5], [-1, -1, -1], [1, -1, -1]]
    """
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = (
        np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in rows])
        if len(rows) and indptr[-1]
        else np.zeros(0, dtype=np.int64)
    )
    return pad_csr(indptr, flat, width)


def pack(table: np.ndarray, *, trim: bool = True) -> np.ndarray:
    """Valid entries (>= 0) first in every row, their order kept; trimmed to the widest row.

    Examples
    --------
    >>> pack(np.array([[-1, 2], [-1, -1]]), trim=False).tolist()
    [[2, -1], [-1, -1]]
    """
    table = np.asarray(table)
    valid = table >= 0
    packed = np.take_along_axis(table, np.argsort(~valid, axis=1, kind="stable"), axis=1)
    if not trim:
        return packed
    return packed[:, : int(valid.sum(axis=1).max(initial=0))]


def dedupe(table: np.ndarray, *, self_index: bool = False) -> np.ndarray:
    """Drop repeated entries of each row (the first occurrence is kept, in place), then pack.

    With ``self_index=True`` an entry equal to its own row number (a self-loop) is dropped
    too. The result is packed and trimmed (:func:`pack`).

    Examples
    --------
    >>> dedupe(np.array([[1, -1, 1, 2]])).tolist()
    [[1, 2]]
    """
    table = np.asarray(table, dtype=np.int64)
    if table.size == 0:
        return pack(table)
    order = np.argsort(table, axis=1, kind="stable")
    ordered = np.take_along_axis(table, order, axis=1)
    repeat_sorted = np.zeros(table.shape, dtype=bool)
    repeat_sorted[:, 1:] = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    repeat = np.empty_like(repeat_sorted)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    if self_index:
        repeat |= table == np.arange(table.shape[0])[:, None]
    return pack(np.where(repeat, -1, table))


def zero_based(
    raw: Any, *, start_index: int = 0, fill_value: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """A connectivity as stored in a file, as (zero-based table padded with -1, valid mask).

    ``start_index`` is UGRID's attribute (0 or 1). Entries equal to ``fill_value``, NaN
    entries (xarray decodes a ``_FillValue`` into NaN floats) and entries below
    ``start_index`` (-1 padding) are padding.

    Raises
    ------
    TypeError
        ``raw`` holds neither integers nor floats.

    Examples
    --------
    >>> t, ok = zero_based([[1, 2, -999]], start_index=1, fill_value=-999)
    >>> t.tolist(), ok.tolist()
    ([[0, 1, -1]], [[True, True, False]])
    >>> zero_based([[0.0, float("nan")]])[0].tolist()
    [[0, -1]]
    """
    raw = np.asarray(raw)
    if np.issubdtype(raw.dtype, np.floating):
        valid = np.isfinite(raw)
        if fill_value is not None:
            valid &= raw != fill_value
        table = np.where(valid, raw, 0).astype(np.int64)
    elif np.issubdtype(raw.dtype, np.integer):
        table = raw.astype(np.int64)
        valid = table >= start_index  # below the first position: padding (e.g. -1)
        if fill_value is not None:
            valid &= raw != fill_value
    else:
        raise TypeError(f"dtype {raw.dtype}; expected integers")
    return np.where(valid, table - int(start_index), -1), valid


def rings(face_nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges of each polygon: ``(first, second, ok)``, each ``(faces, width)``.

    Edge ``s`` of face ``f`` joins node ``first[f, s]`` to ``second[f, s]`` (the next valid
    node, the last closing on the first); ``ok`` marks real edges (``s`` < the face's
    degree). Padding may sit anywhere in ``face_nodes``.

    Examples
    --------
    >>> a, b, ok = rings(np.array([[4, -1, 5, 6]]))
    >>> a[ok].tolist(), b[ok].tolist()
    ([4, 5, 6], [5, 6, 4])
    """
    face_nodes = np.asarray(face_nodes, dtype=np.int64)
    valid = face_nodes >= 0
    deg = valid.sum(axis=1)
    first = pack(face_nodes, trim=False)
    pos = np.arange(face_nodes.shape[1])[None, :]
    ok = pos < deg[:, None]
    nxt = np.where(pos + 1 < deg[:, None], pos + 1, 0)
    second = np.take_along_axis(first, nxt, axis=1)
    return first, second, ok


def _signed_area2(
    x: np.ndarray, y: np.ndarray, face_nodes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Twice the signed area of each polygon and the pieces of the shoelace sum.

    Coordinates are shifted to each face's first node (accuracy far from the origin).
    """
    a, b, ok = rings(face_nodes)
    sa, sb = np.where(ok, a, 0), np.where(ok, b, 0)
    x0, y0 = x[sa[:, :1]], y[sa[:, :1]]
    xa, ya, xb, yb = x[sa] - x0, y[sa] - y0, x[sb] - x0, y[sb] - y0
    cross = np.where(ok, xa * yb - xb * ya, 0.0)
    return cross.sum(axis=1), cross, xa + xb, ya + yb, x0[:, 0], y0[:, 0]


def polygon_areas(x: np.ndarray, y: np.ndarray, face_nodes: np.ndarray) -> np.ndarray:
    """Area of each polygon (shoelace formula; absolute value, 0 for degenerate faces).

    Examples
    --------
    >>> x, y = np.array([0.0, 2, 2, 0]), np.array([0.0, 0, 1, 1])
    >>> polygon_areas(x, y, np.array([[0, 1, 2, 3], [3, 2, 1, 0], [0, 1, -1, -1]])).tolist()
    [2.0, 2.0, 0.0]
    """
    area2 = _signed_area2(np.asarray(x, float), np.asarray(y, float), face_nodes)[0]
    return np.abs(area2) / 2.0


def node_means(x: np.ndarray, y: np.ndarray, face_nodes: np.ndarray) -> np.ndarray:
    """Mean of each face's nodes, ``(faces, 2)``.

    Examples
    --------
    >>> node_means(np.array([0.0, 3, 0]), np.array([0.0, 0, 3]), np.array([[0, 1, 2]])).tolist()
    [[1.0, 1.0]]
    """
    valid = face_nodes >= 0
    safe = np.where(valid, face_nodes, 0)
    deg = valid.sum(axis=1)
    return np.stack(
        [np.where(valid, x[safe], 0.0).sum(axis=1) / deg,
         np.where(valid, y[safe], 0.0).sum(axis=1) / deg],
        axis=1,
    )


def polygon_centroids(x: np.ndarray, y: np.ndarray, face_nodes: np.ndarray) -> np.ndarray:
    """Area centroids of the polygons, ``(faces, 2)`` (the node mean for degenerate faces).

    Examples
    --------
    >>> x, y = np.array([0.0, 1, 0.5, 0]), np.array([0.0, 0, 1, 1])
    >>> np.round(polygon_centroids(x, y, np.array([[0, 1, 2, 3]])), 12).tolist()
    [[0.388888888889, 0.444444444444]]
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    area2, cross, sx, sy, x0, y0 = _signed_area2(x, y, face_nodes)
    mean = node_means(x, y, face_nodes)
    good = np.abs(area2) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        cen = np.stack(
            [x0 + (sx * cross).sum(axis=1) / (3 * area2),
             y0 + (sy * cross).sum(axis=1) / (3 * area2)],
            axis=1,
        )
    return np.where(good[:, None], cen, mean)


def _edge_incidence(face_nodes: np.ndarray, n_nodes: int) -> tuple[Any, np.ndarray]:
    """Sparse (faces x edges) incidence of the polygon edges, and the (lo, hi) node pair
    of each edge column."""
    from scipy import sparse

    a, b, ok = rings(face_nodes)
    nf = face_nodes.shape[0]
    face = np.broadcast_to(np.arange(nf)[:, None], a.shape)[ok]
    lo, hi = np.minimum(a, b)[ok], np.maximum(a, b)[ok]
    key, inverse = np.unique(lo * np.int64(n_nodes) + hi, return_inverse=True)
    inc = sparse.csr_array(
        (np.ones(face.size), (face, inverse.ravel())), shape=(nf, key.size)
    )
    return inc, np.stack([key // n_nodes, key % n_nodes], axis=1)


def face_adjacency(face_nodes: np.ndarray, n_nodes: int, by: str) -> Any:
    """Faces sharing an edge (``by="edges"``) or a node (``by="nodes"``), as a CSR matrix
    with sorted rows and no diagonal.

    Examples
    --------
    >>> faces = np.array([[0, 1, 4, 3], [1, 2, 5, 4], [5, 6, 7, -1]])
    >>> (face_adjacency(faces, 8, "edges").toarray() > 0).astype(int).tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    >>> (face_adjacency(faces, 8, "nodes").toarray() > 0).astype(int).tolist()
    [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    """
    from scipy import sparse

    face_nodes = np.asarray(face_nodes, dtype=np.int64)
    nf = face_nodes.shape[0]
    if by == "nodes":
        valid = face_nodes >= 0
        rows = np.broadcast_to(np.arange(nf)[:, None], face_nodes.shape)
        inc = sparse.csr_array(
            (np.ones(int(valid.sum())), (rows[valid], face_nodes[valid])), shape=(nf, n_nodes)
        )
    else:
        inc = _edge_incidence(face_nodes, n_nodes)[0]
    adj = sparse.csr_matrix(inc @ inc.T)
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.sort_indices()
    return adj


def boundary_lengths(
    rows: np.ndarray, cols: np.ndarray, membership: Any, length: np.ndarray
) -> np.ndarray:
    """Summed length of the edges that cells ``rows[e]`` and ``cols[e]`` both have.

    ``membership`` is a sparse (cells x edges) 0/1 matrix (cell ``i`` has edge ``e`` on
    its boundary), ``length`` the length of each edge.

    Examples
    --------
    >>> from scipy import sparse
    >>> m = sparse.csr_array(np.array([[1, 1, 0], [0, 1, 1]]))
    >>> boundary_lengths(np.array([0, 1, 0]), np.array([1, 0, 0]), m, np.array([1.0, 2, 4]))
    array([2., 2., 3.])
    """
    from scipy import sparse

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if rows.size == 0 or membership.shape[1] == 0:
        return np.zeros(rows.shape, dtype=np.float64)
    m = sparse.csr_array(membership)
    shared = sparse.csr_array(m @ sparse.diags_array(np.asarray(length, float)) @ m.T)
    return np.asarray(shared[rows, cols], dtype=np.float64).reshape(rows.shape)


def shared_edge_lengths(
    rows: np.ndarray, cols: np.ndarray, face_nodes: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Length of the boundary that faces ``rows[e]`` and ``cols[e]`` share.

    The summed length of the polygon edges (node pairs) both faces have: 0 where they share
    no edge (they touch at a node only, or not at all).

    Examples
    --------
    Two unit squares side by side and a triangle touching the right one at a corner:

    >>> x = np.array([0.0, 1, 2, 0, 1, 2, 3, 3])
    >>> y = np.array([0.0, 0, 0, 1, 1, 1, 1, 2])
    >>> faces = np.array([[0, 1, 4, 3], [1, 2, 5, 4], [5, 6, 7, -1]])
    >>> shared_edge_lengths(np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]), faces, x, y)
    array([1., 1., 0., 0.])
    """
    face_nodes = np.asarray(face_nodes, dtype=np.int64)
    if not (face_nodes >= 0).any():
        return np.zeros(np.shape(rows), dtype=np.float64)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    inc, ends = _edge_incidence(face_nodes, len(x))
    length = np.hypot(x[ends[:, 1]] - x[ends[:, 0]], y[ends[:, 1]] - y[ends[:, 0]])
    return boundary_lengths(rows, cols, inc, length)


def neighbour_entries(ds: Any) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...]]:
    """(row, neighbour, dims) of every entry of a tessellation's neighbour table.

    Works on the table as the Dataset holds it: padded ``neighbours(bin, nbr)``, or the
    ragged layout (``neighbours(edge)`` with ``neighbour_count(bin)``). ``row`` and
    ``neighbour`` have the table's shape; padding entries get row -1. A per-edge variable
    (``face_area``) is built with these dims.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"neighbours": (("bin", "nbr"), [[1, -1], [0, 2], [1, -1]])})
    >>> rows, cols, dims = neighbour_entries(ds)
    >>> rows.tolist(), dims
    ([[0, -1], [1, 1], [2, -1]], ('bin', 'nbr'))
    >>> ragged = xr.Dataset({"neighbours": ("edge", [1, 0, 2, 1]),
    ...                      "neighbour_count": ("bin", [1, 2, 1])})
    >>> [a.tolist() for a in neighbour_entries(ragged)[:2]]
    [[0, 1, 1, 2], [1, 0, 2, 1]]
    """
    nb = ds["neighbours"]
    table = np.asarray(nb.values, dtype=np.int64)
    if table.ndim == 1 and "neighbour_count" in ds.variables:
        count = np.asarray(ds["neighbour_count"].values, dtype=np.int64)
        rows = np.repeat(np.arange(count.size), count)
    else:
        rows = np.broadcast_to(np.arange(table.shape[0])[:, None], table.shape)
    return np.where(table >= 0, rows, -1), table, tuple(nb.dims)

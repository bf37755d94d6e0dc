"""The geometry behind the plots, in plain numpy: cell polygons, arrow aggregation, limits.

Nothing here imports matplotlib or xarray. Polygons are held as one padded array, not a
list: :class:`Polygons` keeps ``verts`` (m, V, 2) and ``counts`` (m,), polygon ``i`` being
``verts[i, :counts[i]]`` in counter-clockwise order, so that 10^6 cells are built with a
few dozen vectorised passes instead of 10^6 Python calls.

How a bin's cell is built when the Dataset has no polygons of its own
(:func:`neighbour_cells`):

1. the region closer to the bin's center than to the center of any of its neighbours
   (the intersection of the perpendicular-bisector half-planes): the Voronoi cell, exactly,
   when the neighbours are the Delaunay neighbours (as in TRamWAy's kmeans, gwr and
   hexagon tessellations, and :func:`xtramgrad.voronoi`);
2. inside the convex hull of all the centers grown by ``margin`` (default: half the typical
   neighbour distance), so that cells on the outer border reach half a spacing beyond
   their center, as their interior neighbours do, instead of running to a bounding box;
3. a *border cell* (one whose boundary is not made only of edges shared with neighbours:
   on the outer border, around a hole, next to a neighbour the table leaves out) is also
   cut to a disc around its center, of radius the largest of its shared corners' distances
   and ``spacing / sqrt(3)`` (the circumradius of a regular hexagon of that spacing; the
   spacing is the median distance to its neighbours). Corners shared with neighbours are
   never cut, so no gap opens between cells.

On a hexagon tessellation interior cells are exact and border cells come within a few
percent of the interior cells' area (tested); on a grid of squares with 8 neighbours the
border cells are exact squares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import TessellationError

__all__ = [
    "Aggregated",
    "Polygons",
    "aggregate_arrows",
    "clip_convex",
    "delaunay_neighbours",
    "grid_squares",
    "grown_hull",
    "neighbour_cells",
    "nice_number",
    "polygon_area",
    "robust_limits",
    "stored_polygons",
    "typical_spacing",
    "voronoi_polygons",
]

#: Sides of the polygon standing for the disc of a border cell (step 3 above).
DISC_SIDES = 24
#: The first polygon of a cell, before the bisectors cut it: a regular octagon around the
#: disc of radius ``START_REACH`` times the larger of the typical spacing and the largest
#: distance to a neighbour (far enough never to cut a cell that its neighbours close).
START_REACH = 10.0
#: Rows processed together (bounds the memory of the padded arrays to a few tens of MB).
BLOCK = 32768


class Polygons(NamedTuple):
    """Polygons in one padded array: polygon ``i`` is ``verts[i, :counts[i]]`` (CCW)."""

    verts: np.ndarray
    counts: np.ndarray

    def to_list(self) -> list[np.ndarray]:
        """One (k, 2) array per polygon."""
        return [v[:k].copy() for v, k in zip(self.verts, self.counts, strict=True)]

    def padded(self) -> np.ndarray:
        """The (m, V, 2) array with each polygon's unused slots filled with its last corner.

        Repeated corners add zero-length edges only: the filled shape is unchanged, and
        matplotlib's fast path for arrays of equal-length polygons applies.

        Examples
        --------
        >>> p = Polygons(np.array([[[0.0, 0], [1, 0], [0, 1], [9, 9]]]), np.array([3]))
        >>> p.padded()[0, 3].tolist()
        [0.0, 1.0]
        """
        v = self.verts
        j = np.arange(v.shape[1])
        last = v[np.arange(len(v)), np.maximum(self.counts - 1, 0)]
        return np.where((j[None, :] < self.counts[:, None])[..., None], v, last[:, None, :])


# --------------------------------------------------------------------------- basics


def typical_spacing(centers: np.ndarray, neighbours: np.ndarray, sample: int = 20000) -> float:
    """Median distance between neighbouring centers (over at most ``sample`` bins).

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((4, 4), spacing=0.5, connectivity="faces")
    >>> typical_spacing(ds.center.values, ds.neighbours.values)
    0.5
    """
    centers = np.asarray(centers, dtype=np.float64)
    table = np.asarray(neighbours[:sample])
    rows, slots = np.nonzero(table >= 0)
    if len(rows) == 0:
        ext = np.ptp(centers, axis=0).max() if len(centers) > 1 else 1.0
        return float(ext) if ext > 0 else 1.0
    dist = np.linalg.norm(centers[table[rows, slots]] - centers[rows], axis=1)
    dist = dist[dist > 0]
    return float(np.median(dist)) if len(dist) else 1.0


def polygon_area(verts: np.ndarray, count: np.ndarray | None = None) -> np.ndarray:
    """Signed areas (positive counter-clockwise) of padded polygons, by the shoelace formula.

    Examples
    --------
    >>> square = np.array([[[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]]])
    >>> polygon_area(square).tolist()
    [2.0]
    """
    v = np.asarray(verts, dtype=np.float64)
    m, width, _ = v.shape
    k = np.full(m, width) if count is None else np.asarray(count)
    j = np.arange(width)
    valid = j[None, :] < k[:, None]
    nxt = np.where(j[None, :] + 1 < k[:, None], j[None, :] + 1, 0)
    # relative to the first corner, for accuracy far from the origin
    rel = v - v[:, :1, :]
    vn = np.take_along_axis(rel, nxt[..., None], axis=1)
    cross = rel[..., 0] * vn[..., 1] - rel[..., 1] * vn[..., 0]
    return 0.5 * np.where(valid, cross, 0.0).sum(axis=1)


class _Work:
    """Polygons being cut, relative to their bins' centers: corners ``x``, ``y`` (m, V),
    ``lab`` (m, V) the label of the edge from each corner to the next (>= 0: the neighbour
    column whose bisector it lies on; START, HULL, DISC otherwise), ``k`` (m,) counts."""

    __slots__ = ("x", "y", "lab", "k")

    def __init__(self, x: np.ndarray, y: np.ndarray, lab: np.ndarray, k: np.ndarray) -> None:
        self.x, self.y, self.lab, self.k = x, y, lab, k

    def take(self, rows: np.ndarray) -> _Work:
        return _Work(self.x[rows], self.y[rows], self.lab[rows], self.k[rows])

    def put(self, rows: np.ndarray, part: _Work) -> None:
        width = part.x.shape[1]
        if width > self.x.shape[1]:
            self._widen(width)
        self.x[rows, :width] = part.x
        self.y[rows, :width] = part.y
        self.lab[rows, :width] = part.lab
        self.k[rows] = part.k

    def _widen(self, width: int) -> None:
        m, w = self.x.shape
        for name in ("x", "y", "lab"):
            old = getattr(self, name)
            new = np.zeros((m, width), dtype=old.dtype)
            new[:, :w] = old
            setattr(self, name, new)


START, HULL, DISC = -1, -2, -3


def _cut(w: _Work, nx: Any, ny: Any, b: np.ndarray, tol: np.ndarray, label: Any) -> _Work:
    """Cut each convex polygon of ``w`` to its half-plane ``nx x + ny y <= b`` (+ ``tol``).

    The corners inside a convex polygon form one cyclic run: the result is that run,
    rotated to the front, followed by the exit and entry points on the line (one gather
    per array, no compaction). ``label`` is the label of the new edge along the line.
    """
    m, width = w.x.shape
    k = w.k
    j = np.arange(width)
    valid = j[None, :] < k[:, None]
    s = w.x * np.asarray(nx)[..., None] + w.y * np.asarray(ny)[..., None] - b[:, None]
    inside = valid & (s <= tol[:, None])
    r = inside.sum(axis=1)
    cut = (r > 0) & (r < k)
    if not cut.any():
        if np.all(r == k):
            return w
        return _Work(w.x, w.y, w.lab, np.where(r == 0, 0, k))
    rows = np.arange(m)
    kk = np.maximum(k, 1)
    last = kk - 1
    prev_inside = np.roll(inside, 1, axis=1)
    prev_inside[:, 0] = inside[rows, last]
    start = np.argmax(inside & ~prev_inside, axis=1)
    start = np.where(cut, start, 0)
    out_w = min(width + 1, int(np.max(np.where(cut, r + 2, k))))
    idx = (start[:, None] + np.arange(out_w)[None, :]) % kk[:, None]
    x = np.take_along_axis(w.x, idx, axis=1)
    y = np.take_along_axis(w.y, idx, axis=1)
    lab = np.take_along_axis(w.lab, idx, axis=1)
    c = np.flatnonzero(cut)
    rc, st, kc = r[c], start[c], kk[c]
    e0 = (st + rc - 1) % kc  # last corner inside
    e1 = (st + rc) % kc  # first corner outside
    a0 = (st - 1) % kc  # last corner outside
    a1 = st  # first corner inside

    def point(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sp, sq = s[c, p], s[c, q]
        t = sp / (sp - sq)
        return (w.x[c, p] + t * (w.x[c, q] - w.x[c, p]),
                w.y[c, p] + t * (w.y[c, q] - w.y[c, p]))

    ex, ey = point(e0, e1)
    nx_, ny_ = point(a0, a1)
    x[c, rc], y[c, rc], lab[c, rc] = ex, ey, label if np.ndim(label) == 0 else label[c]
    x[c, rc + 1], y[c, rc + 1], lab[c, rc + 1] = nx_, ny_, w.lab[c, a0]
    k_new = np.where(cut, r + 2, np.where(r == 0, 0, k))
    return _Work(x, y, lab, k_new)


def clip_convex(
    verts: np.ndarray,
    count: np.ndarray,
    normal: np.ndarray,
    offset: np.ndarray,
    tol: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each convex polygon to its half-plane ``normal . x <= offset``.

    One vectorised pass over all polygons (corners within ``tol`` of the line count as
    inside); the result starts at the first corner kept, and a polygon wholly outside
    gets ``count`` 0.

    Parameters
    ----------
    verts : (m, V, 2) float
    count : (m,) int
    normal : (m, 2) or (2,) float
    offset, tol : (m,) or scalar float

    Examples
    --------
    >>> sq = np.array([[[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]]])
    >>> v, k = clip_convex(sq, np.array([4]), np.array([1.0, 0.0]), np.array([1.0]))
    >>> v[0, :k[0]].tolist()
    [[0.0, 2.0], [0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]
    """
    v = np.asarray(verts, dtype=np.float64)
    m = len(v)
    nrm = np.broadcast_to(np.asarray(normal, dtype=np.float64), (m, 2))
    off = np.broadcast_to(np.asarray(offset, dtype=np.float64), (m,))
    eps = np.broadcast_to(np.asarray(tol, dtype=np.float64), (m,))
    w = _Work(v[..., 0].copy(), v[..., 1].copy(), np.full(v.shape[:2], START, np.int64),
              np.asarray(count, dtype=np.int64).copy())
    w = _cut(w, nrm[:, 0], nrm[:, 1], off, eps, START)
    return np.stack([w.x, w.y], axis=-1), w.k


def _dedupe(w: _Work, tol: np.ndarray) -> _Work:
    """Drop corners within ``tol`` of the previous one (cuts through a corner repeat it)."""
    m, width = w.x.shape
    j = np.arange(width)
    valid = j[None, :] < w.k[:, None]
    prev = np.where(j[None, :] > 0, j[None, :] - 1, np.maximum(w.k - 1, 0)[:, None])
    px = np.take_along_axis(w.x, prev, axis=1)
    py = np.take_along_axis(w.y, prev, axis=1)
    same = valid & (np.hypot(w.x - px, w.y - py) <= tol[:, None]) & (w.k[:, None] > 1)
    rows = np.flatnonzero(same.any(axis=1))
    if len(rows) == 0:
        return w
    keep = valid[rows] & ~same[rows]
    order = np.argsort(~keep, axis=1, kind="stable")
    sub = _Work(np.take_along_axis(w.x[rows], order, axis=1),
                np.take_along_axis(w.y[rows], order, axis=1),
                np.take_along_axis(w.lab[rows], order, axis=1), keep.sum(axis=1))
    w.put(rows, sub)
    return w


def _regular(radius: np.ndarray, sides: int) -> tuple[np.ndarray, np.ndarray]:
    """Regular polygons centred on 0 around the discs of ``radius`` (corners farther out)."""
    ang = (np.arange(sides) + 0.5) * (2 * np.pi / sides)
    scale = radius[:, None] / np.cos(np.pi / sides)
    return scale * np.cos(ang)[None, :], scale * np.sin(ang)[None, :]


def _disc_halfplanes(sides: int) -> np.ndarray:
    ang = np.arange(sides) * (2 * np.pi / sides)
    return np.column_stack([np.cos(ang), np.sin(ang)])


# --------------------------------------------------------------------------- hull


def grown_hull(points: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Half-planes ``n . x <= b`` of the convex hull of ``points``, each edge moved out by
    ``margin`` (a mitred offset: the corners of a rectangle of centers stay square).

    Returns
    -------
    normals : (E, 2) unit outward normals
    offsets : (E,)

    Examples
    --------
    >>> n, b = grown_hull(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 0.5)
    >>> sorted(np.round(b, 12).tolist())
    [0.5, 0.5, 1.5, 1.5]
    """
    from scipy.spatial import ConvexHull, QhullError

    pts = np.asarray(points, dtype=np.float64)
    shift = pts.mean(axis=0)
    try:
        eq = ConvexHull(pts - shift).equations  # n . x + c <= 0 inside, with |n| = 1
    except (QhullError, ValueError):
        # fewer than 3 points or all on a line: the box around them
        eq = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
        rel = pts - shift
        eq[:, 2] = -np.max(rel @ eq[:, :2].T, axis=0)
    normals = eq[:, :2]
    offsets = -eq[:, 2] + margin + normals @ shift
    return normals, offsets


# --------------------------------------------------------------------------- cells


def delaunay_neighbours(points: np.ndarray) -> np.ndarray:
    """The Delaunay neighbours of 2D points as a table (n, k) padded with -1.

    Points all on one line (or fewer than 3) are chained in their order along the line.

    Examples
    --------
    >>> delaunay_neighbours(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])).tolist()
    [[1, 2], [0, 2], [0, 1]]
    >>> delaunay_neighbours(np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0]])).tolist()
    [[2, -1], [2, -1], [0, 1]]
    """
    from scipy.spatial import Delaunay, QhullError

    pts = np.asarray(points, dtype=np.float64)
    rel = pts - pts.mean(axis=0)
    try:
        indptr, indices = Delaunay(rel).vertex_neighbor_vertices
    except (QhullError, ValueError):
        # collinear: neighbours are the previous and next points along the line
        direction = np.linalg.svd(rel, full_matrices=False)[2][0] if len(pts) > 1 else [1, 0]
        order = np.argsort(rel @ np.asarray(direction), kind="stable")
        table = np.full((len(pts), 2), -1, dtype=np.int64)
        table[order[1:], 0] = order[:-1]
        table[order[:-1], 1] = order[1:]
    else:
        deg = np.diff(indptr)
        table = np.full((len(pts), max(int(deg.max()), 1)), -1, dtype=np.int64)
        row = np.repeat(np.arange(len(pts)), deg)
        table[row, np.arange(len(indices)) - indptr[row]] = indices
    # sorted rows (padding last), for a result that does not depend on qhull's order
    big = np.iinfo(np.int64).max
    table = np.sort(np.where(table < 0, big, table), axis=1)
    table[table == big] = -1
    return table


def _halfplane_polygons(
    ux: np.ndarray,
    uy: np.ndarray,
    h: np.ndarray,
    valid: np.ndarray,
    frame: np.ndarray,
    frame_h: np.ndarray,
) -> _Work:
    """The polygons ``{x : u_j . x <= h_j for every valid j}`` (unit ``u_j``, h_j > 0) cut
    to the frame ``{x : frame_i . x <= frame_h[:, i]}``, for all rows at once.

    By polar duality a half-plane ``u . x <= h`` is the point ``u / h``, and the polygon's
    edges are the vertices of the convex hull of those points (which contains the origin).
    With the points sorted by angle, the hull is found by dropping, all at once and until
    none is left, every point inside the triangle formed by the origin and its two
    surviving neighbours; each corner is then the crossing of two consecutive lines.
    """
    m, k = valid.shape
    if m == 0:
        return _Work(np.zeros((0, 1)), np.zeros((0, 1)), np.zeros((0, 1), np.int64),
                     np.zeros(0, np.int64))
    f = len(frame)
    nx = np.concatenate([np.where(valid, ux, 1.0), np.broadcast_to(frame[:, 0], (m, f))], 1)
    ny = np.concatenate([np.where(valid, uy, 0.0), np.broadcast_to(frame[:, 1], (m, f))], 1)
    hh = np.concatenate([np.where(valid, h, np.inf), frame_h], axis=1)
    lab = np.concatenate([np.broadcast_to(np.arange(k), (m, k)), np.full((m, f), START)], 1)
    alive = np.concatenate([valid, np.ones((m, f), dtype=bool)], axis=1)
    order = np.argsort(np.where(alive, np.arctan2(ny, nx), np.inf), axis=1, kind="stable")
    nx, ny, hh, lab, alive = (np.take_along_axis(a, order, axis=1)
                              for a in (nx, ny, hh, lab, alive))
    # compact: the live lines first, in angular order
    n_live = alive.sum(axis=1)
    width = int(n_live.max())
    nx, ny, hh, lab = nx[:, :width], ny[:, :width], hh[:, :width], lab[:, :width]
    qx, qy = nx / hh, ny / hh
    j = np.arange(width)
    live = j[None, :] < n_live[:, None]
    idx2 = np.concatenate([j, j + width])
    rows = np.flatnonzero(n_live > 3)
    first = True
    while len(rows):
        lv = live[rows]
        if first:
            # every line is live and they are contiguous: the neighbours are j - 1, j + 1
            kk = n_live[rows, None]
            prv = np.where(j[None, :] > 0, j[None, :] - 1, kk - 1)
            nxt = np.where(j[None, :] + 1 < kk, j[None, :] + 1, 0)
            first = False
        else:
            # the nearest live point before and after each point, cyclically (rows doubled)
            lv2 = np.concatenate([lv, lv], axis=1)
            before = np.maximum.accumulate(np.where(lv2, idx2, -1), axis=1)
            prv = before[:, width - 1 : 2 * width - 1] % width
            after = np.minimum.accumulate(np.where(lv2, idx2, 2 * width)[:, ::-1], axis=1)
            nxt = after[:, ::-1][:, 1 : width + 1] % width
        x, y = qx[rows], qy[rows]
        px, py = np.take_along_axis(x, prv, axis=1), np.take_along_axis(y, prv, axis=1)
        sx, sy = np.take_along_axis(x, nxt, axis=1), np.take_along_axis(y, nxt, axis=1)
        cross = (sx - px) * (y - py) - (sy - py) * (x - px)
        drop = lv & (cross >= 0)
        # never below three lines (a triangle): the frame keeps every polygon bounded
        drop &= (lv.sum(axis=1) - drop.sum(axis=1) >= 3)[:, None]
        changed = drop.any(axis=1)
        live[rows] = lv & ~drop
        rows = rows[changed]
    n_live = live.sum(axis=1)
    contiguous = np.array_equal(live, j[None, :] < n_live[:, None])
    if not contiguous:
        keep = np.argsort(~live, axis=1, kind="stable")
        width = int(n_live.max())
        nx, ny, hh, lab = (np.take_along_axis(a, keep[:, :width], axis=1)
                           for a in (nx, ny, hh, lab))
    else:
        width = int(n_live.max())
        nx, ny, hh, lab = nx[:, :width], ny[:, :width], hh[:, :width], lab[:, :width]
    j = np.arange(width)
    nxt = np.where(j[None, :] + 1 < n_live[:, None], j[None, :] + 1, 0)
    bx, by = np.take_along_axis(nx, nxt, axis=1), np.take_along_axis(ny, nxt, axis=1)
    bh, blab = np.take_along_axis(hh, nxt, axis=1), np.take_along_axis(lab, nxt, axis=1)
    det = nx * by - ny * bx
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (hh * by - bh * ny) / det
        y = (nx * bh - bx * hh) / det
    ok = j[None, :] < n_live[:, None]
    return _Work(np.where(ok, x, 0.0), np.where(ok, y, 0.0), np.where(ok, blab, START),
                 n_live.astype(np.int64))


def _row_spacing(dist: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and largest distance to the neighbours of each row (NaN without any)."""
    d = np.sort(np.where(valid, dist, np.inf), axis=1)
    k = valid.sum(axis=1)
    pick = np.stack([np.maximum((k - 1) // 2, 0), np.maximum(k // 2, 0), np.maximum(k - 1, 0)])
    lo, hi, top = (np.take_along_axis(d, p[:, None], axis=1)[:, 0] for p in pick)
    return np.where(k > 0, 0.5 * (lo + hi), np.nan), np.where(k > 0, top, np.nan)


def _cut_rows(w: _Work, rows: np.ndarray, nx: Any, ny: Any, b: np.ndarray, tol: np.ndarray,
              label: Any) -> _Work:
    """:func:`_cut` on some rows only (all of them when they are most)."""
    if len(rows) == 0:
        return w
    if len(rows) == len(w.k):
        return _cut(w, nx, ny, b, tol, label)
    part = _cut(w.take(rows), _rows(nx, rows), _rows(ny, rows), b[rows], tol[rows], label)
    w.put(rows, part)
    return w


def _rows(a: Any, rows: np.ndarray) -> Any:
    return a[rows] if np.ndim(a) else a


def _shared_corners(
    w: _Work, bins: np.ndarray, nbr: np.ndarray, table: np.ndarray, check: np.ndarray
) -> np.ndarray:
    """Which corners (among ``check``) the cell shares with its neighbours.

    A corner between the bisectors of neighbours ``a`` and ``b`` is shared when ``a`` and
    ``b`` are neighbours too, or have a neighbour in common besides the bin (four cells
    meeting at a corner of a grid without diagonal neighbours). A corner on the hull or the
    start polygon is never shared.
    """
    m, width = w.x.shape
    j = np.arange(width)
    prev = np.where(j[None, :] > 0, j[None, :] - 1, np.maximum(w.k - 1, 0)[:, None])
    lb = w.lab
    la = np.take_along_axis(lb, prev, axis=1)
    r, c = np.nonzero(check & (la >= 0) & (lb >= 0))
    a = nbr[r, la[r, c]]
    b = nbr[r, lb[r, c]]
    ta = table[a]
    ok = np.any(ta == b[:, None], axis=1)
    rest = np.flatnonzero(~ok)
    if len(rest):
        own = bins[r[rest]][:, None, None]
        xa, xb = ta[rest][:, :, None], table[b[rest]][:, None, :]
        ok[rest] = np.any((xa == xb) & (xa >= 0) & (xa != own), axis=(1, 2))
    shared = np.zeros((m, width), dtype=bool)
    shared[r[ok], c[ok]] = True
    return shared


def _cells_block(
    bins: np.ndarray,
    c: np.ndarray,
    table: np.ndarray,
    centers: np.ndarray,
    spacing: float,
    hull: tuple[np.ndarray, np.ndarray] | None,
) -> _Work:
    """The cells of one block of bins, relative to their centers."""
    nbr = table[bins]
    valid = (nbr >= 0) & (nbr != bins[:, None])
    # the valid neighbours first, and no wider than the block needs
    order = np.argsort(~valid, axis=1, kind="stable")
    nbr = np.take_along_axis(nbr, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    width = max(int(valid.sum(axis=1).max()), 1)
    nbr, valid = nbr[:, :width], valid[:, :width]
    off = centers[np.where(valid, nbr, 0)] - c[:, None, :]
    dist = np.hypot(off[..., 0], off[..., 1])
    valid &= dist > 0  # a coincident center has no bisector
    m = len(bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        ux = np.where(valid, off[..., 0] / dist, 0.0)
        uy = np.where(valid, off[..., 1] / dist, 0.0)
    half = np.where(valid, 0.5 * dist, np.inf)
    med, top = _row_spacing(dist, valid)
    med = np.where(np.isfinite(med), med, spacing)
    top = np.where(np.isfinite(top), top, spacing)
    tol = 1e-9 * top
    # 1. the bisectors of the neighbours. Bins whose neighbours leave an angular gap of
    # half a turn or more have unbounded cells: those start inside a far octagon.
    ang = np.sort(np.where(valid, np.arctan2(uy, ux), np.inf), axis=1)
    k = valid.sum(axis=1)
    first = ang[:, 0]
    last = np.take_along_axis(ang, np.maximum(k - 1, 0)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        steps = np.where(np.arange(1, width)[None, :] < k[:, None], np.diff(ang, axis=1), 0.0)
    gap = np.maximum(steps.max(axis=1, initial=0.0), 2 * np.pi - (last - first))
    open_ = (k < 3) | (gap >= np.pi * (1 - 1e-9))
    octagon = _disc_halfplanes(8)
    reach = START_REACH * np.maximum(top, spacing)
    closed = np.flatnonzero(~open_)
    w = _halfplane_polygons(ux[closed], uy[closed], half[closed], valid[closed],
                            np.zeros((0, 2)), np.zeros((len(closed), 0)))
    if open_.any():
        rows = np.flatnonzero(open_)
        part = _halfplane_polygons(ux[rows], uy[rows], half[rows], valid[rows], octagon,
                                   np.repeat(reach[rows, None], 8, axis=1))
        full = _Work(np.zeros((m, 1)), np.zeros((m, 1)), np.zeros((m, 1), np.int64),
                     np.zeros(m, np.int64))
        full.put(closed, w)
        full.put(rows, part)
        w = full
    # 2. the grown hull, on the rows that a facet can reach
    if hull is not None:
        hn, hb = hull
        j = np.arange(w.x.shape[1])
        reach = np.where(j[None, :] < w.k[:, None], np.hypot(w.x, w.y), 0.0).max(axis=1)
        rel = hb[None, :] - c @ hn.T  # (m, E): how far each facet lies beyond the center
        near = np.flatnonzero(np.any(rel < reach[:, None], axis=1))
        if len(near):
            part = w.take(near)
            for e in range(len(hb)):
                part = _cut(part, hn[e, 0], hn[e, 1], rel[near, e], tol[near], HULL)
            w.put(near, part)
    # 3. border cells: cut to a disc, keeping the corners shared with neighbours. Only
    # the corners beyond the smallest radius the disc can have need checking.
    j = np.arange(w.x.shape[1])
    cvalid = j[None, :] < w.k[:, None]
    r = np.hypot(w.x, w.y)
    least = med / np.sqrt(3.0) * (1 + 1e-9) + tol
    check = cvalid & (r > least[:, None])
    shared = _shared_corners(w, bins, np.where(valid, nbr, 0), table, check)
    unshared = check & ~shared
    border = unshared.any(axis=1)
    if border.any():
        inner = np.where(shared, r, 0.0).max(axis=1)
        radius = np.maximum(least, inner * (1 + 1e-9) + tol)
        rows = np.flatnonzero(border)
        part = w.take(rows)
        for nx, ny in _disc_halfplanes(DISC_SIDES):
            part = _cut(part, nx, ny, radius[rows], tol[rows], DISC)
        w.put(rows, part)
    return _dedupe(w, 10 * tol)


def neighbour_cells(
    centers: np.ndarray,
    neighbours: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    margin: float | None = None,
    hull: bool | tuple[np.ndarray, np.ndarray] = True,
    spacing: float | None = None,
) -> Polygons:
    """Cells of 2D bins from their centers and neighbour table (see the module docstring).

    Each cell is computed from its own row of the table (and its neighbours' rows), so a
    few cells cost a few rows (``rows=``), and 10^6 cells a few vectorised passes per
    neighbour column.

    Parameters
    ----------
    centers : (n, 2) float
    neighbours : (n, k) int
        Zero-based positions, padded with -1.
    rows : (m,) int, optional
        The bins whose cells to build (default all).
    margin : float, optional
        How far the hull of the centers is grown (default half the typical spacing).
    hull : bool or (normals, offsets)
        Cut to the grown hull of all the centers (True), not (False), or to given
        half-planes (from :func:`grown_hull`).
    spacing : float, optional
        The typical spacing (default :func:`typical_spacing`), used for bins without any
        neighbour.

    Returns
    -------
    Polygons
        In absolute coordinates, counter-clockwise.

    Examples
    --------
    A 3 x 3 grid with its 8 neighbours: every cell is a unit square, the border ones too.

    >>> import xtramgrad
    >>> ds = xtramgrad.grid((3, 3))
    >>> cells = neighbour_cells(ds.center.values, ds.neighbours.values)
    >>> np.round(polygon_area(cells.verts, cells.counts), 12).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    pts = np.asarray(centers, dtype=np.float64)
    table = np.asarray(neighbours)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise TessellationError(
            f"cells are built in 2D; the centers have shape {pts.shape}, expected (n, 2)."
        )
    if table.ndim != 2 or len(table) != len(pts):
        raise TessellationError(
            f"the neighbour table has shape {table.shape}; expected ({len(pts)}, k)."
        )
    table = table.astype(np.int32 if len(pts) < 2**31 else np.int64, copy=False)
    if spacing is None:
        spacing = typical_spacing(pts, table)
    if margin is None:
        margin = 0.5 * spacing
    halfplanes: tuple[np.ndarray, np.ndarray] | None
    if hull is True:
        halfplanes = grown_hull(pts, margin)
    elif hull is False:
        halfplanes = None
    else:
        halfplanes = hull
    sel = np.arange(len(pts)) if rows is None else np.asarray(rows, dtype=np.int64)
    # bins of similar degree together: each block is only as wide as its bins need
    degree = (table[sel] >= 0).sum(axis=1)
    order = np.argsort(degree, kind="stable")
    blocks = []
    for lo in range(0, len(sel), BLOCK):
        b = sel[order[lo : lo + BLOCK]]
        blocks.append(_cells_block(b, pts[b], table, pts, float(spacing), halfplanes))
    return _assemble(blocks, pts[sel], [order[lo : lo + BLOCK]
                                        for lo in range(0, len(sel), BLOCK)])


def _assemble(
    blocks: list[_Work], origin: np.ndarray, where: list[np.ndarray] | None = None
) -> Polygons:
    """One padded array of absolute corners from blocks of relative ones, block ``i``
    going to the rows ``where[i]`` (default: one after the other). Slots past each
    polygon's count are left unspecified."""
    width = max((int(b.k.max()) if len(b.k) else 1 for b in blocks), default=1)
    verts = np.empty((len(origin), max(width, 1), 2))
    counts = np.zeros(len(origin), dtype=np.int64)
    lo = 0
    for i, b in enumerate(blocks):
        n, w = len(b.k), min(b.x.shape[1], width)
        rows = np.arange(lo, lo + n) if where is None else where[i]
        o = origin[rows]
        verts[rows, :w, 0] = b.x[:, :w] + o[:, 0, None]
        verts[rows, :w, 1] = b.y[:, :w] + o[:, 1, None]
        if w < width:
            verts[rows, w:] = 0.0
        counts[rows] = b.k
        lo += n
    return Polygons(verts, counts)


def voronoi_polygons(points: np.ndarray, bbox: Sequence[float]) -> Polygons:
    """The Voronoi cells of 2D points cut to a box ``(xmin, xmax, ymin, ymax)``, exactly.

    Each cell is the box cut by the bisectors of the point's Delaunay neighbours (the only
    ones that bound a Voronoi cell).

    Examples
    --------
    >>> p = voronoi_polygons(np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]]), (-1, 2, -1, 2))
    >>> round(float(polygon_area(p.verts, p.counts).sum()), 12)
    9.0
    """
    pts = np.asarray(points, dtype=np.float64)
    table = delaunay_neighbours(pts)
    x0, x1, y0, y1 = (float(b) for b in bbox)
    span = max(x1 - x0, y1 - y0)
    blocks = []
    for lo in range(0, len(pts), BLOCK):
        r = np.arange(lo, min(lo + BLOCK, len(pts)))
        c = pts[r]
        t = table[r]
        valid = t >= 0
        off = pts[np.where(valid, t, 0)] - c[:, None, :]
        dist = np.hypot(off[..., 0], off[..., 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            ux = np.where(valid, off[..., 0] / dist, 0.0)
            uy = np.where(valid, off[..., 1] / dist, 0.0)
        half = np.where(valid, 0.5 * dist, np.inf)
        box = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
        box_h = np.column_stack([x1 - c[:, 0], y1 - c[:, 1], c[:, 0] - x0, c[:, 1] - y0])
        w = _halfplane_polygons(ux, uy, half, valid, box, box_h)
        blocks.append(_dedupe(w, np.full(len(r), 1e-12 * span)))
    return _assemble(blocks, pts)


def grid_squares(centers: np.ndarray, spacing: Sequence[float] | np.ndarray) -> Polygons:
    """The rectangles of grid bins around their centers (counter-clockwise).

    Examples
    --------
    >>> grid_squares(np.array([[0.5, 0.5]]), [1.0, 1.0]).verts[0].tolist()
    [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    """
    c = np.asarray(centers, dtype=np.float64)
    hx, hy = 0.5 * float(spacing[0]), 0.5 * float(spacing[1])
    corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return Polygons(c[:, None, :] + corners[None], np.full(len(c), 4))


def stored_polygons(
    vertex: np.ndarray, cell_vertex: np.ndarray, rows: np.ndarray | None = None
) -> Polygons:
    """The polygons a Dataset records: ``vertex`` (nv, 2) corners, ``cell_vertex`` (n, k).

    ``cell_vertex[i]`` lists the positions in ``vertex`` of bin ``i``'s corners in order
    (either orientation), padded with -1 at the end. The corners are returned as stored,
    counter-clockwise (a clockwise polygon is reversed).

    Examples
    --------
    >>> vertex = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [2.0, 0.0]])
    >>> p = stored_polygons(vertex, np.array([[0, 1, 2, 3], [1, 4, 2, -1]]))
    >>> p.counts.tolist(), p.verts[1, :3].tolist()
    ([4, 3], [[1.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    """
    vtx = np.asarray(vertex, dtype=np.float64)
    table = np.asarray(cell_vertex)
    if not np.issubdtype(table.dtype, np.integer):
        raise TessellationError(
            f"cell_vertex has dtype {table.dtype}; expected integers (positions into "
            "vertex, padded with -1)."
        )
    if vtx.ndim != 2 or vtx.shape[1] != 2:
        raise TessellationError(
            f"vertex has shape {vtx.shape}; expected (vertex, 2) corner coordinates."
        )
    if rows is not None:
        table = table[np.asarray(rows)]
    valid = table >= 0
    count = valid.sum(axis=1)
    padded_inside = valid & (np.cumsum(~valid, axis=1) > 0)
    if padded_inside.any():
        bad = int(np.flatnonzero(padded_inside.any(axis=1))[0])
        raise TessellationError(
            f"cell_vertex row {bad} is {table[bad].tolist()}: the -1 padding must come "
            "after the corners."
        )
    if table.size and table.max() >= len(vtx):
        bad = int(np.flatnonzero((table >= len(vtx)).any(axis=1))[0])
        raise TessellationError(
            f"cell_vertex row {bad} refers to corner {int(table[bad].max())}, but vertex has "
            f"{len(vtx)} corners; expected positions in [0, {len(vtx) - 1}] or -1."
        )
    if np.any(count < 3):
        bad = int(np.flatnonzero(count < 3)[0])
        raise TessellationError(
            f"cell_vertex row {bad} has {int(count[bad])} corners; a polygon needs 3 or more."
        )
    verts = np.where(valid[..., None], vtx[np.where(valid, table, 0)], 0.0)
    poly = Polygons(verts, count)
    cw = polygon_area(verts, count) < 0
    if cw.any():
        j = np.arange(verts.shape[1])
        rev = np.where(j[None, :] < count[:, None], count[:, None] - 1 - j[None, :], j[None, :])
        flipped = np.take_along_axis(verts, rev[..., None], axis=1)
        verts = np.where(cw[:, None, None], flipped, verts)
        poly = Polygons(verts, count)
    return poly


# --------------------------------------------------------------------------- arrows


class Aggregated(NamedTuple):
    """Arrows aggregated onto a regular grid: one per kept grid cell."""

    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    #: number of bins averaged into each arrow
    nbins: np.ndarray
    #: side of the (square) grid cells, in space units
    size: float
    #: the cells' lower-left corner: cell (i, j) spans origin + (i, j) * size
    origin: tuple[float, float]


def aggregate_arrows(
    xy: np.ndarray,
    uv: np.ndarray,
    *,
    arrows: int = 35,
    bounds: Sequence[float] | None = None,
    min_bins: int | None = None,
) -> Aggregated:
    """Average per-bin vectors over the cells of a regular square grid.

    The grid has ``arrows`` cells along the longer side of ``bounds`` (default: the extent
    of ``xy``) and square cells. Each arrow sits at its grid cell's center and is the mean,
    component by component, of the vectors of the bins whose center lies in the cell (bins
    with a NaN component are left out). Cells holding fewer than ``min_bins`` bins are
    dropped; by default ``min_bins`` is a quarter of the median number of bins per
    non-empty cell, at least 1, so that half-empty cells on the border do not carry
    arrows made of one or two noisy bins.

    Examples
    --------
    >>> xy = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9]])
    >>> uv = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    >>> a = aggregate_arrows(xy, uv, arrows=2, bounds=(0, 1, 0, 1), min_bins=1)
    >>> a.u.tolist(), a.v.tolist(), a.nbins.tolist()
    ([2.0, 5.0], [1.0, 5.0], [2, 1])
    """
    if isinstance(arrows, bool) or not isinstance(arrows, (int, np.integer)) or arrows < 1:
        raise ValueError(f"arrows={arrows!r}; expected a positive number of arrows per side.")
    p = np.asarray(xy, dtype=np.float64)
    g = np.asarray(uv, dtype=np.float64)
    ok = np.all(np.isfinite(g), axis=1) & np.all(np.isfinite(p), axis=1)
    p, g = p[ok], g[ok]
    if bounds is None:
        if len(p) == 0:
            return Aggregated(*(np.zeros(0),) * 4, np.zeros(0, np.int64), 1.0, (0.0, 0.0))
        x0, x1, y0, y1 = p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max()
    else:
        x0, x1, y0, y1 = (float(b) for b in bounds)
    size = max(x1 - x0, y1 - y0) / arrows
    if not size > 0:
        size = 1.0
    nx = max(int(np.ceil((x1 - x0) / size - 1e-9)), 1)
    ny = max(int(np.ceil((y1 - y0) / size - 1e-9)), 1)
    # centre the grid on the bounds
    ox = 0.5 * (x0 + x1) - 0.5 * nx * size
    oy = 0.5 * (y0 + y1) - 0.5 * ny * size
    ix = np.clip(np.floor((p[:, 0] - ox) / size).astype(np.int64), 0, nx - 1)
    iy = np.clip(np.floor((p[:, 1] - oy) / size).astype(np.int64), 0, ny - 1)
    cell = iy * nx + ix
    cnt = np.bincount(cell, minlength=nx * ny)
    su = np.bincount(cell, weights=g[:, 0], minlength=nx * ny)
    sv = np.bincount(cell, weights=g[:, 1], minlength=nx * ny)
    nonempty = cnt > 0
    if min_bins is None:
        min_bins = max(1, int(0.25 * np.median(cnt[nonempty]))) if nonempty.any() else 1
    keep = np.flatnonzero(cnt >= max(int(min_bins), 1))
    cx = ox + (keep % nx + 0.5) * size
    cy = oy + (keep // nx + 0.5) * size
    return Aggregated(
        cx, cy, su[keep] / cnt[keep], sv[keep] / cnt[keep], cnt[keep], float(size),
        (float(ox), float(oy)),
    )


# --------------------------------------------------------------------------- scales


def robust_limits(
    values: Any, robust: bool = True, percentiles: tuple[float, float] = (2.0, 98.0)
) -> tuple[float, float]:
    """Colour limits: the 2nd and 98th percentiles of the finite values (``robust``), or
    their minimum and maximum; (0, 1) when there is no finite value.

    Examples
    --------
    >>> robust_limits(np.arange(101.0))
    (2.0, 98.0)
    >>> robust_limits([np.nan, 1.0, 3.0], robust=False)
    (1.0, 3.0)
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return 0.0, 1.0
    if robust:
        lo, hi = np.percentile(v, percentiles)
    else:
        lo, hi = v.min(), v.max()
    return float(lo), float(hi)


def nice_number(x: float) -> float:
    """The number of the form 1, 2 or 5 times a power of ten nearest to ``x`` (> 0), in
    ratio.

    Examples
    --------
    >>> [nice_number(v) for v in (0.37, 1.0, 7.3, 0.0021, 0.27)]
    [0.5, 1.0, 10.0, 0.002, 0.2]
    """
    if not (np.isfinite(x) and x > 0):
        return 1.0
    exp = np.floor(np.log10(x))
    steps = np.array([1.0, 2.0, 5.0, 10.0]) * 10.0**exp
    best = steps[np.argmin(np.abs(np.log(steps / x)))]
    return float(f"{best:.12g}")

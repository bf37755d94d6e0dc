"""Exact cell geometry of tessellations: face areas and cell volumes.

Pure numpy/scipy (no xarray, no dask): the constructors in :mod:`.build` call these
functions to add ``face_area(bin, nbr)``, aligned with the neighbour table, and
``volume(bin)``. The finite-volume Laplacian and the two-point Dirichlet form
``sum over faces (A_f / d_f) (u_k - u_i)^2`` need both.

* :func:`voronoi_geometry`: Voronoi cells of points (1-3D) clipped to a box.
* :func:`grid_geometry`: the cells of a regular grid (the grid's own squares / cubes).
* :func:`grid_bounds`: the box covered by a grid's cells, to clip Voronoi cells of grid
  centers the same way.

Method of :func:`voronoi_geometry` (2D, 3D)
-------------------------------------------
The Voronoi cells of the points, clipped to the box, are the cells of the points in the
Voronoi diagram of the points together with their mirror images in the box faces: inside
the box a mirror point is never closer than the point it reflects, and beyond a face the
point's own mirror is closer than the point itself. Only the cells that reach a box face
need mirrors, so the diagram is built in two passes: one of the points alone (its cells
that stay strictly inside the box are final), one of the cells that reach a face, their
neighbours, the mirrors of those cells in the faces they reach and a few far points (which
keep every cell bounded and lie too far to touch the box). A face is the ridge between two
points (2D: a segment, 3D: a convex polygon whose vertices are ordered by angle in its
plane before a fan sum); a cell's measure is the sum of the pyramids from its point to its
faces, ``A_f h_f / d``.

A point on (or within ``1e-3`` of the box width of) a box face would coincide with (or
nearly coincide with) its own mirror, which qhull cannot separate accurately. Such a point
is not mirrored in that face: its faces are clipped to the box instead, and the area of its
facet on the box face follows from the closed-surface identity ``sum_f A_f n_f = 0`` (one
unknown facet per axis); that facet is at distance ``h <= 1e-3`` widths from the point
(``h = 0`` on the face), so its pyramid is exact too.

Why mirrors rather than clipping the first pass's ridges to the box: the first pass's
cells that reach the box extend far outside it, and their vertices there are inaccurate in
degenerate configurations (a 30^3 grid: relative face errors of 2e-11 against 5e-15 with
mirrors), whereas with mirrors every vertex used lies in or next to the box.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import TessellationError

__all__ = ["voronoi_geometry", "grid_geometry", "grid_bounds"]

#: A point closer to a box face than this fraction of the box width is not mirrored in it,
_NEAR = 1e-3
#: nor one closer than this in normalised units (qhull's Delaunay lift cannot separate a
#: point from a mirror much closer than sqrt(machine epsilon)).
_NEAR_MIN = 1e-5
#: Smallest box width relative to the largest (one near face per axis, at most).
_MIN_ASPECT = 1e-4
#: A Voronoi vertex closer to a box plane than this (normalised units) counts as crossing it.
_VERTEX_TOL = 1e-9
#: Below this many points one pass over all points and all mirrors is cheaper.
_TWO_PASS_MIN = 200
#: Far points at the corners of [-_FAR, _FAR]^d (normalised units; the box is in [-1, 1]^d).
_FAR = 4.0


# --------------------------------------------------------------------------- arguments


def _as_points(points: Any) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[:, None]
    if pts.ndim != 2 or pts.shape[1] not in (1, 2, 3) or len(pts) == 0:
        raise TessellationError(
            f"points has shape {np.shape(points)}; expected (n, d) with n >= 1 and "
            "d = 1, 2 or 3 (or (n,) in 1D)."
        )
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TessellationError(
            f"points[{i}] = {pts[i].tolist()} is not finite ({int(bad.sum())} such points); "
            "drop or fix them before computing the geometry."
        )
    return pts


def _as_table(neighbours: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of every table entry (cols -1 at padding): a padded ``(n, k)``
    table gives ``(n, k)`` arrays, an ``(indptr, indices)`` pair flat ones."""
    if isinstance(neighbours, tuple) and len(neighbours) == 2:
        indptr, indices = (np.asarray(a) for a in neighbours)
        if not (indptr.ndim == indices.ndim == 1 and np.issubdtype(indptr.dtype, np.integer)
                and np.issubdtype(indices.dtype, np.integer)):
            raise TessellationError(
                f"neighbours=(indptr, indices) has shapes {indptr.shape}, {indices.shape} and "
                f"dtypes {indptr.dtype}, {indices.dtype}; expected two 1-D integer arrays."
            )
        if (indptr.shape != (n + 1,) or indptr[0] != 0 or indptr[-1] != len(indices)
                or np.any(np.diff(indptr) < 0)):
            raise TessellationError(
                f"neighbours indptr has shape {indptr.shape}; expected ({n + 1},), "
                f"non-decreasing from 0 to len(indices) = {len(indices)}."
            )
        rows = np.repeat(np.arange(n), np.diff(indptr))
        cols = indices.astype(np.int64)
        where = "neighbours indices[{}]"
    else:
        table = np.asarray(neighbours)
        if table.ndim != 2 or table.shape[0] != n:
            raise TessellationError(
                f"neighbours has shape {table.shape}; expected ({n}, k) for {n} points "
                "(or an (indptr, indices) pair)."
            )
        if not np.issubdtype(table.dtype, np.integer):
            raise TessellationError(
                f"neighbours has dtype {table.dtype}; expected integer bin positions padded "
                "with -1."
            )
        cols = table.astype(np.int64, copy=False)
        rows = np.broadcast_to(np.arange(n)[:, None], cols.shape)
        where = "neighbours[{}]"
    bad = (cols < -1) | (cols >= n)
    if bad.any():
        at = tuple(int(v) for v in np.argwhere(bad)[0])
        raise TessellationError(
            f"{where.format(', '.join(map(str, at)))} = {int(cols[at])}; expected a position "
            f"in [0, {n}) or -1 for padding."
        )
    own = cols == rows
    if own.any():
        at = tuple(int(v) for v in np.argwhere(own)[0])
        raise TessellationError(
            f"{where.format(', '.join(map(str, at)))} = {int(cols[at])} names the bin itself "
            f"(row {int(rows[at])}); a bin is not its own neighbour (remove the entry or "
            "replace it with -1)."
        )
    return rows, cols


def _as_bounds(bounds: Any, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, d = pts.shape
    if bounds is None:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        flat = np.flatnonzero(hi <= lo)
        if flat.size:
            a = int(flat[0])
            raise ValueError(
                f"bounds=None clips the cells to the points' bounding box, which has zero "
                f"width along axis {a} (all {n} points have coordinate {float(lo[a])!r} "
                "there); "
                f"pass bounds= with {d} (lo, hi) pairs, lo < hi, that contain the points."
            )
        return lo, hi
    try:
        box = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"bounds={bounds!r} is not a sequence of {d} (lo, hi) pairs of numbers."
        ) from err
    if d == 1 and box.shape == (2,):
        box = box[None, :]
    if box.shape != (d, 2):
        raise ValueError(
            f"bounds has shape {box.shape}; expected {d} (lo, hi) pairs, one per axis, "
            f"e.g. {[(0.0, 1.0)] * d}."
        )
    lo, hi = box[:, 0].copy(), box[:, 1].copy()
    if not (np.isfinite(box).all() and np.all(lo < hi)):
        raise ValueError(f"bounds={box.tolist()}; expected finite pairs with lo < hi.")
    outside = (pts < lo) | (pts > hi)
    if outside.any():
        i, a = (int(v) for v in np.argwhere(outside)[0])
        raise ValueError(
            f"points[{i}] = {pts[i].tolist()} lies outside bounds={box.tolist()} along axis "
            f"{a} ({int(outside.any(axis=1).sum())} points outside); pass bounds that "
            "contain every point, or bounds=None for the points' bounding box."
        )
    return lo, hi


def _check_duplicates(pts: np.ndarray) -> None:
    order = np.lexsort(pts.T[::-1])
    srt = pts[order]
    same = np.flatnonzero(np.all(srt[1:] == srt[:-1], axis=1))
    if same.size:
        i, j = sorted((int(order[same[0]]), int(order[same[0] + 1])))
        raise TessellationError(
            f"points[{i}] and points[{j}] are both at {pts[i].tolist()} "
            f"({same.size} duplicate points in all); two bins cannot share a center: "
            "merge the duplicates (e.g. np.unique(points, axis=0)) or jitter them."
        )


def _check_regions(point_region: np.ndarray, ids: np.ndarray, pts: np.ndarray) -> None:
    """qhull gives two points the same region when it cannot separate them."""
    order = np.argsort(point_region, kind="stable")
    srt = point_region[order]
    same = np.flatnonzero(srt[1:] == srt[:-1])
    if same.size:
        i, j = sorted((int(ids[order[same[0]]]), int(ids[order[same[0] + 1]])))
        dist = float(np.linalg.norm(pts[i] - pts[j]))
        raise TessellationError(
            f"points[{i}] and points[{j}] are {dist:.3g} apart, too close for qhull to "
            "separate their Voronoi cells; merge them or move them apart."
        )


def _faces(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Axis and outward direction (-1 for lo, +1 for hi) of the 2d box faces."""
    return np.repeat(np.arange(d), 2), np.tile(np.array([-1.0, 1.0]), d)


# --------------------------------------------------------------------------- 1D


def _intervals(
    x: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    mid = (xs[1:] + xs[:-1]) / 2
    left = np.concatenate([[lo], mid])
    right = np.concatenate([mid, [hi]])
    volume = np.empty(n)
    volume[order] = right - left
    boundary = np.zeros((n, 2))
    boundary[order[0], 0] = 1.0
    boundary[order[-1], 1] = 1.0
    return order[:-1], order[1:], np.ones(n - 1), volume, boundary


# --------------------------------------------------------------------------- 2D, 3D


def _ridge_lists(vor: Any, d: int) -> tuple[np.ndarray, np.ndarray]:
    """qhull's ridge vertex lists, flattened: (vertex indices, length of each list)."""
    rv = vor.ridge_vertices
    m = len(rv)
    if d == 2:
        flat = np.asarray(rv, dtype=np.int64).reshape(-1)
        return flat, np.full(m, 2, dtype=np.int64)
    lens = np.fromiter(map(len, rv), dtype=np.int64, count=m)
    flat = np.fromiter(itertools.chain.from_iterable(rv), dtype=np.int64, count=int(lens.sum()))
    return flat, lens


def _subset(flat: np.ndarray, lens: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    rid = np.repeat(np.arange(len(lens)), lens)
    return flat[keep[rid]], lens[keep]


def _clip_triangles(
    tri: np.ndarray,
    owner: np.ndarray,
    clip: np.ndarray,
    plane: np.ndarray,
    axis: np.ndarray,
    side: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip triangles ``(m, 3, 3)`` of ridge ``owner`` to the box faces flagged in ``clip``.

    A triangle cut by a plane leaves one triangle (one vertex inside) or a quadrilateral
    split in two (two inside); cyclic rolls keep the orientation.
    """
    for f in range(len(plane)):
        apply = clip[owner, f]
        if not apply.any():
            continue
        rest, rest_owner = tri[~apply], owner[~apply]
        t, o = tri[apply], owner[apply]
        s = -side[f] * (t[:, :, axis[f]] - plane[f])  # >= 0 inside
        inside = s >= 0
        count = inside.sum(axis=1)
        parts = [rest, t[count == 3]]
        owners = [rest_owner, o[count == 3]]
        for k in (1, 2):
            sel = count == k
            if not sel.any():
                continue
            # roll the odd vertex (the inside one for k=1, the outside one for k=2) first
            first = np.argmax(inside[sel] if k == 1 else ~inside[sel], axis=1)
            perm = (first[:, None] + np.arange(3)) % 3
            tk = np.take_along_axis(t[sel], perm[:, :, None], axis=1)
            sk = np.take_along_axis(s[sel], perm, axis=1)
            a, b, c = tk[:, 0], tk[:, 1], tk[:, 2]
            sa, sb, sc = sk[:, :1], sk[:, 1:2], sk[:, 2:]
            if k == 1:  # a inside: the triangle a, a->b, a->c
                ab = a + (b - a) * (sa / (sa - sb))
                ac = a + (c - a) * (sa / (sa - sc))
                parts.append(np.stack([a, ab, ac], axis=1))
                owners.append(o[sel])
            else:  # a outside: the quadrilateral b, c, c->a, b->a
                ca = c + (a - c) * (sc / (sc - sa))
                ba = b + (a - b) * (sb / (sb - sa))
                parts += [np.stack([b, c, ca], axis=1), np.stack([b, ca, ba], axis=1)]
                owners += [o[sel], o[sel]]
        tri, owner = np.concatenate(parts), np.concatenate(owners)
    return tri, owner


def _ridge_measure(
    vertices: np.ndarray,
    flat: np.ndarray,
    lens: np.ndarray,
    normal: np.ndarray,
    clip: np.ndarray | None,
    plane: np.ndarray,
    axis: np.ndarray,
    side: np.ndarray,
) -> np.ndarray:
    """(d-1)-measure of convex ridges (vertex lists ``flat``/``lens``, unit ``normal``),
    clipped to the box faces flagged in ``clip`` (m, 2d)."""
    m, d = len(lens), vertices.shape[1]
    if m == 0:
        return np.zeros(0)
    if np.any(flat < 0):
        raise RuntimeError("xtramgrad.geometry: an unbounded ridge reached the measure")
    v = vertices[flat]
    if d == 2:
        p0, p1 = v[0::2], v[1::2]
        t0, t1 = np.zeros(m), np.ones(m)
        if clip is not None:
            for f in range(len(plane)):
                rows = np.flatnonzero(clip[:, f])
                if rows.size == 0:
                    continue
                s0 = -side[f] * (p0[rows, axis[f]] - plane[f])
                s1 = -side[f] * (p1[rows, axis[f]] - plane[f])
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = s0 / (s0 - s1)
                t0[rows] = np.where(s0 < 0, np.where(s1 < 0, 1.0, np.maximum(t0[rows], t)),
                                    t0[rows])
                t1[rows] = np.where(s1 < 0, np.where(s0 < 0, 0.0, np.minimum(t1[rows], t)),
                                    t1[rows])
        return np.maximum(t1 - t0, 0.0) * np.linalg.norm(p1 - p0, axis=1)
    starts = np.cumsum(lens) - lens
    rid = np.repeat(np.arange(m), lens)
    center = np.add.reduceat(v, starts, axis=0) / lens[:, None]
    # an orthonormal basis (u, w) of each ridge plane with u x w = normal
    k = np.argmin(np.abs(normal), axis=1)
    u = -normal * normal[np.arange(m), k][:, None]
    u[np.arange(m), k] += 1.0
    u /= np.linalg.norm(u, axis=1)[:, None]
    w = np.cross(normal, u)
    rel = v - center[rid]
    px = np.einsum("ij,ij->i", rel, u[rid])  # coordinates in the ridge plane
    py = np.einsum("ij,ij->i", rel, w[rid])
    del rel
    # one sort key: ridge, then angle (a convex polygon seen from an interior point has
    # distinct angles, up to (nearly) coincident vertices whose order does not matter)
    order = np.argsort(rid + (np.arctan2(py, px) + np.pi) * (0.999 / (2 * np.pi)))
    px, py = px[order], py[order]
    nxt = np.arange(len(v)) + 1
    nxt[starts + lens - 1] = starts
    out = np.bincount(rid, 0.5 * (px * py[nxt] - px[nxt] * py), minlength=m)
    if clip is not None and clip.any():
        flagged = np.asarray(clip.any(axis=1))
        pos = np.flatnonzero(flagged[rid])
        tri = np.stack([center[rid[pos]], v[order[pos]], v[order[nxt[pos]]]], axis=1)
        tri, owner = _clip_triangles(tri, rid[pos], clip, plane, axis, side)
        area = 0.5 * np.linalg.norm(
            np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1
        )
        out[flagged] = np.bincount(owner, area, minlength=m)[flagged]
    return out


def _voronoi(pts: np.ndarray) -> Any:
    from scipy.spatial import Voronoi

    return Voronoi(pts)


def _cells(
    q: np.ndarray, lo: np.ndarray, hi: np.ndarray, two_pass: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interior faces ``(i, j, area)``, volumes and box facets of the clipped cells, in the
    (normalised) coordinates of ``q``."""
    from scipy.spatial import QhullError

    n, d = q.shape
    axis, side = _faces(d)
    nf = 2 * d
    plane = np.where(side < 0, lo[axis], hi[axis])
    dist = -side * (q[:, axis] - plane)  # (n, nf) distance of each point to each face, >= 0
    near = dist <= np.maximum(_NEAR * (hi - lo), _NEAR_MIN)[axis]

    pair_i: list[np.ndarray] = []
    pair_j: list[np.ndarray] = []
    pair_area: list[np.ndarray] = []
    height: list[np.ndarray] = []
    normal_list: list[np.ndarray] = []

    vor = None
    if two_pass:
        try:
            vor = _voronoi(q)
        except QhullError:  # degenerate (e.g. collinear) points: one pass with mirrors
            vor = None
    if vor is not None:
        _check_regions(vor.point_region, np.arange(n), q)
        rp = vor.ridge_points.astype(np.int64)
        flat, lens = _ridge_lists(vor, d)
        starts = np.cumsum(lens) - lens
        vdist = -side * (vor.vertices[:, axis] - plane)  # (nv, nf)
        vcross = np.vstack([vdist <= _VERTEX_TOL, np.ones((1, nf), dtype=bool)])
        rcross = np.logical_or.reduceat(vcross[flat], starts, axis=0)  # index -1: unbounded
        cross = np.zeros(n * nf, dtype=bool)
        for col in (0, 1):
            cross[(rp[:, col, None] * nf + np.arange(nf))[rcross]] = True
        cross = cross.reshape(n, nf)
        # qhull lists no ridges for a lone simplex (d + 1 points): no ridge, no evidence
        cross[np.bincount(rp.reshape(-1), minlength=n) == 0] = True
        border = np.asarray(cross.any(axis=1))
        final = ~(border[rp[:, 0]] & border[rp[:, 1]])
        f_flat, f_lens = _subset(flat, lens, final)
        pi, pj = rp[final, 0], rp[final, 1]
        diff = q[pj] - q[pi]
        length = np.linalg.norm(diff, axis=1)
        nrm = diff / length[:, None]
        pair_i.append(pi)
        pair_j.append(pj)
        pair_area.append(_ridge_measure(vor.vertices, f_flat, f_lens, nrm, None, plane, axis,
                                        side))
        height.append(length / 2)
        normal_list.append(nrm)
        touch = rp[border[rp[:, 0]] | border[rp[:, 1]]].reshape(-1)
        keep = border.copy()
        keep[touch] = True
        orig = np.flatnonzero(keep)
        del vor, flat, lens, vcross, rcross
    else:
        cross = np.ones((n, nf), dtype=bool)
        border = np.ones(n, dtype=bool)
        orig = np.arange(n)

    # second pass: border cells, their neighbours, their mirrors and far points
    mi, mf = np.nonzero(cross & ~near & border[:, None])
    mirrors = q[mi].copy()
    mirrors[np.arange(len(mi)), axis[mf]] = 2 * plane[mf] - q[mi, axis[mf]]
    far = _FAR * np.array(list(itertools.product((-1.0, 1.0), repeat=d)))
    sites = np.vstack([q[orig], mirrors, far])
    n0, nm = len(orig), len(mi)
    owner = np.concatenate([orig, mi, np.full(len(far), -1)])
    kind = np.concatenate([np.zeros(n0, np.int8), np.ones(nm, np.int8),
                           np.full(len(far), 2, np.int8)])
    face = np.concatenate([np.full(n0, -1), mf, np.full(len(far), -1)])
    try:
        vor2 = _voronoi(sites)
    except QhullError as err:  # pragma: no cover - mirrors and far points span the space
        raise TessellationError(
            f"qhull failed on the {n} points and their mirror images: "
            f"{str(err).splitlines()[0]}"
        ) from err
    _check_regions(vor2.point_region[:n0], orig, q)
    rp2 = vor2.ridge_points.astype(np.int64)
    # put the original site first
    swap = kind[rp2[:, 1]] < kind[rp2[:, 0]]
    rp2[swap] = rp2[swap, ::-1]
    a, b = rp2[:, 0], rp2[:, 1]
    ga, gb = owner[a], owner[b]
    inner = (kind[a] == 0) & (kind[b] == 0) & border[ga] & border[gb]
    mirror = (kind[a] == 0) & (kind[b] == 1) & (ga == gb)
    used = inner | mirror
    flat2, lens2 = _ridge_lists(vor2, d)
    u_flat, u_lens = _subset(flat2, lens2, used)
    a, b, ga, gb, is_mirror = a[used], b[used], ga[used], gb[used], mirror[used]
    diff = sites[b] - sites[a]
    length = np.linalg.norm(diff, axis=1)
    nrm = diff / length[:, None]
    clip = near[ga] | (near[gb] & ~is_mirror[:, None])
    area2 = _ridge_measure(vor2.vertices, u_flat, u_lens, nrm, clip, plane, axis, side)
    inner_u = ~is_mirror
    pair_i.append(ga[inner_u])
    pair_j.append(gb[inner_u])
    pair_area.append(area2[inner_u])
    height.append(length[inner_u] / 2)
    normal_list.append(nrm[inner_u])

    pi, pj = np.concatenate(pair_i), np.concatenate(pair_j)
    area, h = np.concatenate(pair_area), np.concatenate(height)
    nrm = np.concatenate(normal_list)
    volume = _sum(pi, area * h, n) + _sum(pj, area * h, n)
    flux = np.zeros((n, d))
    for c in range(d):
        flux[:, c] = _sum(pi, area * nrm[:, c], n) - _sum(pj, area * nrm[:, c], n)
    boundary = np.zeros((n, nf))
    mo, mfc, marea = ga[is_mirror], face[b[is_mirror]], area2[is_mirror]
    boundary[mo, mfc] = marea
    volume += _sum(mo, marea * dist[mo, mfc], n)
    np.add.at(flux, (mo, axis[mfc]), marea * side[mfc])
    # box facets of points that were not mirrored in a face they are on: sum_f A_f n_f = 0
    ni, nfc = np.nonzero(near & border[:, None])
    unknown = np.maximum(-side[nfc] * flux[ni, axis[nfc]], 0.0)
    boundary[ni, nfc] = unknown
    volume += _sum(ni, unknown * dist[ni, nfc], n)
    return pi, pj, area, volume / d, boundary


def _check_tiling(volume: np.ndarray, box: float) -> None:
    """The cells must tile the box: a cheap guard against qhull losing precision."""
    error = abs(float(volume.sum()) - box) / box
    if error > 1e-9 or not np.all(volume > 0):
        i = int(np.argmin(volume))
        raise TessellationError(
            f"the cells do not tile the box (their volumes sum to {1 + error:.12g} times "
            f"its volume; the smallest, cell {i}, is {volume[i]:.3g} of a box of {box:.3g}): "
            "qhull lost precision, most likely because some points are closer than about "
            "1e-7 times the box size. Merge such points or move them apart."
        )


def _sum(index: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Float sums of ``weights`` by ``index`` (np.bincount returns integers when empty)."""
    return np.bincount(index, weights, minlength=n).astype(np.float64, copy=False)


def _align(
    rows: np.ndarray, cols: np.ndarray, n: int, pi: np.ndarray, pj: np.ndarray,
    area: np.ndarray
) -> np.ndarray:
    """Face areas of the pairs ``(pi, pj)`` at the table entries ``(rows, cols)``."""
    pad = cols < 0
    if len(pi) == 0:
        return np.where(pad, np.nan, 0.0)
    keys = np.concatenate([pi * n + pj, pj * n + pi])
    values = np.concatenate([area, area])
    order = np.argsort(keys)
    keys, values = keys[order], values[order]
    want = rows * n + np.where(pad, 0, cols)
    pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    found = keys[pos] == want
    return np.where(pad, np.nan, np.where(found, values[pos], 0.0))


def voronoi_geometry(
    points: Any,
    neighbours: Any,
    bounds: Sequence[tuple[float, float]] | None = None,
    *,
    return_boundary: bool = False,
) -> tuple[np.ndarray, ...]:
    """Face areas and volumes of the Voronoi cells of points, clipped to a box.

    Parameters
    ----------
    points : array-like (n, d)
        The cell centers, d = 1, 2 or 3 (a 1D array is taken as ``(n, 1)``). They must be
        distinct.
    neighbours : array-like (n, k) of int, or ``(indptr, indices)``
        A neighbour table padded with -1 (zero-based positions), e.g. the Delaunay adjacency
        of :func:`xtramgrad.voronoi`, or the same adjacency in compressed rows (row ``i``
        is ``indices[indptr[i]:indptr[i + 1]]``). It may contain pairs that are not Voronoi
        neighbours (they get 0); it does not change the cells.
    bounds : sequence of d ``(lo, hi)`` pairs, optional
        The box the cells are clipped to; it must contain every point (points on its
        faces are fine). Default: the bounding box of the points.
    return_boundary : bool
        Also return the area of each cell's facet on each box face.

    Returns
    -------
    face_area : ndarray (n, k), or (len(indices),) for ``(indptr, indices)``
        ``face_area[i, r]`` is the (d-1)-measure of the face shared by cell ``i`` and cell
        ``neighbours[i, r]`` inside the box: a length in 2D, an area in 3D and 1.0 (the
        measure of a point) in 1D; 0 where the cells share no face of positive measure
        inside the box; NaN at padding. Symmetric: the same number for ``(i, j)`` and
        ``(j, i)``. In compressed rows, entry ``e`` is the face of row ``i`` (with
        ``indptr[i] <= e < indptr[i + 1]``) and ``indices[e]``.
    volume : ndarray (n,)
        The measure of each clipped cell (a length in 1D, an area in 2D). They sum to the
        box's volume.
    boundary_area : ndarray (n, 2 d), only with ``return_boundary=True``
        Column ``2 a`` is the area of the cell's facet on the ``lo`` face of axis ``a``,
        column ``2 a + 1`` on the ``hi`` face (1D: 1.0 for the end cells).

    Raises
    ------
    TessellationError
        Duplicate points, points too close for qhull to separate (about 1e-7 of the box
        size or closer; the cells are also checked to tile the box), a malformed
        neighbour table.
    ValueError
        Bad ``bounds``, points outside them, a bounding box of zero width, or a box more
        than 1e4 times longer along one axis than along another.

    Notes
    -----
    See the module docstring for the method (mirror images in the box faces, two qhull
    passes). The cells are exact to rounding, including cells of points on or near the box
    faces and of degenerate inputs (collinear or coplanar points, fewer than d + 2 points,
    regular grids, whose Voronoi vertices are shared by 2^d cells; faces between diagonal
    grid neighbours come out as 0 to rounding). Measured: the volumes sum to the box's
    volume within 1e-14 (relative); grids are exact within 4e-15 (relative); two points
    a distance ``g`` apart (relative to the box) get absolute errors of about
    ``1e-16 / g`` in their shared vertices (qhull's circumcenters).

    Examples
    --------
    Three points on a line, clipped to [0, 4]:

    >>> face, vol = voronoi_geometry([0.5, 1.5, 3.5], [[1, -1], [0, 2], [1, -1]], [(0, 4)])
    >>> vol.tolist(), face.tolist()
    ([1.0, 1.5, 1.5], [[1.0, nan], [1.0, 1.0], [1.0, nan]])

    Four points at the centers of the quarters of the unit square; the pair (0, 3) is on
    a diagonal and shares only a corner:

    >>> pts = [[0.25, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.75]]
    >>> table = [[1, 2, 3], [0, 3, -1], [0, 3, -1], [1, 2, 0]]
    >>> face, vol = voronoi_geometry(pts, table, bounds=[(0, 1), (0, 1)])
    >>> vol.round(12).tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> np.abs(face.round(12)).tolist()
    [[0.5, 0.5, 0.0], [0.5, 0.5, nan], [0.5, 0.5, nan], [0.5, 0.5, 0.0]]

    The same adjacency in compressed rows:

    >>> indptr, indices = np.array([0, 3, 5, 7, 10]), np.array([1, 2, 3, 0, 3, 0, 3, 1, 2, 0])
    >>> face, vol = voronoi_geometry(pts, (indptr, indices), bounds=[(0, 1), (0, 1)])
    >>> np.abs(face.round(12)).tolist()
    [0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0]
    """
    pts = _as_points(points)
    n, d = pts.shape
    rows, cols = _as_table(neighbours, n)
    lo, hi = _as_bounds(bounds, pts)
    _check_duplicates(pts)
    if d == 1:
        pi, pj, area, volume, boundary = _intervals(pts[:, 0], float(lo[0]), float(hi[0]))
    else:
        width = hi - lo
        if width.min() < _MIN_ASPECT * width.max():
            a, b = int(np.argmin(width)), int(np.argmax(width))
            raise ValueError(
                f"the box is {width[b]:.3g} wide along axis {b} but {width[a]:.3g} along axis "
                f"{a} (aspect ratio {width[b] / width[a]:.3g} > {1 / _MIN_ASPECT:.0g}): cells "
                "this thin are beyond qhull's precision. Rescale the coordinates to "
                "comparable units, or pass wider bounds."
            )
        # similarity to the box [-1, 1]^d (qhull's accuracy depends on coordinate size)
        center = (lo + hi) / 2
        scale = float(np.max(width / 2))
        q = (pts - center) / scale
        pi, pj, area, volume, boundary = _cells(
            q, (lo - center) / scale, (hi - center) / scale, n >= _TWO_PASS_MIN
        )
        _check_tiling(volume, float(np.prod(width)) / scale**d)
        area = area * scale ** (d - 1)
        volume = volume * scale**d
        boundary = boundary * scale ** (d - 1)
    face_area = _align(rows, cols, n, pi, pj, area)
    if return_boundary:
        return face_area, volume, boundary
    return face_area, volume


# --------------------------------------------------------------------------- grids


def _grid_args(
    shape: int | Sequence[int], spacing: float | Sequence[float]
) -> tuple[tuple[int, ...], np.ndarray]:
    if isinstance(shape, (int, np.integer)):
        shape_t: tuple[int, ...] = (int(shape),)
    else:
        shape_t = tuple(int(s) for s in shape)
    d = len(shape_t)
    if d not in (1, 2, 3) or min(shape_t) < 1:
        raise TessellationError(f"shape={shape!r}; expected 1 to 3 positive sizes.")
    try:
        spacing_a = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (d,))
    except ValueError as err:
        raise TessellationError(
            f"spacing={spacing!r}; expected one size or {d} sizes (one per axis)."
        ) from err
    if not (np.all(spacing_a > 0) and np.all(np.isfinite(spacing_a))):
        raise TessellationError(f"spacing={spacing!r}; expected positive finite sizes.")
    return shape_t, spacing_a


def grid_geometry(
    shape: int | Sequence[int],
    spacing: float | Sequence[float],
    neighbours: Any,
    *,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact face areas and volumes of the cells of a regular grid.

    The cells are the grid's own squares / cubes (side ``spacing`` around each center),
    border cells included: the domain is the union of the cells, i.e. :func:`grid_bounds`,
    not the bounding box of the centers (which :func:`voronoi_geometry` uses by default).

    Parameters
    ----------
    shape : int or sequence of int
        Bins per axis (C order, as :func:`xtramgrad.grid`).
    spacing : float or sequence of float
        Cell size per axis.
    neighbours : array-like (m, k) of int, or ``(indptr, indices)``
        Rows ``start:start + m`` of the grid's neighbour table (flat C-order positions,
        padded with -1), in any connectivity and order; or the same rows compressed
        (``indptr`` of length m + 1, starting at 0).
    start : int
        Flat position of the first row (for a block of a chunked table).

    Returns
    -------
    face_area : ndarray (m, k), or (len(indices),) for ``(indptr, indices)``
        The product of the other spacings for a face neighbour (1.0 in 1D), 0 for a
        diagonal neighbour (cells that share an edge or a corner only) or a bin that does
        not touch, NaN at padding.
    volume : ndarray (m,)
        The product of the spacings.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((2, 3), spacing=(0.5, 2.0), geometry=False)
    >>> face, vol = grid_geometry((2, 3), (0.5, 2.0), ds.neighbours.values)
    >>> ds.neighbours.values[0].tolist(), face[0].tolist()
    ([1, 3, 4, -1, -1, -1, -1, -1], [0.5, 2.0, 0.0, nan, nan, nan, nan, nan])
    >>> vol.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]

    With a chunked table, per block (``block_info`` gives its first row):

    >>> import dask.array as da
    >>> lazy = xtramgrad.grid((2, 3), spacing=(0.5, 2.0), chunks=4, geometry=False)
    >>> area = da.map_blocks(
    ...     lambda t, block_info=None: grid_geometry(
    ...         (2, 3), (0.5, 2.0), t, start=block_info[0]["array-location"][0][0])[0],
    ...     lazy.neighbours.data, dtype=float)
    >>> bool(np.array_equal(area.compute(), face, equal_nan=True))
    True
    """
    shape_t, spacing_a = _grid_args(shape, spacing)
    n = int(np.prod(shape_t))
    if isinstance(neighbours, tuple) and len(neighbours) == 2:
        indptr, cols = (np.asarray(a) for a in neighbours)
        ok = indptr.ndim == cols.ndim == 1 and all(
            np.issubdtype(a.dtype, np.integer) for a in (indptr, cols)
        )
        if not ok or len(indptr) == 0 or indptr[0] != 0 or indptr[-1] != len(cols) or np.any(
            np.diff(indptr) < 0
        ):
            raise TessellationError(
                f"neighbours=(indptr, indices) has shapes {indptr.shape}, {cols.shape}; "
                "expected 1-D integer arrays, indptr non-decreasing from 0 to len(indices)."
            )
        m = len(indptr) - 1
        counts = np.diff(indptr)

        def expand(per_row: np.ndarray) -> np.ndarray:
            return np.repeat(per_row, counts)

        where = "neighbours indices[{}]"
    else:
        cols = np.asarray(neighbours)
        if cols.ndim != 2 or not np.issubdtype(cols.dtype, np.integer):
            raise TessellationError(
                f"neighbours has shape {cols.shape} and dtype {cols.dtype}; expected an "
                "(m, k) integer table padded with -1, or an (indptr, indices) pair."
            )
        m = len(cols)

        def expand(per_row: np.ndarray) -> np.ndarray:
            return per_row[:, None]

        where = "neighbours[{}]"
    if not 0 <= start <= n - m:
        raise TessellationError(
            f"rows start={start} to {start + m} are not inside the grid's {n} bins."
        )
    bad = (cols < -1) | (cols >= n)
    if bad.any():
        at = tuple(int(v) for v in np.argwhere(bad)[0])
        raise TessellationError(
            f"{where.format(', '.join(map(str, at)))} = {int(cols[at])}; expected a flat "
            f"grid position in [0, {n}) or -1 for padding."
        )
    pad = cols < 0
    rows = np.arange(start, start + m, dtype=np.int64)
    # per axis: how far the neighbour is, and along which axis it moved
    moved = np.zeros(cols.shape, dtype=np.int8)
    axis = np.zeros(cols.shape, dtype=np.int8)
    far = np.zeros(cols.shape, dtype=bool)
    for a, stride in enumerate(_strides(shape_t)):
        step = (cols // stride) % shape_t[a] - expand((rows // stride) % shape_t[a])
        along = step != 0
        moved += along
        axis += along * np.int8(a)
        far |= (step > 1) | (step < -1)
    own = (moved == 0) & ~pad
    if own.any():
        at = tuple(int(v) for v in np.argwhere(own)[0])
        raise TessellationError(
            f"{where.format(', '.join(map(str, at)))} = {int(cols[at])} names the bin itself; "
            "a bin is not its own neighbour."
        )
    cell = float(np.prod(spacing_a))
    face = (moved == 1) & ~far
    area = np.where(face, (cell / spacing_a)[np.where(face, axis, 0)], 0.0)
    return np.where(pad, np.nan, area), np.full(m, cell)


def _strides(shape: tuple[int, ...]) -> list[int]:
    """Flat-position strides of a C-order grid."""
    return [int(np.prod(shape[a + 1 :])) for a in range(len(shape))]


def grid_bounds(
    shape: int | Sequence[int],
    spacing: float | Sequence[float] = 1.0,
    origin: float | Sequence[float] = 0.0,
) -> list[tuple[float, float]]:
    """The box covered by the cells of a grid (its centers +- half a spacing).

    Pass it as ``bounds`` to :func:`voronoi_geometry` to clip the Voronoi cells of grid
    centers to the grid's own domain (then they are the grid's cells).

    Examples
    --------
    >>> grid_bounds((3, 2), spacing=(1.0, 0.5), origin=(0.0, 10.0))
    [(-0.5, 2.5), (9.75, 10.75)]
    """
    shape_t, spacing_a = _grid_args(shape, spacing)
    origin_a = np.broadcast_to(np.asarray(origin, dtype=np.float64), spacing_a.shape)
    lo = origin_a - spacing_a / 2
    hi = origin_a + (np.asarray(shape_t) - 0.5) * spacing_a
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]

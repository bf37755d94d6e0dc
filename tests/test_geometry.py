"""Cell geometry (xtramgrad.topology.geometry): face areas and volumes against independent
truth: closed forms (grids, hexagons, intervals), a cell-by-cell half-space intersection
(qhull's dual, not the Voronoi diagram), scipy's own bounded regions, Monte Carlo, the
closed-surface identity and the Dirichlet energy of a linear field."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection, QhullError, Voronoi, cKDTree

import xtramgrad
from xtramgrad import TessellationError
from xtramgrad.topology import geometry
from xtramgrad.topology.geometry import grid_bounds, grid_geometry, voronoi_geometry

# --------------------------------------------------------------------------- helpers


def all_pairs(n: int) -> np.ndarray:
    """A neighbour table listing every other bin (so that every face is looked up)."""
    if n == 1:
        return np.full((1, 1), -1)
    return np.array([[j for j in range(n) if j != i] for i in range(n)])


def reference(points, bounds):
    """Clipped Voronoi cells one at a time: the box and the n - 1 bisector half-spaces
    intersected by scipy's HalfspaceIntersection from the cell's Chebyshev center.

    Returns the volumes (n,) and the face measures (n, n) (2D: the distance between the
    extreme vertices on the bisector; 3D: the area of their planar hull)."""
    pts = np.asarray(points, dtype=float)
    n, d = pts.shape
    lo, hi = np.asarray(bounds, dtype=float).T
    # centred on the box: the half-space offsets |x|^2 lose digits far from the origin
    middle = (lo + hi) / 2
    pts, lo, hi = pts - middle, lo - middle, hi - middle
    scale = float((hi - lo).max())
    vol = np.zeros(n)
    face = np.zeros((n, n))
    for i in range(n):
        others = [j for j in range(n) if j != i]
        # half-spaces A y + b <= 0
        A = np.vstack([pts[others] - pts[i], -np.eye(d), np.eye(d)])
        b = np.concatenate(
            [-(np.sum(pts[others] ** 2, axis=1) - np.sum(pts[i] ** 2)) / 2, lo, -hi]
        )
        norm = np.linalg.norm(A, axis=1)
        lp = linprog(
            np.r_[np.zeros(d), -1.0],
            A_ub=np.hstack([A, norm[:, None]]),
            b_ub=-b,
            bounds=[(None, None)] * d + [(0, None)],
        )
        assert lp.status == 0 and lp.x[-1] > 0
        v = HalfspaceIntersection(np.hstack([A, b[:, None]]), lp.x[:d]).intersections
        vol[i] = ConvexHull(v).volume
        for r, j in enumerate(others):
            on = v[np.abs(v @ A[r] + b[r]) <= 1e-12 * scale * norm[r]]
            if len(on) < d:
                continue
            if d == 2:
                face[i, j] = np.max(np.linalg.norm(on[:, None] - on[None], axis=2))
            else:
                nrm = A[r] / norm[r]
                u = np.cross(nrm, np.eye(3)[np.argmin(np.abs(nrm))])
                u /= np.linalg.norm(u)
                w = np.cross(nrm, u)
                flat = np.stack([on @ u, on @ w], axis=1)
                try:
                    face[i, j] = ConvexHull(flat).volume
                except QhullError:  # a segment or a point: no area
                    face[i, j] = 0.0
    return vol, face


def both_paths(monkeypatch, points, table, bounds, **kw):
    """voronoi_geometry through the one-pass and the two-pass construction."""
    out = []
    for minimum in (10**9, 0):
        monkeypatch.setattr(geometry, "_TWO_PASS_MIN", minimum)
        out.append(voronoi_geometry(points, table, bounds, **kw))
    return out


def box_of(points, bounds):
    pts = np.asarray(points, dtype=float)
    if bounds is None:
        return list(zip(pts.min(axis=0), pts.max(axis=0), strict=True))
    return bounds


# --------------------------------------------------------------- half-space reference


def _configs():
    rng = np.random.default_rng(7)
    unit2, unit3 = [(0.0, 1.0)] * 2, [(0.0, 1.0)] * 3
    on_faces2 = np.vstack(
        [rng.random((12, 2)), [[0, 0.3], [1, 0.7], [0.4, 0], [0.6, 1], [0, 0], [1, 1]]]
    )
    on_faces3 = np.vstack(
        [rng.random((14, 3)), [[0, 0.3, 0.5], [1, 0.7, 0.2], [0.4, 0, 1], [0, 0, 0], [1, 1, 0]]]
    )
    configs = [
        pytest.param(rng.random((25, 2)), unit2, id="2d-random-unit-box"),
        pytest.param(rng.random((25, 2)), None, id="2d-random-bounding-box"),
        pytest.param(rng.random((20, 2)) * [3.0, 0.2] + [1e3, -5.0], None,
                     id="2d-random-offset-anisotropic"),
        pytest.param(on_faces2, unit2, id="2d-points-on-faces-and-corners"),
        pytest.param(np.linspace(0.05, 0.95, 9)[:, None] * [1.0, 1.0], None,
                     id="2d-collinear-diagonal"),
        pytest.param(np.c_[np.linspace(0.1, 0.9, 6), np.full(6, 0.5)], unit2,
                     id="2d-collinear-axis"),
        pytest.param([[0.3, 0.6]], unit2, id="2d-one-point"),
        pytest.param([[0.3, 0.6], [0.7, 0.1]], unit2, id="2d-two-points"),
        pytest.param([[0.3, 0.6], [0.7, 0.1], [0.5, 0.9]], unit2, id="2d-three-points"),
        pytest.param(np.stack(np.meshgrid([0, 0.5, 1], [0, 0.5, 1]), -1).reshape(-1, 2),
                     None, id="2d-cocircular-grid"),
        pytest.param(rng.random((25, 3)), unit3, id="3d-random-unit-box"),
        pytest.param(rng.random((25, 3)), None, id="3d-random-bounding-box"),
        pytest.param(on_faces3, unit3, id="3d-points-on-faces-and-corners"),
        pytest.param(np.linspace(0.05, 0.95, 6)[:, None] * [1.0, 1.0, 1.0], unit3,
                     id="3d-collinear"),
        pytest.param(np.c_[rng.random((8, 2)), np.full(8, 0.5)], unit3, id="3d-coplanar"),
        pytest.param([[0.2, 0.3, 0.4]], unit3, id="3d-one-point"),
        pytest.param(rng.random((4, 3)), unit3, id="3d-four-points"),
    ]
    # points at a distance delta from a face: on either side of the mirror threshold (1e-3)
    for delta in (1e-12, 1e-7, 5e-4, 2e-3):
        pts2 = np.vstack([rng.random((15, 2)) * 0.9 + 0.05, [[delta, 0.5], [0.3, 1 - delta],
                                                              [delta, delta]]])
        configs.append(pytest.param(pts2, unit2, id=f"2d-near-face-{delta:g}"))
        pts3 = np.vstack([rng.random((15, 3)) * 0.9 + 0.05,
                          [[delta, 0.5, 0.5], [0.3, 1 - delta, 0.6], [delta, delta, 1 - delta]]])
        configs.append(pytest.param(pts3, unit3, id=f"3d-near-face-{delta:g}"))
    return configs


@pytest.mark.parametrize(("points", "bounds"), _configs())
def test_matches_halfspace_reference(monkeypatch, points, bounds):
    points = np.asarray(points, dtype=float)
    n, d = points.shape
    box = box_of(points, bounds)
    ref_vol, ref_face = reference(points, box)
    box_volume = float(np.prod([hi - lo for lo, hi in box]))
    scale = max(hi - lo for lo, hi in box)
    table = all_pairs(n)
    for face, vol in both_paths(monkeypatch, points, table, bounds):
        np.testing.assert_allclose(vol, ref_vol, rtol=0, atol=1e-11 * box_volume)
        np.testing.assert_allclose(vol.sum(), box_volume, rtol=1e-12)
        if n > 1:
            expected = ref_face[np.arange(n)[:, None], table]
            np.testing.assert_allclose(face, expected, rtol=0, atol=1e-10 * scale ** (d - 1))


points_2d = st.lists(
    st.tuples(
        st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1e-9, 0.5])),
        st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1 - 1e-9, 0.5])),
    ),
    min_size=1,
    max_size=14,
    unique=True,
)


@settings(max_examples=40, deadline=None)
@given(points_2d)
def test_matches_reference_property(points):
    """Random small 2D sets with points snapped to faces, corners and the center line."""
    pts = np.array(points, dtype=float)
    # nearly coincident points blur the reference's on-the-bisector test: keep them apart
    if len(pts) > 1:
        gap = np.linalg.norm(pts[:, None] - pts[None], axis=2) + np.eye(len(pts))
        if gap.min() < 1e-4:
            return
    ref_vol, ref_face = reference(pts, [(0, 1), (0, 1)])
    table = all_pairs(len(pts))
    face, vol = voronoi_geometry(pts, table, [(0, 1), (0, 1)])
    np.testing.assert_allclose(vol, ref_vol, atol=1e-10)
    if len(pts) > 1:
        np.testing.assert_allclose(face, ref_face[np.arange(len(pts))[:, None], table],
                                   atol=1e-9)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize(
    ("shape", "spacing", "origin"),
    [
        pytest.param((7, 5), (0.5, 1.3), (1.0, -2.0), id="2d"),
        pytest.param((4, 5, 3), (0.5, 1.3, 0.8), (1.0, -2.0, 10.0), id="3d"),
        # large enough that Voronoi vertices far outside the box (inaccurate in this
        # degenerate configuration) would show if the construction relied on them
        pytest.param((16, 18, 20), (0.5, 1.3, 0.8), (1.0, -2.0, 10.0), id="3d-large"),
        pytest.param((9,), (0.7,), (3.0,), id="1d"),
    ],
)
@pytest.mark.parametrize("connectivity", ["inference", "faces"])
def test_grid_points_give_grid_cells(shape, spacing, origin, connectivity):
    ds = xtramgrad.grid(shape, spacing, origin, connectivity)
    table = ds.neighbours.values
    face, vol = voronoi_geometry(ds.center.values, table, grid_bounds(shape, spacing, origin))
    cell = np.prod(spacing)
    np.testing.assert_allclose(vol, cell, rtol=1e-13)
    # face neighbours: the product of the other spacings; diagonal neighbours: 0
    step = np.abs(ds.center.values[np.where(table >= 0, table, 0)] - ds.center.values[:, None])
    moved = step > 1e-9
    expected = np.where(moved.sum(-1) == 1,
                        cell / np.asarray(spacing)[np.argmax(moved, -1)], 0.0)
    expected = np.where(table >= 0, expected, np.nan)
    np.testing.assert_allclose(face, expected, rtol=1e-13, atol=1e-13 * cell)
    # the grid's own geometry agrees
    g_face, g_vol = grid_geometry(shape, spacing, table)
    np.testing.assert_allclose(face, g_face, rtol=1e-13, atol=1e-13 * cell)
    np.testing.assert_allclose(vol, g_vol, rtol=1e-13)


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        pytest.param((6, 4), (0.5, 1.3), id="2d"),
        pytest.param((4, 3, 5), (0.5, 1.3, 0.8), id="3d"),
        pytest.param((16, 18, 20), (0.5, 1.3, 0.8), id="3d-large"),
    ],
)
def test_grid_points_on_the_bounding_box(shape, spacing):
    """Default bounds: the border centers lie on the box, their cells are halves, quarters
    and eighths of the grid cells."""
    ds = xtramgrad.grid(shape, spacing, connectivity="faces")
    idx = np.stack(np.unravel_index(np.arange(ds.sizes["bin"]), shape), -1)
    factor = np.where((idx == 0) | (idx == np.asarray(shape) - 1), 0.5, 1.0)
    extent = factor * np.asarray(spacing)  # each cell's size along each axis
    face, vol = voronoi_geometry(ds.center.values, ds.neighbours.values)
    np.testing.assert_allclose(vol, extent.prod(axis=1), rtol=1e-13)
    table = ds.neighbours.values
    j = np.where(table >= 0, table, 0)
    axis = np.argmax(idx[j] != idx[:, None], axis=-1)
    # a face along `axis` spans the cell's extent along the other axes
    other = np.prod(extent[:, None, :], axis=-1) / np.take_along_axis(extent, axis, axis=1)
    np.testing.assert_allclose(face, np.where(table >= 0, other, np.nan), rtol=1e-13)


def test_hexagonal_lattice():
    """A triangular lattice of spacing a (rows shifted by a/2): the cells off the outer ring
    are regular hexagons of area sqrt(3)/2 a^2 and side a/sqrt(3)."""
    a, nx, ny = 0.37, 16, 14
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    pts = a * np.stack([i + (j % 2) / 2, j * np.sqrt(3) / 2], -1).reshape(-1, 2)
    ds = xtramgrad.voronoi(pts)
    table = ds.neighbours.values
    face, vol = voronoi_geometry(pts, table)
    inner = ((i > 0) & (i < nx - 1) & (j > 0) & (j < ny - 1)).reshape(-1)
    np.testing.assert_allclose(vol[inner], np.sqrt(3) / 2 * a**2, rtol=1e-12)
    np.testing.assert_allclose(vol.sum(), np.prod(pts.max(0) - pts.min(0)), rtol=1e-12)
    dist = np.linalg.norm(pts[np.where(table >= 0, table, 0)] - pts[:, None], axis=2)
    nearest = (np.abs(dist - a) < 1e-9) & (table >= 0)
    assert np.all(nearest.sum(1)[inner] == 6)
    np.testing.assert_allclose(face[inner][nearest[inner]], a / np.sqrt(3), rtol=1e-12)
    others = face[inner][~nearest[inner] & (table[inner] >= 0)]
    np.testing.assert_allclose(others, 0.0, atol=1e-15)


@pytest.mark.parametrize(
    ("gap", "atol"),
    [pytest.param(1e-4, 1e-12, id="gap-1e-4"), pytest.param(1e-6, 1e-10, id="gap-1e-6")],
)
def test_nearly_coincident_points_at_a_corner(gap, atol):
    """(0, 0), (0, gap), (1, 0) in the unit square: all three bisectors meet at
    (1/2, gap/2). The absolute error grows like 1e-16 / gap (qhull's circumcenters of
    nearly coincident points); measured 8e-14 and 4e-11."""
    pts = np.array([[0.0, 0.0], [0.0, gap], [1.0, 0.0]])
    face, vol = voronoi_geometry(pts, np.array([[1, 2], [0, 2], [0, 1]]), [(0, 1), (0, 1)])
    h = gap / 2
    v0 = 0.5 * h  # [0, 1/2] x [0, gap/2]
    v1 = (1 - h) * (0.5 - gap**2 / 2) + gap * (1 - h**2) / 2  # left of x = 1/2 + gap (y - h)
    f12 = (1 - h) * np.sqrt(1 + gap**2)
    np.testing.assert_allclose(vol, [v0, v1, 1 - v0 - v1], rtol=0, atol=atol)
    np.testing.assert_allclose(face, [[0.5, h], [0.5, f12], [h, f12]], rtol=0, atol=atol)


@pytest.mark.parametrize(
    ("x", "bounds", "volume"),
    [
        pytest.param([0.5, 1.5, 3.5], [(0, 4)], [1.0, 1.5, 1.5], id="sorted"),
        pytest.param([3.5, 0.5, 1.5], (0, 4), [1.5, 1.0, 1.5], id="unsorted-flat-bounds"),
        pytest.param([0.0, 1.0, 4.0], None, [0.5, 2.0, 1.5], id="bounding-box"),
        pytest.param([2.0], [(-1, 5)], [6.0], id="one-point"),
    ],
)
def test_intervals_1d(x, bounds, volume):
    n = len(x)
    face, vol, boundary = voronoi_geometry(x, all_pairs(n), bounds, return_boundary=True)
    np.testing.assert_allclose(vol, volume, rtol=1e-15)
    order = np.argsort(x)
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    if n > 1:
        adjacent = np.abs(rank[all_pairs(n)] - rank[:, None]) == 1
        np.testing.assert_array_equal(face, np.where(adjacent, 1.0, 0.0))
    np.testing.assert_array_equal(boundary[order[0]], [1.0, 0.0 if n > 1 else 1.0])
    assert boundary.sum() == 2.0


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("bounds", ["unit", None], ids=["unit-box", "bounding-box"])
def test_random_points_identities(d, bounds):
    n = 3000 if d == 2 else 1500
    pts = np.random.default_rng(d).random((n, d))
    box = [(0.0, 1.0)] * d if bounds == "unit" else None
    table = xtramgrad.voronoi(pts).neighbours.values
    face, vol, boundary = voronoi_geometry(pts, table, box, return_boundary=True)
    lo, hi = np.array(box_of(pts, box)).T
    width = hi - lo
    np.testing.assert_allclose(vol.sum(), np.prod(width), rtol=1e-12)
    assert np.all(vol > 0)
    # every box face is covered once by the cells' facets
    np.testing.assert_allclose(boundary.sum(0), np.repeat(np.prod(width) / width, 2),
                               rtol=1e-12)
    # symmetry: the value for (i, j) is the value for (j, i)
    rows, slots = np.nonzero(table >= 0)
    back = table[table[rows, slots]] == rows[:, None]
    assert np.all(back.sum(1) == 1)
    np.testing.assert_array_equal(face[rows, slots],
                                  face[table[rows, slots], np.argmax(back, axis=1)])
    # closed surfaces: sum_f A_f n_f = 0, box facets included
    j = np.where(table >= 0, table, np.arange(n)[:, None] + 1) % n  # padding: any other
    diff = pts[j] - pts[:, None]
    normal = diff / np.linalg.norm(diff, axis=2, keepdims=True)
    flux = np.nansum(face[..., None] * normal, axis=1)
    flux += (boundary[:, 1::2] - boundary[:, 0::2])
    scale = np.nansum(face, axis=1) + boundary.sum(1)
    assert np.max(np.linalg.norm(flux, axis=1) / scale) < 1e-12
    interior = boundary.sum(1) == 0
    assert interior.mean() > 0.5


def test_interior_cells_match_scipy_regions():
    """Cells that stay inside the box are scipy's own bounded regions (shoelace areas)."""
    pts = np.random.default_rng(3).random((800, 2))
    vor = Voronoi(pts)
    face, vol = voronoi_geometry(pts, xtramgrad.voronoi(pts).neighbours.values, [(0, 1)] * 2)
    checked = 0
    for i in range(len(pts)):
        region = vor.regions[vor.point_region[i]]
        if -1 in region:
            continue
        v = vor.vertices[region]
        if not np.all((v > 0) & (v < 1)):
            continue
        rel = v - pts[i]
        v = v[np.argsort(np.arctan2(rel[:, 1], rel[:, 0]))]
        x, y = v[:, 0], v[:, 1]
        area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        np.testing.assert_allclose(vol[i], area, rtol=1e-12, atol=1e-16)
        checked += 1
    assert checked > 600
    # and the faces of those cells are scipy's ridges
    table = xtramgrad.voronoi(pts).neighbours.values
    for (i, j), rv in zip(vor.ridge_points, vor.ridge_vertices, strict=True):
        if -1 in rv or not np.all((vor.vertices[rv] > 0) & (vor.vertices[rv] < 1)):
            continue
        r = int(np.flatnonzero(table[i] == j)[0])
        length = np.linalg.norm(vor.vertices[rv[0]] - vor.vertices[rv[1]])
        np.testing.assert_allclose(face[i, r], length, rtol=1e-12, atol=1e-15)


def test_monte_carlo_volumes_3d():
    rng = np.random.default_rng(11)
    pts = rng.random((30, 3))
    face, vol = voronoi_geometry(pts, all_pairs(30), [(0, 1)] * 3)
    m = 2_000_000
    _, owner = cKDTree(pts).query(rng.random((m, 3)))
    p = np.bincount(owner, minlength=30) / m
    sigma = np.sqrt(p * (1 - p) / m)
    assert np.all(np.abs(vol - p) < 4.5 * sigma), np.abs(vol - p) / sigma


def test_two_point_dirichlet_energy():
    """1/2 sum over ordered pairs (A_ij / d_ij)(u_j - u_i)^2 -> integral |grad u|^2.

    Measured on the unit square, u = 2x - 3y: ratio 0.969-0.974 at 10^3 bins, 0.9905-0.9917
    at 10^4 (3 seeds), 0.9972 at 10^5; the deficit comes from the border cells."""
    pts = np.random.default_rng(0).random((10_000, 2))
    table = xtramgrad.voronoi(pts).neighbours.values
    face, _ = voronoi_geometry(pts, table, [(0, 1), (0, 1)])
    u = pts @ np.array([2.0, -3.0])
    j = np.where(table >= 0, table, 0)
    dist = np.linalg.norm(pts[j] - pts[:, None], axis=2)
    energy = 0.5 * np.nansum(face / dist * (u[j] - u[:, None]) ** 2)
    assert abs(energy / 13.0 - 1) < 0.015


def test_paths_agree(monkeypatch):
    """The two-pass construction (large inputs) equals the one-pass one (small inputs)."""
    for d in (2, 3):
        pts = np.random.default_rng(5).random((400, d))
        table = xtramgrad.voronoi(pts).neighbours.values
        (f1, v1, b1), (f2, v2, b2) = both_paths(monkeypatch, pts, table, None,
                                                return_boundary=True)
        np.testing.assert_allclose(v1, v2, rtol=1e-12)
        np.testing.assert_allclose(f1, f2, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(b1, b2, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_compressed_rows_match_padded_table(d):
    pts = np.random.default_rng(d).random((300, d))
    table = xtramgrad.voronoi(pts).neighbours.values
    present = table >= 0
    indptr = np.r_[0, np.cumsum(present.sum(1))]
    face, vol = voronoi_geometry(pts, table)
    flat, vol_flat = voronoi_geometry(pts, (indptr, table[present]))
    np.testing.assert_array_equal(flat, face[present])
    np.testing.assert_array_equal(vol_flat, vol)


def test_extra_pairs_get_zero():
    """Pairs that are not Voronoi neighbours inside the box get 0, padding NaN."""
    pts = np.array([[0.1, 0.5], [0.5, 0.5], [0.9, 0.5], [0.5, 0.1]])
    table = np.array([[2, 1, -1], [0, 2, 3], [0, 1, -1], [1, -1, -1]])
    face, vol = voronoi_geometry(pts, table, [(0, 1), (0, 1)])
    assert face[0, 0] == 0 and face[2, 0] == 0
    assert np.isnan(face[0, 2]) and np.isnan(face[3, 1])
    assert face[1, 2] > 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("points", "table", "bounds", "error", "match"),
    [
        pytest.param([[0, 0], [1, 1], [0, 0]], all_pairs(3), None, TessellationError,
                     r"points\[0\] and points\[2\] are both at \[0.0, 0.0\]", id="duplicate"),
        pytest.param([[0, 0], [1, 1], [0.5, 0.5], [0.5, 0.5 + 1e-17]], all_pairs(4), None,
                     TessellationError, r"points\[2\] and points\[3\] are both",
                     id="duplicate-after-rounding"),
        pytest.param([[0, 0], [1, 1], [0.5, 0.5], [0.5 + 1e-15, 0.5]], all_pairs(4), None,
                     TessellationError, r"points\[2\] and points\[3\] are .* too close for qhull",
                     id="nearly-duplicate"),
        pytest.param([[0.5, 0.5], [1.2, 0.3]], all_pairs(2), [(0, 1), (0, 1)], ValueError,
                     r"points\[1\] = \[1.2, 0.3\] lies outside bounds.* along axis 0",
                     id="outside-bounds"),
        pytest.param([[0.5, 0.5]], all_pairs(1), [(0, 1)], ValueError,
                     r"bounds has shape \(1, 2\); expected 2 \(lo, hi\) pairs", id="bounds-shape"),
        pytest.param([[0.5, 0.5]], all_pairs(1), [(0, 1), (1, 1)], ValueError, r"lo < hi",
                     id="bounds-empty"),
        pytest.param([[0.5, 0.5]], all_pairs(1), [(0, 1), "ab"], ValueError,
                     r"not a sequence of 2 \(lo, hi\) pairs", id="bounds-not-numbers"),
        pytest.param([[0.1, 0.5], [0.7, 0.5]], all_pairs(2), None, ValueError,
                     r"zero width along axis 1 \(all 2 points have coordinate 0.5", id="flat-box"),
        pytest.param([[0, 0], [1e-3, 20]], all_pairs(2), None, ValueError,
                     r"20 wide along axis 1 but 0.001 along axis 0 \(aspect ratio 2e\+04",
                     id="thin-box"),
        pytest.param(np.zeros((3, 4)), all_pairs(3), None, TessellationError,
                     r"points has shape \(3, 4\); expected \(n, d\)", id="4d"),
        pytest.param([[0, 0], [np.nan, 1]], all_pairs(2), None, TessellationError,
                     r"points\[1\] = \[nan, 1.0\] is not finite", id="nan"),
        pytest.param([[0, 0], [1, 1]], [[1], [0], [0]], None, TessellationError,
                     r"neighbours has shape \(3, 1\); expected \(2, k\)", id="table-shape"),
        pytest.param([[0, 0], [1, 1]], [[1.0], [0.0]], None, TessellationError,
                     r"neighbours has dtype float64", id="table-dtype"),
        pytest.param([[0, 0], [1, 1]], [[1], [2]], None, TessellationError,
                     r"neighbours\[1, 0\] = 2; expected a position in \[0, 2\)",
                     id="table-range"),
        pytest.param([[0, 0], [1, 1]], [[1], [1]], None, TessellationError,
                     r"neighbours\[1, 0\] = 1 names the bin itself", id="table-self"),
    ],
)
def test_voronoi_geometry_errors(points, table, bounds, error, match):
    with pytest.raises(error, match=match):
        voronoi_geometry(points, np.asarray(table), bounds)


@pytest.mark.parametrize(
    ("indptr", "indices", "match"),
    [
        pytest.param([0, 1], [1], r"indptr has shape \(2,\); expected \(4,\)", id="length"),
        pytest.param([0, 2, 1, 3], [1, 2, 0], r"non-decreasing", id="decreasing"),
        pytest.param([0, 1, 2, 4], [1, 0, 0], r"from 0 to len\(indices\) = 3", id="end"),
        pytest.param([0, 1, 2, 3], [1, 0, 3], r"neighbours indices\[2\] = 3; expected a "
                     r"position in \[0, 3\)", id="range"),
        pytest.param([0, 1, 2, 3], [1, 1, 0], r"indices\[1\] = 1 names the bin itself "
                     r"\(row 1\)", id="self"),
        pytest.param([0, 1, 2, 3], [1.0, 0.0, 0.0], r"expected two 1-D integer arrays",
                     id="dtype"),
    ],
)
def test_compressed_rows_errors(indptr, indices, match):
    pts = [[0.1, 0.2], [0.8, 0.3], [0.4, 0.9]]
    with pytest.raises(TessellationError, match=match):
        voronoi_geometry(pts, (np.asarray(indptr), np.asarray(indices)))


def test_tiling_guard(monkeypatch):
    """A lost cell (qhull's precision) raises instead of returning wrong volumes."""
    real = geometry._cells

    def lossy(*args):
        pi, pj, area, volume, boundary = real(*args)
        volume[3] = 0.0
        return pi, pj, area, volume, boundary

    monkeypatch.setattr(geometry, "_cells", lossy)
    pts = np.random.default_rng(0).random((10, 2))
    with pytest.raises(TessellationError, match=r"the cells do not tile the box .* cell 3"):
        voronoi_geometry(pts, all_pairs(10))


@pytest.mark.parametrize(
    ("shape", "spacing", "table", "start", "match"),
    [
        pytest.param((0, 3), 1.0, [[1]], 0, r"shape=\(0, 3\); expected 1 to 3", id="shape"),
        pytest.param((2, 3), (1.0, -1.0), [[1]], 0, r"positive finite", id="spacing"),
        pytest.param((2, 3), (1.0, 1.0, 1.0), [[1]], 0, r"one size or 2 sizes",
                     id="spacing-length"),
        pytest.param((2, 3), 1.0, [[6]], 0, r"neighbours\[0, 0\] = 6; expected a flat",
                     id="range"),
        pytest.param((2, 3), 1.0, [[1]], 6, r"rows start=6 to 7 are not inside", id="start"),
        pytest.param((2, 3), 1.0, [[1], [1]], 0, r"neighbours\[1, 0\] = 1 names the bin",
                     id="self"),
        pytest.param((2, 3), 1.0, [[1.0]], 0, r"expected an \(m, k\) integer", id="dtype"),
        pytest.param((2, 3), 1.0, ([0, 2, 1], [1, 2]), 0, r"indptr non-decreasing",
                     id="indptr"),
        pytest.param((2, 3), 1.0, ([0, 1, 2], [1, 9]), 0,
                     r"neighbours indices\[1\] = 9; expected a flat", id="indices-range"),
    ],
)
def test_grid_geometry_errors(shape, spacing, table, start, match):
    if not isinstance(table, tuple):
        table = np.asarray(table)
    else:
        table = tuple(np.asarray(a) for a in table)
    with pytest.raises(TessellationError, match=match):
        grid_geometry(shape, spacing, table, start=start)


def test_grid_geometry_blocks_and_distant_entries():
    shape, spacing = (4, 3, 2), (0.5, 1.0, 2.0)
    table = xtramgrad.grid(shape, spacing).neighbours.values
    face, vol = grid_geometry(shape, spacing, table)
    parts = [grid_geometry(shape, spacing, table[a:b], start=a)[0]
             for a, b in itertools.pairwise([0, 5, 17, 24])]
    np.testing.assert_array_equal(np.vstack(parts), face)
    np.testing.assert_array_equal(vol, np.full(24, 1.0))
    # face areas by axis: yz = 2, xz = 1, xy = 0.5; 18 neighbours, diagonals 0
    assert sorted(set(np.round(face[~np.isnan(face)], 12))) == [0.0, 0.5, 1.0, 2.0]
    # bins that do not touch share nothing
    far, _ = grid_geometry(shape, spacing, np.array([[23, 5]]))
    np.testing.assert_array_equal(far, [[0.0, 0.0]])
    # compressed rows: the same areas, aligned with indices
    present = table >= 0
    indptr = np.r_[0, np.cumsum(present.sum(1))]
    flat, flat_vol = grid_geometry(shape, spacing, (indptr, table[present]))
    np.testing.assert_array_equal(flat, face[present])
    np.testing.assert_array_equal(flat_vol, vol)
    block, _ = grid_geometry(shape, spacing, (indptr[5:18] - indptr[5],
                                              table[present][indptr[5]:indptr[17]]), start=5)
    np.testing.assert_array_equal(block, face[5:17][present[5:17]])

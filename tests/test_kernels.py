"""Kernel-level tests: neighbour sides, sparse layout, missing-value patterns, backends.

Truth here is independent of the kernels' own code paths: TRamWAy's float64 side rule
written out from its definition (``a = 1 - 2 arccos(u) / pi`` against ``1 - s``), per-slice
application against multi-pattern application, and the pure-numpy reference against the
optional compiled (numba) path.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.spatial import Delaunay

from xtramgrad import kernels
from xtramgrad.kernels import Rings, Selection, compiled, engine
from xtramgrad.kernels.compiled import read_only
from xtramgrad.kernels.engine import weights_to_csr
from xtramgrad.kernels.stencil import as_csr, build_neighbourhood, pad_rows
from xtramgrad.kernels.tramway import grad1_weights

HAVE_NUMBA = kernels.numba_available()
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba (the `fast` extra) not installed")


# --------------------------------------------------------------------------- tessellations


def grid_table(shape, spacing=1.0, faces=False):
    """Grid centers and TRamWAy's inference adjacency (8 in 2D, 18 in 3D), lexicographic."""
    d = len(shape)
    idx = np.stack(np.unravel_index(np.arange(int(np.prod(shape))), shape), axis=1)
    steps = [s for s in itertools.product((-1, 0, 1), repeat=d) if s != (0,) * d]
    steps = [s for s in steps if sum(map(bool, s)) <= (1 if faces else 2)]
    nb = idx[:, None, :] + np.array(steps)[None]
    inside = np.all((nb >= 0) & (nb < np.array(shape)), axis=2)
    lin = np.ravel_multi_index(tuple(np.clip(nb, 0, np.array(shape) - 1).transpose(2, 0, 1)),
                               shape)
    return idx * spacing, np.where(inside, lin, -1)


def delaunay_table(points):
    indptr, indices = Delaunay(points).vertex_neighbor_vertices
    deg = np.diff(indptr)
    table = np.full((len(points), deg.max()), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(points)), deg)
    table[rows, np.arange(len(indices)) - np.repeat(indptr[:-1], deg)] = indices
    return table


def tramway_cone_sides(offsets, s):
    """TRamWAy 0.7's rule, from its definition: float64 throughout, every edge."""
    proj = offsets / np.sqrt(np.sum(offsets * offsets, axis=1, keepdims=True))
    with np.errstate(invalid="ignore"):
        a = 1.0 - 2.0 * np.arccos(proj) / math.pi
    return a < s - 1.0, 1.0 - s < a


ANGLES = [0.5, 0.5 + 1e-12, 0.6, 0.75, 0.9, 0.99]


# --------------------------------------------------------------------------- sides


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("spacing", [1.0, 0.1, 0.3, 7.0])
@pytest.mark.parametrize("s", ANGLES)
def test_cone_sides_match_tramway_float64_on_grids(d, spacing, s):
    shape = (5, 6) if d == 2 else (4, 5, 3)
    centers, table = grid_table(shape, spacing)
    st = kernels.build_stencil(centers, table, Selection("cone", s))
    below, above = tramway_cone_sides(st.offsets, s)
    np.testing.assert_array_equal(st.below, below)
    np.testing.assert_array_equal(st.above, above)


def test_cone_ties_at_45_degrees_decide_as_tramway():
    # 45 degrees: a = 0.4999999999999999 < 1 - 0.5, so s = 0.5 excludes the diagonals
    centers, table = grid_table((3, 3))
    st = kernels.build_stencil(centers, table, Selection("cone", 0.5))
    diag = np.all(st.offsets != 0, axis=1)
    assert diag.any()
    assert not st.above[diag].any() and not st.below[diag].any()
    a = 1.0 - 2.0 * np.arccos(1.0 / math.sqrt(2.0)) / math.pi
    assert a < 0.5  # the float64 fact the rule rests on
    # 3D face diagonals are excluded the same way
    centers, table = grid_table((3, 3, 3))
    st = kernels.build_stencil(centers, table, Selection("cone", 0.5))
    two = (st.offsets != 0).sum(axis=1) == 2
    assert two.any() and not (st.above[two] | st.below[two]).any()


def test_cone_sides_random_offsets():
    rng = np.random.default_rng(3)
    for d in (2, 3):
        pts = rng.random((300, d))
        table = delaunay_table(pts)
        for s in ANGLES:
            st = kernels.build_stencil(pts, table, Selection("cone", s))
            below, above = tramway_cone_sides(st.offsets, s)
            np.testing.assert_array_equal(st.below, below)
            np.testing.assert_array_equal(st.above, above)


def test_quadrant_sides_single_axis_ties_to_lowest():
    centers, table = grid_table((3, 3))
    st = kernels.build_stencil(centers, table, Selection("quadrants"))
    axis = np.argmax(np.abs(st.offsets), axis=1)
    along = st.offsets[np.arange(len(axis)), axis]
    assert ((st.below | st.above).sum(axis=1) == 1).all()  # no zero offsets here
    np.testing.assert_array_equal(st.below[np.arange(len(axis)), axis], along < 0)
    np.testing.assert_array_equal(st.above[np.arange(len(axis)), axis], along > 0)
    diag = np.all(st.offsets != 0, axis=1)
    assert (st.below[diag, 0] | st.above[diag, 0]).all()  # diagonals count for x


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.5])
def test_halfspace_sides_compare_absolute_coordinates(eps):
    rng = np.random.default_rng(4)
    pts = rng.random((200, 2)) * 10 + 1e5
    table = delaunay_table(pts)
    st = kernels.build_stencil(pts, table, Selection("halfspace", eps))
    own = pts[st.rows]
    other = pts[st.dst]
    np.testing.assert_array_equal(st.below, other < own - eps)
    np.testing.assert_array_equal(st.above, own + eps < other)


def test_label_sides():
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
    table = np.array([[1, -1, 2, 3], [0, -1, -1, -1], [0, -1, -1, -1], [0, -1, -1, -1]])
    labels = np.array([[1, 0, -2, 2], [-1, 0, 0, 0], [2, 0, 0, 0], [-2, 0, 0, 0]])
    st = kernels.build_stencil(centers, table, Selection("labels"), labels=labels)
    assert st.below.astype(int).tolist() == [[0, 0], [0, 1], [0, 0], [1, 0], [0, 0], [0, 1]]
    assert st.above.astype(int).tolist() == [[1, 0], [0, 0], [0, 1], [0, 0], [0, 1], [0, 0]]
    with pytest.raises(ValueError, match="labels"):
        kernels.build_stencil(centers, table, Selection("labels"))


def test_stencil_csr_edges_skip_padding_anywhere():
    centers = np.array([[0.0], [1.0], [2.0]])
    table = np.array([[-1, 1], [0, 2], [-1, -1]])
    st = kernels.build_stencil(centers, table, Selection("cone", 0.9))
    assert st.indptr.tolist() == [0, 1, 3, 3]
    assert st.dst.tolist() == [1, 0, 2]
    assert st.rows.tolist() == [0, 1, 1]
    assert st.offsets[:, 0].tolist() == [1.0, -1.0, 1.0]


# --------------------------------------------------------------------------- csr layout


def _grad1_map(centers, table, ok=None):
    indptr, indices = as_csr(table)
    nb = build_neighbourhood(Rings(1), indptr, indices, centers, np.arange(len(centers)))
    ok = np.ones(len(nb.rows), dtype=bool) if ok is None else ok
    return nb, grad1_weights(nb, ok, selection=Selection("cone", 0.9))


def test_weights_to_csr_layout():
    centers = np.arange(4.0)[:, None] ** 1.5
    table = np.array([[1, -1], [0, 2], [1, 3], [2, -1]])
    nb, res = _grad1_map(centers, table)
    G = weights_to_csr(nb, res.w, res.c0, n_source=4)
    assert G.shape == (4, 4)
    # row i: the bin's stencil entries in table order, then the bin itself (last)
    assert G.indptr.tolist() == [0, 2, 5, 8, 10]
    assert G.indices.tolist() == [1, 0, 0, 2, 1, 1, 3, 2, 2, 3]
    own = G.indptr[1:] - 1
    np.testing.assert_array_equal(G.data[own], res.c0[:, 0])
    y = np.sin(centers[:, 0])
    direct = kernels.local_gradient(y, centers, table, selection=Selection("cone", 0.9),
                                    backend="numpy")[:, 0]
    np.testing.assert_array_equal(G @ y, direct)


def test_weights_to_csr_layout_2d_rows_per_axis():
    centers, table = grid_table((3, 4), 0.5)
    nb, res = _grad1_map(centers, table)
    G = weights_to_csr(nb, res.w, res.c0, n_source=12)
    assert G.shape == (24, 12)
    deg = np.diff(nb.indptr)
    np.testing.assert_array_equal(np.diff(G.indptr), np.repeat(deg + 1, 2))
    for i in (0, 5, 11):
        for j in range(2):
            r = i * 2 + j
            cols = G.indices[G.indptr[r] : G.indptr[r + 1]]
            assert cols.tolist() == nb.src[nb.indptr[i] : nb.indptr[i + 1]].tolist() + [i]
            np.testing.assert_array_equal(
                G.data[G.indptr[r] : G.indptr[r + 1] - 1],
                res.w[nb.indptr[i] : nb.indptr[i + 1], j],
            )


# --------------------------------------------------------------------------- missing values


@pytest.mark.parametrize("method", ["grad1", "gradn", "lsq", "lsq2"])
def test_multi_pattern_application_equals_per_slice(method):
    """Slices with several missing-value patterns in one call give, slice by slice, what
    each slice gives alone: bit for bit (one sparse product per pattern, same order)."""
    rng = np.random.default_rng(5)
    centers, table = grid_table((9, 8), 0.7)
    centers = centers + rng.uniform(-0.1, 0.1, centers.shape)
    m = len(centers)
    base = np.cos(centers[:, 0]) + centers[:, 1] ** 2
    values = np.stack([base + k for k in range(6)])
    values[1, rng.random(m) < 0.2] = np.nan
    values[2] = values[1] * 3  # same pattern as slice 1
    values[3, rng.random(m) < 0.5] = np.nan
    values[4, :] = np.nan
    values[4, :5] = 1.0
    valid, pattern = kernels.missing_patterns(values)
    assert valid.shape[1] == 4 and pattern[1] == pattern[2] and pattern[0] == pattern[5]
    kw = dict(selection=Selection("cone", 0.9), method=method, backend="numpy")
    together = kernels.local_gradient(values, centers, table, **kw)
    for s in range(len(values)):
        alone = kernels.local_gradient(values[s], centers, table, **kw)
        np.testing.assert_array_equal(together[s], alone)
        # a bin without a measurement, or without a measured neighbour, has no gradient
        assert np.isnan(alone[np.isnan(values[s])]).all()


def test_numpy_blocks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(6)
    pts = rng.random((500, 2))
    table = delaunay_table(pts)
    values = np.stack([np.sin(4 * pts[:, 0]), pts[:, 1] ** 2])
    values[1, rng.random(500) < 0.2] = np.nan
    for method in ("grad1", "lsq2"):
        kw = dict(selection=Selection("cone", 0.9), method=method, backend="numpy", na=0.0)
        whole = kernels.local_gradient(values, pts, table, **kw)
        monkeypatch.setattr(engine, "_BLOCK_ENTRIES", 37)
        blocks = kernels.local_gradient(values, pts, table, **kw)
        monkeypatch.undo()
        np.testing.assert_array_equal(whole, blocks)


# --------------------------------------------------------------------------- backends


SELECTIONS = [
    Selection("cone", 0.9),
    Selection("cone", 0.5),
    Selection("cone", 0.75),
    Selection("quadrants"),
    Selection("halfspace", 0.0),
    Selection("halfspace", 0.05),
]


def _problems():
    rng = np.random.default_rng(7)
    out = []
    for d in (2, 3):
        pts = rng.random((400 if d == 2 else 300, d))
        out.append((f"delaunay{d}d", pts, delaunay_table(pts)))
    c, t = grid_table((9, 11), 0.1)
    out.append(("grid2d", c, t))
    c, t = grid_table((5, 6, 7), 0.3)
    out.append(("grid3d", c, t))
    c, t = grid_table((20,))
    out.append(("chain1d", c, t))
    return out


def _values(centers, rng):
    m = len(centers)
    v = np.stack([np.sin(3 * centers[:, 0]) + centers[:, -1] ** 2 + k for k in range(4)])
    v[1, rng.random(m) < 0.1] = np.nan
    v[2] = v[1] * 2
    v[3, rng.random(m) < 0.4] = np.nan
    return v.reshape(2, 2, m)


def assert_same_gradient(got, ref):
    """Same NaN pattern; values within 1e-12 (relative, and of the largest component)."""
    np.testing.assert_array_equal(np.isnan(ref), np.isnan(got))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-12, atol=1e-12 * np.abs(ref[ok]).max())


@needs_numba
@pytest.mark.parametrize("name,centers,table", _problems(), ids=lambda x: str(x)[:12])
def test_numba_grad1_equals_numpy(name, centers, table):
    rng = np.random.default_rng(8)
    values = _values(centers, rng)
    for sel in SELECTIONS:
        for na in (np.nan, 0.0):
            ref = kernels.local_gradient(values, centers, table, selection=sel, na=na,
                                         backend="numpy")
            got = kernels.local_gradient(values, centers, table, selection=sel, na=na,
                                         backend="numba")
            assert_same_gradient(got, ref)


@needs_numba
@pytest.mark.parametrize("name,centers,table", _problems(), ids=lambda x: str(x)[:12])
def test_numba_grad1_single_slice_equals_numpy(name, centers, table):
    # one slice takes the fused single-pass kernel (cone rule)
    rng = np.random.default_rng(11)
    y = np.sin(3 * centers[:, 0]) + centers[:, -1] ** 2
    y_missing = np.where(rng.random(len(y)) < 0.25, np.nan, y)
    for sel in SELECTIONS:
        for values in (y, y_missing):
            for na in (np.nan, -1.0):
                ref = kernels.local_gradient(values, centers, table, selection=sel, na=na,
                                             backend="numpy")
                got = kernels.local_gradient(values, centers, table, selection=sel, na=na,
                                             backend="numba")
                assert_same_gradient(got, ref)


@needs_numba
@pytest.mark.parametrize("name,centers,table", _problems(), ids=lambda x: str(x)[:12])
def test_grad1_cone_kernels_equal_the_general_driver_bitwise(name, centers, table):
    """The fused single-slice cone kernels, on a table (eager path) and on gathered stencils
    (chunked path), give the general driver's numbers bit for bit (grad1_table, the rule's
    side test by its code): missing values, the grids' exact cone ties, both fills. With
    an empty tie table the two report the same missing ties and leave the same bins to
    redo, and the driver's other bins agree."""
    from xtramgrad.kernels import _numba
    from xtramgrad.selection import TIE_BAND

    rng = np.random.default_rng(5)
    n, d = centers.shape
    y = np.sin(3 * centers[:, 0]) + centers[:, -1] ** 2
    y[rng.random(n) < 0.25] = np.nan
    present = table >= 0
    safe = np.where(present, table, 0)
    # inputs read-only, as the library passes them (compiled.read_only): one compilation
    nv = read_only(np.where(present, y[safe], np.nan)[None])
    nc = read_only(np.where(present[..., None], centers[safe], np.nan))
    tag = np.empty((0,) * d)
    none = read_only(np.zeros(0), np.int64)
    ys, cs, ts = read_only(y[None]), read_only(centers), read_only(table, np.int64)
    kernels_ = {
        "general": lambda *a: _numba.grad1_table(
            _numba.RULE_CODES["cone"], ys, cs, ts, none, read_only(np.zeros((0, 0)), np.int64),
            a[0], TIE_BAND, a[1], a[2], a[3], a[4], *a[5:], tag),
        "table": lambda *a: _numba.grad1_cone_single(
            ys, cs, ts, none, a[0], TIE_BAND, a[1], a[2], a[4], *a[5:], tag),
        "gathered": lambda *a: _numba.grad1_cone_gathered(
            ys, cs, nv, nc, a[0], TIE_BAND, a[1], a[2], a[4], *a[5:], tag),
    }
    for angle in (0.9, 0.5, 0.75):
        sel = Selection("cone", angle)
        kernels.local_gradient(y, centers, table, selection=sel, backend="numba")  # ties
        param, thr = compiled._selection_params(sel)
        tabulated = compiled.TIE_TABLES.get(angle, (np.empty(0), np.empty(0, np.int8)))
        for tie_u, tie_code in (tabulated, (np.empty(0), np.empty(0, np.int8))):
            for na in (np.nan, 0.0):
                results = {}
                for key, kernel in kernels_.items():
                    out = np.full((1, n, d), 7.0)  # rows left unset (redo) keep 7.0
                    flags = np.zeros((1, n), np.int8)
                    redo = np.zeros(n, np.bool_)
                    miss, nmiss = np.empty(64), np.zeros(1, np.int64)
                    kernel(thr, tie_u, tie_code, param, na, out, flags, redo, miss, nmiss)
                    results[key] = (out.view(np.uint64), flags, redo,
                                    np.sort(miss[:min(int(nmiss[0]), 64)]), int(nmiss[0]))
                ref, table_k, gathered_k = (results[k] for k in kernels_)
                assert np.isfinite(ref[0].view(np.float64)).any()
                for got, want in zip(gathered_k, table_k, strict=True):  # everything
                    np.testing.assert_array_equal(got, want)
                if tie_u is tabulated[0]:
                    assert not ref[2].any() and ref[4] == 0
                    for got, want in zip(table_k, ref, strict=True):
                        np.testing.assert_array_equal(got, want)
                else:  # the fused kernels skip the ties of bins without a value
                    assert set(table_k[3]) <= set(ref[3])
                    done = ~(ref[2] | table_k[2])
                    np.testing.assert_array_equal(table_k[0][:, done], ref[0][:, done])
                    np.testing.assert_array_equal(table_k[1][:, done], ref[1][:, done])


@needs_numba
def test_numba_grad1_labels_and_targets():
    centers, table = grid_table((6, 5), 0.5, faces=True)
    off = centers[np.where(table >= 0, table, 0)] - centers[:, None, :]
    axis = np.argmax(np.abs(off), axis=2)
    sign = np.sign(np.take_along_axis(off, axis[:, :, None], 2)[:, :, 0]).astype(int)
    labels = np.where(table >= 0, sign * (axis + 1), 0)
    y = np.exp(centers[:, 0]) - centers[:, 1] ** 3
    targets = np.array([3, 7, 8, 20])
    sel = Selection("labels")
    ref, got = (
        kernels.local_gradient(y, centers, table[targets], selection=sel, targets=targets,
                               labels=labels[targets], backend=backend)
        for backend in ("numpy", "numba")
    )
    np.testing.assert_allclose(got, ref, rtol=1e-13)
    full = kernels.local_gradient(y, centers, table, selection=Selection("labels"),
                                  labels=labels, backend="numba")
    np.testing.assert_allclose(full[targets], ref, rtol=1e-13)


@needs_numba
def test_numba_cone_tie_table_is_filled_from_numpy_decisions(monkeypatch):
    monkeypatch.setattr(compiled, "TIE_TABLES", {})
    centers, table = grid_table((7, 7, 7), 0.1)
    y = centers[:, 0] ** 2 + 2 * centers[:, 1] - centers[:, 2]
    sel = Selection("cone", 0.5)
    got = kernels.local_gradient(y, centers, table, selection=sel, backend="numba")
    assert 0.5 in compiled.TIE_TABLES and len(compiled.TIE_TABLES[0.5][0]) > 0
    again = kernels.local_gradient(y, centers, table, selection=sel, backend="numba")
    ref = kernels.local_gradient(y, centers, table, selection=sel, backend="numpy")
    np.testing.assert_array_equal(got, again)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)


@needs_numba
@pytest.mark.parametrize("name,centers,table", _problems(), ids=lambda x: str(x)[:12])
def test_numba_gradn_equals_numpy(name, centers, table):
    rng = np.random.default_rng(9)
    values = _values(centers, rng).reshape(4, -1)
    kw = dict(selection=Selection("cone", 0.9), method="gradn")
    ref = kernels.local_gradient(values, centers, table, backend="numpy", **kw)
    got = kernels.local_gradient(values, centers, table, backend="numba", **kw)
    np.testing.assert_array_equal(np.isnan(ref), np.isnan(got))
    # both solve the same least-squares problems (normal equations where well conditioned,
    # SVD of the design elsewhere, the same rank cut): they agree to the conditioning
    every = ~np.isnan(ref)
    np.testing.assert_allclose(got[every], ref[every], rtol=0,
                               atol=1e-9 * np.abs(ref[every]).max())


@needs_numba
def test_numba_gradn_exact_for_quadratics():
    rng = np.random.default_rng(10)
    centers, table = grid_table((8, 9), 0.2)
    centers = centers + rng.uniform(-0.04, 0.04, centers.shape)
    x, y = centers[:, 0], centers[:, 1]
    f = 1 + 2 * x - 3 * y + 0.5 * x * x + x * y - y * y
    exact = np.stack([2 + x + y, -3 + x - 2 * y], axis=1)
    g = kernels.local_gradient(f, centers, table, selection=Selection("cone", 0.9),
                               method="gradn", backend="numba")
    inner = (table >= 0).sum(axis=1) == 8
    np.testing.assert_allclose(g[inner], exact[inner], rtol=1e-9, atol=1e-9)


def test_backend_choice_and_errors(monkeypatch):
    previous = kernels.set_backend("numpy")
    try:
        assert kernels.get_backend() == "numpy"
        with pytest.raises(ValueError, match="expected one of"):
            kernels.set_backend("fortran")
    finally:
        kernels.set_backend(previous)
    monkeypatch.setattr(engine, "numba_available", lambda: False)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[fast\]"'):
        kernels.set_backend("numba")
    assert engine.resolve_backend("auto") == "numpy"
    with pytest.raises(ValueError, match="unknown gradient method"):
        kernels.local_gradient(np.zeros(2), np.zeros((2, 1)), np.array([[1], [0]]),
                               selection=Selection("cone", 0.9), method="grad7")


# --------------------------------------------------------------------------- radius stencils


def _reachable_in_ball(centers, indptr, indices, i, radius):
    """Truth for a radius stencil, by brute force: the bins reachable from ``i`` along the
    table's rows through bins within ``radius`` of it (the walk's definition), ordered by
    cell (side radius * (1 + 1e-6), last axis most significant) then by bin."""
    off = centers - centers[i]
    d2 = np.zeros(len(centers))
    for a in range(off.shape[1]):  # axis by axis, in order (the walk's rounding)
        d2 = d2 + off[:, a] * off[:, a]
    inside = d2 <= radius * radius
    seen = {i}
    front = [i]
    while front:
        nxt = []
        for b in front:
            for j in indices[indptr[b]:indptr[b + 1]]:
                if j not in seen and inside[j]:
                    seen.add(j)
                    nxt.append(j)
        front = nxt
    ids = np.array(sorted(seen - {i}), dtype=np.int64)
    cells = np.floor(centers[ids] / (radius * (1 + 1e-6)))
    return ids[np.lexsort((ids, *cells.T))]


def _radius_problems():
    rng = np.random.default_rng(7)
    out = []
    pts = rng.random((500, 2))
    out.append(("delaunay2d", pts, as_csr(delaunay_table(pts)), 0.12))
    # a lattice, the radius an exact multiple of the spacing: bins at exactly the radius
    c, t = grid_table((20, 20), spacing=0.1, faces=True)
    out.append(("grid4", c, as_csr(t), 0.3))
    c, t = grid_table((8, 8, 8), spacing=0.1)
    out.append(("grid3d", c, as_csr(t), 0.2))
    # a hole: bins of a disk removed, so the ball reaches across it only around it
    keep = np.hypot(pts[:, 0] - 0.5, pts[:, 1] - 0.5) > 0.15
    sub = pts[keep]
    tab = delaunay_table(pts)
    new = np.cumsum(keep) - 1
    tab = np.where(tab >= 0, np.where(keep[np.maximum(tab, 0)], new[np.maximum(tab, 0)], -1), -1)
    out.append(("hole", sub, as_csr(tab[keep]), 0.25))
    # two tessellations overlapping in space, disjoint in the table
    q = rng.random((300, 2))
    ta, tb = delaunay_table(pts), delaunay_table(q)
    both = np.full((800, max(ta.shape[1], tb.shape[1])), -1)
    both[:500, : ta.shape[1]] = ta
    both[500:, : tb.shape[1]] = np.where(tb >= 0, tb + 500, -1)
    out.append(("overlap", np.vstack([pts, q]), as_csr(both), 0.15))
    # a one-way table: reverse entries dropped at random
    tab = delaunay_table(pts)
    drop = (rng.random(tab.shape) < 0.3) & (tab >= 0)
    out.append(("one-way", pts, as_csr(np.where(drop, -1, tab)), 0.12))
    # clusters far apart: far more cells than bins (the cells are not used)
    far = np.vstack([pts[:200], pts[200:400] + 1e4])
    out.append(("far", far, as_csr(np.vstack([delaunay_table(far[:200]),
                                              delaunay_table(far[200:]) + 200])), 0.1))
    x = np.sort(rng.random(200))[:, None]
    chain = np.array([[i - 1, i + 1] for i in range(200)])
    chain[-1, 1] = -1
    out.append(("chain", x, as_csr(chain), 0.03))
    return out


@pytest.mark.parametrize("name,centers,csr,radius", _radius_problems(), ids=lambda x: str(x)[:12])
def test_radius_stencils_are_the_walks_bins_in_cell_order(name, centers, csr, radius):
    from xtramgrad.kernels.stencil import radius_stencil

    indptr, indices = csr
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    n = len(centers)
    targets = np.arange(n)
    truth = [_reachable_in_ball(centers, indptr, indices, i, radius) for i in range(n)]
    sp, ids, ring = radius_stencil(indptr, indices, centers, targets, radius)
    assert [ids[sp[i]:sp[i + 1]].tolist() for i in range(n)] == [t.tolist() for t in truth]
    assert np.all(ring == 1)
    if HAVE_NUMBA:
        from xtramgrad.kernels import _numba

        sp1, ids1, ring1 = _numba.walk_stencils(indices, indptr, centers, targets, 1, 0, 0,
                                                float(radius))
        np.testing.assert_array_equal(sp1, sp)
        np.testing.assert_array_equal(ids1, ids)
        np.testing.assert_array_equal(ring1, ring)
        sizes = np.empty(n, dtype=np.int64)
        _numba.stencil_sizes(indices, indptr, centers, 1, 0, 0, float(radius), sizes)
        np.testing.assert_array_equal(sizes, np.diff(sp))


@needs_numba
def test_radius_cells_prove_most_stencils_and_leave_the_rest_to_the_walk():
    """The cells serve the interior of a Delaunay mesh (the bound or a scan proves every
    member reached) and refuse where the walk differs from the ball (overlapping parts)."""
    from xtramgrad.kernels import _numba

    probs = {p[0]: p for p in _radius_problems()}
    for name, expect_all in [("delaunay2d", True), ("overlap", False), ("far", None)]:
        _, centers, (indptr, indices), radius = probs[name]
        centers = np.ascontiguousarray(centers, dtype=np.float64)
        ball = _numba.ball_index(indices, indptr, centers, float(radius))
        if expect_all is None:
            assert not ball.ok
            continue
        assert ball.ok
        n = len(centers)
        mark = np.full(n, -1, dtype=np.int64)
        ids = np.empty(n, dtype=np.int64)
        ring = np.empty(n, dtype=np.int8)
        w = max(1, int(np.diff(indptr).max()))
        got = [_numba._ball_capped(i, ball, indices, indptr, centers, float(radius), mark, ids,
                                   ring, np.empty(w, np.int64), np.empty(w, np.int64))
               for i in range(n)]
        proved = np.array(got) >= 0
        assert proved.all() if expect_all else (~proved).sum() > 10


def test_radius_stencil_sums_squared_offsets_as_the_compiled_walk():
    """A bin at the radius to the last bit: numpy and the compiled walk agree (a 3D pair
    where the two orders of summing the squared offsets round differently)."""
    from xtramgrad.kernels.stencil import radius_stencil

    centers = np.array([[0.0, 0.0, 0.0],
                        [0.027559113243068367, 0.7535131086748066, 0.5381433132192782]])
    indptr, indices = as_csr(np.array([[1], [0]]))
    radius = 0.9263583190267886
    truth = [_reachable_in_ball(centers, indptr, indices, i, radius).tolist() for i in (0, 1)]
    sp, ids, _ = radius_stencil(indptr, indices, centers, np.arange(2), radius)
    assert [ids[sp[i]:sp[i + 1]].tolist() for i in (0, 1)] == truth
    if HAVE_NUMBA:
        from xtramgrad.kernels import _numba

        sp1, ids1, _ = _numba.walk_stencils(indices, indptr, centers, np.arange(2), 1, 0, 0,
                                            radius)
        np.testing.assert_array_equal(ids1, ids)


# --------------------------------------------------------------------------- single-slice kernels


@needs_numba
def test_gauss_exp_within_one_ulp_of_numpy():
    """The compiled Gaussian weights (``local``) use their own exp: within 1 ulp of numpy's
    over the weights' range, exact at 0, 0 far below it."""
    from xtramgrad.kernels import _numba

    x = -np.random.default_rng(3).random(200_000) * 6.0
    x[:4] = [0.0, -0.0, -4.5, -1e-300]
    got = np.empty_like(x)
    _numba.gauss_weights(-2.0 * x, got, len(x))
    ref = np.exp(x)
    assert np.max(np.abs(got - ref) / np.spacing(ref)) <= 1.0
    assert got[0] == 1.0 and got[1] == 1.0
    far = np.array([-700.0, -745.5, -800.0, -1e300])
    out = np.empty(4)
    _numba.gauss_weights(-2.0 * far, out, 4)
    np.testing.assert_allclose(out[:1], np.exp(far[:1]), rtol=1e-15)
    assert out[2] == 0.0 and out[3] == 0.0


def _driver_problems():
    """Meshes for the single-slice kernels: a 1D chain, Delaunay 2D and 3D, a hole and
    overlapping parts (the walk decides there), a lattice (exact ties)."""
    rng = np.random.default_rng(11)
    out = []
    x = np.sort(rng.random(60))[:, None]
    chain = np.array([[i - 1, i + 1] for i in range(60)])
    chain[-1, 1] = -1
    out.append(("chain1d", x, chain))
    for d, n in [(2, 400), (3, 300)]:
        pts = rng.random((n, d))
        out.append((f"delaunay{d}d", pts, delaunay_table(pts)))
    probs = {p[0]: p for p in _radius_problems()}
    for name in ("hole", "overlap", "grid4"):
        _, c, (indptr, indices) = probs[name][:3]
        out.append((name, c, pad_rows(indptr, indices, int(np.diff(indptr).max()))))
    return out


@needs_numba
@pytest.mark.parametrize("name,centers,table", _driver_problems(), ids=lambda x: str(x)[:12])
@pytest.mark.parametrize("method", ["lsq", "lsq2", "local1", "local2"])
def test_single_slice_kernels_equal_the_generic_driver_bitwise(name, centers, table, method):
    """The single-slice kernels of lsq, lsq2 and local (the common case: one field, its
    gradient) give the generic driver's numbers bit for bit, with missing values, on meshes
    where the cells prove the stencils and where the walk decides, eager and on gathered
    stencils."""
    from xtramgrad.kernels import _numba
    from xtramgrad.kernels.stencil import radius_stencil

    # every input read-only, as the library passes them (compiled.read_only): numba
    # compiles read-only and writable arguments apart (about a minute per driver)
    centers = read_only(centers)
    n, d = centers.shape
    rng = np.random.default_rng(5)
    values = (np.sin(3 * centers).sum(axis=1) + rng.normal(0, 0.1, n))[None]
    values[0, rng.random(n) < 0.15] = np.nan
    values = read_only(values)
    table = read_only(table, np.int64)
    indptr, indices = (read_only(a, np.int64) for a in _numba.padded_to_csr(table))
    none = read_only(np.zeros(0), np.int64)
    spacing = (np.ptp(centers, axis=0).prod() / n) ** (1 / d)
    code = {"lsq": 0, "lsq2": 1}.get(method, 3)
    degree = 2 if method == "local2" else 1
    bw = 2.5 * spacing
    unknowns = d + d * (d + 1) // 2
    par, nq, spec = {
        0: (np.array([2.0, 3.0]), d, (1, 0, 0, 0.0)),
        1: (np.array([4.0, 4.0, 2.0, 3.0]), unknowns, (2, 3, 2 * unknowns, 0.0)),
        3: (np.array([bw, float(degree)]), d + 1, (1, 0, 0, 3 * bw)),
    }[code]
    comb = read_only(np.eye(d, nq))
    want = np.empty((1, n, d))
    flags = np.empty((1, n), np.int8)
    kmax = table.shape[1] if code == 0 else 0
    stencils = (indices if code else table, indptr if code else none, *spec, kmax)
    _numba.drive_table(code, values, values, centers, stencils, par, nq, comb,
                       _numba.MODE_VALUES, np.nan, want, flags, np.empty((1, n)),
                       _numba.dim_tag(d))
    got = np.empty_like(want)
    got_flags = np.empty_like(flags)
    tag = _numba.dim_tag(d)
    if code == 0:
        _numba.lsq_single(values, centers, values, centers, table, none, par, np.nan, got,
                          got_flags, tag)
    elif code == 1:
        _numba.lsq2_single(values, centers, (indices, indptr, *spec[:3]), par, np.nan, got,
                           got_flags, tag)
    else:
        _numba.local_single(values, centers, indices, indptr, np.array([bw, degree, 3 * bw]),
                            np.nan, got, got_flags, tag, _numba.degree_tag(degree))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_flags, flags)
    assert np.isfinite(want).sum() > 0.5 * want.size
    # gathered stencils (the chunked path): the same numbers again
    if code == 0:
        sp, ids = indptr, indices
    elif code == 1:
        sp, ids, rings = _numba.walk_stencils(indices, indptr, centers, np.arange(n), *spec)
    else:
        sp, ids, _ = radius_stencil(indptr, indices, centers, np.arange(n), 3 * bw)
    width = max(1, int(np.diff(sp).max()))
    pids = pad_rows(sp, ids, width)
    nc = read_only(np.where((pids >= 0)[..., None], centers[np.maximum(pids, 0)], np.nan))
    nv = read_only(np.where(pids >= 0, values[0][np.maximum(pids, 0)], np.nan)[None])
    got[:] = 0
    if code == 0:
        _numba.lsq_single(values, centers, nv.reshape(1, -1), nc.reshape(-1, d), nc, none,
                          par, np.nan, got, got_flags, tag)
    elif code == 1:
        ring_of = read_only(pad_rows(sp, rings.astype(np.int64), width), np.int8)
        _numba.lsq2_gathered(values, centers, (nv, nc, ring_of), par, np.nan, got, got_flags,
                             tag)
    else:
        _numba.local_gathered(values, centers, nv, nc, np.array([bw, degree]), np.nan, got,
                              got_flags, tag, _numba.degree_tag(degree))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_flags, flags)

"""Our gradients against TRamWAy 0.7 itself (issue 3, "Judged by").

Every reference value comes from TRamWAy's own functions, called as its ``gradient_map``
calls them (see ``tests/tramway_reference.py``): ``Distributed.grad`` -> ``grad1`` ->
``neighbours_per_axis`` for grad1, and TRamWAy's own ``gradn`` least-squares fit (design
``_poly2``, ``np.linalg.lstsq``) with the derivative evaluated correctly for gradn.

Geometries: random Delaunay/Voronoi tessellations in 2D and 3D (``xtramgrad.voronoi``),
regular grids with TRamWAy's inference adjacency (8 neighbours in 2D, 18 in 3D, from
``xtramgrad.grid``) at spacings where 45-degree ties are exact and where they are rounded,
a 1D chain, and TRamWAy's own tessellations of a simulated random walk (``grid``,
``grid_square``, ``kmeans``, ``gwr``, ``hexagon``, stored in ``tests/data``). Every
selection mode: ``selection_angle`` 0.9, 0.7 and 0.5 (InferenceMAP quadrants in 2D, a cone
with ties in 3D), ``eps=0``, ``eps=1e-2`` and no option at all (TRamWAy's ``infer``
default, from ``get_grad_kwargs``); each with every bin measured and with 15% of the bins
missing (NaN); and fields with a time dim whose missing pattern differs at every step.

Agreement
---------
1. The NaN pattern is identical, element by element (bins without a gradient, components
   without a neighbour on either side).
2. On the defined entries, the *normwise relative difference per bin* is at most 1e-9::

       rel_i = max_j |ours_ij - ref_ij| / max_j |ref_ij|        (j over the space axes)

   i.e. the difference of the gradient vector at bin ``i`` relative to its size, in the max
   norm (a bin whose reference gradient is exactly 0 is compared absolutely). We do not use
   the purely element-wise ratio ``|a - b| / |b|``: a component can be tiny by cancellation
   while its neighbours' data are not, and TRamWAy's ``np.polyfit`` on absolute coordinates
   has rounding errors of order ``1e-16 * cond * |data| / distance``, not of order
   ``1e-16 * |component|``. ``test_grad1_disagreement_is_tramway_rounding`` shows, with
   exact rational arithmetic on TRamWAy's own neighbour selection, that where the element-
   wise ratio is larger than 1e-12 our value is the closer one.

gradn is compared with the corrected derivative of TRamWAy's own fit on the bins where that
fit is uniquely determined (rank ``1 + d + d(d+1)/2`` of the monomial design), and with
analytic quadratic fields, which it must reproduce there to 1e-9.
"""

from __future__ import annotations

import sys
import zlib
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tramway")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import xtramgrad  # noqa: E402
from tramway_reference import (  # noqa: E402
    build_distributed,
    load_tramway_tessellation,
    tramway_default_kwargs,
    tramway_grad1,
    tramway_gradn_corrected,
    tramway_gradn_raw,
)

TOL = 1e-9
MISSING_FRACTION = 0.15


# ----------------------------------------------------------------------------- agreement


def normwise_rel(ours: np.ndarray, ref: np.ndarray) -> float:
    """Assert identical NaN patterns; return max over bins of the normwise relative
    difference (see the module docstring). Arrays are (..., n, d) or (n, ..., d)."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    nan_ours, nan_ref = np.isnan(ours), np.isnan(ref)
    if not np.array_equal(nan_ours, nan_ref):
        where = np.argwhere(nan_ours != nan_ref)
        raise AssertionError(
            f"NaN patterns differ at {len(where)} entries, first {where[:5].tolist()}: "
            f"ours {ours[tuple(where[0][:-1])]}, TRamWAy {ref[tuple(where[0][:-1])]}"
        )
    diff = np.where(nan_ref, 0.0, np.abs(ours - ref)).max(axis=-1)
    norm = np.where(nan_ref, 0.0, np.abs(ref)).max(axis=-1)
    rel = np.where(norm > 0, diff / np.where(norm > 0, norm, 1.0), diff)
    return float(rel.max()) if rel.size else 0.0


def assert_agrees(ours, ref, tol=TOL):
    rel = normwise_rel(ours, ref)
    assert rel <= tol, f"max normwise relative difference {rel:.3e} > {tol:g}"
    return rel


# ----------------------------------------------------------------------------- geometries


def _voronoi(d: int, n: int, seed: int):
    pts = np.random.default_rng(seed).random((n, d))
    ds = xtramgrad.voronoi(pts)
    return ds.center.values, ds.neighbours.values


def _grid(shape, spacing, origin):
    ds = xtramgrad.grid(shape, spacing=spacing, origin=origin)
    return ds.center.values, ds.neighbours.values


GEOMETRIES = {
    "voronoi2d": lambda: _voronoi(2, 250, 11),
    "voronoi3d": lambda: _voronoi(3, 150, 12),
    # 8 neighbours; unit spacing: 45-degree diagonals are exact ties
    "grid2d_unit": lambda: _grid((11, 10), 1.0, 0.0),
    # 8 neighbours; spacing 0.1 from 0.3: ties up to rounding of the centers
    "grid2d_tenth": lambda: _grid((12, 11), 0.1, 0.3),
    # 18 neighbours
    "grid3d_unit": lambda: _grid((6, 5, 5), 1.0, 0.0),
    "grid3d_tenth": lambda: _grid((5, 6, 5), 0.1, -0.2),
    "chain1d": lambda: _grid(40, 0.25, 3.0),
    "tramway_grid": lambda: load_tramway_tessellation("grid"),
    "tramway_grid_square": lambda: load_tramway_tessellation("grid_square"),
    "tramway_kmeans": lambda: load_tramway_tessellation("kmeans"),
    "tramway_gwr": lambda: load_tramway_tessellation("gwr"),
    "tramway_hexagon": lambda: load_tramway_tessellation("hexagon"),
}

# (id, our keywords, TRamWAy's grad1 keywords)
MODES = [
    pytest.param({"selection_angle": 0.9}, {"selection_angle": 0.9}, id="angle0.9"),
    pytest.param({"selection_angle": 0.7}, {"selection_angle": 0.7}, id="angle0.7"),
    # InferenceMAP quadrants in 2D, a cone of half-angle pi/4 with ties in 1D/3D
    pytest.param({"selection_angle": 0.5}, {"selection_angle": 0.5}, id="angle0.5"),
    pytest.param({"eps": 0.0}, {"eps": 0.0}, id="eps0"),
    pytest.param({"eps": 1e-2}, {"eps": 1e-2}, id="eps1e-2"),
    # no option: what TRamWAy's infer(...) resolves "nothing" to
    pytest.param({}, None, id="default"),
]


@cache
def geometry(name: str):
    centers, table = GEOMETRIES[name]()
    return np.asarray(centers, dtype=np.float64), np.asarray(table, dtype=np.int64)


@cache
def field(name: str, missing: bool, steps: int = 0):
    """A random field on the geometry: (n,), or (n, steps) with a different missing
    pattern at every step (step 0 fully measured when missing)."""
    centers, _ = geometry(name)
    n = len(centers)
    rng = np.random.default_rng([zlib.crc32(name.encode()), int(missing), steps])
    shape = (n,) if steps == 0 else (n, steps)
    y = 2.0 + rng.standard_normal(shape)
    if missing:
        gone = rng.random(shape) < MISSING_FRACTION
        if steps:
            gone[:, 0] = False
        y[gone] = np.nan
    return y


@pytest.fixture(scope="module")
def tramway_cache():
    """TRamWAy results computed once per module (TRamWAy runs ~4,000 bins/s)."""
    store: dict = {}

    def get(kind, name, missing, kwargs=None, steps=0):
        key = (kind, name, missing, tuple(sorted((kwargs or {}).items())), steps)
        if key not in store:
            centers, table = geometry(name)
            y = field(name, missing, steps)
            if kind == "grad1":
                store[key] = tramway_grad1(centers, table, y, **(kwargs or {}))
            elif kind == "gradn":
                store[key] = tramway_gradn_corrected(centers, table, y)
            else:  # pragma: no cover - programming error in this file
                raise ValueError(kind)
        return store[key]

    return get




def dataset(name: str, **measurements):
    centers, table = geometry(name)
    return xtramgrad.from_neighbours(centers, table, **measurements)


# ----------------------------------------------------------------------------- grad1


@pytest.mark.parametrize("missing", [False, True], ids=["full", "nan"])
@pytest.mark.parametrize("ours_kw, tramway_kw", MODES)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_grad1_matches_tramway(tramway_cache, backend, name, ours_kw, tramway_kw, missing):
    if tramway_kw is None:
        tramway_kw = tramway_default_kwargs()
        assert tramway_kw == {"selection_angle": 0.9}
    ref = tramway_cache("grad1", name, missing, tramway_kw)
    ds = dataset(name, D=field(name, missing))
    g = ds.tram.grad("D", **ours_kw)
    assert g.dims == ("bin", "space")
    assert_agrees(g.values, ref)
    # sanity of the comparison itself: most bins have a finite gradient
    assert np.isfinite(ref).all(axis=-1).mean() > 0.5


@pytest.mark.parametrize("ours_kw, tramway_kw", MODES)
@pytest.mark.parametrize(
    "name", ["voronoi2d", "voronoi3d", "grid2d_tenth", "grid3d_unit", "tramway_kmeans"]
)
def test_grad1_time_dim_missing_pattern_per_step(
    tramway_cache, backend, name, ours_kw, tramway_kw
):
    """D(bin, time) with a different missing pattern at each step: every step equals what
    TRamWAy computes for that step alone (the per-step pattern is honoured)."""
    tramway_kw = tramway_default_kwargs() if tramway_kw is None else tramway_kw
    steps = 4
    y = field(name, True, steps)
    patterns = {tuple(np.isnan(y[:, t])) for t in range(steps)}
    assert len(patterns) == steps  # really a different pattern at each step
    ref = tramway_cache("grad1", name, True, tramway_kw, steps)  # (n, T, d)
    ds = dataset(name, D=(("bin", "time"), y))
    g = ds.tram.grad("D", **ours_kw)
    assert g.dims == ("bin", "time", "space")
    assert_agrees(g.values, ref)
    # and step by step, against the single-step computation
    for t in range(steps):
        single = dataset(name, D=y[:, t]).tram.grad("D", **ours_kw).values
        np.testing.assert_array_equal(np.isnan(g.values[:, t]), np.isnan(single))
        np.testing.assert_allclose(g.values[:, t], single, rtol=1e-12, atol=0)


@pytest.mark.parametrize("na", [0.0, -7.5])
def test_grad1_na_matches_tramway(backend, na):
    """TRamWAy's ``na``: the value of a component with no neighbour on either side."""
    # a 3-bin L shape: bin 0 has neighbours only along x (bin 1) and y (bin 2)
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 0.5]])
    table = np.array([[1, 2], [0, 3], [0, -1], [1, -1]])
    y = np.array([1.0, 2.0, 4.0, 3.0])
    for kw in ({"eps": 0.0}, {"selection_angle": 0.9}, {"eps": 0.8}):
        ref = tramway_grad1(centers, table, y, na=na, **kw)
        ours = xtramgrad.from_neighbours(centers, table, D=y).tram.grad("D", na=na, **kw)
        assert_agrees(ours.values, ref)
        assert (ref == na).any()  # the case is exercised


def _exact_component(centers, row, y, i, j, below, above):
    """grad1's closed form in exact rational arithmetic, for TRamWAy's own selection."""
    x0, y0 = Fraction(centers[i, j]), Fraction(y[i])
    sides = []
    for mask in (below, above):
        sel = row[mask]
        if sel.size == 0:
            sides.append(None)
            continue
        xm = sum(Fraction(v) for v in centers[sel, j]) / sel.size
        ym = sum(Fraction(v) for v in y[sel]) / sel.size
        sides.append((xm, ym))
    (lo, hi) = sides
    if lo is not None and hi is not None:
        a, b = x0 - lo[0], hi[0] - x0
        return (a * a * (hi[1] - y0) + b * b * (y0 - lo[1])) / (a * b * (a + b))
    side = lo if lo is not None else hi
    assert side is not None
    return (y0 - side[1]) / (x0 - side[0])


@pytest.mark.parametrize(
    "name, kw",
    [
        pytest.param("voronoi2d", {"eps": 1e-2}, id="voronoi2d-eps1e-2"),
        pytest.param("tramway_gwr", {"eps": 0.0}, id="gwr-eps0"),
        pytest.param("tramway_kmeans", {"selection_angle": 0.9}, id="kmeans-angle0.9"),
    ],
)
def test_grad1_disagreement_is_tramway_rounding(tramway_cache, name, kw):
    """Where the element-wise relative difference exceeds 1e-12, exact rational arithmetic
    on TRamWAy's own neighbour selection shows that our closed form is the closer value."""
    from tramway.inference.gradient import neighbours_per_axis

    centers, table = geometry(name)
    y = field(name, False)
    ref = tramway_cache("grad1", name, False, kw)
    ours = dataset(name, D=y).tram.grad("D", **kw).values
    with np.errstate(invalid="ignore", divide="ignore"):
        elem = np.abs(ours - ref) / np.abs(ref)
    worst = np.argwhere(np.nan_to_num(elem) > 1e-12)
    assert len(worst) > 0, "nothing to explain: TRamWAy agrees element-wise here"
    dist = build_distributed(centers, table)
    order = np.argsort(-elem[tuple(worst.T)])
    for i, j in worst[order][:8]:
        row = table[i][table[i] >= 0]
        below, above = neighbours_per_axis(int(i), dist, centers[row], **kw)
        exact = _exact_component(centers, row, y, i, j, below[j], above[j])
        err_ours = abs(Fraction(ours[i, j]) - exact)
        err_ref = abs(Fraction(ref[i, j]) - exact)
        assert err_ours <= err_ref, (i, j, float(err_ours), float(err_ref))
        assert float(err_ours) < 1e-12 * np.nanmax(np.abs(ref[i]))


# ----------------------------------------------------------------------------- gradn


def _full_rank(d: int) -> int:
    return 1 + d + d * (d + 1) // 2


GRADN_GEOMETRIES = [
    "voronoi2d",
    "voronoi3d",
    "grid2d_tenth",
    "grid3d_unit",
    "chain1d",
    "tramway_grid",
    "tramway_kmeans",
    "tramway_gwr",
    "tramway_hexagon",
]


def _measured_neighbours(table, y):
    y0 = np.asarray(y).reshape(-1, table.shape[0])[0]
    safe = np.where(table >= 0, table, 0)
    return ((table >= 0) & ~np.isnan(y0[safe])).sum(axis=1)


@pytest.mark.parametrize("missing", [False, True], ids=["full", "nan"])
@pytest.mark.parametrize("name", GRADN_GEOMETRIES)
def test_gradn_matches_corrected_tramway_fit(tramway_cache, backend, name, missing):
    centers, table = geometry(name)
    d = centers.shape[1]
    p = _full_rank(d)
    ref, rank = tramway_cache("gradn", name, missing)
    y = field(name, missing)
    g, flags = dataset(name, D=y).tram.grad("D", method="gradn", return_flags=True)
    g, flags = g.values, flags.values
    # no gradient where TRamWAy makes no fit (missing bin, no measured neighbour); no
    # component either where the measured neighbours do not span the space (TRamWAy's
    # minimum-norm guess there): fallback bins with NaN components
    none = np.isnan(ref).all(axis=-1)
    np.testing.assert_array_equal(flags == 2, none)
    partial = np.isnan(g).any(axis=-1) & (flags != 2)
    assert (flags[partial] == 1).all()
    yy = np.asarray(y).reshape(-1, len(centers))[0]
    for i in np.flatnonzero(partial):
        nbrs = table[i][table[i] >= 0]
        nbrs = nbrs[~np.isnan(yy[nbrs])]
        assert np.linalg.matrix_rank(centers[nbrs] - centers[i]) < d
    # the quadratic is kept exactly where it is determined with redundancy (full rank and
    # more distinct points than unknowns); elsewhere the linear fallback is flagged
    redundant = (rank == p) & (_measured_neighbours(table, y) + 1 > p)
    assert not ((flags == 0) & ~redundant).any()
    assert ((flags != 0) & redundant).sum() <= 0.01 * len(centers)  # ill-conditioned designs
    well = flags == 0
    if name != "chain1d":  # a chain never has redundancy (3 points for 3 unknowns)
        assert well.sum() >= min(20, 0.3 * len(centers))
        assert_agrees(g[well], ref[well])
    else:
        assert not well.any()


def _quadratic(centers, seed):
    """A random quadratic polynomial and its exact gradient at the centers."""
    rng = np.random.default_rng(seed)
    d = centers.shape[1]
    c0, lin = rng.standard_normal(), rng.standard_normal(d)
    q = rng.standard_normal((d, d))
    q = q + q.T
    y = c0 + centers @ lin + 0.5 * np.einsum("ni,ij,nj->n", centers, q, centers)
    return y, lin + centers @ q


@pytest.mark.parametrize("name", GRADN_GEOMETRIES)
def test_gradn_exact_for_quadratic_fields(backend, name):
    """Analytic truth: wherever the quadratic is used, a quadratic is reproduced; wherever
    it falls back, a linear field is."""
    centers, table = geometry(name)
    y, truth = _quadratic(centers, seed=len(centers))
    g, flags = dataset(name, D=y).tram.grad("D", method="gradn", return_flags=True)
    g, flags = g.values, flags.values
    assert np.isfinite(g[flags == 0]).all()
    if (flags == 0).any():
        assert_agrees(g[flags == 0], truth[flags == 0])
    lin = np.arange(1.0, centers.shape[1] + 1)
    g1, f1 = dataset(name, D=2.0 + centers @ lin).tram.grad("D", method="gradn",
                                                            return_flags=True)
    back = f1.values == 1
    ok = back & np.isfinite(g1.values).all(axis=1)
    assert ok.sum() >= 0.9 * back.sum()  # the rest: neighbours that do not span (NaN)
    assert_agrees(g1.values[ok], np.broadcast_to(lin, g1.values[ok].shape))


@pytest.mark.parametrize("name", ["voronoi2d", "voronoi3d", "grid2d_unit", "tramway_hexagon"])
def test_tramway_raw_gradn_is_zero_for_linear_fields_ours_is_right(tramway_cache, name):
    """TRamWAy's gradn reads the wrong coefficients: about 0 for every linear field."""
    centers, table = geometry(name)
    d = centers.shape[1]
    lin = np.arange(1.0, d + 1) * np.array([2.0, -3.0, 0.5][:d])
    y = 1.5 + centers @ lin
    _, rank = tramway_cache("gradn", name, False)
    well = rank == _full_rank(d)
    raw = tramway_gradn_raw(centers, table, y)
    assert np.abs(raw[well]).max() < 1e-9 * np.abs(lin).max()
    ours = dataset(name, D=y).tram.grad("D", method="gradn").values
    assert_agrees(ours[well], np.broadcast_to(lin, ours[well].shape))


# ----------------------------------------------------------------------------- ties


@pytest.mark.parametrize("angle", [0.5, 2.0 / 3.0, 0.75], ids=["0.5", "2/3", "0.75"])
@pytest.mark.parametrize(
    "name",
    ["grid2d_unit", "grid3d_unit", "grid3d_tenth", "tramway_grid_square", "tramway_hexagon"],
)
def test_grad1_cone_ties_decided_as_tramway(tramway_cache, backend, name, angle):
    """Neighbours exactly (or up to rounding) on a cone's boundary: 45-degree diagonals of
    grids at s = 0.5 (in 3D), hexagon neighbours at 60 degrees at s = 2/3. The side is
    decided by TRamWAy's own float64 expression, so the selections are identical (in 2D,
    s = 0.5 is InferenceMAP's quadrant rule, whose ties go to the lowest axis)."""
    ref = tramway_cache("grad1", name, False, {"selection_angle": angle})
    ours = dataset(name, D=field(name, False)).tram.grad("D", selection_angle=angle).values
    assert_agrees(ours, ref)

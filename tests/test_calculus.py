"""xtramgrad.calculus: div, curl, Laplacian, their operators and the smoothness penalties.

Independent truth: closed forms (quadratic and linear fields, rotations, the 5-point
stencil, checkerboards), sums written out from their definitions, and TRamWAy 0.7's own
posterior functions (``tests/data/sample.rwa``, written by TRamWAy itself).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xtramgrad
from helpers import assert_same, no_compute  # noqa: E402  (tests/ is on sys.path)
from xtramgrad import TessellationError, calculus
from xtramgrad.kernels import Method, register_method, unregister_method

# --------------------------------------------------------------------------- meshes


def voronoi2(n: int = 300, seed: int = 0) -> xr.Dataset:
    pts = np.random.default_rng(seed).random((n, 2))
    return xtramgrad.voronoi(pts, bounds=[(0, 1), (0, 1)], units="um")


def voronoi3(n: int = 400, seed: int = 1) -> xr.Dataset:
    return xtramgrad.voronoi(np.random.default_rng(seed).random((n, 3)))


def xy(ds: xr.Dataset) -> tuple[np.ndarray, ...]:
    return tuple(ds.center.values.T)


def quadratic2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 1.0 + 0.5 * x - 2.0 * y + 3.0 * x * x - 1.5 * x * y + 2.5 * y * y  # lap = 11


def interior_grid(shape: tuple[int, int], margin: int = 1) -> np.ndarray:
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    ok = ((i >= margin) & (i < shape[0] - margin) & (j >= margin) & (j < shape[1] - margin))
    return ok.ravel()


# --------------------------------------------------------------------------- closed forms


def test_lsq2_laplacian_is_exact_for_quadratics():
    ds = voronoi2()
    ds["V"] = ("bin", quadratic2(*xy(ds)), {"units": "kT"})
    lap = calculus.laplacian(ds, "V")
    assert np.isfinite(lap).all()
    np.testing.assert_allclose(lap, 11.0, rtol=0, atol=1e-8)
    assert lap.name == "laplacian_V" and lap.dims == ("bin",)
    assert lap.attrs["units"] == "kT / um^2"
    assert lap.attrs["long_name"] == "Laplacian of V"
    assert lap.attrs["xtramgrad_method"] == "lsq2"


def test_lsq2_laplacian_3d_quadratic():
    ds = voronoi3()
    x, y, z = xy(ds)
    ds["V"] = ("bin", x * x + 2 * y * y - 0.5 * z * z + x * z - y * z)
    np.testing.assert_allclose(calculus.laplacian(ds, "V"), 5.0, atol=1e-7)


def test_div_grad_of_a_quadratic_is_its_laplacian():
    ds = voronoi2()
    ds["V"] = ("bin", quadratic2(*xy(ds)))
    g = xtramgrad.grad(ds, "V", method="lsq2")
    d = calculus.div(ds, g)
    np.testing.assert_allclose(d, 11.0, atol=1e-8)
    assert d.name == "div_grad_V"
    assert d.attrs["long_name"] == "divergence of gradient of V"


def test_curl_grad_of_a_quadratic_vanishes():
    ds = voronoi2()
    ds["V"] = ("bin", quadratic2(*xy(ds)))
    c = calculus.curl(ds, xtramgrad.grad(ds, "V", method="lsq2"))
    # relative to the Hessian (about 6): rounding only
    assert float(np.abs(c).max()) < 1e-8


def test_curl_grad_3d_vanishes_and_is_a_vector():
    ds = voronoi3()
    x, y, z = xy(ds)
    ds["V"] = ("bin", x * x - y * z + 2 * z * z + x * y)
    c = calculus.curl(ds, xtramgrad.grad(ds, "V", method="lsq2"))
    assert c.dims == ("bin", "space") and c.space.values.tolist() == ["x", "y", "z"]
    assert float(np.abs(c).max()) < 1e-7


ROTATION_CASES = [
    pytest.param("voronoi", "lsq2", {}, id="voronoi-lsq2"),
    pytest.param("voronoi", "lsq", {}, id="voronoi-lsq"),
    pytest.param("voronoi", "gradn", {}, id="voronoi-gradn"),
    pytest.param("grid", "grad1", {"selection_angle": 0.9}, id="grid-grad1"),
    pytest.param("grid", "local", {"bandwidth": 1.5}, id="grid-local"),
]


@pytest.mark.parametrize(("mesh", "method", "options"), ROTATION_CASES)
def test_rotation_has_curl_2_and_div_0(mesh, method, options):
    ds = voronoi2() if mesh == "voronoi" else xtramgrad.grid((7, 6), spacing=0.3)
    x, y = xy(ds)
    ds["Fx"], ds["Fy"] = ("bin", -y), ("bin", x)
    c = calculus.curl(ds, ["Fx", "Fy"], method=method, **options)
    d = calculus.div(ds, ["Fx", "Fy"], method=method, **options)
    np.testing.assert_allclose(c, 2.0, atol=1e-9)
    np.testing.assert_allclose(d, 0.0, atol=1e-9)
    assert c.name == "curl_Fx_Fy" and d.name == "div_Fx_Fy"


def test_rotation_3d():
    ds = voronoi3()
    x, y, z = xy(ds)
    # F = w x r with w = (1, -2, 3): curl F = 2 w, div F = 0
    w = np.array([1.0, -2.0, 3.0])
    F = np.cross(w, ds.center.values)
    ds["F"] = (("bin", "space"), F)
    c = calculus.curl(ds, "F")
    np.testing.assert_allclose(c, np.broadcast_to(2 * w, F.shape), atol=1e-8)
    np.testing.assert_allclose(calculus.div(ds, "F"), 0.0, atol=1e-8)


def test_div_of_a_linear_field_with_components_and_1d():
    ds = voronoi2()
    x, y = xy(ds)
    ds["F"] = (("bin", "space"), np.stack([3 * x - y, 2 * x + 0.5 * y], axis=1))
    np.testing.assert_allclose(calculus.div(ds, "F", method="lsq"), 3.5, atol=1e-9)
    one = xtramgrad.voronoi(np.sort(np.random.default_rng(3).random(30)))
    one["F"] = (("bin", "space"), one.center.values ** 2)
    x1 = one.center.values[:, 0]
    np.testing.assert_allclose(calculus.div(one, "F"), 2 * x1, atol=1e-9)


def test_fv_laplacian_is_the_five_point_stencil_on_a_grid():
    h = 0.25
    ds = xtramgrad.grid((6, 7), spacing=h, units="um")
    u = np.random.default_rng(0).normal(size=42)
    ds["u"] = ("bin", u, {"units": "kT"})
    lap = calculus.laplacian(ds, "u", method="fv")
    grid = u.reshape(6, 7)
    five = (grid[2:, 1:-1] + grid[:-2, 1:-1] + grid[1:-1, 2:] + grid[1:-1, :-2]
            - 4 * grid[1:-1, 1:-1]) / h**2
    inner = interior_grid((6, 7))
    np.testing.assert_allclose(lap.values[inner], five.ravel(), rtol=1e-13)
    # a corner cell: two faces, no flux through the box (diagonal neighbours touch at a point)
    np.testing.assert_allclose(lap.values[0], (grid[1, 0] + grid[0, 1] - 2 * grid[0, 0]) / h**2,
                               rtol=1e-13)
    assert lap.attrs["units"] == "kT / um^2" and lap.attrs["xtramgrad_method"] == "fv"


def test_fv_laplacian_1d():
    x = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
    ds = xtramgrad.voronoi(x, u=x**2)
    lap = calculus.laplacian(ds, "u", method="fv").values
    # cell of 0.3 spans [0.2, 0.45]: ((0.36 - 0.09) / 0.3 - (0.09 - 0.01) / 0.2) / 0.25
    assert lap[2] == pytest.approx(((0.36 - 0.09) / 0.3 - (0.09 - 0.01) / 0.2) / 0.25, rel=1e-13)


def test_vector_field_dims_in_any_order_and_labels():
    ds = voronoi2(200)
    x, y = xy(ds)
    t = np.array([1.0, 2.0, 3.0])
    F = np.stack([x * x, x * y], axis=0)[None] * t[:, None, None]  # (time, space, bin)
    ds["F"] = (("time", "space", "bin"), F, {"units": "pN", "long_name": "force"})
    ds = ds.assign_coords(time=t)
    d = calculus.div(ds, "F")
    assert d.dims == ("time", "bin")
    np.testing.assert_allclose(d, t[:, None] * 3 * x[None], atol=1e-8)
    assert d.attrs["units"] == "pN / um" and d.attrs["long_name"] == "divergence of force"
    assert d.time.values.tolist() == t.tolist()
    # space labels in another order are reordered
    swapped = ds["F"].isel(space=[1, 0]).assign_coords(space=["y", "x"])
    np.testing.assert_allclose(calculus.div(ds, swapped), d, atol=1e-12)


# --------------------------------------------------------------------------- chunked == eager


def field_ds(n: int = 250) -> xr.Dataset:
    ds = voronoi2(n, seed=5)
    x, y = xy(ds)
    rng = np.random.default_rng(1)
    v = np.sin(3 * x)[None] * np.cos(2 * y)[None] + rng.normal(0, 0.01, (2, n))
    v[0, rng.random(n) < 0.05] = np.nan
    ds["V"] = (("time", "bin"), v, {"units": "kT"})
    ds["F"] = (("time", "bin", "space"), np.stack([np.cos(x) * y, x * y * y], axis=-1)[None]
               * np.array([1.0, 2.0])[:, None, None], {"units": "pN"})
    return ds


CHUNKED = [
    pytest.param(lambda ds: calculus.div(ds, "F"), id="div"),
    pytest.param(lambda ds: calculus.div(ds, "F", method="grad1"), id="div-grad1"),
    pytest.param(lambda ds: calculus.curl(ds, "F"), id="curl"),
    pytest.param(lambda ds: calculus.laplacian(ds, "V"), id="laplacian-lsq2"),
    pytest.param(lambda ds: calculus.laplacian(ds, "V", method="fv"), id="laplacian-fv"),
]


@pytest.mark.parametrize("func", CHUNKED)
def test_chunked_equals_eager_bitwise(func):
    ds = field_ds()
    eager = func(ds)
    with no_compute():
        lazy = func(ds.chunk({"bin": 60}))
    assert lazy.chunks is not None and len(lazy.chunks[lazy.get_axis_num("bin")]) > 1
    assert_same(lazy, eager, bitwise=True)


@pytest.mark.parametrize("func", CHUNKED)
def test_chunked_field_only_and_time_chunks(func):
    ds = field_ds()
    eager = func(ds)
    for var in ("V", "F"):
        ds[var] = ds[var].chunk({"bin": 80})
    assert_same(func(ds), eager, bitwise=True)
    ds = field_ds()
    for var in ("V", "F"):
        ds[var] = ds[var].chunk({"time": 1})
    got = func(ds)
    assert got.chunks is not None
    np.testing.assert_array_equal(got.values, eager.values)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n=st.integers(20, 160), chunk=st.integers(5, 90),
       which=st.sampled_from(["div", "curl", "lsq2", "fv"]))
def test_chunked_equals_eager_property(seed, n, chunk, which):
    rng = np.random.default_rng(seed)
    ds = xtramgrad.voronoi(rng.random((n, 2)))
    x, y = xy(ds)
    ds["u"] = ("bin", np.where(rng.random(n) < 0.1, np.nan, np.sin(4 * x) * y))
    ds["F"] = (("bin", "space"), np.stack([x * np.cos(y), ds.u.values], axis=1))
    func = {
        "div": lambda d: calculus.div(d, "F"),
        "curl": lambda d: calculus.curl(d, "F", method="lsq"),
        "lsq2": lambda d: calculus.laplacian(d, "u"),
        "fv": lambda d: calculus.laplacian(d, "u", method="fv"),
    }[which]
    got = func(ds.chunk({"bin": chunk})).values
    np.testing.assert_array_equal(got, func(ds).values)


def test_curl_3d_chunked_equals_eager():
    ds = voronoi3(300)
    x, y, z = xy(ds)
    ds["F"] = (("bin", "space"), np.stack([y * z, x * x, np.sin(z)], axis=1))
    assert_same(calculus.curl(ds.chunk({"bin": 100}), "F"), calculus.curl(ds, "F"),
                bitwise=True)


def test_fv_on_a_lazy_grid_and_on_a_ragged_table():
    eager = xtramgrad.grid((20, 15), spacing=0.1)
    lazy = xtramgrad.grid((20, 15), spacing=0.1, chunks=70)
    u = np.random.default_rng(2).normal(size=300)
    eager["u"] = ("bin", u)
    lazy["u"] = ("bin", u)
    ref = calculus.laplacian(eager, "u", method="fv")
    assert_same(calculus.laplacian(lazy, "u", method="fv"), ref, bitwise=True)
    ragged = xtramgrad.grid((20, 15), spacing=0.1, layout="ragged")
    ragged["u"] = ("bin", u)
    assert ragged.face_area.dims == ("edge",)
    np.testing.assert_array_equal(calculus.laplacian(ragged, "u", method="fv"), ref)
    assert_same(calculus.laplacian(ragged.chunk({"bin": 70}), "u", method="fv"), ref,
                bitwise=True)


# --------------------------------------------------------------------------- operators


def close_to_function(op, x, result):
    """|Op x - f(x)| <= 1e-12 |Op| |x| per row, and the same NaN rows (missing values of
    ``x`` have no coefficient: they are filled with 0 before the product)."""
    got = op @ np.nan_to_num(x)
    want = np.asarray(result).reshape(-1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    bound = (abs(op) @ np.abs(np.nan_to_num(x)))[ok]
    assert np.all(np.abs(got[ok] - want[ok]) <= 1e-12 * bound + 1e-300)


OPERATOR_METHODS = [pytest.param(m, id=m) for m in ("lsq2", "lsq", "gradn", "grad1")]


@pytest.mark.parametrize("method", OPERATOR_METHODS)
def test_div_and_curl_operators_equal_the_functions(method):
    ds = voronoi2(250, seed=7)
    x, y = xy(ds)
    F = np.stack([np.sin(3 * x) * y, np.cos(x + y)], axis=1)
    ds["F"] = (("bin", "space"), F)
    D = calculus.div_operator(ds, method=method)
    Cop = calculus.curl_operator(ds, method=method)
    assert D.shape == (250, 500) and Cop.shape == (250, 500)
    close_to_function(D, F.reshape(-1), calculus.div(ds, "F", method=method))
    close_to_function(Cop, F.reshape(-1), calculus.curl(ds, "F", method=method))


def test_div_operator_is_the_sum_of_gradient_rows():
    ds = voronoi2(120, seed=2)
    G = xtramgrad.grad_operator(ds, method="lsq").toarray()
    D = calculus.div_operator(ds, method="lsq").toarray()
    want = np.zeros_like(D)
    for j in range(2):
        want[:, j::2] = G[j::2]
    np.testing.assert_array_equal(D, want)


def test_operators_with_missing_values():
    ds = voronoi2(250, seed=8)
    x, y = xy(ds)
    F = np.stack([x * y, np.sin(x)], axis=1)
    rng = np.random.default_rng(0)
    F[rng.random(250) < 0.1, 0] = np.nan
    F[rng.random(250) < 0.1, 1] = np.nan
    ds["F"] = (("bin", "space"), F)
    for fn, opfn in [(calculus.div, calculus.div_operator),
                     (calculus.curl, calculus.curl_operator)]:
        res = fn(ds, "F")
        assert np.isnan(res).sum() >= np.isnan(F).any(axis=1).sum()
        close_to_function(opfn(ds, "F"), F.reshape(-1), res)
    u = np.sin(2 * x) * y
    u[rng.random(250) < 0.1] = np.nan
    ds["u"] = ("bin", u)
    for method in ("lsq2", "fv"):
        close_to_function(calculus.laplacian_operator(ds, "u", method=method), u,
                          calculus.laplacian(ds, "u", method=method))


def test_curl_operator_3d_layout():
    ds = voronoi3(200)
    x, y, z = xy(ds)
    F = np.stack([y * z, x * x, np.sin(z)], axis=1)
    ds["F"] = (("bin", "space"), F)
    Cop = calculus.curl_operator(ds)
    assert Cop.shape == (600, 600)
    close_to_function(Cop, F.reshape(-1), calculus.curl(ds, "F"))


@pytest.mark.parametrize("method", ["lsq2", "fv"])
def test_laplacian_operator_equals_the_function(method):
    ds = voronoi2(300, seed=4)
    x, y = xy(ds)
    u = np.exp(x) * np.cos(3 * y)
    ds["u"] = ("bin", u)
    L = calculus.laplacian_operator(ds, method=method)
    assert L.shape == (300, 300)
    close_to_function(L, u, calculus.laplacian(ds, "u", method=method))
    if method == "fv":  # rows sum to 0: constants have no Laplacian
        assert np.abs(L @ np.ones(300)).max() <= 1e-12 * abs(L).max()


def test_fv_operator_on_a_grid_is_the_five_point_stencil():
    L = calculus.laplacian_operator(xtramgrad.grid((4, 4), spacing=0.5), method="fv")
    row = L[5].toarray().ravel()  # bin (1, 1)
    want = np.zeros(16)
    want[[1, 4, 6, 9]] = 4.0
    want[5] = -16.0
    np.testing.assert_allclose(row, want, rtol=1e-14)


# --------------------------------------------------------------------------- penalties


PENALTIES = [
    pytest.param("two_point", {}, id="two_point"),
    pytest.param("gradient", {"method": "lsq2"}, id="gradient-lsq2"),
    pytest.param("gradient", {"method": "grad1"}, id="gradient-grad1"),
    pytest.param("gradient", {"method": "local", "bandwidth": 0.15}, id="gradient-local"),
    pytest.param("tramway", {}, id="tramway"),
    pytest.param("tramway", {"rgrad": "delta0"}, id="tramway-delta0"),
    pytest.param("two_point", {"weight": "w"}, id="two_point-weighted"),
    pytest.param("gradient", {"method": "lsq", "weight": "w"}, id="gradient-weighted"),
]


@pytest.mark.parametrize(("form", "kw"), PENALTIES)
def test_penalty_is_symmetric_psd_and_blind_to_constants(form, kw):
    ds = voronoi2(150, seed=9)
    ds["w"] = ("bin", np.random.default_rng(0).uniform(0.5, 2.0, 150))
    P = calculus.smoothness_penalty(ds, form, **kw)
    assert P.shape == (150, 150)
    dense = P.toarray()
    np.testing.assert_array_equal(dense, dense.T)
    scale = np.abs(dense).max()
    assert np.abs(dense @ np.ones(150)).max() <= 1e-12 * scale
    eig = np.linalg.eigvalsh(dense)
    assert eig.min() >= -1e-12 * eig.max()
    if form == "two_point" or kw.get("rgrad"):  # graph Laplacians of a connected mesh
        assert eig[1] > 1e-8 * eig.max()  # only constants are free


def test_two_point_is_its_definition():
    ds = voronoi2(80, seed=3)
    ds["w"] = ("bin", np.linspace(0.5, 1.5, 80))
    u = np.random.default_rng(4).normal(size=80)
    c = ds.center.values
    total = 0.0
    wtotal = 0.0
    w = ds.w.values
    for i, row in enumerate(ds.neighbours.values):
        for slot, k in enumerate(row):
            if k > i:  # each face once
                coef = ds.face_area.values[i, slot] / np.linalg.norm(c[k] - c[i])
                total += coef * (u[k] - u[i]) ** 2
                wtotal += coef * (w[i] + w[k]) / 2 * (u[k] - u[i]) ** 2
    P = calculus.smoothness_penalty(ds)
    assert float(u @ P @ u) == pytest.approx(total, rel=1e-12)
    Pw = calculus.smoothness_penalty(ds, weight="w")
    assert float(u @ Pw @ u) == pytest.approx(wtotal, rel=1e-12)
    np.testing.assert_allclose((calculus.smoothness_penalty(ds, weight=2.0) - 2 * P).data, 0,
                               atol=1e-13)


def test_gradient_form_is_its_definition():
    ds = voronoi2(120, seed=6)
    u = np.random.default_rng(5).normal(size=120)
    ds["u"] = ("bin", u)
    g = xtramgrad.grad(ds, "u", method="lsq").values
    want = float(np.sum(ds.volume.values * np.sum(g * g, axis=1)))
    P = calculus.smoothness_penalty(ds, "gradient", method="lsq")
    assert float(u @ P @ u) == pytest.approx(want, rel=1e-12)


def test_checkerboard_is_seen_by_two_point_only():
    shape = (12, 10)
    h = 0.1
    ds = xtramgrad.grid(shape, spacing=h)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    u = ((-1.0) ** (i + j)).ravel()
    # two-point: every face (side h, distance h) costs (A / d) * 2^2 = 4
    faces = (shape[0] - 1) * shape[1] + shape[0] * (shape[1] - 1)
    P = calculus.smoothness_penalty(ds)
    assert float(u @ P @ u) == pytest.approx(4.0 * faces, rel=1e-13)
    # a centred gradient is 0 on every interior bin: the gradient form with the border
    # rows weighted out does not see the checkerboard at all
    inner = interior_grid(shape).astype(float)
    for method in ("grad1", "lsq"):
        G = xtramgrad.grad_operator(ds, method=method)
        gu = (G @ u).reshape(-1, 2)
        assert np.abs(gu[inner > 0]).max() < 1e-12
        Pg = calculus.smoothness_penalty(ds, "gradient", method=method, weight=inner)
        assert abs(float(u @ Pg @ u)) < 1e-20 * float(u @ P @ u) + 1e-12
    # while a smooth field costs about its Dirichlet energy in both
    s = np.sin(np.pi * ds.center.values[:, 0])
    assert float(s @ calculus.smoothness_penalty(ds, "gradient", method="lsq", weight=inner)
                 @ s) > 0.5 * float(s @ (P @ s)) * inner.mean()


def test_two_point_converges_to_the_dirichlet_energy():
    ds = xtramgrad.voronoi(np.random.default_rng(11).random((3000, 2)),
                           bounds=[(0, 1), (0, 1)])
    x, y = xy(ds)
    u = np.cos(np.pi * x) * np.cos(2 * np.pi * y)  # zero normal derivative on the border
    ratio = float(u @ calculus.smoothness_penalty(ds) @ u) / (5 * np.pi**2 / 4)
    assert abs(ratio - 1) < 5e-3


# --------------------------------------------------------------------------- TRamWAy


@pytest.fixture(scope="module")
def tramway_tree():
    pytest.importorskip("tramway")
    from pathlib import Path

    from tramway.core.hdf5 import load_rwa

    path = Path(__file__).resolve().parent / "data" / "sample.rwa"
    return load_rwa(str(path), lazy=False, verbose=False)


def _tramway_prior(tree, label, u, *, rgrad=None, no_volume=False, potential=False):
    """TRamWAy's own prior term: its posterior with the prior minus without, / prior."""
    from tramway.inference.base import distributed, smooth_infer_init
    from tramway.inference.gradient import get_grad_kwargs

    cells = distributed(tree[label].data)
    if no_volume:
        for i in cells:
            cells[i].volume = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index, rev, _, dt_mean, *_ = smooth_infer_init(cells, sigma2=0.0)
        gk = get_grad_kwargs({})
        lam = 1e6
        if potential:
            from tramway.inference.dv import DV, dv_neg_posterior, dv_neg_posterior1

            fun = dv_neg_posterior1 if rgrad else dv_neg_posterior
            d0 = np.full(len(index), 0.3)

            def post(prior):
                dv = DV(d0, u, None, prior)
                return fun(dv.combined, dv, cells, 0.0, False, dt_mean, index, rev, gk, 0.0,
                           False, [])
        else:
            from tramway.inference.standard_d import d_neg_posterior1, smooth_d_neg_posterior

            fun = d_neg_posterior1 if rgrad else smooth_d_neg_posterior

            def post(prior):
                return fun(u, cells, 0.0, prior, False, dt_mean, None, index, rev, gk)

        value = (post(lam) - post(0.0)) / lam
        volumes = np.array([cells[i].volume or np.nan for i in index], dtype=float)
    return value, np.asarray(index), volumes


TRAMWAY_CASES = [
    pytest.param(label, rgrad, potential, id=f"{label}-{rgrad or 'grad1'}"
                 + ("-dv" if potential else "-d"))
    for label in ("grid", "hexagon", "kmeans", "gwr")
    for rgrad, potential in ((None, False), ("delta0", False))
] + [pytest.param("kmeans", None, True, id="kmeans-grad1-dv"),
     pytest.param("hexagon", "delta0", True, id="hexagon-delta0-dv")]


@pytest.mark.parametrize(("label", "rgrad", "potential"), TRAMWAY_CASES)
def test_tramway_penalty_is_tramways_prior(tramway_tree, label, rgrad, potential):
    ds = xtramgrad.from_tramway(tramway_tree, label=label)
    rng = np.random.default_rng(len(label))
    u = 0.4 + 0.2 * rng.random(ds.sizes["bin"])
    tw, index, volumes = _tramway_prior(tramway_tree, label, u, rgrad=rgrad,
                                        potential=potential)
    np.testing.assert_array_equal(ds.tramway_cell.values, index)
    ds["volume"] = ("bin", volumes)  # TRamWAy's own volumes (ours are NaN where unbounded)
    P = calculus.smoothness_penalty(ds, "tramway", rgrad=rgrad)
    assert float(u @ P @ u) == pytest.approx(tw, rel=1e-8)


def test_tramway_penalty_without_volumes(tramway_tree):
    ds = xtramgrad.from_tramway(tramway_tree, label="hexagon").drop_vars("volume")
    u = np.random.default_rng(0).random(ds.sizes["bin"])
    tw, _, _ = _tramway_prior(tramway_tree, "hexagon", u, no_volume=True)
    P = calculus.smoothness_penalty(ds, "tramway")
    assert float(u @ P @ u) == pytest.approx(tw, rel=1e-8)


def test_tramway_penalty_refuses_nan_volumes(tramway_tree):
    ds = xtramgrad.from_tramway(tramway_tree, label="kmeans")
    assert np.isnan(ds.volume).any()
    with pytest.raises(TessellationError, match=r"'volume' is NaN at \d+ bin.*fill"):
        calculus.smoothness_penalty(ds, "tramway")


# --------------------------------------------------------------------------- errors


def test_fv_needs_face_areas_and_volumes():
    ds = voronoi2(50).drop_vars(["face_area", "volume"])
    ds["u"] = ("bin", np.ones(50))
    with pytest.raises(TessellationError, match=r"no 'face_area' and no 'volume'.*voronoi"):
        calculus.laplacian(ds, "u", method="fv")
    with pytest.raises(TessellationError, match=r"no 'volume'.*voronoi"):
        calculus.laplacian_operator(voronoi2(50).drop_vars("volume"), method="fv")
    with pytest.raises(TessellationError, match=r"face_area.*no 'face_area'"):
        calculus.smoothness_penalty(ds)
    with pytest.raises(TessellationError, match=r"no 'volume' variable"):
        calculus.smoothness_penalty(ds, "gradient")


def test_curl_in_1d_is_an_error():
    ds = xtramgrad.grid(6)
    ds["F"] = (("bin", "space"), np.ones((6, 1)))
    with pytest.raises(TessellationError, match="curl of a 1D tessellation.*div"):
        calculus.curl(ds, "F")
    with pytest.raises(TessellationError, match="curl of a 1D tessellation"):
        calculus.curl_operator(ds)


VECTOR_ERRORS = [
    pytest.param("V", r"variable 'V' has dims \('bin',\); a vector field", id="scalar"),
    pytest.param("F3", r"3 entries along 'space'; the tessellation is 2D", id="space-size"),
    pytest.param(["Fx"], r"1 component variables \['Fx'\] for a 2D", id="too-few"),
    pytest.param(["Fx", "Fz"], r"have different units", id="units"),
    pytest.param("nope", r"no variable 'nope'", id="missing"),
    pytest.param(["Fx", "F"], r"variable 'F' has a 'space' dim", id="vector-component"),
]


@pytest.mark.parametrize(("field", "match"), VECTOR_ERRORS)
def test_wrong_vector_fields(field, match):
    ds = voronoi2(60)
    ds["V"] = ("bin", np.ones(60))
    ds["F"] = (("bin", "space"), np.ones((60, 2)))
    ds["Fx"] = ("bin", np.ones(60), {"units": "pN"})
    ds["Fz"] = ("bin", np.ones(60), {"units": "nN"})
    if field == "F3":  # a 3D vector on a 2D tessellation, passed directly
        field = xr.DataArray(np.ones((60, 3)), dims=("bin", "space"))
    with pytest.raises(TessellationError, match=match):
        calculus.div(ds, field)


def test_vector_from_another_tessellation_or_labels():
    ds = voronoi2(60)
    other = voronoi2(50)
    other["V"] = ("bin", np.ones(50))
    with pytest.raises(TessellationError, match="50 bins along 'bin'; the tessellation has 60"):
        calculus.div(ds, xtramgrad.grad(other, "V"))
    bad = xr.DataArray(np.ones((60, 2)), dims=("bin", "space"), coords={"space": ["a", "b"]})
    with pytest.raises(TessellationError, match=r"space labels \['a', 'b'\]"):
        calculus.curl(ds, bad)


NONLINEAR = [
    pytest.param(lambda ds, m: calculus.div_operator(ds, method=m), id="div_operator"),
    pytest.param(lambda ds, m: calculus.curl_operator(ds, method=m), id="curl_operator"),
    pytest.param(lambda ds, m: calculus.smoothness_penalty(ds, "gradient", method=m),
                 id="penalty"),
]


@pytest.mark.parametrize("call", NONLINEAR)
def test_operators_need_a_linear_method(call):
    ds = voronoi2(40)

    def median_slope(nb, ok):  # pragma: no cover - never run: refused before
        raise AssertionError

    register_method(Method("nonlinear_test", "a non-linear method", median_slope,
                           linear=False))
    try:
        with pytest.raises(ValueError, match="'nonlinear_test' is not linear"):
            call(ds, "nonlinear_test")
    finally:
        unregister_method("nonlinear_test")

    def user(**kw):  # pragma: no cover - never run: refused before
        raise AssertionError

    with pytest.raises(ValueError, match="need not be linear"):
        call(ds, user)


OPTION_ERRORS = [
    pytest.param(lambda ds: calculus.laplacian(ds, "u", method="grad1"),
                 r"laplacian\(method='grad1'\).*fits the Hessian: \['lsq2'\]", id="no-hessian"),
    pytest.param(lambda ds: calculus.laplacian(ds, "u", method="fv", power=1),
                 "method='fv' takes no options", id="fv-options"),
    pytest.param(lambda ds: calculus.div(ds, ["u", "u"], method="local"),
                 "bandwidth='auto'.*pass a bandwidth", id="auto-bandwidth"),
    pytest.param(lambda ds: calculus.div(ds, ["u", "u"], method="lsq", bandwidth=1),
                 "takes no option 'bandwidth'", id="unknown-option"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, "dirichlet"),
                 r"form='dirichlet'; expected one of", id="form"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, method="lsq"),
                 "form='two_point' takes no gradient method", id="two-point-method"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, rgrad="delta0"),
                 "rgrad='delta0' applies to form='tramway' only", id="rgrad-form"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, "tramway", rgrad="delta2"),
                 "rgrad='delta2'; expected", id="rgrad"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, "tramway", method="lsq"),
                 "form='tramway' uses TRamWAy's grad1", id="tramway-method"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, weight=-np.ones(40)),
                 "weight holds 40 value.*negative", id="weight-negative"),
    pytest.param(lambda ds: calculus.smoothness_penalty(ds, weight=np.ones(3)),
                 r"weight has shape \(3,\); expected \(40,\)", id="weight-shape"),
]


@pytest.mark.parametrize(("call", "match"), OPTION_ERRORS)
def test_option_errors(call, match):
    ds = voronoi2(40)
    ds["u"] = ("bin", np.ones(40))
    with pytest.raises(ValueError, match=match):
        call(ds)


def test_bad_geometry_values():
    ds = voronoi2(40)
    ds["u"] = ("bin", np.ones(40))
    neg = ds.copy()
    fa = neg.face_area.values.copy()
    fa[3, 0] = -1.0
    neg["face_area"] = (("bin", "nbr"), fa)
    with pytest.raises(TessellationError, match="'face_area' holds 1 negative value"):
        calculus.smoothness_penalty(neg)
    with pytest.raises(TessellationError, match="'face_area' holds 1 negative value"):
        calculus.laplacian(neg, "u", method="fv")
    nan = ds.copy()
    fa = nan.face_area.values.copy()
    fa[3, 0] = np.nan
    nan["face_area"] = (("bin", "nbr"), fa)
    with pytest.raises(TessellationError, match="'face_area' is NaN for 1 neighbour pair"):
        calculus.smoothness_penalty(nan)
    lap = calculus.laplacian(nan, "u", method="fv")  # undefined there, defined elsewhere
    assert np.isnan(lap.values[3]) and np.isfinite(lap.values[4])
    vol = ds.copy()
    vol["volume"] = ("bin", np.where(np.arange(40) == 2, np.nan, ds.volume.values))
    with pytest.raises(TessellationError, match=r"'volume' is NaN at 1 bin.*fillna"):
        calculus.smoothness_penalty(vol, "gradient")


def test_infinite_values_are_refused():
    ds = voronoi2(40)
    u = np.ones(40)
    u[5] = np.inf
    ds["u"] = ("bin", u)
    ds["F"] = (("bin", "space"), np.stack([u, u], axis=1))
    for call in (lambda: calculus.laplacian(ds, "u", method="fv"),
                 lambda: calculus.laplacian(ds, "u"),
                 lambda: calculus.div(ds, "F")):
        with pytest.raises(TessellationError, match=r"infinite value\(s\) \(first at bin 5\)"):
            call()

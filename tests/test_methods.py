"""Every registered method, through the same tests: parametrised over the registries.

A method registered later (``xtramgrad.register_method``) is tested here by the tests that
exist: eager on each backend, chunked (equal to eager, bit for bit), 1-3D, missing values,
extra dims, labels and coordinates, flags, and the truths that hold for its class (every
method but grad1 is exact for linear fields; the quadratic fits for quadratic fields).
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr

import xtramgrad
from helpers import assert_same, no_compute  # noqa: E402  (tests/ is on sys.path)
from xtramgrad import kernels
from xtramgrad.kernels import METHODS, Method, register_method, unregister_method
from xtramgrad.kernels.fits import segment_sum
from xtramgrad.selection import RULES

# options making each built-in method well defined on the small meshes below
OPTIONS = {"local": {"bandwidth": 0.25}}


def options(name: str) -> dict:
    return dict(OPTIONS.get(name, {}))


def mesh(d: int, n: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    ds = xtramgrad.voronoi(rng.random((n, d)), units="um").tram.sort()
    return ds


def fields(ds: xr.Dataset, seed: int, missing: float, n_time: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    c = ds.center.values
    base = np.sin(2 * c[:, 0]) + c.sum(axis=1) ** 2
    if n_time:
        v = base[None] + rng.normal(0, 0.1, (n_time, len(c)))
        v[rng.random(v.shape) < missing] = np.nan
        ds["D"] = (("time", "bin"), v, {"units": "um2/s"})
        ds = ds.assign_coords(time=np.arange(n_time) * 0.5)
    else:
        v = base.copy()
        v[rng.random(len(c)) < missing] = np.nan
        ds["D"] = ("bin", v, {"units": "um2/s"})
    return ds


CASES = [
    pytest.param(1, 30, id="1d"),
    pytest.param(2, 150, id="2d"),
    pytest.param(3, 120, id="3d"),
]


@pytest.fixture(params=sorted(METHODS))
def method(request):
    return request.param


@pytest.mark.parametrize("missing", [0.0, 0.2], ids=["full", "nan"])
@pytest.mark.parametrize("d, n", CASES)
def test_chunked_equals_eager_bitwise(method, d, n, missing):
    ds = fields(mesh(d, n, seed=d), seed=n, missing=missing, n_time=3)
    eager, flags = ds.tram.grad("D", method=method, return_flags=True, **options(method))
    with no_compute():
        lazy = ds.chunk({"bin": n // 4, "time": 2})
        chunked, cflags = lazy.tram.grad("D", method=method, return_flags=True,
                                         **options(method))
    assert chunked.chunks[chunked.get_axis_num("bin")] == lazy.D.chunks[1]
    with dask.config.set(scheduler="sync"):
        assert_same(chunked, eager, bitwise=True)
        np.testing.assert_array_equal(cflags.values, flags.values)
    assert eager.dims == ("time", "bin", "space")
    assert eager.attrs["units"] == "um2/s / um" and eager.attrs["xtramgrad_method"] == method


@pytest.mark.parametrize("d, n", CASES)
def test_backends_agree(method, d, n):
    if METHODS[method].compiled is None:
        pytest.skip("numpy only")
    if not kernels.numba_available():
        pytest.skip("numba not installed")
    ds = fields(mesh(d, n, seed=10 + d), seed=3, missing=0.15, n_time=2)
    out = {}
    for backend in ("numpy", "numba"):
        previous = kernels.set_backend(backend)
        try:
            out[backend] = ds.tram.grad("D", method=method, return_flags=True,
                                        **options(method))
        finally:
            kernels.set_backend(previous)
    (a, fa), (b, fb) = out["numpy"], out["numba"]
    np.testing.assert_array_equal(fa.values, fb.values)
    np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
    ok = ~np.isnan(a.values)
    scale = np.abs(a.values[ok]).max()
    np.testing.assert_allclose(b.values[ok], a.values[ok], rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("d, n", CASES)
def test_extra_dims_equal_slice_by_slice(method, backend, d, n):
    ds = fields(mesh(d, n, seed=20 + d), seed=4, missing=0.2, n_time=3)
    ds["E"] = ds.D.expand_dims(sample=2).transpose("bin", "sample", "time") * xr.DataArray(
        [1.0, -2.0], dims="sample"
    )
    g = ds.tram.grad("E", method=method, **options(method))
    assert g.dims == ("bin", "sample", "time", "space")
    for s in range(2):
        for t in range(3):
            one = ds.isel(sample=s, time=t).tram.grad("E", method=method, **options(method))
            np.testing.assert_array_equal(g.isel(sample=s, time=t).values, one.values)


@pytest.mark.parametrize("d, n", CASES)
def test_missing_center_is_nan_and_flagged(method, backend, d, n):
    ds = fields(mesh(d, n, seed=30 + d), seed=5, missing=0.3)
    g, flags = ds.tram.grad("D", method=method, return_flags=True, **options(method))
    missing = np.isnan(ds.D.values)
    assert np.isnan(g.values[missing]).all()
    assert (flags.values[missing] == 2).all()
    assert np.isnan(g.values[flags.values == 2]).all()


def _exact_for(method: str) -> int:
    """The polynomial degree a method reproduces exactly (on every bin it estimates)."""
    if method == "grad1":
        return -1  # only on grids and hexagons
    if method in ("lsq2",):
        return 2
    if method == "local":
        return 1  # degree 1 by default (degree 2: quadratics, tested below)
    return 1


@pytest.mark.parametrize("d, n", CASES)
def test_exact_for_polynomials(method, backend, d, n):
    degree = _exact_for(method)
    if degree < 0:
        pytest.skip("grad1 is not exact on irregular meshes (TRamWAy's method)")
    ds = mesh(d, n, seed=40 + d)
    c = ds.center.values
    rng = np.random.default_rng(d)
    lin = rng.normal(size=d)
    q = rng.normal(size=(d, d))
    q = q + q.T
    y = 1.0 + c @ lin
    truth = np.broadcast_to(lin, c.shape)
    if degree == 2:
        y = y + 0.5 * np.einsum("ni,ij,nj->n", c, q, c)
        truth = lin + c @ q
    ds["D"] = ("bin", y)
    g, flags = ds.tram.grad("D", method=method, return_flags=True, **options(method))
    own = flags.values == 0
    # a 1D chain never has redundancy for gradn's quadratic (3 points, 3 unknowns)
    assert own.mean() > 0.5 or (method == "gradn" and d == 1)
    np.testing.assert_allclose(g.values[own], truth[own], rtol=1e-9,
                               atol=1e-9 * np.abs(truth).max())
    # fallbacks are exact for linear fields
    ds["L"] = ("bin", 1.0 + c @ lin)
    gl, fl = ds.tram.grad("L", method=method, return_flags=True, **options(method))
    done = np.isfinite(gl.values).all(axis=1)
    np.testing.assert_allclose(gl.values[done], np.broadcast_to(lin, gl.values[done].shape),
                               rtol=1e-9, atol=1e-9 * np.abs(lin).max())


def test_registered_method_without_compiled_kernel_runs_on_numpy_everywhere(backend):
    """A method with all-zero weights and no compiled kernel gives zeros on every backend,
    eager and chunked (it never runs another method's compiled kernel)."""

    def zero(nb, ok):
        return np.zeros((len(nb.rows), nb.ndim)), np.zeros((nb.n, nb.ndim))

    register_method(Method("zero", "all-zero weights (a test)", zero))
    try:
        ds = fields(mesh(2, 80, seed=7), seed=1, missing=0.0)
        g = ds.tram.grad("D", method="zero")
        np.testing.assert_array_equal(g.values, 0.0)
        with dask.config.set(scheduler="sync"):
            gc = ds.chunk({"bin": 20}).tram.grad("D", method="zero").compute()
        np.testing.assert_array_equal(gc.values, 0.0)
        assert g.attrs["xtramgrad_method"] == "zero"
        G = ds.tram.grad_operator(method="zero")
        assert G.shape == (160, 80) and np.count_nonzero(G.toarray()) == 0
    finally:
        unregister_method("zero")
    assert "zero" not in METHODS
    with pytest.raises(ValueError, match="built in"):
        unregister_method("grad1")


def test_registered_method_options_are_checked_and_passed():
    from xtramgrad.selection import Param

    def scaled_mean_slope(nb, ok, *, factor):
        r2 = (nb.offsets**2).sum(axis=1, keepdims=True)
        cnt = segment_sum(ok.astype(float), nb.indptr)[nb.rows][:, None]
        w = np.where(ok[:, None], factor * nb.offsets / r2 / cnt, 0.0)
        return w, -segment_sum(w, nb.indptr)

    def positive(v):
        if not v > 0:
            raise ValueError(f"factor={v!r}; expected > 0")
        return float(v)

    register_method(Method("scaled", "a test", scaled_mean_slope,
                           options=(Param("factor", 1.0, "scale", positive),)))
    try:
        ds = xtramgrad.grid(5, D=np.arange(5.0) * 3)
        assert ds.tram.grad("D", method="scaled", factor=2).values[2, 0] == 6.0
        with pytest.raises(ValueError, match="factor=-1"):
            ds.tram.grad("D", method="scaled", factor=-1)
        with pytest.raises(ValueError, match="takes no option 'power'"):
            ds.tram.grad("D", method="scaled", power=2)
    finally:
        unregister_method("scaled")


def test_bad_weight_shapes_are_a_clear_error():
    register_method(Method("broken", "a test", lambda nb, ok: (np.zeros(3), np.zeros(2))))
    try:
        ds = xtramgrad.grid(5, D=np.arange(5.0))
        with pytest.raises(ValueError, match="method 'broken': its weight function returned"):
            ds.tram.grad("D", method="broken")
    finally:
        unregister_method("broken")


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_eager_chunked_and_backends(rule, backend):
    ds = xtramgrad.grid((7, 6), spacing=0.5, connectivity="faces")
    c = ds.center.values
    ds["D"] = ("bin", np.sin(c[:, 0]) + c[:, 1] ** 2)
    if RULES[rule].needs_labels:
        table = ds.neighbours.values
        off = c[np.where(table >= 0, table, 0)] - c[:, None, :]
        axis = np.argmax(np.abs(off), axis=2)
        sign = np.sign(np.take_along_axis(off, axis[:, :, None], 2)[:, :, 0]).astype(int)
        ds["neighbour_label"] = (("bin", "nbr"), np.where(table >= 0, sign * (axis + 1), 0))
    eager = ds.tram.grad("D", selection=rule)
    with dask.config.set(scheduler="sync"):
        assert_same(ds.chunk({"bin": 9}).tram.grad("D", selection=rule), eager, bitwise=True)
    # on a grid with face neighbours every rule picks the same two neighbours per axis
    ref = ds.tram.grad("D", selection="quadrants")
    np.testing.assert_allclose(eager.values, ref.values, rtol=1e-13)


def test_registry_refuses_what_would_silently_change_results():
    """Built-ins cannot be replaced (every default gradient would change), a user method
    only with replace=True; a non-Method, a non-callable weight function, an unknown name to
    unregister and a weight function returning nothing are clear errors."""
    with pytest.raises(ValueError, match="built in and cannot be replaced"):
        register_method(Method("grad1", "x", lambda nb, ok: None))
    with pytest.raises(TypeError, match="expects a Method"):
        register_method("foo")
    with pytest.raises(TypeError, match="not a function"):
        register_method(Method("bad", "x", 42))
    with pytest.raises(ValueError, match="no method 'nope' is registered"):
        unregister_method("nope")
    register_method(Method("none_test", "returns None", lambda nb, ok: None))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_method(Method("none_test", "again", lambda nb, ok: None))
        ds = xtramgrad.grid(5, D=np.arange(5.0))
        with pytest.raises(TypeError, match="method 'none_test' returned NoneType"):
            ds.tram.grad("D", method="none_test")
        register_method(Method("none_test", "zeros", lambda nb, ok: (
            np.zeros(len(nb.rows)), np.zeros(nb.n))), replace=True)
        assert (ds.tram.grad("D", method="none_test").values == 0).all()
    finally:
        unregister_method("none_test")
    assert ds.tram.grad("D").values[1:-1, 0].tolist() == [1.0, 1.0, 1.0]


def test_bins_without_any_determined_component_are_flagged_undefined():
    """A local fit whose window holds too few bins gives NaN: flagged 2, never 0."""
    p = np.random.default_rng(0).random((300, 2))
    ds = xtramgrad.voronoi(p, geometry=False)
    ds["D"] = ("bin", p[:, 0])
    for chunks in (None, 70):
        data = ds if chunks is None else ds.chunk(bin=chunks)
        g, flags = data.tram.grad("D", method="local", bandwidth=0.01, return_flags=True)
        nan = np.isnan(g.values).all(axis=1)
        assert nan.sum() > 50
        assert (flags.values[nan] != 0).all() and (flags.values[~nan] != 2).all()

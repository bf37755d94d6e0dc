"""Semantics and API of the gradient functions (issue 3): ``xtramgrad.grad`` /
``ds.tram.grad``, ``grad_operator``, user functions, errors.

Truth here is independent of the code under test: closed forms (analytic linear and quadratic
fields, where a method is exact), per-slice computations, the unshifted problem (for the
offset test) and, in a few places, TRamWAy 0.7 itself (``tests/tramway_reference.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xtramgrad
from xtramgrad import TessellationError, kernels

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rng(seed=0):
    return np.random.default_rng(seed)


def voronoi(n=120, d=2, seed=0, **measurements):
    return xtramgrad.voronoi(rng(seed).random((n, d)), **measurements)


def x_of(ds, axis):
    return ds.center.sel(space=axis)


def interior(ds, layers=1):
    """Bins of a grid at least ``layers`` steps away from every border."""
    shape = ds.attrs["grid_shape"]
    idx = np.stack(np.unravel_index(np.arange(ds.sizes["bin"]), shape), axis=1)
    return np.all((idx >= layers) & (idx < np.asarray(shape) - layers), axis=1)


# ----------------------------------------------------------------------------- the result


def test_result_is_labelled_dataarray():
    ds = xtramgrad.grid((5, 4), spacing=0.5, space=("u", "v"))
    ds["D"] = ("bin", rng().random(20), {"units": "um^2/s", "long_name": "diffusivity"})
    ds["center"].attrs["units"] = "um"
    g = ds.tram.grad("D")
    assert isinstance(g, xr.DataArray)
    assert g.name == "grad_D"
    assert g.dims == ("bin", "space")
    assert g.sizes == {"bin": 20, "space": 2}
    assert g.space.values.tolist() == ["u", "v"]
    assert g.attrs["long_name"] == "gradient of diffusivity"
    assert g.attrs["xtramgrad_method"] == "grad1"
    assert g.attrs["xtramgrad_selection"] == "cone(selection_angle=0.9)"
    assert g.attrs["units"] == "um^2/s / um"
    assert "xtramgrad_na" not in g.attrs
    # components are addressable by name
    np.testing.assert_array_equal(g.sel(space="v").values, g.values[:, 1])


def test_attrs_record_options_and_units_only_when_both_known():
    ds = xtramgrad.grid((4, 4), D=rng().random(16))
    g = ds.tram.grad("D", eps=0.0, na=0.0)
    assert g.attrs["long_name"] == "gradient of D"
    assert g.attrs["xtramgrad_selection"] == "halfspace(eps=0.0)"
    assert g.attrs["xtramgrad_na"] == 0.0
    assert "units" not in g.attrs  # neither unit known
    ds.D.attrs["units"] = "um^2/s"
    assert "units" not in ds.tram.grad("D").attrs  # space units unknown
    q = ds.tram.grad("D", selection_angle=0.5)
    assert q.attrs["xtramgrad_selection"] == "quadrants"
    n = ds.tram.grad("D", method="gradn")
    assert n.attrs["xtramgrad_method"] == "gradn"
    assert "xtramgrad_selection" not in n.attrs  # gradn uses every measured neighbour


def test_default_is_tramway_infer_default():
    ds = voronoi(D=rng(1).random(120))
    xr.testing.assert_identical(ds.tram.grad("D"), ds.tram.grad("D", selection_angle=0.9))
    assert xtramgrad.DEFAULT_SELECTION_ANGLE == 0.9


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({}, id="default"),
        pytest.param({"selection_angle": 0.7}, id="angle0.7"),
        pytest.param({"eps": 1e-2}, id="eps"),
        pytest.param({"selection": "quadrants"}, id="quadrants"),
        pytest.param({"method": "gradn"}, id="gradn"),
    ],
)
def test_functional_twin(kw):
    ds = voronoi(D=rng(2).random(120))
    xr.testing.assert_identical(xtramgrad.grad(ds, "D", **kw), ds.tram.grad("D", **kw))


def test_several_fields_give_a_dataset():
    ds = voronoi(D=rng(3).random(120))
    ds["V"] = (("bin", "time"), rng(4).random((120, 3)))
    ds = ds.assign_coords(time=[0.0, 0.5, 1.0])
    out = ds.tram.grad(["D", "V"], eps=0.0)
    assert isinstance(out, xr.Dataset)
    assert set(out.data_vars) == {"grad_D", "grad_V"}
    xr.testing.assert_identical(out.grad_D, ds.tram.grad("D", eps=0.0))
    xr.testing.assert_identical(out.grad_V, ds.tram.grad("V", eps=0.0))
    assert out.grad_V.dims == ("bin", "time", "space")
    np.testing.assert_array_equal(out.time.values, [0.0, 0.5, 1.0])
    # a tuple works too
    assert isinstance(xtramgrad.grad(ds, ("D",)), xr.Dataset)


def test_integer_field():
    ds = xtramgrad.grid((4, 4), D=np.arange(16))
    g = ds.tram.grad("D")
    assert g.dtype == np.float64
    ds["E"] = ds.D.astype(float)
    np.testing.assert_array_equal(g.values, ds.tram.grad("E").values)
    np.testing.assert_allclose(g.values[interior(ds)], [[4.0, 1.0]] * 4)


# ----------------------------------------------------------------------------- extra dims


@pytest.mark.parametrize("method", ["grad1", "gradn"])
def test_extra_dims_equal_per_slice_results(backend, method):
    """A (bin, time, sample) field with a different missing pattern in each slice equals the
    gradient of each slice computed alone."""
    ds = voronoi(n=150, seed=5)
    values = 1.0 + rng(6).standard_normal((150, 3, 4))
    values[rng(7).random(values.shape) < 0.2] = np.nan
    ds["D"] = (("bin", "time", "sample"), values)
    ds = ds.assign_coords(time=[1.0, 2.0, 3.0], sample=list("abcd"))
    kw = {"selection_angle": 0.7} if method == "grad1" else {}
    g = ds.tram.grad("D", method=method, **kw)
    assert g.dims == ("bin", "time", "sample", "space")
    assert g.sample.values.tolist() == list("abcd")
    for t in range(3):
        for s in range(4):
            one = ds.isel(time=t, sample=s).tram.grad("D", method=method, **kw)
            np.testing.assert_array_equal(np.isnan(g.values[:, t, s]), np.isnan(one.values))
            np.testing.assert_allclose(g.values[:, t, s], one.values, rtol=1e-12, atol=1e-12)


def test_extra_dim_first_keeps_field_dim_order():
    ds = voronoi(n=60, seed=8)
    values = rng(9).random((3, 60))
    ds["D"] = (("time", "bin"), values)
    g = ds.tram.grad("D")
    assert g.dims == ("time", "bin", "space")
    for t in range(3):
        ds["E"] = ("bin", values[t])
        np.testing.assert_allclose(g.values[t], ds.tram.grad("E").values, rtol=1e-13)


# ----------------------------------------------------------------------------- missing values


def test_bin_without_measurement_has_no_gradient():
    ds = xtramgrad.grid((5, 5))
    y = 2.0 * x_of(ds, "x").values - x_of(ds, "y").values
    y[12] = np.nan
    ds["D"] = ("bin", y)
    for kw in ({}, {"eps": 0.0}, {"method": "gradn"}):
        g = ds.tram.grad("D", **kw).values
        assert np.isnan(g[12]).all()
        assert np.isfinite(np.delete(g, 12, axis=0)).all()


def test_bin_whose_neighbours_are_all_missing_has_no_gradient():
    ds = xtramgrad.grid((5, 5))
    y = np.arange(25, dtype=float)
    ring = ds.neighbours.values[12]
    y[ring[ring >= 0]] = np.nan  # bin 12 keeps its value, its 8 neighbours lose theirs
    ds["D"] = ("bin", y)
    # na= does not fill them either: it is for a component without a side, not for a bin
    # without any measured neighbour
    for kw in (
        {"na": 0.0},
        {"eps": 0.0, "na": 0.0},
        {"selection_angle": 0.5, "na": 0.0},
        {"method": "gradn"},
        {"method": plane_fit},
    ):
        g = ds.tram.grad("D", **kw).values
        assert np.isnan(g[12]).all(), kw
        assert np.isfinite(g[0]).all()  # a corner far from bin 12 keeps its gradient
    for method in ("grad1", "gradn"):
        G = ds.tram.grad_operator("D", method=method)
        assert np.isnan(G.toarray()[24:26]).any(axis=1).all()


def test_missing_neighbours_leave_selection_before_sides_are_chosen():
    """A 1D chain: the left neighbour missing makes bin 2 use the one-sided slope to the right
    (TRamWAy removes missing neighbours before choosing sides)."""
    ds = xtramgrad.grid(5, D=[0.0, 1.0, 4.0, 9.0, 16.0])
    ds["D"][1] = np.nan
    g = ds.tram.grad("D").values[:, 0]
    assert g[2] == pytest.approx(9.0 - 4.0)
    assert np.isnan(g[0])  # its only neighbour (bin 1) is missing
    assert np.isnan(g[1])
    assert g[3] == pytest.approx(((16.0 - 9.0) + (9.0 - 4.0)) / 2.0)


def test_na_fills_only_components_without_a_side():
    # bin 0's only neighbours are along x: y has no neighbour on either side
    centers = [[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [5.0, 5.0], [5.0, 6.0]]
    table = [[1, 2], [0, -1], [0, -1], [4, -1], [3, -1]]
    ds = xtramgrad.from_neighbours(centers, table, D=[1.0, 3.0, 0.0, np.nan, 2.0])
    plain = ds.tram.grad("D", eps=0.0).values
    filled = ds.tram.grad("D", eps=0.0, na=-99.0).values
    no_side = np.isnan(plain) & ~np.isnan(ds.D.values)[:, None]
    no_side[4] = False  # bin 4's only neighbour is missing: no gradient at all
    assert no_side[0, 1] and no_side[1, 1] and no_side[2, 1]
    np.testing.assert_array_equal(filled[no_side], -99.0)
    np.testing.assert_array_equal(filled[~no_side], plain[~no_side])
    assert np.isnan(filled[3]).all()  # missing measurement: not filled
    assert np.isnan(filled[4]).all()  # every neighbour missing: not filled
    assert filled[0, 0] == pytest.approx(1.5)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({}, id="angle0.9"),
        pytest.param({"selection_angle": 0.5}, id="angle0.5"),
        pytest.param({"eps": 0.0}, id="eps0"),
        pytest.param({"selection": "quadrants"}, id="quadrants"),
        pytest.param({"method": "gradn"}, id="gradn"),
    ],
)
def test_3d_grid_linear_field_exact_inside(backend, kw):
    ds = xtramgrad.grid((5, 6, 4), spacing=(0.5, 0.25, 1.0), origin=(-1.0, 2.0, 0.5))
    lin = np.array([1.5, -2.0, 0.25])
    ds["D"] = ("bin", 3.0 + ds.center.values @ lin)
    g = ds.tram.grad("D", **kw).values
    inside = interior(ds)
    np.testing.assert_allclose(g[inside], np.tile(lin, (inside.sum(), 1)), rtol=1e-12)


def test_3d_grid_quadratic_field_gradn_exact_inside(backend):
    ds = xtramgrad.grid((5, 5, 5), spacing=0.2, origin=(-0.3, 0.1, 1.0))
    c = ds.center.values
    q = np.array([[1.0, 0.5, -0.25], [0.5, -2.0, 0.75], [-0.25, 0.75, 0.5]])
    lin = np.array([0.3, -1.0, 2.0])
    ds["D"] = ("bin", 1.0 + c @ lin + 0.5 * np.einsum("ni,ij,nj->n", c, q, c))
    truth = lin + c @ q
    g = ds.tram.grad("D", method="gradn").values
    inside = interior(ds)
    np.testing.assert_allclose(g[inside], truth[inside], rtol=1e-10, atol=1e-10)
    # grad1 is exact for separable quadratics (no cross terms) on the same interior
    qd = np.diag(np.diag(q))
    ds["E"] = ("bin", 1.0 + c @ lin + 0.5 * np.einsum("ni,ij,nj->n", c, qd, c))
    g1 = ds.tram.grad("E", eps=0.0).values
    np.testing.assert_allclose(g1[inside], (lin + c @ qd)[inside], rtol=1e-10, atol=1e-10)


def test_1d_chain(backend):
    x = np.array([0.0, 0.5, 1.5, 1.75, 3.0, 4.5])
    ds = xtramgrad.voronoi(x[::-1], D=(x**2)[::-1])  # any bin order
    for kw in ({}, {"eps": 0.0}, {"selection_angle": 0.5}, {"method": "lsq2"}):
        g = ds.tram.grad("D", **kw)
        assert g.dims == ("bin", "space") and g.sizes["space"] == 1
        got = g.values[::-1, 0]
        # the 3-point parabola is exact inside (grad1: 3 points, 3 unknowns; lsq2: a
        # quadratic fit over the 2-ring)
        np.testing.assert_allclose(got[1:-1], 2 * x[1:-1], rtol=1e-12)
        if "method" in kw:
            np.testing.assert_allclose(got[[0, -1]], 2 * x[[0, -1]], rtol=1e-12, atol=1e-12)
            continue
        # grad1's ends take the one-sided slope
        np.testing.assert_allclose(got[0], (x[1] ** 2 - x[0] ** 2) / (x[1] - x[0]))
        np.testing.assert_allclose(got[-1], (x[-1] ** 2 - x[-2] ** 2) / (x[-1] - x[-2]))


def test_1d_chain_gradn_falls_back_to_linear_least_squares(backend):
    """gradn on a 1D chain has 3 points (or 2 at the ends) for 3 unknowns: never determined
    with redundancy, so every bin takes the linear fallback, flagged; exact for a linear
    field, ends included (TRamWAy's minimum-norm answer gave them half the slope)."""
    ds = xtramgrad.grid(6, D=np.arange(6.0) * 3.0)
    g, flags = ds.tram.grad("D", method="gradn", return_flags=True)
    np.testing.assert_allclose(g.values[:, 0], 3.0, rtol=1e-12)
    assert (flags.values == 1).all()
    assert flags.attrs["flag_meanings"] == "method fallback undefined"


# ----------------------------------------------------------------------------- offset


def _grid_rounded_voronoi(seed=10, n=150):
    pts = np.round(rng(seed).random((n, 2)) * 2**20) / 2**20  # exact after a 1e5 shift
    return pts


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({}, id="angle0.9"),
        pytest.param({"selection_angle": 0.5}, id="quadrants"),
        pytest.param({"eps": 0.0}, id="eps0"),
        pytest.param({"eps": 1e-2}, id="eps1e-2"),
        pytest.param({"method": "gradn"}, id="gradn"),
    ],
)
def test_offset_1e5_exact_when_offsets_are(backend, kw):
    """The centered closed form depends on center differences only: with centers that stay
    exact after a shift of 1e5, the result is that of the unshifted problem."""
    pts = _grid_rounded_voronoi()
    y = 1.0 + rng(11).standard_normal(len(pts))
    near = xtramgrad.voronoi(pts, D=y)
    far = xtramgrad.from_neighbours(pts + 1e5, near.neighbours.values, D=y)
    np.testing.assert_allclose(
        far.tram.grad("D", **kw).values, near.tram.grad("D", **kw).values, rtol=1e-12
    )


@pytest.mark.parametrize("method", ["grad1", "gradn"])
def test_offset_1e5_accuracy(backend, method):
    """Centers at 1e5 (rounded there to ~1.5e-11) against the same problem near 0: relative
    difference ~1e-10, the size of the rounding of the centers themselves."""
    near = xtramgrad.grid((7, 6), spacing=0.1, origin=0.05)
    far = xtramgrad.grid((7, 6), spacing=0.1, origin=1e5 + 0.05)
    xn, yn = near.center.values.T
    y = 1.0 + 2.0 * xn - xn**2 + 3.0 * yn**2  # the field in centered coordinates
    near["D"], far["D"] = ("bin", y), ("bin", y)
    gn = near.tram.grad("D", method=method).values
    gf = far.tram.grad("D", method=method).values
    rel = np.abs(gf - gn).max(axis=1) / np.abs(gn).max(axis=1)
    assert rel.max() < 1e-9


def test_offset_1e5_tramway_polyfit_loses_accuracy():
    """TRamWAy's np.polyfit on absolute coordinates loses ~5 digits at 1e5 (the reason for
    the centered closed form); ours stays at the rounding of the centers (~1e-10)."""
    pytest.importorskip("tramway")
    from tramway_reference import tramway_grad1

    near = xtramgrad.grid((6, 6), spacing=0.1, origin=0.05)
    far = xtramgrad.grid((6, 6), spacing=0.1, origin=1e5 + 0.05)
    xn, yn = near.center.values.T
    y = xn**2 - 2.0 * yn**2
    near["D"], far["D"] = ("bin", y), ("bin", y)
    scale = np.abs(near.tram.grad("D").values).max()
    ref_near = tramway_grad1(near.center.values, near.neighbours.values, y, selection_angle=0.9)
    ref_far = tramway_grad1(far.center.values, far.neighbours.values, y, selection_angle=0.9)
    err_tramway = np.abs(ref_far - ref_near).max() / scale
    err_ours = np.abs(far.tram.grad("D").values - near.tram.grad("D").values).max() / scale
    assert err_tramway > 1e-6  # measured 5e-5
    assert err_ours < 1e-9  # measured 8e-11
    assert err_tramway > 1e4 * err_ours


# ----------------------------------------------------------------------------- selection


def _labelled_faces_grid(shape, **grid_kw):
    ds = xtramgrad.grid(shape, connectivity="faces", **grid_kw)
    table = ds.neighbours.values
    c = ds.center.values
    off = np.where(table[..., None] >= 0, c[np.where(table >= 0, table, 0)] - c[:, None], 0.0)
    axis = np.argmax(np.abs(off), axis=2)
    sign = np.sign(np.take_along_axis(off, axis[..., None], axis=2)[..., 0])
    labels = np.where(table >= 0, sign * (axis + 1), 0).astype(np.int64)
    return xtramgrad.from_neighbours(c, table, labels=labels), ds


@pytest.mark.parametrize("shape", [(6, 5), (4, 5, 3), 7])
def test_labelled_adjacency_equals_halfspaces_on_face_grid(backend, shape):
    labelled, plain = _labelled_faces_grid(shape, spacing=0.3, origin=1.0)
    y = rng(12).standard_normal(labelled.sizes["bin"])
    y[rng(13).random(y.shape) < 0.2] = np.nan  # labels honour missing values too
    labelled["D"] = ("bin", y)
    plain["D"] = ("bin", y)
    g = labelled.tram.grad("D", selection="labels")
    assert g.attrs["xtramgrad_selection"] == "labels"
    ref = plain.tram.grad("D", eps=0.0)
    np.testing.assert_array_equal(np.isnan(g.values), np.isnan(ref.values))
    np.testing.assert_allclose(g.values, ref.values, rtol=1e-13)


def test_labels_decide_which_neighbours_count():
    """Bin 0's neighbours at (1, 0.2) and (0.2, 1) both lie in the upper x and y half-spaces;
    labelled +x and +y, each counts for its own axis only."""
    centers = np.array([[0.0, 0.0], [1.0, 0.2], [0.2, 1.0]])
    table = [[1, 2], [0, 2], [0, 1]]
    labels = [[1, 2], [-1, 2], [-2, 1]]
    ds = xtramgrad.from_neighbours(centers, table, labels=labels)
    ds["D"] = ("bin", 3.0 * centers[:, 0] + 5.0 * centers[:, 1])
    g = ds.tram.grad("D", selection="labels").values
    np.testing.assert_allclose(g[0], [(3.0 + 1.0) / 1.0, (0.6 + 5.0) / 1.0])
    h = ds.tram.grad("D", eps=0.0).values  # both neighbours on both axes
    np.testing.assert_allclose(h[0], [4.8 / 0.6, 4.8 / 0.6])


def test_explicit_quadrants_any_dimension():
    """selection='quadrants' in 3D: each neighbour counts for its dominant axis only, ties to
    the lowest axis; selection_angle=0.5 in 3D is a cone instead (as in TRamWAy)."""
    ds = xtramgrad.grid((4, 4, 4))
    c = ds.center.values
    ds["D"] = ("bin", c[:, 0] ** 2 + 10.0 * c[:, 1] * c[:, 2])
    quad = ds.tram.grad("D", selection="quadrants").values
    cone = ds.tram.grad("D", selection_angle=0.5).values
    assert not np.allclose(quad, cone)
    # interior bin (1, 1, 1): x takes the xy and xz diagonals as well
    i = 1 * 16 + 1 * 4 + 1
    # below along x: (0,1,1), (0,0,1), (0,2,1), (0,1,0), (0,1,2); above: mirror
    nb_lo = [(0, 1, 1), (0, 0, 1), (0, 2, 1), (0, 1, 0), (0, 1, 2)]
    nb_hi = [(2,) + t[1:] for t in nb_lo]
    lo = np.mean([ds.D.values[a * 16 + b * 4 + cc] for a, b, cc in nb_lo])
    hi = np.mean([ds.D.values[a * 16 + b * 4 + cc] for a, b, cc in nb_hi])
    assert quad[i, 0] == pytest.approx((hi - lo) / 2.0)
    assert xtramgrad.resolve_selection(3, selection="quadrants").kind == "quadrants"
    assert xtramgrad.resolve_selection(3, selection_angle=0.5).kind == "cone"


def test_explicit_quadrants_matches_tramway_any_dimension():
    """grad1 without options is InferenceMAP's quadrant rule in any d in TRamWAy itself."""
    pytest.importorskip("tramway")
    from tramway_reference import tramway_grad1

    for ds in (voronoi(n=80, d=3, seed=14), xtramgrad.grid((4, 4, 3)), xtramgrad.grid(9)):
        y = rng(15).standard_normal(ds.sizes["bin"])
        ds["D"] = ("bin", y)
        ref = tramway_grad1(ds.center.values, ds.neighbours.values, y, selection_angle=None)
        ours = ds.tram.grad("D", selection="quadrants").values
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({"selection": "cone"}, "cone(selection_angle=0.9)"),
        ({"selection": "cone", "selection_angle": 0.6}, "cone(selection_angle=0.6)"),
        ({"selection": "halfspace"}, "halfspace(eps=0.0)"),
        ({"selection": "halfspace", "eps": 0.5}, "halfspace(eps=0.5)"),
        ({"selection": "quadrants"}, "quadrants"),
    ],
)
def test_selection_keyword(kw, expected):
    ds = voronoi(n=40, D=rng(16).random(40))
    assert ds.tram.grad("D", **kw).attrs["xtramgrad_selection"] == expected


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def err_ds():
    ds = xtramgrad.grid((4, 3), D=rng(17).random(12))
    ds["W"] = ("time", [1.0, 2.0])
    ds["S"] = (("bin", "space"), rng(18).random((12, 2)))
    ds["B"] = ("bin", np.array(["a"] * 12))
    return ds


@pytest.mark.parametrize(
    "args, kw, match",
    [
        (("D",), {"selection_angle": 0.9, "eps": 0.1}, r"selection_angle=0\.9 and eps=0\.1"),
        (("D",), {"selection_angle": 0.4}, r"selection_angle=0\.4; expected a value in \[0\.5"),
        (("D",), {"selection_angle": 1.0}, r"selection_angle=1\.0; expected a value in \[0\.5"),
        (("D",), {"eps": -0.1}, r"eps=-0\.1; expected a finite margin >= 0"),
        (("D",), {"eps": float("nan")}, r"eps=nan; expected a finite margin >= 0"),
        (("D",), {"eps": float("inf")}, r"eps=inf; expected a finite margin >= 0"),
        (("D",), {"selection": "sectors"}, r"selection='sectors'; expected one of"),
        (("D",), {"selection": "cone", "eps": 0.1}, r"selection='cone' takes selection_angle="),
        (("D",), {"selection": "halfspace", "selection_angle": 0.9}, r"takes eps=, not"),
        (("D",), {"selection": "quadrants", "eps": 0.0}, r"takes no parameter, not eps="),
        (("D",), {"method": "grad2"}, r"method='grad2'; expected one of \['grad1', 'gradn'"),
        (("D",), {"method": "gradn", "eps": 0.0}, r"method='gradn' uses every measured"),
        (("D",), {"method": "lsq", "selection_angle": 0.9}, r"Drop selection/selection_angle"),
        (("D",), {"method": "lsq", "bandwidth": 1.0}, r"takes no option 'bandwidth'"),
        (("D",), {"method": "lsq", "power": -1}, r"power=-1; expected a weight exponent"),
        (("D",), {"method": "local", "bandwidth": 0}, r"bandwidth=0; expected a length > 0"),
        (("D",), {"method": "local", "degree": 3}, r"degree=3; expected 1"),
        (("D",), {"selection": "labels"}, r"selection='labels' needs a 'neighbour_label'"),
        (("D",), {"na": "zero"}, r"na='zero'; expected a real number"),
        (("D",), {"na": True}, r"na=True; expected a real number"),
        (("Q",), {}, r"no variable 'Q' to differentiate; its measurements are \['D', 'S', 'B'\]"),
        (("W",), {}, r"variable 'W' has dims \('time',\) without 'bin'"),
        (("S",), {}, r"variable 'S' has a 'space' dim"),
        (("center",), {}, r"variable 'center' has a 'space' dim"),
        (("neighbours",), {}, r"'neighbours' is part of the tessellation"),
        (("B",), {}, r"variable 'B' has dtype <U1; expected real numbers"),
        ((["D", "Q"],), {}, r"no variable 'Q'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_option_errors(err_ds, args, kw, match):
    # bad options are ValueErrors; schema problems are TessellationErrors (a ValueError)
    with pytest.raises(ValueError, match=match):
        err_ds.tram.grad(*args, **kw)
    with pytest.raises(ValueError, match=match):
        xtramgrad.grad(err_ds, *args, **kw)


def test_error_messages_name_the_fix(err_ds):
    with pytest.raises(TessellationError) as info:
        err_ds.tram.grad("S")
    assert "ds['S'].sel(space='x')" in str(info.value)
    with pytest.raises(ValueError, match="pass only one of them"):
        err_ds.tram.grad("D", eps=0.0, selection_angle=0.5)


@pytest.mark.parametrize("na", [0, 0.0, np.float32(0), np.float64(-1.5), np.int64(3)],
                         ids=["int", "float", "float32", "float64", "int64"])
def test_na_accepts_any_real_scalar(na):
    ds = xtramgrad.grid(3, D=[0.0, 1.0, 4.0])
    ds["E"] = ("bin", [np.nan, 1.0, 4.0])
    g = ds.tram.grad("E", na=na)  # bin 1 has a measured neighbour on one side only
    assert g.values[1, 0] == 3.0 and g.attrs["xtramgrad_na"] == float(na)


def test_tessellation_error_is_value_error(err_ds):
    with pytest.raises(ValueError):
        err_ds.tram.grad("D", eps=-1.0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"method": "gradm"}, r"method='gradm'; expected one of"),
        ({"method": "gradn", "eps": 0.0}, r"method='gradn' uses every measured"),
        ({"method": "local"}, r"bandwidth='auto' is chosen from a field"),
        ({"eps": 0.0, "selection_angle": 0.9}, r"pass only one of them"),
        ({"selection": "labels"}, r"needs a 'neighbour_label'"),
    ],
)
def test_grad_operator_errors(err_ds, kw, match):
    with pytest.raises(ValueError, match=match):
        err_ds.tram.grad_operator(**kw)


def test_grad_operator_rejects_varying_missing_pattern():
    ds = xtramgrad.grid((3, 3))
    v = np.ones((9, 2))
    v[0, 1] = np.nan
    ds["D"] = (("bin", "time"), v)
    with pytest.raises(TessellationError, match="different missing-value patterns"):
        ds.tram.grad_operator("D")
    G = ds.isel(time=1).tram.grad_operator("D")  # one slice: fine
    assert G.shape == (18, 9)


# ----------------------------------------------------------------------------- operator


@pytest.mark.parametrize("missing", [False, True], ids=["full", "nan"])
@pytest.mark.parametrize(
    "method, kw",
    [
        pytest.param("grad1", {}, id="grad1-default"),
        pytest.param("grad1", {"selection_angle": 0.5}, id="grad1-quadrants"),
        pytest.param("grad1", {"eps": 1e-2}, id="grad1-eps"),
        pytest.param("gradn", {}, id="gradn"),
    ],
)
def test_grad_operator_equals_grad(method, kw, missing, backend):
    ds = voronoi(n=100, d=2, seed=19)
    y = rng(20).standard_normal(100)
    if missing:
        y[rng(21).random(100) < 0.2] = np.nan
    ds["D"] = ("bin", y)
    G = ds.tram.grad_operator("D", method=method, **kw)
    assert G.shape == (200, 100)
    g = ds.tram.grad("D", method=method, **kw).values
    via = (G @ np.nan_to_num(y)).reshape(100, 2)
    np.testing.assert_array_equal(np.isnan(via), np.isnan(g))
    if backend == "numba" and method == "gradn":
        # the compiled fit solves the same least-squares problems with other roundings:
        # they agree to the fit's conditioning, as in test_kernels' numba-vs-numpy test
        # (here 1.2e-12 relative on bin 94 with numba 0.68.1; the numpy backend: exact)
        every = ~np.isnan(g)
        np.testing.assert_allclose(via[every], g[every], rtol=0,
                                   atol=1e-9 * np.abs(g[every]).max())
    else:  # the operator's weights are the numpy fit's, applied by the same sums
        np.testing.assert_allclose(via, g, rtol=1e-12, atol=1e-12)
    # NaN rows: exactly the undefined components, a single NaN on the bin's own column
    dense = G.toarray()
    nan_rows = np.isnan(dense).any(axis=1)
    np.testing.assert_array_equal(nan_rows, np.isnan(g).reshape(-1))
    own = np.repeat(np.arange(100), 2)
    for r in np.flatnonzero(nan_rows):
        assert np.flatnonzero(np.isnan(dense[r])).tolist() == [own[r]]
    # the functional twin
    H = xtramgrad.grad_operator(ds, "D", method=method, **kw).toarray()
    np.testing.assert_array_equal(H, dense)


def test_grad_operator_without_variable_treats_every_bin_as_measured():
    ds = xtramgrad.grid((5, 4), D=rng(22).random(20))
    G = ds.tram.grad_operator()
    np.testing.assert_allclose(
        (G @ ds.D.values).reshape(20, 2), ds.tram.grad("D").values, rtol=1e-12
    )
    # many fields in one sparse product
    Y = rng(23).random((20, 7))
    ds["M"] = (("bin", "sample"), Y)
    np.testing.assert_allclose(
        (G @ Y).reshape(20, 2, 7).transpose(0, 2, 1), ds.tram.grad("M").values, rtol=1e-12
    )


# ----------------------------------------------------------------------------- user functions


@xtramgrad.pointwise
def plane_fit(center, value, nbr_centers, nbr_values):
    """The seed's ``my_grad`` for ``MyCells(Distributed).grad``: a least-squares plane
    through the bin and its measured neighbours."""
    g, *_ = np.linalg.lstsq(nbr_centers - center, nbr_values - value, rcond=None)
    return g


def plane_fit_vectorised(center, value, neighbour_center, neighbour_value, neighbour_mask):
    """The same plane fit for every bin and slice at once (normal equations)."""
    dx = np.nan_to_num(neighbour_center - center[:, None, :])  # (n, k, d)
    dy = np.nan_to_num(neighbour_value - value[:, :, None])  # (S, n, k)
    m = neighbour_mask.astype(float)
    a = np.einsum("snk,nki,nkj->snij", m, dx, dx)
    b = np.einsum("snk,nki,snk->sni", m, dx, dy)
    return np.linalg.solve(a, b[..., None])[..., 0]


def test_pointwise_seed_example_linear_field():
    ds = xtramgrad.grid((4, 4))
    ds["V"] = 2 * x_of(ds, "x") - x_of(ds, "y")
    g = ds.tram.grad("V", method=plane_fit)
    assert g.attrs["xtramgrad_method"] == "plane_fit"
    np.testing.assert_allclose(g.values, np.tile([2.0, -1.0], (16, 1)), atol=1e-12)


def test_user_functions_missing_values_and_extra_dims():
    ds = voronoi(n=60, seed=24)
    v = rng(25).standard_normal((60, 3))
    v[rng(26).random(v.shape) < 0.2] = np.nan
    ds["D"] = (("bin", "time"), v)
    slow = ds.tram.grad("D", method=plane_fit)
    fast = ds.tram.grad("D", method=plane_fit_vectorised)
    assert slow.dims == fast.dims == ("bin", "time", "space")
    # missing measurement -> no gradient, whatever the function returns
    assert np.isnan(slow.values[np.isnan(v)]).all()
    assert np.isnan(fast.values[np.isnan(v)]).all()
    # compare where the plane is determined (>= 3 measured neighbours; with fewer, lstsq's
    # minimum-norm answer and the normal equations legitimately differ)
    table = ds.neighbours.values
    measured = (~np.isnan(np.where(table[:, :, None] >= 0, v[table], np.nan))).sum(axis=1)
    ok = ~np.isnan(slow.values).any(axis=-1) & (measured >= 3)
    assert ok.sum() > 100
    np.testing.assert_allclose(fast.values[ok], slow.values[ok], rtol=1e-9, atol=1e-9)
    # per bin, by hand: the function saw exactly the measured neighbours
    c = ds.center.values
    for i, t in [(0, 0), (5, 1), (17, 2)]:
        if np.isnan(v[i, t]):
            continue
        nb = table[i][table[i] >= 0]
        nb = nb[~np.isnan(v[nb, t])]
        g, *_ = np.linalg.lstsq(c[nb] - c[i], v[nb, t] - v[i, t], rcond=None)
        np.testing.assert_allclose(slow.values[i, t], g, rtol=1e-12)


def test_user_function_receives_padded_neighbourhoods():
    seen = {}

    def spy(center, value, neighbour_center, neighbour_value, neighbour_mask):
        seen.update(
            center=center,
            value=value,
            nc=neighbour_center,
            nv=neighbour_value,
            mask=neighbour_mask,
        )
        return np.zeros(value.shape + (center.shape[1],))

    ds = xtramgrad.grid((3, 3), D=np.arange(9.0))
    ds["D"][4] = np.nan
    ds.tram.grad("D", method=spy)
    assert seen["center"].shape == (9, 2)
    assert seen["value"].shape == (1, 9)
    assert seen["nc"].shape == (9, 8, 2)
    assert seen["nv"].shape == seen["mask"].shape == (1, 9, 8)
    assert not seen["mask"][0, 0, 3:].any()  # corner: 3 neighbours, then padding
    assert np.isnan(seen["nc"][0, 3:]).all()
    # bin 4 is missing: masked out of its neighbours' neighbourhoods
    row0 = ds.neighbours.values[0]
    assert not seen["mask"][0, 0][row0 == 4].any()


def test_user_function_bad_shape_is_reported():
    ds = xtramgrad.grid((3, 3), D=np.arange(9.0))
    with pytest.raises(ValueError, match=r"returned shape \(9, 2\), expected"):
        ds.tram.grad("D", method=lambda **kw: np.zeros((9, 2)))


def test_user_function_rejects_selection_options():
    ds = xtramgrad.grid((3, 3), D=np.arange(9.0))
    with pytest.raises(ValueError, match="a user function receives every measured"):
        ds.tram.grad("D", method=plane_fit, eps=0.0)


@pytest.mark.skipif(not kernels.numba_available(), reason="numba not installed")
@pytest.mark.parametrize("d", [2, 3])
def test_gradn_backends_agree_on_every_bin(d):
    """Including rank-deficient and nearly degenerate neighbourhoods (solved by SVD in both
    backends): the numpy reference and the compiled kernels give the same minimum-norm fit."""
    ds = voronoi(n=200, d=d, seed=27)
    y = rng(28).standard_normal(200)
    y[rng(29).random(200) < 0.3] = np.nan
    ds["D"] = ("bin", y)
    out = {}
    for name in ("numpy", "numba"):
        previous = kernels.set_backend(name)
        try:
            out[name] = ds.tram.grad("D", method="gradn").values
        finally:
            kernels.set_backend(previous)
    np.testing.assert_array_equal(np.isnan(out["numpy"]), np.isnan(out["numba"]))
    ok = ~np.isnan(out["numpy"]).any(axis=1)
    scale = np.abs(out["numpy"][ok]).max(axis=1, keepdims=True)
    assert np.max(np.abs(out["numpy"][ok] - out["numba"][ok]) / scale) < 1e-10

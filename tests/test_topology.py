"""The tessellation Dataset: constructors, validation errors and I/O round trips."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

import xtramgrad
from helpers import CountingScheduler  # noqa: E402  (tests/ is on sys.path)
from xtramgrad import TessellationError
from xtramgrad.topology import grid_offsets
from xtramgrad.topology.schema import table_csr, topology

# --------------------------------------------------------------------------- helpers


def chain(n: int = 4) -> xr.Dataset:
    x = np.arange(float(n))
    table = np.array([[i - 1 if i else i + 1, i + 1 if 0 < i < n - 1 else -1] for i in range(n)])
    return xtramgrad.from_neighbours(x, table, D=x**2)


# --------------------------------------------------------------------------- constructors


@pytest.mark.parametrize(
    "adjacency",
    [
        pytest.param(lambda A: sp.csr_array(A), id="csr_array"),
        pytest.param(lambda A: sp.coo_matrix(A), id="coo_matrix"),
        pytest.param(lambda A: sp.lil_array(A), id="lil_array"),
        pytest.param(lambda A: A.astype(bool), id="dense-bool"),
        pytest.param(lambda A: (sp.csr_array(A).indptr, sp.csr_array(A).indices), id="pair"),
    ],
)
def test_from_adjacency_formats(adjacency):
    A = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]])
    centers = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    ds = xtramgrad.from_adjacency(centers, adjacency(A), D=[1.0, 2.0, 3.0, 4.0])
    assert ds.neighbours.dims == ("bin", "nbr")
    assert ds.neighbours.dtype == np.int64
    assert ds.neighbours.values.tolist() == [[1, 2], [0, 3], [0, 3], [1, 2]]
    assert ds.center.dims == ("bin", "space")
    assert ds.space.values.tolist() == ["x", "y"]
    assert ds.D.dims == ("bin",)


def test_from_adjacency_pads_uneven_degrees_and_keeps_order():
    indptr = np.array([0, 3, 4, 5, 6])
    indices = np.array([3, 1, 2, 0, 0, 0])
    ds = xtramgrad.from_adjacency(np.arange(4.0), (indptr, indices))
    assert ds.neighbours.values.tolist() == [[3, 1, 2], [0, -1, -1], [0, -1, -1], [0, -1, -1]]


def test_from_adjacency_space_names():
    ds = xtramgrad.from_adjacency(
        [[0.0, 0, 0], [1, 0, 0]], sp.csr_array([[0, 1], [1, 0]]), space=["u", "v", "w"]
    )
    assert ds.space.values.tolist() == ["u", "v", "w"]


@pytest.mark.parametrize(
    "centers, adjacency, match",
    [
        pytest.param(np.zeros((3, 2)), sp.eye(4), r"shape \(4, 4\), expected \(3, 3\)", id="size"),
        pytest.param(np.zeros((3, 2)), np.zeros(3), r"square \(n, n\) matrix", id="1d"),
        pytest.param(
            np.zeros((3, 2)), (np.array([0, 1]), np.array([1])), r"expected \(4,\)", id="indptr"
        ),
        pytest.param(np.zeros((3, 4)), sp.eye(3), r"d = 1, 2 or 3", id="4d-centers"),
        pytest.param(np.zeros((2, 3, 2)), sp.eye(2), r"expected \(n_bins, d\)", id="3d-array"),
    ],
)
def test_from_adjacency_errors(centers, adjacency, match):
    with pytest.raises(TessellationError, match=match):
        xtramgrad.from_adjacency(centers, adjacency)


def test_from_adjacency_rejects_self_loops():
    with pytest.raises(TessellationError, match="lists bin 0 as its own neighbour"):
        xtramgrad.from_adjacency(np.zeros((2, 1)), sp.csr_array(np.ones((2, 2))))


def test_from_neighbours_labels_and_measurements():
    centers = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    table = [[1, 2], [0, -1], [0, -1]]
    labels = [[1, 2], [-1, 0], [-2, 0]]
    ds = xtramgrad.from_neighbours(
        centers, table, labels, D=[1.0, 2.0, 3.0], V=(("bin",), [0.0, 1.0, 2.0])
    )
    assert ds.neighbour_label.dims == ("bin", "nbr")
    assert ds.neighbour_label.values.tolist() == labels
    assert set(ds.data_vars) >= {"D", "V"}


def test_from_neighbours_one_based_with_fill_value():
    # UGRID-style: one-based positions, padded with a custom fill value
    ds = xtramgrad.from_neighbours(
        np.arange(3.0), [[2, 999], [1, 3], [2, 999]], start_index=1, fill_value=999
    )
    assert ds.neighbours.values.tolist() == [[1, -1], [0, 2], [1, -1]]


def test_from_neighbours_accepts_nan_padded_float_table():
    ds = xtramgrad.from_neighbours(np.arange(3.0), [[1.0, np.nan], [0.0, 2.0], [1.0, np.nan]])
    assert ds.neighbours.dtype == np.int64
    assert ds.neighbours.values.tolist() == [[1, -1], [0, 2], [1, -1]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param(
            dict(neighbours=[[1], [0], [0]]), r"shape \(3, 1\), expected \(2, k\)", id="rows"
        ),
        pytest.param(dict(neighbours=[[0.5], [0.0]]), "dtype float64, expected integer", id="flt"),
        pytest.param(
            dict(neighbours=[[1], [0]], labels=[[1, 2], [1, 2]]), "of the neighbour table's",
            id="labels-shape",
        ),
        pytest.param(
            dict(neighbours=[[1], [0]], space=["x", "y"]), r"names 2 coordinates", id="space"
        ),
        pytest.param(dict(neighbours=[[2], [0]]), r"position 2 at bin 0, outside \[0, 1\]",
                     id="range"),
        pytest.param(dict(neighbours=[[-2], [0]]), r"position -2 at bin 0", id="negative"),
        pytest.param(
            dict(neighbours=[[1], [0]], labels=[[3], [-1]]),
            r"'neighbour_label' holds 3 .* expected \+-\(j\+1\) with j < 1",
            id="label-axis",
        ),
    ],
)
def test_from_neighbours_errors(kwargs, match):
    with pytest.raises(TessellationError, match=match):
        xtramgrad.from_neighbours(np.arange(2.0), **kwargs)


def test_from_neighbours_rejects_non_finite_centers():
    match = r"non-finite values at 1 bin\(s\) \(first: bin 1\)"
    with pytest.raises(TessellationError, match=match):
        xtramgrad.from_neighbours([0.0, np.nan, 2.0], [[1], [0], [1]])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_voronoi_is_delaunay_adjacency(d):
    from scipy.spatial import Delaunay

    pts = np.random.default_rng(d).random((40, d))
    ds = xtramgrad.voronoi(pts, D=pts[:, 0])
    table = ds.neighbours.values
    got = {(i, j) for i, row in enumerate(table) for j in row if j >= 0}
    if d == 1:
        order = np.argsort(pts[:, 0])
        want = {(a, b) for a, b in zip(order[:-1], order[1:], strict=True)}
        want |= {(b, a) for a, b in want}
    else:
        indptr, indices = Delaunay(pts).vertex_neighbor_vertices
        want = {(i, j) for i in range(40) for j in indices[indptr[i] : indptr[i + 1]]}
    assert got == want
    assert all((j, i) in got for i, j in got)  # symmetric


def test_voronoi_degenerate_points():
    with pytest.raises(TessellationError, match="admit no Delaunay triangulation"):
        xtramgrad.voronoi(np.c_[np.arange(5.0), np.arange(5.0)])  # collinear


@pytest.mark.parametrize(
    "shape, connectivity, interior_degree",
    [
        ((6,), "inference", 2),
        ((6, 5), "inference", 8),
        ((6, 5), "faces", 4),
        ((5, 4, 6), "inference", 18),
        ((5, 4, 6), "faces", 6),
    ],
)
def test_grid_connectivity(shape, connectivity, interior_degree):
    ds = xtramgrad.grid(shape, spacing=0.5, origin=1.0, connectivity=connectivity)
    degree = (ds.neighbours >= 0).sum("nbr").values
    assert degree.max() == interior_degree
    assert ds.sizes["bin"] == np.prod(shape)
    # neighbours are exactly the bins at the allowed lattice offsets
    c = ds.center.values
    for i in [0, len(c) // 2, len(c) - 1]:
        nb = ds.neighbours.values[i]
        steps = np.rint((c[nb[nb >= 0]] - c[i]) / 0.5).astype(int)
        allowed = {tuple(o) for o in grid_offsets(len(shape), connectivity)}
        assert {tuple(s) for s in steps} <= allowed
        assert list(nb[nb >= 0]) == sorted(nb[nb >= 0])
    assert c.min(axis=0).tolist() == [1.0] * len(shape)


def test_grid_tramway_adjacency_excludes_3d_corners():
    ds = xtramgrad.grid((3, 3, 3))
    center = 13
    nb = ds.neighbours.values[center]
    steps = ds.center.values[nb[nb >= 0]] - ds.center.values[center]
    assert len(steps) == 18
    assert np.abs(steps).sum(axis=1).max() == 2  # no (1, 1, 1) corner


def test_grid_chunks_is_lazy_and_equal():
    import dask

    with dask.config.set(scheduler=CountingScheduler(0)):
        lazy = xtramgrad.grid((40, 30), chunks=97)
    assert lazy.neighbours.chunks is not None
    assert lazy.neighbours.data.chunks[0][0] == 97
    eager = xtramgrad.grid((40, 30))
    xr.testing.assert_equal(lazy.compute(), eager)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param(dict(shape=(0, 3)), "positive sizes", id="empty"),
        pytest.param(dict(shape=(2, 2, 2, 2)), "1 to 3 positive sizes", id="4d"),
        pytest.param(dict(shape=(3, 3), spacing=0.0), "positive finite", id="spacing"),
        pytest.param(dict(shape=(3, 3), connectivity="corners"), "connectivity='corners'",
                     id="connectivity"),
        pytest.param(dict(shape=(3, 3), chunks=0), "chunks=0", id="chunks"),
    ],
)
def test_grid_errors(kwargs, match):
    with pytest.raises(TessellationError, match=match):
        xtramgrad.grid(**kwargs)


# --------------------------------------------------------------------------- validation


def _break(ds: xr.Dataset, how: str) -> xr.Dataset:
    ds = ds.copy()
    if how == "no-center":
        return ds.drop_vars("center")
    if how == "no-neighbours":
        return ds.drop_vars("neighbours")
    if how == "center-dims":
        return ds.drop_vars("center").assign(center=("bin", ds.center.values[:, 0]))
    if how == "center-dtype":
        return ds.assign(center=(("bin", "space"), ds.center.values.astype(str)))
    if how == "space-size":
        c = np.zeros((ds.sizes["bin"], 4))
        return ds.drop_vars(["center", "space"]).assign(center=(("bin", "space"), c))
    if how == "float-table":
        return ds.assign(neighbours=ds.neighbours.astype(float))
    if how == "out-of-range":
        t = ds.neighbours.values.copy()
        t[2, 0] = ds.sizes["bin"]
        return ds.assign(neighbours=(("bin", "nbr"), t))
    if how == "self":
        t = ds.neighbours.values.copy()
        t[3, 0] = 3
        return ds.assign(neighbours=(("bin", "nbr"), t))
    if how == "non-finite":
        c = ds.center.values.copy()
        c[5, 1] = np.inf
        return ds.assign(center=(("bin", "space"), c))
    if how == "label-dtype":
        return ds.assign(neighbour_label=(("bin", "nbr"), np.zeros(ds.neighbours.shape)))
    if how == "table-dims":
        return ds.assign(neighbours=(("bin", "other"), ds.neighbours.values))
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how, match",
    [
        ("no-center", r"no 'center' variable; expected center\('bin', 'space'\)"),
        ("no-neighbours", r"no 'neighbours' variable; expected neighbours\('bin', 'nbr'\)"),
        ("center-dims", r"'center' has dims \('bin',\), expected \('bin', 'space'\)"),
        ("center-dtype", r"'center' has dtype <U.*, expected float"),
        ("space-size", r"'center' has 4 entries along 'space', expected 1, 2 or 3"),
        ("float-table", r"'neighbours' has dtype float64, expected integer .*fillna\(-1\)"),
        ("out-of-range", r"'neighbours' holds position 20 at bin 2, outside \[0, 19\]"),
        ("self", r"lists bin 3 as its own neighbour"),
        ("non-finite", r"'center' holds non-finite values at 1 bin\(s\) \(first: bin 5\)"),
        ("table-dims", r"'neighbours' has dims \('bin', 'other'\), expected \('bin', 'nbr'\)"),
    ],
)
@pytest.mark.parametrize("entry", ["validate", "grad"])
def test_validation_errors(how, match, entry):
    ds = _break(xtramgrad.grid((4, 5), D=np.arange(20.0)), how)
    with pytest.raises(TessellationError, match=match):
        if entry == "validate":
            ds.tram.validate()
        else:
            ds.tram.grad("D")


def test_error_class_is_a_value_error():
    assert issubclass(TessellationError, ValueError)


def test_not_a_dataset():
    with pytest.raises(TessellationError, match="expected an xarray.Dataset .* got DataArray"):
        xtramgrad.validate(xtramgrad.grid(3).center)


def test_label_errors():
    ds = xtramgrad.grid((3, 3), D=np.arange(9.0))
    with pytest.raises(TessellationError, match="needs a 'neighbour_label' variable"):
        ds.tram.grad("D", selection="labels")
    bad = _break(ds, "label-dtype")
    with pytest.raises(TessellationError, match="'neighbour_label' has dtype float64"):
        bad.tram.validate()


def test_validate_duplicates_and_volume():
    ds = xtramgrad.grid((3, 3))
    t = ds.neighbours.values.copy()
    t[4, 1] = t[4, 0]
    match = "lists bin 0 twice as a neighbour of bin 4.*dedupe=True"
    with pytest.raises(TessellationError, match=match):
        ds.assign(neighbours=(("bin", "nbr"), t)).tram.validate()
    with pytest.raises(TessellationError, match=r"'volume' has dims \('bin', 'nbr'\)"):
        ds.assign(volume=ds.neighbours * 1.0).tram.validate()
    ok = ds.assign(volume=("bin", np.ones(9)))
    assert ok.tram.validate() is ok


def test_transposed_schema_is_accepted():
    ds = xtramgrad.grid((3, 4), D=np.arange(12.0))
    t = ds.assign(center=ds.center.T, neighbours=ds.neighbours.T)
    xr.testing.assert_identical(t.tram.grad("D"), ds.tram.grad("D"))


def test_integer_centers_are_accepted():
    ds = xtramgrad.grid((3, 4), D=np.arange(12.0))
    t = ds.assign(center=ds.center.astype(int))
    xr.testing.assert_allclose(t.tram.grad("D"), ds.tram.grad("D"))


def test_lazy_checks_do_not_compute_and_validate_finds_errors():
    import dask

    ds = xtramgrad.grid((20, 20), D=np.arange(400.0))
    t = ds.neighbours.values.copy()
    t[333, 2] = 400
    bad = ds.assign(neighbours=(("bin", "nbr"), t)).chunk({"bin": 50})
    with dask.config.set(scheduler=CountingScheduler(0)):
        xtramgrad.topology.topology(bad)  # metadata checks only: no compute
    with pytest.raises(TessellationError, match=r"position 400 at bin 333"):
        bad.tram.validate()
    nonfinite = _break(ds, "non-finite").chunk({"bin": 50})
    with pytest.raises(TessellationError, match=r"non-finite values .* bin 5"):
        nonfinite.tram.validate()
    good = ds.chunk({"bin": 50})
    assert good.tram.validate() is good


# --------------------------------------------------------------------------- I/O


def _schema_dataset() -> xr.Dataset:
    pts = np.random.default_rng(3).random((30, 2))
    ds = xtramgrad.voronoi(pts, space=["x", "y"])
    offsets = np.where(
        ds.neighbours.values[..., None] >= 0,
        pts[ds.neighbours.values] - pts[:, None, :],
        0.0,
    )
    axis = np.argmax(np.abs(offsets), axis=2)
    side = np.sign(np.take_along_axis(offsets, axis[..., None], axis=2)[..., 0]).astype(int)
    labels = np.where(ds.neighbours.values >= 0, side * (axis + 1), 0)
    ds["neighbour_label"] = (("bin", "nbr"), labels)
    ds["volume"] = ("bin", np.full(30, 1 / 30))
    ds["D"] = (("bin", "time"), np.random.default_rng(4).random((30, 3)), {"units": "um^2/s"})
    ds["D"][4, 1] = np.nan
    ds.center.attrs["units"] = "um"
    ds.attrs["title"] = "round trip"
    return ds


def _assert_round_trip(back: xr.Dataset, ds: xr.Dataset) -> None:
    back = back.load()
    xr.testing.assert_identical(back, ds)
    for name in ("neighbours", "neighbour_label"):
        assert back[name].dtype == ds[name].dtype, name
    assert (back.neighbours.values == -1).sum() == (ds.neighbours.values == -1).sum()
    xr.testing.assert_identical(
        back.tram.grad("D", selection="labels"), ds.tram.grad("D", selection="labels")
    )


def test_netcdf_round_trip(tmp_path):
    ds = _schema_dataset()
    path = tmp_path / "tess.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as back:
        _assert_round_trip(back, ds)


def test_zarr_round_trip(tmp_path):
    ds = _schema_dataset()
    path = tmp_path / "tess.zarr"
    ds.to_zarr(path)
    back = xr.open_zarr(path)
    assert back.neighbours.chunks is not None  # opened lazily
    _assert_round_trip(back, ds)


def test_chain_quadratic_is_exact_inside():
    g = chain(5).tram.grad("D")
    assert g.sel(space="x").values.tolist() == [1.0, 2.0, 4.0, 6.0, 7.0]


# --------------------------------------------------------------------------- geometry


def test_voronoi_geometry_of_grid_points_is_the_grid():
    from xtramgrad.topology.geometry import grid_bounds

    shape, spacing, origin = (5, 4), (0.5, 2.0), (1.0, -3.0)
    g = xtramgrad.grid(shape, spacing=spacing, origin=origin)
    v = xtramgrad.voronoi(g.center.values, bounds=grid_bounds(shape, spacing, origin))
    np.testing.assert_allclose(v.volume.values, 1.0, rtol=1e-12)  # 0.5 x 2.0 cells
    c = v.center.values
    for i, row in enumerate(v.neighbours.values):
        for r, j in enumerate(row):
            if j < 0:
                assert np.isnan(v.face_area.values[i, r])
                continue
            step = np.rint((c[j] - c[i]) / spacing).astype(int)
            if np.abs(step).sum() == 1:  # a face neighbour: the other side's length
                want = spacing[1] if step[0] else spacing[0]
                assert v.face_area.values[i, r] == pytest.approx(want, rel=1e-12)
            else:  # a Delaunay diagonal: the cells meet at a corner
                assert abs(v.face_area.values[i, r]) < 1e-12


def test_voronoi_geometry_is_symmetric_and_fills_the_box():
    pts = np.random.default_rng(7).random((60, 3))
    ds = xtramgrad.voronoi(pts, bounds=[(0, 1)] * 3, units="um")
    assert ds.face_area.dims == ds.neighbours.dims
    assert ds.volume.sum().item() == pytest.approx(1.0, rel=1e-12)
    area = {(i, j): a for i, row in enumerate(ds.neighbours.values)
            for j, a in zip(row, ds.face_area.values[i], strict=True) if j >= 0}
    for (i, j), a in area.items():
        assert area[(j, i)] == pytest.approx(a, rel=1e-12, abs=1e-15)
    assert ds.face_area.attrs["units"] == "um^2" and ds.volume.attrs["units"] == "um^3"


def test_voronoi_geometry_options():
    pts = np.random.default_rng(8).random((30, 2))
    assert "face_area" not in xtramgrad.voronoi(pts, geometry=False)
    assert "volume" not in xtramgrad.voronoi(pts, geometry=False)
    ragged = xtramgrad.voronoi(pts, layout="ragged", bounds=[(0, 1), (0, 1)])
    # ragged: face areas aligned with the edges of the CSR table, symmetric like the padded ones
    assert ragged.face_area.dims == ragged.neighbours.dims
    ptr, idx = table_csr(topology(ragged))
    area = {(i, int(j)): a for i in range(30)
            for j, a in zip(idx[ptr[i]:ptr[i + 1]], ragged.face_area.values[ptr[i]:ptr[i + 1]],
                            strict=True)}
    for (i, j), a in area.items():
        assert area[(j, i)] == pytest.approx(a, rel=1e-12, abs=1e-15)
    assert ragged.volume.sum().item() == pytest.approx(1.0, rel=1e-12)
    line = xtramgrad.voronoi([0.0, 3.0, 1.0], bounds=[(0.0, 4.0)], units="um")
    assert line.volume.values.tolist() == [0.5, 2.0, 1.5]
    assert line.volume.attrs["units"] == "um" and line.face_area.attrs["units"] == "1"


@pytest.mark.parametrize("chunks", [None, 5], ids=["eager", "lazy"])
def test_grid_geometry(chunks):
    ds = xtramgrad.grid((3, 4, 2), spacing=(0.5, 2.0, 3.0), units="um", chunks=chunks)
    assert (ds.face_area.chunks is None) == (chunks is None)
    ds = ds.compute()
    assert ds.volume.values.tolist() == [3.0] * 24 and ds.volume.attrs["units"] == "um^3"
    assert ds.face_area.attrs["units"] == "um^2"
    c = ds.center.values
    spacing = np.array([0.5, 2.0, 3.0])
    for i, row in enumerate(ds.neighbours.values):
        for r, j in enumerate(row):
            a = ds.face_area.values[i, r]
            if j < 0:
                assert np.isnan(a)
                continue
            moved = np.rint(np.abs(c[j] - c[i]) / spacing) != 0
            assert a == (np.prod(spacing[~moved]) if moved.sum() == 1 else 0.0)
    assert "face_area" not in xtramgrad.grid((3, 3), geometry=False)
    ragged = xtramgrad.grid((3, 3), layout="ragged")
    assert ragged.face_area.dims == ("edge",)
    assert (ragged.face_area.values > 0).sum() == 24  # 12 faces, listed from both sides

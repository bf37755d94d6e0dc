"""from_tramway / to_tramway against real TRamWAy 0.7 analysis files.

``tests/data/sample.rwa`` was written by TRamWAy 0.7 itself (``tests/data/make_rwa.py``): a
simulated random walk tessellated with grid, kmeans, gwr and hexagon, D inferred (map ``D``)
and TRamWAy's own ``gradient`` plugin run on that D map (map ``gradD``, default options, i.e.
``selection_angle=0.9``). ``tests/data/sample_time.rwa`` (``make_rwa_time.py``) is the same
pipeline on TRamWAy time lattices (sliding windows over a grid and a kmeans mesh). The
independent truth is what TRamWAy stored and what TRamWAy's own API reports
(``distributed(partition)``, its tessellations' geometry), closed forms for regular cells,
and never our own code.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import xtramgrad
from xtramgrad import TessellationError

pytest.importorskip("tramway")

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = DATA / "sample.rwa"
SAMPLE_TIME = DATA / "sample_time.rwa"
LABELS = ["grid", "gwr", "hexagon", "kmeans"]
TIME_LABELS = ["grid", "kmeans"]


@pytest.fixture(scope="module")
def tree():
    from tramway.core.hdf5 import load_rwa

    return load_rwa(str(SAMPLE), lazy=False, verbose=False)


@pytest.fixture(scope="module")
def datasets(tree):
    return {label: xtramgrad.from_tramway(tree, label=label) for label in LABELS}


def tramway_inference_cells(tree, label):
    """Kept cells and their adjacency, from TRamWAy's own ``distributed``."""
    from tramway.inference.base import Distributed, distributed

    dist = distributed(tree[label].data, new_group=Distributed)
    cells = np.array(sorted(dist.cells.keys()))
    return cells, dist.adjacency.tocsr()


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("label", LABELS)
def test_bins_centers_and_adjacency_are_tramways(tree, datasets, label):
    ds = datasets[label]
    cells, adjacency = tramway_inference_cells(tree, label)
    tess = tree[label].data.tessellation
    np.testing.assert_array_equal(ds.tramway_cell.values, cells)
    # the map index is the set of inference cells (see tests/data/README.md)
    np.testing.assert_array_equal(ds.tramway_cell.values, tree[label]["D"].data.maps.index)
    np.testing.assert_array_equal(ds.center.values, tess.cell_centers[cells])
    position = {c: i for i, c in enumerate(cells)}
    for i, c in enumerate(cells):
        row = adjacency.indices[adjacency.indptr[c] : adjacency.indptr[c + 1]]
        expected = [position[j] for j in row]  # TRamWAy's csr order
        got = ds.neighbours.values[i]
        assert got[got >= 0].tolist() == expected
    assert list(ds.space.values) == ["x", "y"]
    assert ds.attrs["tramway_label"] == label
    xtramgrad.validate(ds)


@pytest.mark.parametrize("label", LABELS)
def test_maps_become_variables(tree, datasets, label):
    ds = datasets[label]
    D = tree[label]["D"].data.maps
    G = tree[label]["D"]["gradD"].data.maps
    # 'diffusivity' is in both maps: suffixed with the map labels
    np.testing.assert_array_equal(ds["diffusivity_D"].values, D["diffusivity"].values)
    assert ds["diffusivity_gradD"].dims == ("bin", "space")
    np.testing.assert_array_equal(
        ds["diffusivity_gradD"].values, G[["diffusivity x", "diffusivity y"]].values
    )
    assert ds["diffusivity_gradD"].attrs["tramway_map"] == f"{label}/D/gradD"
    assert ds["diffusivity_gradD"].attrs["tramway_mode"] == "gradient"
    assert ds["diffusivity_D"].attrs["tramway_columns"] == ["diffusivity"]


@pytest.mark.parametrize("label", LABELS)
def test_gradient_equals_tramways_gradient_plugin(datasets, label):
    """The key test: our gradient of the D map == TRamWAy's stored gradient map."""
    ds = datasets[label]
    ours = ds.tram.grad("diffusivity_D").values
    theirs = ds["diffusivity_gradD"].values  # NaN on bins TRamWAy omitted (none here)
    stored = ~np.isnan(theirs).all(axis=1)
    assert stored.sum() == len(ds.tramway_cell)
    np.testing.assert_array_equal(np.isnan(ours[stored]), np.isnan(theirs[stored]))
    ok = ~np.isnan(theirs)
    rel = np.abs(ours[ok] - theirs[ok]) / np.maximum(np.abs(theirs[ok]), 1e-300)
    assert rel.max() <= 1e-9


def test_to_tramway_reproduces_tramways_map(tree, datasets):
    ds = datasets["hexagon"]
    df = xtramgrad.to_tramway(ds.tram.grad("diffusivity_D"))
    G = tree["hexagon"]["D"]["gradD"].data.maps
    assert list(df.columns) == list(G.columns) == ["diffusivity x", "diffusivity y"]
    np.testing.assert_array_equal(df.index.values, G.index.values)
    np.testing.assert_allclose(df.values, G.values, rtol=1e-9, atol=0)


def test_keep_empty_marks_missing_and_gives_the_same_gradient(tree, datasets):
    full = xtramgrad.from_tramway(tree, label="hexagon", keep_empty=True)
    tess = tree["hexagon"].data.tessellation
    assert full.sizes["bin"] == len(tess.cell_centers)  # 77 cells, all labelled
    kept = datasets["hexagon"]
    inferred = full.tramway_inferred.values
    np.testing.assert_array_equal(full.tramway_cell.values[inferred], kept.tramway_cell.values)
    assert np.isnan(full["diffusivity_D"].values[~inferred]).all()
    g_full = full.tram.grad("diffusivity_D").values[inferred]
    g_kept = kept.tram.grad("diffusivity_D").values
    np.testing.assert_allclose(g_full, g_kept, rtol=1e-12, atol=0)
    # the empty cells keep their edges: more edges than the inference adjacency
    assert (full.neighbours >= 0).sum() > (kept.neighbours >= 0).sum()


def test_read_from_path_and_label_paths():
    ds = xtramgrad.from_tramway(SAMPLE, label=("grid", "D"))  # a map selects its tessellation
    assert ds.attrs["tramway_label"] == "grid"
    assert ds.attrs["tramway_source"] == str(SAMPLE)
    assert ds.tramway_cell.attrs["tramway_label"] == "grid"


def test_maps_selection(tree):
    only_d = xtramgrad.from_tramway(tree, label="kmeans", maps="D")
    # a label (path) selects the maps whose path ends with it: 'D' is not 'D/gradD'
    assert "diffusivity" in only_d and "diffusivity_gradD" not in only_d
    grads = xtramgrad.from_tramway(tree, label="kmeans", maps=("D", "gradD"))
    assert grads["diffusivity"].dims == ("bin", "space")
    none = xtramgrad.from_tramway(tree, label="kmeans", maps=False)
    assert not [v for v in none.data_vars if "diffusivity" in str(v)]
    listed = r"maps='nope' matches no map .*\['D', 'D/gradD'\]"
    with pytest.raises(TessellationError, match=listed):
        xtramgrad.from_tramway(tree, label="kmeans", maps="nope")


# --------------------------------------------------------------------------- writing back


def test_to_tramway_into_rwa_file(tmp_path, datasets):
    from tramway.core.hdf5 import load_rwa

    path = tmp_path / "copy.rwa"
    shutil.copy(SAMPLE, path)
    g = datasets["gwr"].tram.grad("diffusivity_D", selection_angle=0.5)
    df = xtramgrad.to_tramway(
        g, into=path, label=("gwr", "D"), output_label="xgrad", comment="xtramgrad grad1"
    )
    back = load_rwa(str(path), lazy=False, verbose=False)
    stored = back["gwr"]["D"]["xgrad"].data
    assert stored.mode == "gradient"
    assert back["gwr"]["D"].comments["xgrad"] == "xtramgrad grad1"
    np.testing.assert_array_equal(stored.maps.values, df.values)
    assert list(stored.maps.columns) == ["diffusivity x", "diffusivity y"]
    # and it reads back as a map of the same tessellation
    again = xtramgrad.from_tramway(path, label="gwr")
    np.testing.assert_array_equal(again["diffusivity_xgrad"].values, g.values)


def test_to_tramway_into_tree_defaults_to_the_tessellation(tree, datasets):
    from tramway.core.analyses.base import Analyses

    copy = Analyses(tree.data)
    copy.add(tree["grid"].data, label="grid")
    g = datasets["grid"].tram.grad("diffusivity_D")
    xtramgrad.to_tramway(g, into=copy)  # label from the tramway_cell coordinate
    assert "xtramgrad" in copy["grid"].labels


def test_to_tramway_columns_and_dropna():
    ds = xtramgrad.grid((2, 3), D=[0.0, 1, 2, np.nan, np.nan, np.nan])
    g = ds.tram.grad("D")
    df = xtramgrad.to_tramway(g)
    assert list(df.columns) == ["D x", "D y"]
    assert df.index.tolist() == [0, 1, 2]  # no tramway_cell: bin positions; NaN rows dropped
    assert len(xtramgrad.to_tramway(g, dropna=False)) == 6
    ds["V"] = -ds.D
    grads = ds.tram.grad(["D", "V"])  # a Dataset: grad_D, grad_V
    both = xtramgrad.to_tramway(grads.assign(count=("bin", np.arange(6))), dropna=False)
    assert list(both.columns) == ["D x", "D y", "V x", "V y", "count"]
    np.testing.assert_array_equal(both["V y"].values, -both["D y"].values)
    dup = r"columns \[.D x., .D y., .V x., .V y., .D x., .D y.\] are not unique"
    with pytest.raises(TessellationError, match=dup):
        xtramgrad.to_tramway(grads.assign(again=grads.grad_D))  # two gradients of D
    assert list(xtramgrad.to_tramway(g, feature="potential").columns) == [
        "potential x", "potential y"
    ]


# --------------------------------------------------------------------------- errors


def test_errors(tree, tmp_path):
    with pytest.raises(TessellationError, match=r"4 tessellations.*'grid', 'gwr', 'hexagon'"):
        xtramgrad.from_tramway(tree)
    with pytest.raises(TessellationError, match=r"label='voronoi' matches no analysis.*'kmeans'"):
        xtramgrad.from_tramway(tree, label="voronoi")
    with pytest.raises(TessellationError, match="no TRamWAy file at"):
        xtramgrad.from_tramway(tmp_path / "missing.rwa")
    bad = tmp_path / "bad.rwa"
    bad.write_text("not hdf5")
    with pytest.raises(TessellationError, match="could not be read as a TRamWAy .rwa file"):
        xtramgrad.from_tramway(bad)
    with pytest.raises(TessellationError, match="expected the path of a TRamWAy .rwa file"):
        xtramgrad.from_tramway(42)
    ds = xtramgrad.grid((2, 2), D=[1.0, 2, 3, 4])
    with pytest.raises(TessellationError, match="needs label="):
        xtramgrad.to_tramway(ds.tram.grad("D"), into=tree)
    with pytest.raises(TessellationError, match="no analysis 'nope'"):
        xtramgrad.to_tramway(ds.tram.grad("D"), into=tree, label=("grid", "nope"))
    with pytest.raises(TessellationError, match=r"Select one slice of \['time'\] first, e\.g\. \.isel\(time=0\)"):  # noqa: E501
        xtramgrad.to_tramway(ds.tram.grad("D").expand_dims(time=2))
    with pytest.raises(TessellationError, match="no name; pass feature="):
        xtramgrad.to_tramway(ds.D.rename(None))


def test_missing_tramway_is_a_clear_error(monkeypatch):
    """An ImportError naming the pip extra (the package is not on PyPI: install from a
    checkout, as the README says)."""
    monkeypatch.setitem(sys.modules, "tramway", None)  # makes `import tramway` fail
    with pytest.raises(ImportError, match=r'needs tramway.*pip install -e "\.\[tramway\]"'):
        xtramgrad.from_tramway(SAMPLE)


def test_partition_without_points_keeps_cells_with_locations(tree, datasets):
    """Without the points, TRamWAy's rule for location data: cells holding a location."""
    import copy

    from tramway.core.analyses.base import Analyses

    partition = copy.copy(tree["hexagon"].data)
    partition._points = None
    alone = Analyses(None)
    alone.add(partition, label="hexagon")
    ds = xtramgrad.from_tramway(alone)
    counts = partition.location_count
    np.testing.assert_array_equal(ds.tramway_cell.values, np.flatnonzero(counts > 0))
    assert (ds.location_count > 0).all()
    # the inference cells (with a displacement) are a subset, with the same edges among them
    kept = datasets["hexagon"]
    pos = np.searchsorted(ds.tramway_cell.values, kept.tramway_cell.values)
    assert np.array_equal(ds.tramway_cell.values[pos], kept.tramway_cell.values)
    inv = {int(c): i for i, c in enumerate(kept.tramway_cell.values)}
    for i, p in enumerate(pos):
        row = ds.tramway_cell.values[ds.neighbours.values[p][ds.neighbours.values[p] >= 0]]
        assert sorted(inv[int(c)] for c in row if int(c) in inv) == sorted(
            kept.neighbours.values[i][kept.neighbours.values[i] >= 0].tolist()
        )


# --------------------------------------------------------------------------- unreadable files


def _truncated(tmp_path):
    path = tmp_path / "truncated.rwa"
    data = SAMPLE.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, rf"it is truncated: the file has {len(data) // 2:,} bytes but its HDF5 header records {len(data):,}"  # noqa: E501


def _empty(tmp_path):
    path = tmp_path / "empty.rwa"
    path.write_bytes(b"")
    return path, r"the file is empty \(0 bytes\)"


def _text(tmp_path):
    path = tmp_path / "notes.rwa"
    path.write_text("x,y,t\n0.1,0.2,0.0\n")
    return path, r"it is not an HDF5 file \(its first bytes are b'x,y,t"


def _other_hdf5(tmp_path):
    import h5py

    path = tmp_path / "images.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((2, 3))
    return path, r"an HDF5 file but holds no TRamWAy analysis tree \(no 'analyses' group; its top-level objects are \['frames'\]\)"  # noqa: E501


def _netcdf(tmp_path):
    import xarray as xr

    pytest.importorskip("h5netcdf")
    path = tmp_path / "maps.nc"
    xr.Dataset({"D": ("bin", [1.0, 2.0])}).to_netcdf(path, engine="h5netcdf")
    return path, r"holds no TRamWAy analysis tree \(no 'analyses' group; its top-level objects are \['D'"  # noqa: E501


def _corrupt(tmp_path):
    path = tmp_path / "corrupt.rwa"
    data = bytearray(SAMPLE.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)  # a damaged block
    path.write_bytes(bytes(data))
    return path, r"it is corrupt, TRamWAy failed on it with KeyError: .* \(at analyses/.* inside the file\)"  # noqa: E501


def _directory(tmp_path):
    path = tmp_path / "analysis.rwa"
    path.mkdir()
    return path, "is a directory"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_truncated, id="truncated"),
        pytest.param(_empty, id="empty"),
        pytest.param(_text, id="text-file"),
        pytest.param(_other_hdf5, id="hdf5-of-something-else"),
        pytest.param(_netcdf, id="netcdf"),
        pytest.param(_corrupt, id="corrupt-block"),
        pytest.param(_directory, id="directory"),
    ],
)
def test_unreadable_files_are_clear_errors_naming_the_file(tmp_path, make):
    """Issue 10: never a raw "TypeError: In: analyses"; the file, what is wrong with it and
    what was expected."""
    path, problem = make(tmp_path)
    expected = "expected a TRamWAy analysis file" if "directory" not in problem else ""
    with pytest.raises(TessellationError, match=re.escape(repr(str(path)))) as info:
        xtramgrad.from_tramway(path)
    message = str(info.value)
    assert re.search(problem, message), message
    assert expected in message
    assert "In: analyses" not in message and "\n" not in message


def test_corrupt_lazy_tree_is_a_clear_error(tmp_path):
    """A tree loaded lazily from a damaged file fails when its analyses are read."""
    from tramway.core.hdf5 import load_rwa

    path, _ = _corrupt(tmp_path)
    lazy = load_rwa(str(path), lazy=True, verbose=False)  # TRamWAy opens it without error
    with pytest.raises(TessellationError, match=r"could not be loaded: KeyError: .*corrupt"):
        xtramgrad.from_tramway(lazy, label="grid")


# --------------------------------------------------------------------------- units


def test_units_are_tramways_micrometres_and_seconds(datasets):
    ds = datasets["hexagon"]
    assert ds.center.attrs["units"] == "um"
    assert ds["diffusivity_D"].attrs["units"] == "um^2/s"
    assert ds["diffusivity_gradD"].attrs["units"] == "um^2/s / um"
    assert ds.volume.attrs["units"] == "um^2" and ds.face_area.attrs["units"] == "um"
    assert ds.vertex.attrs["units"] == "um"
    # the gradient xtramgrad computes carries field units per space units
    assert ds.tram.grad("diffusivity_D").attrs["units"] == "um^2/s / um"


def test_units_keyword(tree):
    nm = xtramgrad.from_tramway(tree, label="kmeans", units="nm")
    assert nm.center.attrs["units"] == "nm"
    assert nm["diffusivity_D"].attrs["units"] == "nm^2/s"
    assert nm["diffusivity_gradD"].attrs["units"] == "nm^2/s / nm"
    bare = xtramgrad.from_tramway(tree, label="kmeans", units=None)
    assert "units" not in bare.center.attrs and "units" not in bare["diffusivity_D"].attrs
    with pytest.raises(TessellationError, match=r"units=3; expected a string"):
        xtramgrad.from_tramway(tree, label="kmeans", units=3)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        pytest.param(["diffusivity", "potential"], {"diffusivity": "um^2/s", "potential": "kT"},
                     id="dv"),
        pytest.param(["force x", "force y"], {"force": "kT/um"}, id="force"),
        pytest.param(["diffusivity", "drift x", "drift y"],
                     {"diffusivity": "um^2/s", "drift": "um/s"}, id="dd"),
        pytest.param(["zeta_spurious x", "zeta_spurious y"], {"zeta_spurious": "1"}, id="snr"),
        pytest.param(["density"], {"density": None}, id="density-unknown"),
    ],
)
def test_units_of_tramway_map_columns(tree, columns, expected):
    """TRamWAy's plugins name their columns so (dv.py, df.py, standard_ddrift.py, snr.py)."""
    import pandas as pd
    from tramway.core.analyses.base import Analyses
    from tramway.inference.base import Maps

    cells = tree["hexagon"]["D"].data.maps.index
    copy = Analyses(tree.data)
    copy.add(tree["hexagon"].data, label="hexagon")
    frame = pd.DataFrame(np.ones((len(cells), len(columns))), index=cells, columns=columns)
    copy["hexagon"].add(Maps(frame, mode="test"), label="M")
    ds = xtramgrad.from_tramway(copy)
    for feature, units in expected.items():
        assert ds[feature].attrs.get("units") == units, feature


# --------------------------------------------------------------------------- geometry


def _edge_pairs(ds):
    nb = ds.neighbours.values
    rows = np.broadcast_to(np.arange(nb.shape[0])[:, None], nb.shape)
    ok = nb >= 0
    return rows[ok], nb[ok], ds.face_area.values[ok]


def test_hexagon_geometry_is_exact(tree):
    """Regular hexagons: with d the distance between neighbouring centers, every cell has
    area sqrt(3)/2 d^2 and every shared side is d / sqrt(3) long (closed forms; the truth
    uses the centers only)."""
    ds = xtramgrad.from_tramway(tree, label="hexagon", keep_empty=True)
    i, j, face = _edge_pairs(ds)
    d = np.linalg.norm(ds.center.values[i] - ds.center.values[j], axis=1)
    assert np.ptp(d) < 1e-12 * d.mean()
    d = d.mean()
    np.testing.assert_allclose(face, d / np.sqrt(3), rtol=1e-12)  # every neighbour: a side
    np.testing.assert_allclose(ds.volume.values, np.sqrt(3) / 2 * d**2, rtol=1e-12)
    # polygons: 6 vertices at distance d / sqrt(3) from the center, counter-clockwise
    cv = ds.cell_vertex.values
    assert cv.shape[1] == 6 and (cv >= 0).all()
    corners = ds.vertex.values[cv]
    r = np.linalg.norm(corners - ds.center.values[:, None, :], axis=2)
    np.testing.assert_allclose(r, d / np.sqrt(3), rtol=1e-12)
    x, y = corners[..., 0], corners[..., 1]
    shoelace = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
    np.testing.assert_allclose(shoelace, ds.volume.values, rtol=1e-12)
    # interior cells (6 neighbours): the finite-volume identity V = sum_f A_f d_f / 4
    interior = (ds.neighbours.values >= 0).sum(axis=1) == 6
    assert interior.sum() > 20
    fv = (ds.face_area.values * d / 4).sum(axis=1)
    np.testing.assert_allclose(fv[interior], ds.volume.values[interior], rtol=1e-12)


def test_grid_geometry_faces_and_corners(tree):
    """Rectangular cells: an x neighbour shares a side of the y spacing (and conversely), a
    diagonal neighbour touches at a corner (0); the cells tile the grid's bounding box."""
    ds = xtramgrad.from_tramway(tree, label="grid", keep_empty=True)
    tess = tree["grid"].data.tessellation
    i, j, face = _edge_pairs(ds)
    step = ds.center.values[j] - ds.center.values[i]
    xs, ys = np.unique(ds.center.values[:, 0]), np.unique(ds.center.values[:, 1])
    dx, dy = np.diff(xs).mean(), np.diff(ys).mean()
    along_x = np.abs(step[:, 1]) < 1e-9 * dy
    along_y = np.abs(step[:, 0]) < 1e-9 * dx
    diagonal = ~along_x & ~along_y
    assert along_x.sum() and along_y.sum() and diagonal.sum()
    np.testing.assert_allclose(face[along_x], dy, rtol=1e-9)
    np.testing.assert_allclose(face[along_y], dx, rtol=1e-9)
    assert (face[diagonal] == 0).all()
    np.testing.assert_allclose(ds.volume.values, dx * dy, rtol=1e-9)
    lo, hi = [g[0] for g in tess.grid], [g[-1] for g in tess.grid]
    np.testing.assert_allclose(ds.volume.sum(), (hi[0] - lo[0]) * (hi[1] - lo[1]), rtol=1e-12)
    assert (ds.cell_vertex >= 0).sum("corner").values.tolist() == [4] * ds.sizes["bin"]


@pytest.mark.parametrize("label", ["kmeans", "gwr"])
def test_voronoi_geometry(tree, label):
    """Voronoi cells (checked with geometry, not with TRamWAy's numbers): a shared face lies
    on the bisector of the two centers, its length is the distance of its two ends; closed
    cells are counter-clockwise polygons of TRamWAy's area; unbounded border cells have no
    polygon and no volume (TRamWAy's value there is not an area)."""
    ds = xtramgrad.from_tramway(tree, label=label, keep_empty=True)
    tess = tree[label].data.tessellation
    centers, vertex = ds.center.values, ds.vertex.values
    cv = ds.cell_vertex.values
    closed = (cv >= 0).any(axis=1)
    assert 0 < (~closed).sum() < closed.sum()
    assert np.isnan(ds.volume.values[~closed]).all()
    np.testing.assert_array_equal(
        ds.volume.values[closed], tess.cell_volume[ds.tramway_cell.values[closed]]
    )
    for i in np.flatnonzero(closed):
        poly = vertex[cv[i][cv[i] >= 0]]
        x, y = poly[:, 0], poly[:, 1]
        area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
        assert area > 0
        np.testing.assert_allclose(area, ds.volume.values[i], rtol=1e-9)
    # faces between two closed cells: the shared polygon vertices
    i, j, face = _edge_pairs(ds)
    checked = 0
    for a, b, length in zip(i, j, face, strict=True):
        if not (closed[a] and closed[b]):
            continue
        common = np.intersect1d(cv[a][cv[a] >= 0], cv[b][cv[b] >= 0])
        if length == 0:
            assert common.size <= 1
            continue
        assert common.size == 2
        p, q = vertex[common]
        np.testing.assert_allclose(length, np.linalg.norm(p - q), rtol=1e-12)
        for point in (p, q):
            da, db = np.linalg.norm(point - centers[a]), np.linalg.norm(point - centers[b])
            np.testing.assert_allclose(da, db, rtol=1e-7)
        checked += 1
    assert checked > 50


def test_geometry_is_aligned_with_the_kept_bins(tree, datasets):
    """The default bins are a subset of keep_empty's: the same geometry on each."""
    full = xtramgrad.from_tramway(tree, label="kmeans", keep_empty=True)
    kept = datasets["kmeans"]
    pos = np.searchsorted(full.tramway_cell.values, kept.tramway_cell.values)
    np.testing.assert_array_equal(full.volume.values[pos], kept.volume.values)
    for k, f in enumerate(pos):
        row_f = full.tramway_cell.values[full.neighbours.values[f]]
        area_f = dict(zip(row_f[full.neighbours.values[f] >= 0],
                          full.face_area.values[f][full.neighbours.values[f] >= 0],
                          strict=True))
        nb = kept.neighbours.values[k]
        for c, a in zip(kept.tramway_cell.values[nb[nb >= 0]], kept.face_area.values[k][nb >= 0],
                        strict=True):
            assert area_f[c] == a
    fk = kept.vertex.values[kept.cell_vertex.values[kept.cell_vertex.values[:, 0] >= 0]]
    ff = full.vertex.values[full.cell_vertex.values[pos][kept.cell_vertex.values[:, 0] >= 0]]
    np.testing.assert_array_equal(fk, ff)


# --------------------------------------------------------------------------- time lattices


@pytest.fixture(scope="module")
def time_tree():
    from tramway.core.hdf5 import load_rwa

    return load_rwa(str(SAMPLE_TIME), lazy=False, verbose=False)


@pytest.fixture(scope="module")
def time_datasets(time_tree):
    return {label: xtramgrad.from_tramway(time_tree, label=label) for label in TIME_LABELS}


def tramway_lattice(time_tree, label):
    """(n spatial cells, segments, TRamWAy's inference cells (sorted), their csr adjacency)
    from TRamWAy's own ``distributed`` on the lattice partition."""
    from tramway.inference.base import Distributed, distributed

    partition = time_tree[label].data
    tess = partition.tessellation
    dist = distributed(partition, new_group=Distributed)
    n = tess.spatial_mesh.number_of_cells
    return n, np.asarray(tess.time_lattice), np.array(sorted(dist.cells.keys())), dist


@pytest.mark.parametrize("label", TIME_LABELS)
def test_time_lattice_structure(time_tree, time_datasets, label):
    ds = time_datasets[label]
    n, segments, keys, _ = tramway_lattice(time_tree, label)
    n_seg = len(segments)
    assert n_seg == 8 and ds.sizes["time"] == n_seg
    np.testing.assert_array_equal(ds.time_start.values, segments[:, 0])
    np.testing.assert_array_equal(ds.time_stop.values, segments[:, 1])
    np.testing.assert_allclose(ds.time.values, segments.mean(axis=1), rtol=1e-15)
    assert ds.time.attrs["units"] == ds.time_start.attrs["units"] == "s"
    assert ds.tramway_segment.values.tolist() == list(range(n_seg))
    # bins: the spatial cells with data in at least one window, in TRamWAy's order
    np.testing.assert_array_equal(ds.tramway_cell.values, np.unique(keys % n))
    mesh = time_tree[label].data.tessellation.spatial_mesh
    np.testing.assert_array_equal(ds.center.values, mesh.cell_centers[ds.tramway_cell.values])
    # which bins have data in which window: exactly TRamWAy's inference cells
    present = np.isin(ds.tramway_cell.values[:, None] + n * np.arange(n_seg)[None, :], keys)
    np.testing.assert_array_equal(ds.tramway_inferred.values, present)
    assert ds.tramway_inferred.dims == ("bin", "time")
    assert (~present).any(axis=0).all()  # every window misses some bins
    D = ds["diffusivity_D"]
    assert D.dims == ("bin", "time")
    np.testing.assert_array_equal(np.isnan(D.values), ~present)
    Dmap = time_tree[label]["D"].data.maps["diffusivity"]
    b, t = np.nonzero(present)
    np.testing.assert_array_equal(D.values[b, t], Dmap.loc[ds.tramway_cell.values[b] + n * t])
    assert ds["diffusivity_gradD"].dims == ("bin", "time", "space")
    assert D.attrs["units"] == "um^2/s" and ds.center.attrs["units"] == "um"
    assert ds.attrs["tramway_time_window_duration"] == 0.2
    xtramgrad.validate(ds)


@pytest.mark.parametrize("label", TIME_LABELS)
def test_time_lattice_neighbours_are_tramways_in_every_window(time_tree, time_datasets, label):
    """Restricted to the bins with data in a window, the table is the adjacency TRamWAy's
    inference uses on that window (the lattice's diagonal block)."""
    ds = time_datasets[label]
    n, segments, keys, dist = tramway_lattice(time_tree, label)
    adjacency = dist.adjacency.tocsr()
    cells = ds.tramway_cell.values
    for t in range(len(segments)):
        present = ds.tramway_inferred.values[:, t]
        for i in np.flatnonzero(present):
            row = ds.neighbours.values[i]
            ours = sorted(cells[row[(row >= 0)][present[row[row >= 0]]]] + n * t)
            j = cells[i] + n * t
            theirs = sorted(adjacency.indices[adjacency.indptr[j] : adjacency.indptr[j + 1]])
            assert ours == theirs, (t, i)


@pytest.mark.parametrize("label", TIME_LABELS)
def test_time_lattice_gradient_equals_tramways_in_every_window(
    time_tree, time_datasets, label
):
    """The key test: xtramgrad.grad window by window == TRamWAy's gradient plugin on the
    lattice map (stored in the file) == TRamWAy's grad1 on each window's inference cells
    (tests/tramway_reference.py, built from TRamWAy's own distributed)."""
    from tramway_reference import tramway_grad1

    ds = time_datasets[label]
    n, segments, keys, dist = tramway_lattice(time_tree, label)
    G = time_tree[label]["D"]["gradD"].data.maps
    D = time_tree[label]["D"].data.maps["diffusivity"]
    adjacency = dist.adjacency.tocsr()
    ours_all = xtramgrad.grad(ds, "diffusivity_D")
    assert ours_all.dims == ("bin", "time", "space")
    for t in range(len(segments)):
        ours = ours_all.isel(time=t)
        # TRamWAy's stored map: the rows of window t
        rows = keys[keys // n == t]
        stored = G.reindex(rows)[["diffusivity x", "diffusivity y"]].to_numpy()
        pos = np.searchsorted(ds.tramway_cell.values, rows % n)
        mine = ours.values[pos]
        assert np.isnan(ours.values[~ds.tramway_inferred.values[:, t]]).all()
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(stored))
        ok = ~np.isnan(stored)
        rel = np.abs(mine[ok] - stored[ok]) / np.abs(stored[ok])
        assert rel.max() <= 1e-9, (t, rel.max())
        # TRamWAy's grad1 on the window's own cells and adjacency
        local = {c: k for k, c in enumerate(rows)}
        table = np.full((rows.size, 8), -1)
        for k, c in enumerate(rows):
            row = adjacency.indices[adjacency.indptr[c] : adjacency.indptr[c + 1]]
            table[k, : len(row)] = [local[j] for j in row]
        centers = np.array([dist.cells[c].center for c in rows])
        reference = tramway_grad1(centers, table, D.loc[rows].to_numpy(), selection_angle=0.9)
        np.testing.assert_array_equal(np.isnan(reference), np.isnan(mine))
        ok = ~np.isnan(reference)
        assert np.max(np.abs(mine[ok] - reference[ok]) / np.abs(reference[ok])) <= 1e-9


def test_time_lattice_missing_gradient_is_missing(time_datasets, time_tree):
    """The grid lattice has one (cell, window) with D but no neighbour with data: TRamWAy
    gives it no gradient; neither do we."""
    ds = time_datasets["grid"]
    G = time_tree["grid"]["D"]["gradD"].data.maps
    D = time_tree["grid"]["D"].data.maps
    lonely = np.setdiff1d(D.index, G.index)
    assert lonely.size == 1
    n = time_tree["grid"].data.tessellation.spatial_mesh.number_of_cells
    b = int(np.searchsorted(ds.tramway_cell.values, lonely[0] % n))
    t = int(lonely[0] // n)
    assert np.isfinite(ds["diffusivity_D"].values[b, t])
    assert np.isnan(xtramgrad.grad(ds, "diffusivity_D").values[b, t]).all()


def test_time_lattice_to_tramway_round_trip(tmp_path, time_tree, time_datasets):
    from tramway.core.hdf5 import load_rwa

    ds = time_datasets["kmeans"]
    g = ds.tram.grad("diffusivity_D")
    df = xtramgrad.to_tramway(g)
    G = time_tree["kmeans"]["D"]["gradD"].data.maps
    assert list(df.columns) == list(G.columns)
    np.testing.assert_array_equal(df.index.values, G.index.values)  # t * n + i
    np.testing.assert_allclose(df.values, G.values, rtol=1e-9, atol=0)
    # a subset of windows maps back to the right TRamWAy cells
    later = xtramgrad.to_tramway(g.isel(time=[5, 6]))
    np.testing.assert_allclose(later.values, G.loc[later.index].values, rtol=1e-9, atol=0)
    # written into the file, read back as a map of the same lattice
    path = tmp_path / "time.rwa"
    shutil.copy(SAMPLE_TIME, path)
    xtramgrad.to_tramway(g, into=path, label=("kmeans", "D"), output_label="xgrad")
    back = load_rwa(str(path), lazy=False, verbose=False)
    np.testing.assert_array_equal(back["kmeans"]["D"]["xgrad"].data.maps.values, df.values)
    again = xtramgrad.from_tramway(path, label="kmeans")
    np.testing.assert_array_equal(again["diffusivity_xgrad"].values, g.values)
    with pytest.raises(TessellationError, match="without 'time', while the map of a time"):
        xtramgrad.to_tramway(g.assign_coords().to_dataset().assign(V=ds.volume))


def test_time_lattice_keep_empty(time_tree, time_datasets):
    full = xtramgrad.from_tramway(time_tree, label="kmeans", keep_empty=True)
    mesh = time_tree["kmeans"].data.tessellation.spatial_mesh
    assert full.sizes["bin"] == mesh.number_of_cells > time_datasets["kmeans"].sizes["bin"]
    kept = time_datasets["kmeans"]
    pos = np.searchsorted(full.tramway_cell.values, kept.tramway_cell.values)
    np.testing.assert_array_equal(full.tramway_inferred.values[pos],
                                  kept.tramway_inferred.values)
    assert not full.tramway_inferred.values[np.setdiff1d(np.arange(full.sizes["bin"]), pos)].any()
    g_full = full.tram.grad("diffusivity_D").values[pos]
    g_kept = kept.tram.grad("diffusivity_D").values
    np.testing.assert_allclose(g_full, g_kept, rtol=1e-12, atol=0)


def test_time_lattice_in_frames_and_without_space(tree):
    """A lattice of frame indices (TRamWAy's with_time_lattice): windows in seconds as
    TRamWAy converts them (first time stamp + frames x time step, 0.02 s here); a lattice
    of time segments only has no bins."""
    from tramway.core.analyses.base import Analyses
    from tramway.tessellation.base import Partition
    from tramway.tessellation.time import TimeLattice, with_time_lattice

    frames = np.array([[0, 4], [4, 8], [8, 11]])
    lattice = with_time_lattice(tree["hexagon"].data, frames)
    alone = Analyses(tree.data)
    alone.add(lattice, label="hex_t")
    ds = xtramgrad.from_tramway(alone)
    np.testing.assert_allclose(ds.time_start.values, [0.0, 0.08, 0.16], rtol=1e-12)
    np.testing.assert_allclose(ds.time_stop.values, [0.08, 0.16, 0.22], rtol=1e-12)
    assert ds.time_start.attrs["units"] == "s"
    # TRamWAy's per-window location counts
    n = tree["hexagon"].data.tessellation.number_of_cells
    counts = np.asarray(lattice.location_count).reshape(3, n).T
    np.testing.assert_array_equal(ds.location_count.values, counts[ds.tramway_cell.values])
    time_only = Partition(tree.data, TimeLattice(segments=np.array([[0.0, 0.1]])))
    alone = Analyses(tree.data)
    alone.add(time_only, label="t")
    with pytest.raises(TessellationError, match="'t' is a TRamWAy time lattice without a spatial"):
        xtramgrad.from_tramway(alone)


def test_time_lattice_without_points():
    """Without its points TRamWAy cannot count a lattice's locations per window (a clear
    error), unless it counted them before (then the cells with locations are read)."""
    import copy

    from tramway.core.analyses.base import Analyses
    from tramway.core.hdf5 import load_rwa

    fresh = load_rwa(str(SAMPLE_TIME), lazy=False, verbose=False)["kmeans"].data
    partition = copy.copy(fresh)
    partition._points = None
    alone = Analyses(None)
    alone.add(partition, label="k")
    with pytest.raises(TessellationError, match="time lattice 'k' has no points"):
        xtramgrad.from_tramway(alone)
    counts = np.asarray(fresh.location_count)  # computed (and cached) with the points
    partition = copy.copy(fresh)
    partition._points = None
    alone = Analyses(None)
    alone.add(partition, label="k")
    ds = xtramgrad.from_tramway(alone)
    n = fresh.tessellation.spatial_mesh.number_of_cells
    by_window = counts.reshape(-1, n).T > 0
    np.testing.assert_array_equal(ds.tramway_cell.values, np.flatnonzero(by_window.any(axis=1)))
    np.testing.assert_array_equal(ds.tramway_inferred.values, by_window[ds.tramway_cell.values])

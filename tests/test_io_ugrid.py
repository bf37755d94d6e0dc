"""from_ugrid: UGRID datasets written to the spec, and xugrid / uxarray objects.

The independent truths are the neighbour tables that xugrid and uxarray compute themselves
(``face_face_connectivity``), xtramgrad's own lattice constructor for structured meshes, and
analytic fields (a linear field's gradient).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr
from scipy.spatial import Delaunay

import xtramgrad
from xtramgrad import TessellationError

FILL = -999

# a small mixed mesh: two quads and a triangle on top, one-based with a _FillValue
NODES = np.array([[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1], [1, 2]], dtype=float)
FACES_1 = np.array([[1, 2, 5, 4], [2, 3, 6, 5], [4, 5, 7, FILL]])
FACE_FACE_1 = np.array([[2, 3, FILL], [1, FILL, FILL], [1, FILL, FILL]])


def mesh_topology(**extra) -> dict:
    attrs = {
        "cf_role": "mesh_topology",
        "topology_dimension": 2,
        "node_coordinates": "node_x node_y",
        "face_node_connectivity": "face_nodes",
    }
    attrs.update(extra)
    return attrs


def mixed_mesh(face_face: bool = True, face_xy: bool = False) -> xr.Dataset:
    extra = {"face_face_connectivity": "face_faces"} if face_face else {}
    if face_xy:
        extra["face_coordinates"] = "face_x face_y"
    ds = xr.Dataset(
        {
            "mesh": ((), 0, mesh_topology(**extra)),
            "node_x": ("node", NODES[:, 0]),
            "node_y": ("node", NODES[:, 1]),
            "face_nodes": (
                ("face", "max_nodes"),
                FACES_1,
                {"cf_role": "face_node_connectivity", "start_index": 1, "_FillValue": FILL},
            ),
            "D": ("face", [1.0, 2.0, 3.0], {"mesh": "mesh", "location": "face"}),
            "node_data": ("node", np.arange(7.0)),
        }
    )
    if face_face:
        ds["face_faces"] = (
            ("face", "max_faces"),
            FACE_FACE_1,
            {"cf_role": "face_face_connectivity", "start_index": 1, "_FillValue": FILL},
        )
    if face_xy:
        ds["face_x"] = ("face", [0.4, 1.6, 1.0])
        ds["face_y"] = ("face", [0.5, 0.5, 1.3])
    return ds


def rows(table: np.ndarray) -> list[list[int]]:
    return [sorted(int(v) for v in r if v >= 0) for r in np.asarray(table)]


def csr_rows(matrix) -> list[list[int]]:
    m = sp.csr_matrix(matrix)
    return [sorted(m.indices[m.indptr[i] : m.indptr[i + 1]].tolist()) for i in range(m.shape[0])]


def delaunay_mesh(n: int = 60, seed: int = 3):
    rng = np.random.default_rng(seed)
    pts = np.vstack([rng.random((n, 2)), [[0, 0], [1, 0], [0, 1], [1, 1]]])
    return pts, Delaunay(pts).simplices


# --------------------------------------------------------------------------- datasets


def test_face_face_connectivity_one_based_with_fill_value():
    ds = xtramgrad.from_ugrid(mixed_mesh())
    assert ds.neighbours.values.tolist() == [[1, 2], [0, -1], [0, -1]]  # file order kept
    np.testing.assert_allclose(ds.center.values, [[0.5, 0.5], [1.5, 0.5], [2 / 3, 4 / 3]])
    np.testing.assert_array_equal(ds.D.values, [1.0, 2.0, 3.0])
    assert "node_data" not in ds and "face_nodes" not in ds and "face_faces" not in ds
    assert ds.attrs["ugrid_connectivity"] == "face_face"
    xtramgrad.validate(ds)


def test_derived_connectivity_equals_stored_one():
    stored = xtramgrad.from_ugrid(mixed_mesh())
    derived = xtramgrad.from_ugrid(mixed_mesh(face_face=False))
    assert derived.attrs["ugrid_connectivity"] == "edges"
    assert rows(derived.neighbours) == rows(stored.neighbours)
    # faces sharing only a node: the triangle touches the right quad at node (1, 1)
    by_node = xtramgrad.from_ugrid(mixed_mesh(face_face=False), connectivity="nodes")
    assert rows(by_node.neighbours) == [[1, 2], [0, 2], [0, 1]]


def test_centers_choices():
    ds = mixed_mesh(face_xy=True)
    np.testing.assert_array_equal(xtramgrad.from_ugrid(ds).center.values[:, 0], [0.4, 1.6, 1.0])
    nodes = xtramgrad.from_ugrid(ds, centers="nodes").center.values
    np.testing.assert_allclose(nodes[2], [2 / 3, 4 / 3])
    # area centroid of the triangle (0,1), (1,1), (1,2) is its node mean; of a unit square too
    cen = xtramgrad.from_ugrid(ds, centers="centroid").center.values
    np.testing.assert_allclose(cen, nodes)
    # a trapezoid: the area centroid differs from the node mean
    trap = mixed_mesh(face_face=False)
    trap["node_x"] = ("node", [0.0, 1.0, 2.0, 0.0, 0.5, 2.0, 1.0])
    c = xtramgrad.from_ugrid(trap, centers="centroid").center.values[0]
    # quad (0,0),(1,0),(0.5,1),(0,1): area 0.75, centroid by decomposition into triangles
    np.testing.assert_allclose(c, [7 / 18, 4 / 9])


def test_netcdf_round_trip_decodes_fill_values(tmp_path):
    pytest.importorskip("h5netcdf")
    path = tmp_path / "mesh.nc"
    mixed_mesh().to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        # xarray decodes _FillValue into NaN floats: from_ugrid must still read it
        assert np.issubdtype(opened.face_faces.dtype, np.floating)
        ds = xtramgrad.from_ugrid(opened)
    assert ds.neighbours.values.tolist() == [[1, 2], [0, -1], [0, -1]]


def test_linear_field_on_a_structured_quad_mesh_matches_the_lattice():
    """Quads sharing nodes = TRamWAy's 8-neighbour inference adjacency of a grid."""
    nx, ny = 6, 5
    xs, ys = np.meshgrid(np.arange(nx + 1.0), np.arange(ny + 1.0), indexing="xy")
    node = lambda i, j: j * (nx + 1) + i  # noqa: E731
    faces = np.array(
        [[node(i, j), node(i + 1, j), node(i + 1, j + 1), node(i, j + 1)]
         for j in range(ny) for i in range(nx)]
    )
    mesh = xr.Dataset(
        {
            "mesh": ((), 0, mesh_topology()),
            "node_x": ("node", xs.ravel()),
            "node_y": ("node", ys.ravel()),
            "face_nodes": (("face", "four"), faces),
        }
    )
    ds = xtramgrad.from_ugrid(mesh, connectivity="nodes")
    ds["V"] = 3 * ds.center.sel(space="x") - 2 * ds.center.sel(space="y")
    lattice = xtramgrad.grid((ny, nx), origin=0.5, space=["y", "x"])  # rows are y
    order = np.lexsort((ds.center.values[:, 0], ds.center.values[:, 1]))
    assert np.array_equal(order, np.arange(nx * ny))  # faces are in lattice order
    assert rows(ds.neighbours) == rows(lattice.neighbours)
    lattice["V"] = 3 * lattice.center.sel(space="x") - 2 * lattice.center.sel(space="y")
    g, expected = ds.tram.grad("V"), lattice.tram.grad("V")
    for axis in ("x", "y"):
        np.testing.assert_allclose(g.sel(space=axis), expected.sel(space=axis), rtol=1e-12)
    # exact away from the border (the border bias is grad1's, the lattice has it too)
    inner = ((ds.center > 1) & (ds.center < [nx - 1, ny - 1])).all("space").values
    np.testing.assert_allclose(g.values[inner], np.broadcast_to([3.0, -2.0], (inner.sum(), 2)))


# --------------------------------------------------------------------------- xugrid


def test_xugrid_neighbours_match_xugrid():
    xu = pytest.importorskip("xugrid")
    pts, tri = delaunay_mesh()
    grid = xu.Ugrid2d(pts[:, 0], pts[:, 1], -1, tri)
    theirs = csr_rows(grid.face_face_connectivity)
    ds = xtramgrad.from_ugrid(grid)
    assert rows(ds.neighbours) == theirs
    np.testing.assert_allclose(ds.center.values[:, 0], grid.face_x)
    derived = xtramgrad.from_ugrid(grid, connectivity="edges", centers="centroid")
    assert rows(derived.neighbours) == theirs
    np.testing.assert_allclose(derived.center.values, ds.center.values, rtol=1e-12)
    # the same mesh written by xugrid as a UGRID dataset (no face_face_connectivity in it):
    # derived from shared edges
    written = grid.to_dataset()
    assert "face_face_connectivity" not in written[grid.name].attrs
    assert rows(xtramgrad.from_ugrid(written).neighbours) == theirs
    # and written with a one-based, _FillValue-padded face_face_connectivity
    ff = np.full((grid.n_face, 3), FILL)
    for i, r in enumerate(theirs):
        ff[i, : len(r)] = np.array(r) + 1
    written["ff"] = (("mesh2d_nFaces", "three"), ff, {"start_index": 1, "_FillValue": FILL})
    written[grid.name].attrs["face_face_connectivity"] = "ff"
    assert rows(xtramgrad.from_ugrid(written).neighbours) == theirs


def test_xugrid_dataset_measurements_and_linear_gradient():
    xu = pytest.importorskip("xugrid")
    pts, tri = delaunay_mesh(120, seed=5)
    grid = xu.Ugrid2d(pts[:, 0], pts[:, 1], -1, tri)
    V = xr.DataArray(
        2.0 * grid.face_x - 0.5 * grid.face_y + 1.0, dims=[grid.face_dimension], name="V"
    )
    uda = xu.UgridDataArray(V, grid)
    uds = xu.UgridDataset(grids=[grid])
    uds["V"] = uda
    for obj in (uda, uds):
        ds = xtramgrad.from_ugrid(obj, connectivity="nodes")
        np.testing.assert_array_equal(ds.V.values, V.values)
    # gradn fits a quadratic to a bin and the faces sharing a node with it (about 12):
    # exact for a linear field wherever the fit is determined
    g = ds.tram.grad("V", method="gradn")
    ok = ~np.isnan(g.values).any(axis=1)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(g.values[ok], np.broadcast_to([2.0, -0.5], g[ok].shape), rtol=1e-8)
    # grad1 on edge neighbours (3 per triangle) is the method's estimate, not exact
    g1 = xtramgrad.from_ugrid(uda).tram.grad("V")
    assert float(np.nanmedian(np.abs(g1.sel(space="x") - 2.0))) < 0.5


def test_xugrid_one_dimensional_network_is_refused():
    xu = pytest.importorskip("xugrid")
    net = xu.Ugrid1d(np.array([0.0, 1.0]), np.array([0.0, 0.0]), -1, np.array([[0, 1]]))
    with pytest.raises(TessellationError, match="Ugrid1d .* has no faces"):
        xtramgrad.from_ugrid(net)


# --------------------------------------------------------------------------- uxarray


def test_uxarray_neighbours_match_uxarray():
    ux = pytest.importorskip("uxarray")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uxarray warns about planar coordinates
        grid = ux.Grid.from_dataset(mixed_mesh(face_face=False))
        theirs = rows(np.where(grid.face_face_connectivity.values < 0, -1,
                               grid.face_face_connectivity.values))
        uxda = ux.UxDataArray(xr.DataArray([1.0, 2.0, 3.0], dims=["n_face"], name="D"),
                              uxgrid=grid)
        ds = xtramgrad.from_ugrid(uxda)
        from_grid = xtramgrad.from_ugrid(grid)
        uxds = ux.UxDataset(uxda.to_dataset(), uxgrid=grid)
        from_ds = xtramgrad.from_ugrid(uxds, connectivity="edges")
        on_faces = xtramgrad.from_ugrid(grid, centers="faces").center.values
        face_lonlat = np.stack([grid.face_lon.values, grid.face_lat.values], axis=1)
        centroid = xtramgrad.from_ugrid(grid, centers="centroid").center.values
    np.testing.assert_array_equal(on_faces, face_lonlat)
    np.testing.assert_allclose(centroid, [[0.5, 0.5], [1.5, 0.5], [2 / 3, 4 / 3]])
    assert rows(ds.neighbours) == theirs == [[1, 2], [0], [0]]
    assert rows(from_grid.neighbours) == theirs
    assert rows(from_ds.neighbours) == theirs
    assert list(ds.space.values) == ["lon", "lat"]
    np.testing.assert_allclose(ds.center.values, [[0.5, 0.5], [1.5, 0.5], [2 / 3, 4 / 3]])
    np.testing.assert_array_equal(ds.D.values, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(from_ds.D.values, [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- errors


def test_errors():
    with pytest.raises(TessellationError, match="not a UGRID dataset: no variable has attrs"):
        xtramgrad.from_ugrid(xr.Dataset({"a": ("face", [1.0])}))
    bare = mixed_mesh(face_face=False)
    del bare["mesh"].attrs["face_node_connectivity"]
    bare["mesh"].attrs["face_dimension"] = "face"
    with pytest.raises(TessellationError, match="neither face_face_connectivity nor face_node"):
        xtramgrad.from_ugrid(bare)
    two = mixed_mesh().assign(mesh2=((), 0, mesh_topology()))
    with pytest.raises(TessellationError, match=r"2 2D UGRID meshes \['mesh', 'mesh2'\]"):
        xtramgrad.from_ugrid(two)
    assert xtramgrad.from_ugrid(two, mesh="mesh").sizes["bin"] == 3
    with pytest.raises(TessellationError, match="mesh='nope' is not a UGRID mesh topology"):
        xtramgrad.from_ugrid(two, mesh="nope")
    wrong_start = mixed_mesh()
    wrong_start["face_faces"].attrs["start_index"] = 0
    with pytest.raises(TessellationError, match="refers to face 3, for 3 faces; check its"):
        xtramgrad.from_ugrid(wrong_start)
    missing = mixed_mesh()
    missing["mesh"].attrs["face_face_connectivity"] = "ghost"
    with pytest.raises(TessellationError, match="no variable 'ghost'"):
        xtramgrad.from_ugrid(missing)
    with pytest.raises(TessellationError, match="centers='middle'; expected one of"):
        xtramgrad.from_ugrid(mixed_mesh(), centers="middle")
    with pytest.raises(TessellationError, match="centers='faces' but mesh 'mesh' declares no"):
        xtramgrad.from_ugrid(mixed_mesh(), centers="faces")
    with pytest.raises(TessellationError, match="connectivity='face_face' but mesh 'mesh' has"):
        xtramgrad.from_ugrid(mixed_mesh(face_face=False), connectivity="face_face")
    with pytest.raises(TessellationError, match="from_ugrid got a list"):
        xtramgrad.from_ugrid([1, 2])


# --------------------------------------------------------------------------- geometry


def test_geometry_from_the_face_polygons():
    """Closed forms on the mixed mesh: unit squares (area 1, shared side 1), a right
    triangle of legs 1 (area 1/2) sharing the side (0,1)-(1,1) with the left square and
    only the node (1,1) with the right one."""
    ds = xtramgrad.from_ugrid(mixed_mesh())
    np.testing.assert_allclose(ds.volume.values, [1.0, 1.0, 0.5])
    assert ds.neighbours.values.tolist() == [[1, 2], [0, -1], [0, -1]]
    np.testing.assert_allclose(ds.face_area.values, [[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert ds.face_area.dims == ds.neighbours.dims
    np.testing.assert_array_equal(ds.vertex.values, NODES)
    # the file's one-based, _FillValue-padded polygons, zero-based and padded with -1
    zero_based = np.where(FACES_1 == FILL, -1, FACES_1 - 1)
    np.testing.assert_array_equal(ds.cell_vertex.values, zero_based)
    by_node = xtramgrad.from_ugrid(mixed_mesh(face_face=False), connectivity="nodes")
    assert rows(by_node.neighbours) == [[1, 2], [0, 2], [0, 1]]
    lengths = {(i, int(j)): a for i, (r, f) in enumerate(zip(by_node.neighbours.values,
                                                              by_node.face_area.values,
                                                              strict=True))
               for j, a in zip(r, f, strict=True) if j >= 0}
    assert lengths == {(0, 1): 1.0, (0, 2): 1.0, (1, 0): 1.0, (1, 2): 0.0, (2, 0): 1.0,
                       (2, 1): 0.0}


def test_geometry_of_a_structured_mesh_tiles_the_domain():
    nx, ny, h = 5, 4, 0.25
    xs, ys = np.meshgrid(np.arange(nx + 1) * h, np.arange(ny + 1) * h, indexing="xy")
    node = lambda i, j: j * (nx + 1) + i  # noqa: E731
    faces = np.array([[node(i, j), node(i + 1, j), node(i + 1, j + 1), node(i, j + 1)]
                      for j in range(ny) for i in range(nx)])
    mesh = xr.Dataset({"mesh": ((), 0, mesh_topology()), "node_x": ("node", xs.ravel()),
                       "node_y": ("node", ys.ravel()), "face_nodes": (("face", "four"), faces)})
    ds = xtramgrad.from_ugrid(mesh)
    np.testing.assert_allclose(ds.volume.sum(), nx * ny * h * h, rtol=1e-12)
    valid = ds.neighbours.values >= 0
    np.testing.assert_allclose(ds.face_area.values[valid], h, rtol=1e-12)
    # the finite-volume identity on a lattice: V = sum_f A_f d_f / 2 / d (each face at h/2)
    np.testing.assert_allclose((ds.face_area * h / 4).sum("nbr").values[
        (valid.sum(axis=1) == 4)], h * h, rtol=1e-12)


def test_units():
    ds = mixed_mesh()
    assert "units" not in xtramgrad.from_ugrid(ds).center.attrs  # none declared
    ds["node_x"].attrs["units"] = ds["node_y"].attrs["units"] = "um"
    tess = xtramgrad.from_ugrid(ds)
    assert tess.center.attrs["units"] == "um" and tess.vertex.attrs["units"] == "um"
    assert tess.volume.attrs["units"] == "um^2" and tess.face_area.attrs["units"] == "um"
    assert tess.tram.grad("D").attrs.get("units") is None  # D has none
    tess["D"].attrs["units"] = "um^2/s"
    assert tess.tram.grad("D").attrs["units"] == "um^2/s / um"
    assert xtramgrad.from_ugrid(ds, units="nm").center.attrs["units"] == "nm"
    ds["node_y"].attrs["units"] = "m"  # disagreeing axes: no guess
    assert "units" not in xtramgrad.from_ugrid(ds).center.attrs
    with pytest.raises(TessellationError, match=r"units=1.0; expected a string"):
        xtramgrad.from_ugrid(ds, units=1.0)


def test_schema_names_in_the_file_are_kept_as_measurements():
    ds = mixed_mesh().assign(volume=("face", [5.0, 6.0, 7.0]), face_area=("face", [1.0, 2, 3]))
    tess = xtramgrad.from_ugrid(ds)
    np.testing.assert_array_equal(tess.volume_data.values, [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(tess.face_area_data.values, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(tess.volume.values, [1.0, 1.0, 0.5])


def test_stored_face_face_duplicates_and_self_references_are_dropped():
    ds = mixed_mesh()
    ds["face_faces"] = (("face", "max_faces"), np.array([[2, 3, 2], [1, 2, FILL], [1, 3, 1]]),
                        ds["face_faces"].attrs)
    tess = xtramgrad.from_ugrid(ds)
    assert tess.neighbours.values.tolist() == [[1, 2], [0, -1], [0, -1]]
    xtramgrad.validate(tess)


def test_xugrid_geometry_matches_xugrid():
    """xugrid's own face areas and edge lengths, with its edge-face table."""
    xu = pytest.importorskip("xugrid")
    pts, tri = delaunay_mesh()
    grid = xu.Ugrid2d(pts[:, 0], pts[:, 1], -1, tri)
    ds = xtramgrad.from_ugrid(grid)
    np.testing.assert_allclose(ds.volume.values, grid.area, rtol=1e-12)
    expected = {}
    for (a, b), length in zip(grid.edge_face_connectivity, grid.edge_length, strict=True):
        if a >= 0 and b >= 0:
            expected[(int(a), int(b))] = expected[(int(b), int(a))] = length
    got = {(i, int(j)): f for i, (r, fa) in enumerate(zip(ds.neighbours.values,
                                                           ds.face_area.values, strict=True))
           for j, f in zip(r, fa, strict=True) if j >= 0}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-12)


def test_uxarray_geometry_is_planar_in_degrees():
    ux = pytest.importorskip("uxarray")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mesh = mixed_mesh(face_face=False)
        mesh["node_x"].attrs["units"] = "degrees_east"
        mesh["node_y"].attrs["units"] = "degrees_north"
        grid = ux.Grid.from_dataset(mesh)
        ds = xtramgrad.from_ugrid(grid)
    np.testing.assert_allclose(ds.volume.values, [1.0, 1.0, 0.5])
    assert rows(ds.neighbours) == [[1, 2], [0], [0]]
    valid = ds.neighbours.values >= 0
    np.testing.assert_allclose(ds.face_area.values[valid], 1.0)
    assert ds.center.attrs["units"] == "degree"  # CF's degrees_east and degrees_north
    assert ds.volume.attrs["units"] == "degree^2"

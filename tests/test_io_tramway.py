"""from_tramway / to_tramway against a real TRamWAy 0.7 analysis file.

``tests/data/sample.rwa`` was written by TRamWAy 0.7 itself (``tests/data/make_rwa.py``): a
simulated random walk tessellated with grid, kmeans, gwr and hexagon, D inferred (map ``D``)
and TRamWAy's own ``gradient`` plugin run on that D map (map ``gradD``, default options, i.e.
``selection_angle=0.9``). The independent truth is what TRamWAy stored and what TRamWAy's own
API reports (``distributed(partition)``), never our own code.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import xtramgrad
from xtramgrad import TessellationError

pytest.importorskip("tramway")

SAMPLE = Path(__file__).resolve().parent / "data" / "sample.rwa"
LABELS = ["grid", "gwr", "hexagon", "kmeans"]


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
    with pytest.raises(TessellationError, match="Select one slice"):
        xtramgrad.to_tramway(ds.tram.grad("D").expand_dims(time=2))
    with pytest.raises(TessellationError, match="no name; pass feature="):
        xtramgrad.to_tramway(ds.D.rename(None))


def test_missing_tramway_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tramway", None)  # makes `import tramway` fail
    with pytest.raises(TessellationError, match=r"pip install 'xtramgrad\[tramway\]'"):
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


def test_time_lattice_is_refused(tree):
    from tramway.core.analyses.base import Analyses
    from tramway.tessellation.time import TimeLattice

    partition = tree["grid"].data
    lattice = TimeLattice(scaler=partition.tessellation.scaler, segments=np.array([[0.0, 1.0]]),
                          mesh=partition.tessellation)
    fake = type(partition)(partition.points, lattice, location_count=partition.location_count)
    alone = Analyses(None)
    alone.add(fake, label="grid_t")
    with pytest.raises(TessellationError, match="'grid_t' is a TRamWAy time lattice"):
        xtramgrad.from_tramway(alone)

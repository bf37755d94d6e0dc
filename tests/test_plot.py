"""Plots render (Agg) and draw what they should: cells, arrows, selected neighbours."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Wedge  # noqa: E402
from matplotlib.path import Path  # noqa: E402

import xtramgrad  # noqa: E402
from xtramgrad.plot import _area, voronoi_cells  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _cells(ax):
    return [c for c in ax.collections if c.get_gid() == "xtramgrad-cells"]


def _arrows(ax):
    return [c for c in ax.collections if c.get_gid() == "xtramgrad-arrows"]


def _markers(ax):
    return {
        c.get_label(): np.asarray(c.get_offsets())
        for c in ax.collections
        if c.get_gid() == "xtramgrad-selection"
    }


# --------------------------------------------------------------------------- plot_map


def test_voronoi_cells_partition_the_box_and_contain_their_centers():
    pts = np.random.default_rng(1).uniform(0, 1, (60, 2))
    cells = voronoi_cells(pts, bbox=(-0.1, 1.1, -0.2, 1.2))
    assert len(cells) == 60
    total = sum(abs(_area(c)) for c in cells)
    assert total == pytest.approx(1.2 * 1.4, rel=1e-9)
    for p, c in zip(pts, cells, strict=True):
        assert Path(c).contains_point(p)
    # every cell point is at least as close to its own center as to any other center
    for i, c in enumerate(cells):
        d = np.linalg.norm(c[:, None, :] - pts[None], axis=2)
        assert np.all(d[:, i] <= d.min(axis=1) + 1e-9)


def test_voronoi_cells_reject_a_box_not_containing_the_points():
    with pytest.raises(xtramgrad.TessellationError, match="outside bbox"):
        voronoi_cells(np.array([[0.0, 0.0], [2.0, 0.0]]), bbox=(-1, 1, -1, 1))


def test_plot_map_voronoi_cells_one_per_bin_coloured_by_values():
    ds = xtramgrad.open_sample("hexagon")
    fig, ax = plt.subplots()
    out = xtramgrad.plot_map(ds, "D", ax=ax)
    assert out is ax
    (coll,) = _cells(ax)
    paths = coll.get_paths()
    assert len(paths) == ds.sizes["bin"]
    np.testing.assert_array_equal(np.asarray(coll.get_array()), ds.D.values)
    centers = ds.center.values
    assert all(p.contains_point(c) for p, c in zip(paths, centers, strict=True))
    assert len(fig.axes) == 2  # the colour bar
    assert "diffusivity [um^2/s]" in fig.axes[1].get_ylabel()


def test_plot_map_grid_draws_the_grid_squares():
    ds = xtramgrad.open_sample("grid")
    ax = ds.tram.plot_map("D")
    (coll,) = _cells(ax)
    paths = coll.get_paths()
    assert len(paths) == 400
    areas = [abs(_area(p.vertices[:4])) for p in paths]
    np.testing.assert_allclose(areas, 0.01, rtol=1e-9)


def test_plot_map_missing_values_are_masked_and_scatter_fallback():
    ds = xtramgrad.grid((6, 5))
    d = np.arange(30.0)
    d[[3, 7]] = np.nan
    ds["D"] = ("bin", d)
    ax = ds.tram.plot_map("D")
    arr = _cells(ax)[0].get_array()
    assert np.ma.count_masked(arr) == 2
    ax = ds.tram.plot_map("D", cells="scatter")
    (coll,) = _cells(ax)
    np.testing.assert_array_equal(coll.get_offsets(), ds.center.values)


def test_plot_map_without_variable_draws_outlines_only():
    ds = xtramgrad.voronoi(np.random.default_rng(2).random((40, 2)))
    fig = plt.figure()
    ax = ds.tram.plot_map(ax=fig.add_subplot())
    (coll,) = _cells(ax)
    assert len(coll.get_paths()) == 40
    assert len(fig.axes) == 1  # no colour bar without values


def test_plot_map_3d_draws_one_slab():
    ds = xtramgrad.grid((4, 5, 3), D=np.arange(60.0))
    ax = ds.tram.plot_map("D", at={"z": 1.0})
    (coll,) = _cells(ax)
    assert len(coll.get_paths()) == 20  # the 4 x 5 bins of the layer z = 1
    np.testing.assert_array_equal(coll.get_array(), ds.D.values[1::3])
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    with pytest.raises(xtramgrad.TessellationError, match="no bin center lies within"):
        ds.tram.plot_map("D", at={"z": 7.0})


def test_plot_map_1d_is_a_line_through_the_centers():
    ds = xtramgrad.grid(7, D=np.arange(7.0) ** 2)
    ax = ds.tram.plot_map("D")
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), ds.D.values)


def test_plot_map_refuses_extra_dims_with_a_clear_error():
    ds = xtramgrad.grid((3, 3))
    ds["D"] = (("time", "bin"), np.ones((2, 9)))
    with pytest.raises(xtramgrad.TessellationError, match=r"isel\(time=0\)"):
        ds.tram.plot_map("D")
    ax = ds.tram.plot_map(ds.D.isel(time=0))
    assert len(_cells(ax)[0].get_paths()) == 9
    with pytest.raises(xtramgrad.TessellationError, match="no variable 'V'"):
        ds.tram.plot_map("V")


# --------------------------------------------------------------------------- plot_gradient


def test_plot_gradient_one_arrow_per_defined_gradient():
    ds = xtramgrad.open_sample("kmeans")
    d = ds.D.values.copy()
    d[:10] = np.nan
    ds["D"] = ("bin", d, ds.D.attrs)
    g = ds.tram.grad("D", eps=0.01)
    ok = np.all(np.isfinite(g.values), axis=1)
    fig, ax = plt.subplots()
    out = ds.tram.plot_gradient("D", eps=0.01, ax=ax)
    assert out is ax
    (q,) = _arrows(ax)
    assert q.N == ok.sum() < ds.sizes["bin"]
    np.testing.assert_allclose(q.U, g.values[ok, 0])
    np.testing.assert_allclose(q.V, g.values[ok, 1])
    np.testing.assert_allclose(q.X, ds.center.values[ok, 0])
    assert len(_cells(ax)[0].get_paths()) == ds.sizes["bin"]
    assert len(fig.axes) == 2


def test_plot_gradient_scaling_and_arrow_colour_bar():
    ds = xtramgrad.grid((8, 8), spacing=0.5, connectivity="faces")
    c = ds.center.values
    ds["V"] = ("bin", 3 * c[:, 0] + 4 * c[:, 1])
    fig, ax = plt.subplots()
    ds.tram.plot_gradient("V", ax=ax, background=False)
    (q,) = _arrows(ax)
    assert q.N == 64
    # a uniform gradient of norm 5 is drawn 0.75 * spacing long
    assert q.scale == pytest.approx(5.0 / (0.75 * 0.5))
    np.testing.assert_allclose(np.asarray(q.get_array()), 5.0)
    assert len(fig.axes) == 2 and "|gradient of V|" in fig.axes[1].get_ylabel()
    ax = ds.tram.plot_gradient("V", grad=ds.tram.grad("V"), scale=0.1)
    assert _arrows(ax)[0].scale == pytest.approx(10.0)
    with pytest.raises(xtramgrad.TessellationError, match="would be ignored"):
        ds.tram.plot_gradient("V", grad=ds.tram.grad("V"), eps=0.0)


def test_plot_gradient_3d_slab_and_1d_error():
    ds = xtramgrad.grid((4, 4, 4))
    ds["V"] = ds.center.sel(space="x") - 2 * ds.center.sel(space="z")
    ax = ds.tram.plot_gradient("V", at={"y": 2.0})
    (q,) = _arrows(ax)
    assert q.N == 16
    g = ds.tram.grad("V").values[ds.center.sel(space="y").values == 2.0]
    np.testing.assert_array_equal(q.U, g[:, 0])
    np.testing.assert_array_equal(q.V, g[:, 2])
    np.testing.assert_allclose(q.U[5], 1.0)  # an interior bin of the slab: exact
    np.testing.assert_allclose(q.V[5], -2.0)
    with pytest.raises(xtramgrad.TessellationError, match="1D"):
        xtramgrad.grid(5, V=np.arange(5.0)).tram.plot_gradient("V")


# --------------------------------------------------------------------------- plot_selection


def _expected_sides(offsets, own, other, kind, value):
    """The rules as written in TRamWAy's documentation (reference), independently."""
    if kind == "cone":
        u = offsets / np.linalg.norm(offsets, axis=1, keepdims=True)
        a = 1 - 2 * np.arccos(u) / np.pi
        return a < value - 1, a > 1 - value
    if kind == "quadrants":
        axis = np.argmax(np.abs(offsets), axis=1)
        one = np.eye(offsets.shape[1], dtype=bool)[axis]
        return one & (offsets < 0), one & (offsets > 0)
    return other < own - value, own + value < other


RULES = [
    pytest.param({}, ("cone", 0.9), id="default-cone-0.9"),
    pytest.param({"selection_angle": 0.7}, ("cone", 0.7), id="cone-0.7"),
    pytest.param({"selection_angle": 0.5}, ("quadrants", None), id="quadrants"),
    pytest.param({"eps": 0.0}, ("halfspace", 0.0), id="halfspace"),
    pytest.param({"eps": 0.03}, ("halfspace", 0.03), id="halfspace-margin"),
]


@pytest.mark.parametrize(("kwargs", "rule"), RULES)
def test_plot_selection_marks_the_neighbours_the_rule_selects(kwargs, rule):
    rng = np.random.default_rng(5)
    ds = xtramgrad.voronoi(rng.random((80, 2)))
    c, table = ds.center.values, ds.neighbours.values
    for b in (0, 17, 42):
        nb = table[b][table[b] >= 0]
        below, above = _expected_sides(c[nb] - c[b], c[b], c[nb], *rule)
        ax = ds.tram.plot_selection(b, **kwargs)
        marks = _markers(ax)
        for j, name in enumerate("xy"):
            for side, mask in (("below", below[:, j]), ("above", above[:, j])):
                got = marks.get(f"{name} {side}", np.zeros((0, 2)))
                np.testing.assert_array_equal(
                    got[np.lexsort(got.T[::-1])] if len(got) else got,
                    c[nb][mask][np.lexsort(c[nb][mask].T[::-1])],
                )
        unused = ~(below | above).any(axis=1)
        assert len(marks.get("unused", [])) == unused.sum()
        star = [x for x in ax.collections if x.get_gid() == "xtramgrad-bin"][0]
        np.testing.assert_array_equal(star.get_offsets()[0], c[b])
        plt.close("all")


def test_plot_selection_draws_the_rule_geometry():
    ds = xtramgrad.grid((5, 5))
    ax = ds.tram.plot_selection(12, selection_angle=0.9)
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    assert len(wedges) == 4
    assert sorted(round(w.theta2 - w.theta1, 9) for w in wedges) == [162.0] * 4
    ax = ds.tram.plot_selection(12, selection="quadrants")
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    assert sorted(round(w.theta2 - w.theta1, 9) for w in wedges) == [90.0] * 4
    # grid diagonals go to x under quadrants (TRamWAy's argmax tie rule)
    marks = _markers(ax)
    assert len(marks["x below"]) == 3 and len(marks["y above"]) == 1
    ax = ds.tram.plot_selection(12, eps=0.25)
    gids = [a.get_gid() for a in ax.patches + ax.lines]
    assert gids.count("xtramgrad-rule-x-margin") == 1
    assert gids.count("xtramgrad-rule-y-boundary") == 2
    ax = ds.tram.plot_selection(12, eps=0.0)
    assert [a.get_gid() for a in ax.lines].count("xtramgrad-rule-x-boundary") == 1


def test_plot_selection_missing_neighbours_and_labels():
    ds = xtramgrad.grid((3, 3), connectivity="faces")
    d = np.arange(9.0)
    d[5] = np.nan  # the neighbour of bin 4 at x = 1, y = 2 (above along y)
    ds["D"] = ("bin", d)
    ax = ds.tram.plot_selection(4, variable="D")
    marks = _markers(ax)
    np.testing.assert_array_equal(marks["missing"], [[1.0, 2.0]])
    assert "y above" not in marks
    # labelled adjacency: the labels decide, whatever the geometry
    table = ds.neighbours.values
    labels = np.where(table >= 0, 1, 0)  # everything "x above"
    lab = xtramgrad.from_neighbours(ds.center.values, table, labels)
    marks = _markers(lab.tram.plot_selection(4, selection="labels"))
    assert list(marks) == ["x above"] and len(marks["x above"]) == 4


def test_plot_selection_1d_3d_and_errors():
    ds = xtramgrad.grid(5)
    marks = _markers(ds.tram.plot_selection(2))
    np.testing.assert_array_equal(marks["x below"], [[1.0, 0.0]])
    ds3 = xtramgrad.grid((3, 3, 3))
    ax = ds3.tram.plot_selection(13, selection_angle=0.5)
    marks = _markers(ax)
    assert sum(len(v) for v in marks.values()) == 18
    assert "projected" in ax.get_title()
    with pytest.raises(xtramgrad.TessellationError, match="bin=99"):
        ds.tram.plot_selection(99)
    with pytest.raises(xtramgrad.TessellationError, match="selection_angle"):
        ds.tram.plot_selection(1, selection_angle=0.9, eps=0.1)


def test_plot_selection_draws_the_true_cells_around_the_bin():
    pts = np.random.default_rng(8).random((400, 2))
    ds = xtramgrad.voronoi(pts)
    full = voronoi_cells(pts)
    b = int(np.argmin(np.linalg.norm(pts - 0.5, axis=1)))
    ax = ds.tram.plot_selection(b)
    (coll,) = _cells(ax)
    drawn = coll.get_paths()
    assert len(drawn) >= 1 + (ds.neighbours.values[b] >= 0).sum()
    # each drawn cell is the cell of the whole diagram around the bin it contains
    for path in drawn:
        inside = [i for i, p in enumerate(pts) if path.contains_point(p)]
        assert len(inside) == 1
        assert abs(_area(path.vertices)) == pytest.approx(abs(_area(full[inside[0]])), rel=1e-9)

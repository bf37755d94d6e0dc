"""Tables that cannot be broken by accident (issue 10): the ``bin`` coordinate, ``isel`` /
``concat`` / ``symmetrize``, the ragged layout, duplicate / coincident / asymmetric tables,
0 bins, unsigned tables, ``units=``.

Each attack that once gave a wrong number or a raw crash is reproduced here. Expected tables
are computed independently, with plain Python loops over sets.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import xarray as xr

import xtramgrad
from helpers import no_compute
from xtramgrad import TessellationError
from xtramgrad.topology import (
    AsymmetryWarning,
    Topology,
    check_values,
    choose_layout,
    concat,
    edge_values,
    isel,
    row_problem,
    symmetrize,
    table_csr,
    topology,
    validate,
)

# --------------------------------------------------------------------------- helpers


def rows_of(ds: xr.Dataset) -> list[list[int]]:
    """Each bin's neighbours in table order, whatever the layout (independent of table_csr)."""
    if ds.neighbours.dims == ("edge",):
        out, start = [], 0
        for c in ds.neighbour_count.values.tolist():
            out.append(ds.neighbours.values[start : start + c].tolist())
            start += c
        return out
    return [[j for j in row if j >= 0] for row in ds.neighbours.values.tolist()]


def expected_isel(ds: xr.Dataset, pos: list[int]) -> list[list[int]]:
    new = {p: r for r, p in enumerate(pos)}
    old = rows_of(ds)
    return [[new[j] for j in old[p] if j in new] for p in pos]


def quiet_validate(ds: xr.Dataset) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no AsymmetryWarning either
        return validate(ds)


def hub(n: int) -> tuple[np.ndarray, sp.coo_array]:
    """Bin 0 adjacent to every other bin, the others on a ring (degree 3)."""
    ring = np.arange(1, n)
    nxt = np.r_[ring[1:], ring[:1]]
    rows = np.r_[np.zeros(n - 1, int), ring, ring, nxt]
    cols = np.r_[ring, np.zeros(n - 1, int), nxt, ring]
    A = sp.coo_array((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return np.random.default_rng(0).random((n, 2)), A


def grid_d(shape=(4, 5), **kw) -> xr.Dataset:
    ds = xtramgrad.grid(shape, **kw)
    ds["D"] = 1.0 + ds.center.sel(space="x") ** 2 + 3 * ds.center.sel(space="y")
    return ds


# --------------------------------------------------------------------------- bin coordinate


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: xtramgrad.grid((3, 4)), id="grid"),
        pytest.param(lambda: xtramgrad.grid((3, 4), chunks=5), id="grid-lazy"),
        pytest.param(lambda: xtramgrad.voronoi(np.random.default_rng(0).random((20, 2))),
                     id="voronoi"),
        pytest.param(lambda: xtramgrad.from_neighbours([0.0, 1.0], [[1], [0]]),
                     id="from_neighbours"),
        pytest.param(lambda: xtramgrad.from_adjacency([0.0, 1.0], sp.csr_array([[0, 1], [1, 0]])),
                     id="from_adjacency"),
        pytest.param(lambda: xtramgrad.sort(xtramgrad.grid((3, 4))), id="sort"),
        pytest.param(lambda: isel(xtramgrad.grid((3, 4)), bin=[5, 2, 7]), id="isel"),
        pytest.param(lambda: concat([xtramgrad.grid(3), xtramgrad.grid(2)]), id="concat"),
    ],
)
def test_every_constructor_gives_a_range_bin_coordinate(build):
    ds = build()
    n = ds.sizes["bin"]
    index = ds.xindexes["bin"].index
    assert isinstance(index, pd.RangeIndex)  # constant memory at any size
    assert (index.start, index.step, len(index)) == (0, 1, n)
    assert ds.bin.dtype == np.int64
    assert ds.bin.values.tolist() == list(range(n))


def test_bin_coordinate_of_a_huge_lazy_grid_costs_nothing():
    # 10^8 bins: an int64 index would hold 800 MB; a range index holds three numbers
    with no_compute():
        ds = xtramgrad.grid((10_000, 10_000), chunks=1_000_000)
        topo = topology(ds)  # checks the coordinate without computing anything
    assert topo.n_bins == 10**8
    assert isinstance(ds.xindexes["bin"].index, pd.RangeIndex)


@pytest.mark.parametrize(
    "move, what",
    [
        pytest.param(lambda a, b: xr.concat([a, b], dim="bin"), "repeats values", id="concat"),
        pytest.param(lambda a, b: a.isel(bin=[1, 0, *range(2, 20)]), "a permutation of 0..19",
                     id="reordered"),
        pytest.param(lambda a, b: a.sortby(-a.center.sel(space="x")), "a permutation",
                     id="sortby"),
        pytest.param(lambda a, b: a.isel(bin=[0, 4, 7]), "an increasing subset", id="subset"),
        pytest.param(lambda a, b: a.isel(bin=slice(3, 12)), "an increasing subset",
                     id="slice"),
        pytest.param(lambda a, b: a.where(a.D > 5, drop=True), "an increasing subset",
                     id="where-drop"),
        pytest.param(lambda a, b: a.isel(bin=[7, 4, 0]), "neither 0..2, nor a permutation",
                     id="moved"),
        pytest.param(lambda a, b: a.assign_coords(bin=[f"c{i}" for i in range(20)]),
                     "labels", id="labels"),
    ],
)
@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(topology, id="topology"),
        pytest.param(validate, id="validate"),
        pytest.param(lambda ds: xtramgrad.grad(ds, "D"), id="grad"),
        pytest.param(xtramgrad.sort, id="sort"),
        pytest.param(xtramgrad.plan, id="plan"),
        pytest.param(xtramgrad.summary, id="summary"),
        pytest.param(lambda ds: isel(ds, bin=[0]), id="isel"),
    ],
)
def test_rows_moved_by_xarray_are_refused(move, what, entry):
    a, b = grid_d(), grid_d(origin=10.0)
    broken = move(a, b)
    with pytest.raises(TessellationError, match=f"coordinate 'bin' .*{what}") as info:
        entry(broken)
    assert "own neighbour" not in str(info.value)  # never blamed on self-loops


def test_random_permutations_are_always_caught():
    # the attack: 36 of 300 random permutations used to pass silently
    ds = grid_d((6, 7))
    rng = np.random.default_rng(0)
    for _ in range(300):
        perm = rng.permutation(42)
        if (perm == np.arange(42)).all():
            continue
        with pytest.raises(TessellationError, match="a permutation of 0..41"):
            topology(ds.isel(bin=perm))


def test_suggested_fix_for_reordered_rows_is_right():
    ds = grid_d()
    perm = np.random.default_rng(1).permutation(20)
    broken = ds.isel(bin=perm)
    with pytest.raises(TessellationError, match=r"ds = ds.sortby\('bin'\)"):
        topology(broken)
    fixed = broken.sortby("bin")
    xr.testing.assert_identical(fixed.tram.grad("D"), ds.tram.grad("D"))
    # and the supported reorder gives the same gradients, permuted
    moved = isel(ds, bin=perm)
    np.testing.assert_array_equal(moved.tram.grad("D").values, ds.tram.grad("D").values[perm])


def test_suggested_fix_for_labels_is_right():
    ds = grid_d()
    broken = ds.assign_coords(bin=[f"c{i}" for i in range(20)])
    fix = "ds.assign_coords(label=('bin', ds.bin.values)).drop_vars('bin')"
    with pytest.raises(TessellationError, match=__import__("re").escape(fix)):
        topology(broken)
    fixed = broken.assign_coords(label=("bin", broken.bin.values)).drop_vars("bin")
    np.testing.assert_array_equal(fixed.tram.grad("D").values, ds.tram.grad("D").values)


def test_datasets_without_bin_coordinate_keep_working():
    ds = grid_d()
    bare = ds.drop_vars("bin")
    assert "bin" not in bare.coords
    quiet_validate(bare)
    np.testing.assert_array_equal(bare.tram.grad("D").values, ds.tram.grad("D").values)


def test_reset_bin_coordinate_after_own_renumbering():
    ds = grid_d()
    perm = np.random.default_rng(2).permutation(20)
    by_hand = ds.isel(bin=perm)
    inverse = np.argsort(perm)
    table = by_hand.neighbours.values
    by_hand["neighbours"] = (("bin", "nbr"), np.where(table >= 0, inverse[table], -1))
    with pytest.raises(TessellationError, match=r"ds.assign_coords\(bin=np.arange"):
        topology(by_hand)
    fixed = by_hand.assign_coords(bin=np.arange(20))
    np.testing.assert_array_equal(fixed.tram.grad("D").values, ds.tram.grad("D").values[perm])


def test_lazy_bin_coordinate_is_checked_by_validate_and_check_values():
    ds = grid_d()
    shuffled = np.r_[1, 0, np.arange(2, 20)]
    import dask.array as da

    coord = xr.Coordinates({"bin": ("bin", da.from_array(shuffled, chunks=6))}, indexes={})
    lazy = ds.drop_vars("bin").chunk({"bin": 6}).assign_coords(coord)
    assert "bin" not in lazy.xindexes
    with no_compute():
        topology(lazy)  # lazy and unindexed: not read here
    with pytest.raises(TessellationError, match=r"row 0 holds bin 1"):
        validate(lazy)
    with pytest.raises(TessellationError, match="row 6 holds bin 7"):
        check_values(np.zeros((0, 2)), ds.neighbours.values[6:12], rows=np.arange(6, 12),
                     n_bins=20, bin_ids=np.array([7, 6, 8, 9, 10, 11]))


# --------------------------------------------------------------------------- isel


@pytest.mark.parametrize("layout", ["padded", "ragged"])
@pytest.mark.parametrize(
    "indexer",
    [
        pytest.param([5, 1, 2, 11], id="list"),
        pytest.param(np.array([-1, 0, 6]), id="negative"),
        pytest.param(slice(2, 10, 3), id="slice"),
        pytest.param(np.arange(12) % 3 == 0, id="mask"),
        pytest.param(np.random.default_rng(0).permutation(12), id="permutation"),
    ],
)
def test_isel_remaps_the_table(indexer, layout):
    ds = xtramgrad.voronoi(np.random.default_rng(5).random((12, 2)), layout=layout)
    ds["D"] = ("bin", np.arange(12.0))
    pos = np.arange(12)[indexer].tolist()
    sub = isel(ds, bin=indexer)
    assert rows_of(sub) == expected_isel(ds, pos)
    assert sub.neighbours.dims == ds.neighbours.dims
    assert sub.bin_id.values.tolist() == pos
    assert sub.D.values.tolist() == [float(p) for p in pos]
    np.testing.assert_array_equal(sub.center.values, ds.center.values[pos])
    quiet_validate(sub)  # a subset of a symmetric table stays symmetric


def test_isel_composes_bin_id_and_moves_per_edge_variables():
    ds = xtramgrad.grid((3, 3), D=np.arange(9.0))
    ds["weight"] = xr.where(ds.neighbours >= 0, ds.neighbours + 100, 0)  # any per-edge data
    s = xtramgrad.sort(ds)
    sub = isel(s, bin=[4, 0, 8, 2])
    assert sub.bin_id.values.tolist() == s.bin_id.values[[4, 0, 8, 2]].tolist()
    # each entry's weight still names (old position + 100) of the bin it points to
    ids = sub.bin_id.values
    for r, row in enumerate(rows_of(sub)):
        labels = [lab for lab in sub.weight.values[r].tolist() if lab]
        assert labels == [int(ids[j]) + 100 for j in row]


@pytest.mark.parametrize(
    "indexer, exc, match",
    [
        pytest.param([1, 1], ValueError, "selects bin 1 2 times", id="repeat"),
        pytest.param([], TessellationError, "selects 0 bins", id="empty"),
        pytest.param([9], ValueError, r"position 9, outside \[-9, 8\]", id="range"),
        pytest.param([[0, 1]], ValueError, "expected a slice, a 1-D array", id="2d"),
        pytest.param(np.ones(4, bool), ValueError, "mask of length 4", id="mask"),
        pytest.param([0.5], ValueError, "dtype float64", id="float"),
    ],
)
def test_isel_errors(indexer, exc, match):
    with pytest.raises(exc, match=match):
        isel(xtramgrad.grid((3, 3)), bin=indexer)


def test_isel_of_a_subset_drops_grid_shape_but_keeps_spacing():
    sub = isel(xtramgrad.grid((3, 3), spacing=0.5), bin=[0, 1])
    assert "grid_shape" not in sub.attrs and sub.attrs["grid_spacing"] == [0.5, 0.5]
    assert "xtramgrad_halo" not in sub.neighbours.attrs  # locality does not survive


# --------------------------------------------------------------------------- concat


def test_concat_is_a_disjoint_union():
    a = grid_d((2, 3))
    b = xtramgrad.voronoi(np.random.default_rng(1).random((7, 2)) + 5)
    b["D"] = ("bin", np.arange(7.0))
    ab = concat([a, b])
    want = rows_of(a) + [[j + 6 for j in row] for row in rows_of(b)]
    assert rows_of(ab) == want  # offsets, no entries between the parts
    assert ab.D.values.tolist() == a.D.values.tolist() + b.D.values.tolist()
    assert "grid_shape" not in ab.attrs
    quiet_validate(ab)
    # the gradient of each part is its own (the attack gave errors up to 27)
    g = ab.tram.grad("D").values
    np.testing.assert_array_equal(g[:6], a.tram.grad("D").values)
    np.testing.assert_array_equal(g[6:], b.tram.grad("D").values)


def test_concat_mixed_layouts_and_per_edge_variables():
    a = xtramgrad.from_neighbours([0.0, 1.0], [[1], [0]], labels=[[1], [-1]])
    b = xtramgrad.from_neighbours([5.0, 6.0, 7.0], [[1, -1], [0, 2], [1, -1]],
                                  labels=[[1, 0], [-1, 1], [-1, 0]], layout="ragged")
    ab = concat([a, b])
    assert ab.neighbours.dims == ("edge",)
    assert rows_of(ab) == [[1], [0], [3], [2, 4], [3]]
    assert ab.neighbour_label.values.tolist() == [1, -1, 1, -1, 1, -1]
    padded = concat([a, b], layout="padded")
    assert padded.neighbours.values.tolist() == [[1, -1], [0, -1], [3, -1], [2, 4], [3, -1]]


def test_concat_keeps_cell_polygons():
    def square(x0: float) -> xr.Dataset:
        ds = xtramgrad.from_neighbours([[x0, 0.0]], np.zeros((1, 0), int))
        ds["vertex"] = (("vertex", "space"), [[x0 - 1, -1], [x0 + 1, -1], [x0 + 1, 1],
                                              [x0 - 1, 1]])
        ds["cell_vertex"] = (("bin", "corner"), [[0, 1, 2, 3]])
        return ds

    ab = concat([square(0.0), square(5.0)])
    assert ab.cell_vertex.values.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert ab.vertex.values[4:, 0].tolist() == [4.0, 6.0, 6.0, 4.0]
    quiet_validate(ab)


@pytest.mark.parametrize(
    "b, match",
    [
        pytest.param(lambda: xtramgrad.grid((2, 2, 2)), r"space \['x', 'y', 'z'\] \(3D\)",
                     id="ndim"),
        pytest.param(lambda: xtramgrad.grid((2, 2), space=["u", "v"]), r"space \['u', 'v'\]",
                     id="names"),
        pytest.param(lambda: xtramgrad.grid((2, 2), units="nm"), "center units 'nm'",
                     id="units"),
        pytest.param(lambda: xtramgrad.grid((2, 2)).assign(
            neighbour_label=lambda d: xr.where(d.neighbours >= 0, 1, 0)),
            r"per-edge variable\(s\) \['neighbour_label'\]", id="per-edge"),
    ],
)
def test_concat_errors(b, match):
    with pytest.raises(TessellationError, match=match):
        concat([xtramgrad.grid((2, 2), units=None), b()])


def test_concat_refuses_different_non_bin_variables():
    a = xtramgrad.grid((2, 2)).assign(T=("time", [1.0, 2.0]))
    b = xtramgrad.grid((2, 2)).assign(T=("time", [1.0, 3.0]))
    with pytest.raises(TessellationError, match="cannot be concatenated along 'bin'.*equal in "
                                                "every part"):
        concat([a, b])


def test_concat_nothing():
    with pytest.raises(ValueError, match="at least one"):
        concat([])


# --------------------------------------------------------------------------- duplicates


DUP_TABLE = [[1, 2, 1], [0, 2, -1], [0, 1, -1]]


def test_duplicate_neighbours_are_refused_everywhere():
    centers = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(TessellationError, match="lists bin 1 twice as a neighbour of bin 0.*"
                                                "dedupe=True"):
        xtramgrad.from_neighbours(centers, DUP_TABLE)
    ok = xtramgrad.from_neighbours(centers, DUP_TABLE, dedupe=True, D=[0.0, 1.0, 2.0])
    assert rows_of(ok) == [[1, 2], [0, 2], [0, 1]]
    by_hand = ok.assign(neighbours=(("bin", "nbr"), DUP_TABLE))  # written by hand
    for entry in (topology, validate, lambda d: d.tram.grad("D"), xtramgrad.sort):
        with pytest.raises(TessellationError, match="lists bin 1 twice as a neighbour of bin 0"):
            entry(by_hand)


def test_dedupe_gives_the_gradient_of_the_clean_table():
    ds = grid_d((3, 3))
    table = ds.neighbours.values.copy()
    table[0, 3], table[0, 4] = table[0, 0], table[0, 1]  # two repeats in bin 0's padding
    dup = xtramgrad.from_neighbours(ds.center.values, table, dedupe=True, D=ds.D.values)
    # the clean table: same rows, repeats dropped (the original row plus two entries)
    assert rows_of(dup) == rows_of(ds)
    np.testing.assert_array_equal(dup.tram.grad("D").values, ds.tram.grad("D").values)


@pytest.mark.parametrize(
    "adjacency",
    [
        pytest.param(lambda: sp.coo_array(([1.0, 1.0, 1.0, 1.0], ([0, 0, 1, 0], [1, 1, 0, 1])),
                                          shape=(2, 2)), id="coo"),
        pytest.param(lambda: sp.csr_array(([1.0, 1.0, 1.0], [1, 1, 0], [0, 2, 3]),
                                          shape=(2, 2)), id="csr-non-canonical"),
        pytest.param(lambda: (np.array([0, 2, 3]), np.array([1, 1, 0])), id="pair"),
    ],
)
def test_from_adjacency_refuses_repeated_entries(adjacency):
    with pytest.raises(TessellationError, match=r"lists bin 1 twice as a neighbour of bin 0 "
                                                r"\(\d repeated entries in all\).*dedupe=True"):
        xtramgrad.from_adjacency([0.0, 1.0], adjacency())
    ds = xtramgrad.from_adjacency([0.0, 1.0], adjacency(), dedupe=True)
    assert rows_of(ds) == [[1], [0]]


@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_duplicates_on_dask_tables_are_found_chunk_by_chunk(layout):
    ds = grid_d((10, 10), layout=layout)
    rows = rows_of(ds)
    rows[57].append(rows[57][0])  # a repeat in the 6th chunk of 10 bins
    if layout == "padded":
        width = max(map(len, rows))
        table = np.array([r + [-1] * (width - len(r)) for r in rows])
        bad = ds.drop_vars(["neighbours", "face_area"]).assign(
            neighbours=(("bin", "nbr"), table))
    else:
        bad = ds.drop_vars(["neighbours", "neighbour_count", "face_area"]).assign(
            neighbours=("edge", np.concatenate(rows)),
            neighbour_count=("bin", [len(r) for r in rows], {"sample_dimension": "edge"}),
        )
    lazy = bad.chunk({"bin": 10, **({"edge": 64} if layout == "ragged" else {})})
    with no_compute():
        topology(lazy)
    with pytest.raises(TessellationError, match=f"lists bin {rows[57][0]} twice as a "
                                                "neighbour of bin 57"):
        validate(lazy)


def test_check_values_inside_tasks_finds_duplicates_with_global_rows():
    table = np.array([[11, 12, 11], [10, 12, -1]])
    with pytest.raises(TessellationError, match="lists bin 11 twice as a neighbour of bin 10"):
        check_values(np.zeros((2, 2)), table, rows=np.array([10, 11]), n_bins=20)
    with pytest.raises(TessellationError, match="lists bin 12 twice as a neighbour of bin 11"):
        check_values(np.zeros((2, 2)), np.array([11, 10, 12, 12]), rows=np.array([10, 11]),
                     n_bins=20, count=np.array([1, 3]))


def test_chunked_gradient_refuses_duplicates_inside_the_task():
    ds = grid_d((10, 10))
    table = ds.neighbours.values.copy()
    table[57, 7] = table[57, 0]
    bad = ds.assign(neighbours=(("bin", "nbr"), table)).chunk({"bin": 10})
    with pytest.raises(TessellationError, match="twice as a neighbour of bin 57"):
        bad.tram.grad("D").compute()


# --------------------------------------------------------------------------- row_problem


def reference_problem(rows: list[list[int]], start: int, n: int):
    """The first problem, row by row, with plain Python (the definition)."""
    for i, row in enumerate(rows):
        if any(v < 0 or v >= n for v in row):
            return 1, i, next(v for v in row if v < 0 or v >= n)
        if start + i in row:
            return 2, i, start + i
        seen: set[int] = set()
        for v in row:
            if v in seen:
                return 3, i, v
            seen.add(v)
    return None


@pytest.mark.parametrize("width", [3, 8, 20])  # the pairwise and the sorting paths
def test_row_problem_matches_the_definition_in_both_layouts(width):
    rng = np.random.default_rng(width)
    n = 60
    for trial in range(200):
        m = int(rng.integers(1, 30))
        start = int(rng.integers(0, n - m + 1))
        rows = [rng.choice(n, size=int(rng.integers(0, width + 1)), replace=False).tolist()
                for _ in range(m)]
        rows = [[v for v in r if v != start + i] for i, r in enumerate(rows)]
        for _ in range(int(rng.integers(0, 3))):  # inject problems
            i = int(rng.integers(m))
            kind = int(rng.integers(3))
            if kind == 0:
                rows[i].append(int(rng.choice([n, n + 5, -2])))
            elif kind == 1:
                rows[i].insert(int(rng.integers(len(rows[i]) + 1)), start + i)
            elif rows[i]:
                rows[i].append(rows[i][int(rng.integers(len(rows[i])))])
        rows = [r[:width] for r in rows]
        want = reference_problem(rows, start, n)
        padded = np.full((m, width), -1)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
            rng.shuffle(padded[i])  # padding anywhere in a row
        ordered = [[v for v in row if v != -1] for row in padded.tolist()]
        row_ids = np.arange(start, start + m)
        assert row_problem(padded, row_ids, n) == reference_problem(ordered, start, n), trial
        edges = np.array([v for r in rows for v in r], dtype=np.int64)
        indptr = np.r_[0, np.cumsum([len(r) for r in rows])] + 7  # offsets need not start at 0
        assert row_problem(edges, row_ids, n, indptr=indptr) == want, trial


def test_row_problem_order_within_a_row():
    # the first row with any problem; in it, range before self-loop before repeat
    t = np.array([[2, 2, -1], [0, 1, 9]])
    assert row_problem(t, np.array([0, 1]), 3) == (3, 0, 2)
    assert row_problem(t[1:], np.array([1]), 3) == (1, 0, 9)
    assert row_problem(t[1:], np.array([1]), 10) == (2, 0, 1)
    assert row_problem(np.array([[1, 0, 0]]), np.array([0]), 3) == (2, 0, 0)
    assert row_problem(np.array([1, 0, 0]), np.array([0]), 3, indptr=np.array([0, 3])) == (
        2, 0, 0)


# --------------------------------------------------------------------------- coincident


@pytest.mark.parametrize(
    "points, match",
    [
        pytest.param(np.r_[np.random.default_rng(0).random((8, 2)), [[0.5, 0.5], [0.5, 0.5]]],
                     r"points 8, 9 coincide at \(0.5, 0.5\)", id="2d"),
        pytest.param(np.r_[np.random.default_rng(0).random((8, 3)), [[0.5, 0.5, 0.5]] * 3],
                     r"points 8, 9, 10 coincide .*\(2 repeated point", id="3d"),
        pytest.param([0.0, 1.0, 1.0, 2.0], r"points 1, 2 coincide at \(1\)", id="1d"),
    ],
)
def test_voronoi_refuses_coincident_points(points, match):
    with pytest.raises(TessellationError, match=match):
        xtramgrad.voronoi(points)


def test_voronoi_refuses_points_qhull_cannot_separate():
    pts = np.random.default_rng(0).random((30, 2))
    pts[7] = pts[3] + 1e-16
    with pytest.raises(TessellationError, match="point 7 .* not a vertex .* from point 3"):
        xtramgrad.voronoi(pts)


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_validate_reports_zero_offset_neighbours(lazy):
    centers = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]]
    ds = xtramgrad.from_neighbours(centers, [[1, -1], [0, 2], [1, 3], [2, -1]])
    if lazy:
        ds = ds.chunk({"bin": 2})
    with pytest.raises(TessellationError, match=r"lists bin 2 as a neighbour of bin 1, but "
                                                r"both centers are at \(1, 0\)"):
        validate(ds)


# --------------------------------------------------------------------------- symmetry


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_validate_warns_on_asymmetric_tables(lazy):
    knn = xtramgrad.from_neighbours(np.arange(6.0), [[1, 2], [0, 2], [1, 3], [2, 4], [3, 5],
                                                     [4, 3]])
    if lazy:
        knn = knn.chunk({"bin": 2})
    with pytest.warns(AsymmetryWarning, match=r"2 neighbour entries have no reverse entry "
                                              r"\(e.g. bin 0 lists 2, but bin 2 does not "
                                              r"list 0\).*xtramgrad.symmetrize"):
        validate(knn)
    assert issubclass(AsymmetryWarning, UserWarning)


@pytest.mark.parametrize(
    "ds",
    [
        pytest.param(xtramgrad.grid((5, 4)), id="grid"),
        pytest.param(xtramgrad.grid((5, 4)).chunk({"bin": 7}), id="grid-dask"),
        pytest.param(xtramgrad.voronoi(np.random.default_rng(2).random((40, 3))), id="voronoi"),
        pytest.param(xtramgrad.voronoi(np.random.default_rng(2).random((40, 2)),
                                       layout="ragged").chunk({"bin": 9, "edge": 50}),
                     id="voronoi-ragged-dask"),
    ],
)
def test_symmetric_tables_validate_quietly(ds):
    quiet_validate(ds)


@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_symmetrize_is_the_symmetric_closure(layout):
    rng = np.random.default_rng(3)
    pts = rng.random((30, 2))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    knn = np.argsort(dist, axis=1)[:, :3]  # 3 nearest neighbours: asymmetric
    offsets = pts[knn] - pts[:, None]
    axis = np.argmax(np.abs(offsets), axis=2)
    side = np.sign(np.take_along_axis(offsets, axis[..., None], axis=2)[..., 0]).astype(int)
    labels = side * (axis + 1)
    area = rng.random(knn.shape)
    ds = xtramgrad.from_neighbours(pts, knn, labels, face_area=area, layout=layout)
    with pytest.warns(AsymmetryWarning):
        validate(ds)
    sym = symmetrize(ds)
    quiet_validate(sym)
    before, after = rows_of(ds), rows_of(sym)
    edges = {(i, j) for i, row in enumerate(before) for j in row}
    for i, row in enumerate(after):
        assert row[: len(before[i])] == before[i]  # existing entries first, in order
        assert set(row[len(before[i]):]) == {j for j in range(30) if (j, i) in edges
                                             and (i, j) not in edges}
    # labels: the reverse of a labelled entry is on the other side of the same axis
    csr_ptr, csr_ind = table_csr(topology(sym))
    lab = edge_values(topology(sym), sym.neighbour_label)
    fa = edge_values(topology(sym), sym.face_area)
    key = {(i, int(j)): e for i in range(30) for e, j in
           zip(range(csr_ptr[i], csr_ptr[i + 1]), csr_ind[csr_ptr[i]: csr_ptr[i + 1]],
               strict=True)}
    for (i, j), e in key.items():
        if (j, i) in key and (i, j) not in edges:  # an added entry
            assert lab[e] == -lab[key[(j, i)]]
            assert fa[e] == fa[key[(j, i)]]
    assert symmetrize(sym) is sym  # already symmetric: unchanged


# --------------------------------------------------------------------------- skewed degrees


def test_a_hub_does_not_pad_every_row():
    n = 20_000  # padded: 20,000 x 19,999 int64 = 3.2 GB
    centers, A = hub(n)
    ds = xtramgrad.from_adjacency(centers, A, D=np.arange(float(n)))
    assert ds.neighbours.dims == ("edge",)
    assert ds.neighbour_count.attrs["sample_dimension"] == "edge"
    assert ds.neighbour_count.values[0] == n - 1
    assert ds.nbytes < 2e6
    s = xtramgrad.summary(ds)
    assert s.degree == (3, pytest.approx(4 * (n - 1) / n), n - 1) and s.layout == "ragged"
    assert "ragged table, 79,996 entries" in repr(s)
    quiet_validate(ds)
    sub = isel(ds, bin=np.arange(0, n, 2))
    assert sub.neighbours.dims == ("edge",) and sub.neighbour_count.values[0] == n // 2 - 1
    assert rows_of(xtramgrad.unsort(xtramgrad.sort(ds))) == rows_of(ds)


def test_voronoi_hub_is_ragged():
    n = 3000
    ang = np.linspace(0, 2 * np.pi, n - 1, endpoint=False)
    pts = np.r_[[[0.0, 0.0]], np.c_[np.cos(ang), np.sin(ang)]]
    ds = xtramgrad.voronoi(pts)
    assert ds.neighbours.dims == ("edge",)
    assert ds.neighbour_count.values[0] == n - 1


@pytest.mark.parametrize(
    "n, width, edges, want",
    [
        pytest.param(10**5, 10**5 - 1, 4 * 10**5, "ragged", id="hub"),
        pytest.param(10**6, 8, 6 * 10**6, "padded", id="grid"),
        pytest.param(1000, 999, 3000, "padded", id="small-hub"),  # < 2**22 cells
        pytest.param(10**6, 100, 2 * 10**7, "padded", id="even"),  # 5x waste only
    ],
)
def test_choose_layout_rule(n, width, edges, want):
    assert choose_layout("auto", n, width, edges) == want
    assert choose_layout("padded", n, width, edges) == "padded"
    assert choose_layout("ragged", n, width, edges) == "ragged"


def test_layout_option_is_checked():
    with pytest.raises(ValueError, match=r"layout='csr'; expected one of \('auto'"):
        xtramgrad.voronoi(np.random.default_rng(0).random((10, 2)), layout="csr")


# --------------------------------------------------------------------------- ragged layout


def ragged_sample() -> xr.Dataset:
    pts = np.random.default_rng(4).random((25, 2))
    ds = xtramgrad.voronoi(pts, layout="ragged", units="um")
    ptr, ind = table_csr(topology(ds))
    owner = np.repeat(np.arange(25), np.diff(ptr))
    off = pts[ind] - pts[owner]
    axis = np.argmax(np.abs(off), axis=1)
    ds["neighbour_label"] = ("edge", (np.sign(off[np.arange(len(ind)), axis]) * (axis + 1))
                             .astype(np.int64))
    ds["face_area"] = ("edge", np.linspace(0.1, 1.0, len(ind)))
    ds["D"] = (("bin", "time"), np.random.default_rng(5).random((25, 2)), {"units": "um^2/s"})
    return ds


def test_table_csr_and_edge_values_agree_across_layouts():
    ragged = ragged_sample()
    topo = topology(ragged, labels=True)
    assert topo.layout == "ragged" and isinstance(topo, Topology) and topo.count is not None
    ptr, ind = table_csr(topo)
    assert ptr.dtype == ind.dtype == np.int64
    labels = edge_values(topo, ragged.neighbour_label)
    width = int(np.diff(ptr).max())
    table = np.full((25, width), -1)
    lab = np.zeros((25, width), int)
    for i in range(25):
        table[i, : ptr[i + 1] - ptr[i]] = ind[ptr[i] : ptr[i + 1]]
        lab[i, : ptr[i + 1] - ptr[i]] = labels[ptr[i] : ptr[i + 1]]
    padded = xtramgrad.from_neighbours(ragged.center.values, table, lab, layout="padded")
    ptopo = topology(padded, labels=True)
    assert ptopo.layout == "padded" and ptopo.count is None
    p_ptr, p_ind = table_csr(ptopo)
    np.testing.assert_array_equal(p_ptr, ptr)
    np.testing.assert_array_equal(p_ind, ind)
    np.testing.assert_array_equal(edge_values(ptopo, padded.neighbour_label), labels)
    # the first three fields positionally, as the gradient code may build it
    t3 = Topology(ptopo.center, ptopo.neighbours, ptopo.labels)
    assert t3.count is None and t3.layout == "padded" and t3.n_bins == 25 and t3.ndim == 2


@pytest.mark.parametrize("engine", ["netcdf", "zarr"])
def test_ragged_round_trip(tmp_path, engine):
    ds = ragged_sample()
    if engine == "netcdf":
        path = tmp_path / "r.nc"
        ds.to_netcdf(path, engine="h5netcdf")
        back = xr.open_dataset(path, engine="h5netcdf").load()
    else:
        path = tmp_path / "r.zarr"
        ds.to_zarr(path)
        back = xr.open_zarr(path)
        assert back.neighbours.chunks is not None
        quiet_validate(back)  # lazily, chunk by chunk
        back = back.load()
    xr.testing.assert_identical(back, ds)
    assert back.neighbours.dtype == np.int64 and back.neighbour_count.dtype == np.int64
    assert back.neighbour_count.attrs["sample_dimension"] == "edge"
    a, b = table_csr(topology(back)), table_csr(topology(ds))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_every_tool_works_on_ragged_tables():
    ds = ragged_sample()
    quiet_validate(ds)
    s = xtramgrad.sort(ds)
    assert s.neighbours.dims == ("edge",)
    back = xtramgrad.unsort(s)
    assert rows_of(back) == rows_of(ds) and "bin_id" not in back.coords
    np.testing.assert_array_equal(back.neighbour_label.values, ds.neighbour_label.values)
    assert rows_of(isel(ds, bin=[3, 1, 4])) == expected_isel(ds, [3, 1, 4])
    assert rows_of(isel(ds, bin=[3, 1, 4], layout="padded")) == expected_isel(ds, [3, 1, 4])
    summ = xtramgrad.summary(ds)
    degrees = np.diff(table_csr(topology(ds))[0])
    assert summ.degree == (degrees.min(), pytest.approx(degrees.mean()), degrees.max())
    assert summ.table_width is None and summ.face_area and summ.labels
    assert "neighbour_count" not in [m.name for m in summ.measurements]
    lazy = xtramgrad.summary(ds.chunk({"bin": 5, "edge": 30}), compute=True)
    assert lazy.degree == summ.degree and lazy.n_edges == len(ds.neighbours)


def moved_count(ds: xr.Dataset) -> np.ndarray:
    """Counts with bin 3 at -2 and the same total."""
    count = ds.neighbour_count.values.copy()
    count[4] += count[3] + 2
    count[3] = -2
    return count


@pytest.mark.parametrize(
    "edit, match",
    [
        pytest.param(lambda d: d.drop_vars("neighbour_count"), "needs neighbour_count",
                     id="no-count"),
        pytest.param(lambda d: d.assign(neighbour_count=d.neighbour_count + 1),
                     "sums to 153 but the ragged table 'neighbours' has 128", id="sum"),
        pytest.param(lambda d: d.assign(neighbour_count=d.neighbour_count.assign_attrs(
            sample_dimension="nodes")), "sample_dimension='nodes'", id="sample-dim"),
        pytest.param(lambda d: d.assign(neighbours=d.neighbours * 1.0),
                     r"ragged table holds no padding\). Convert", id="float"),
        pytest.param(lambda d: d.assign(neighbours=d.neighbours.where(
            np.arange(128) != 5, -1)), "a ragged table neighbours\\(edge\\) holds no padding",
                     id="padding"),
        pytest.param(lambda d: d.assign(neighbour_count=("bin", moved_count(d), {
            "sample_dimension": "edge"})), "holds -2 at bin 3", id="negative"),
    ],
)
def test_ragged_schema_errors(edit, match):
    ds = xtramgrad.voronoi(np.random.default_rng(4).random((25, 2)), layout="ragged")
    assert ds.sizes["edge"] == 128
    with pytest.raises(TessellationError, match=match):
        topology(edit(ds))


# --------------------------------------------------------------------------- 0 bins


@pytest.mark.parametrize(
    "call, match",
    [
        pytest.param(lambda: xtramgrad.voronoi(np.zeros((0, 2))), "points is empty", id="voronoi"),
        pytest.param(lambda: xtramgrad.voronoi([]), "points is empty", id="voronoi-1d"),
        pytest.param(lambda: xtramgrad.from_neighbours(np.zeros((0, 2)), np.zeros((0, 0), int)),
                     "centers is empty", id="from_neighbours"),
        pytest.param(lambda: xtramgrad.from_adjacency(np.zeros((0, 2)), sp.csr_array((0, 0))),
                     "centers is empty", id="from_adjacency"),
        pytest.param(lambda: xtramgrad.grid((0, 3)), "positive sizes", id="grid"),
        pytest.param(lambda: topology(grid_d().isel(bin=[])), "0 bins", id="topology"),
        pytest.param(lambda: xtramgrad.sort(grid_d().isel(bin=[])), "0 bins", id="sort"),
        pytest.param(lambda: grid_d().isel(bin=[]).tram.grad("D"), "0 bins", id="grad"),
        pytest.param(lambda: validate(grid_d().isel(bin=[]).chunk()), "0 bins", id="validate"),
        pytest.param(lambda: isel(grid_d(), bin=[]), "selects 0 bins", id="isel"),
    ],
)
def test_zero_bins_is_a_clear_error(call, match):
    with pytest.raises(TessellationError, match=match):
        call()


# --------------------------------------------------------------------------- suggested fixes


def test_unsigned_tables_get_the_right_fix():
    ds = grid_d((3, 3))
    top = np.iinfo(np.uint32).max
    table = np.where(ds.neighbours.values >= 0, ds.neighbours.values, top).astype(np.uint32)
    bad = ds.assign(neighbours=(("bin", "nbr"), table))
    fix = (f"ds['neighbours'] = ds.neighbours.astype('int64').where(ds.neighbours != {top}, "
           "-1)")
    with pytest.raises(TessellationError, match="unsigned dtype uint32, which cannot hold the "
                                                "-1 padding") as info:
        bad.tram.grad("D")
    assert fix in str(info.value) and "subtract" not in str(info.value)
    bad["neighbours"] = bad.neighbours.astype("int64").where(bad.neighbours != top, -1)
    np.testing.assert_array_equal(bad.tram.grad("D").values, ds.tram.grad("D").values)
    # the constructor: padding value named
    with pytest.raises(TessellationError, match=f"pass fill_value={top}"):
        xtramgrad.from_neighbours(ds.center.values, table)
    built = xtramgrad.from_neighbours(ds.center.values, table, fill_value=top)
    assert rows_of(built) == rows_of(ds)


def test_out_of_range_fixes_are_right():
    ds = grid_d((3, 3))
    one_based = np.where(ds.neighbours.values >= 0, ds.neighbours.values + 1, 0)
    bad = ds.assign(neighbours=(("bin", "nbr"), np.where(one_based > 0, one_based, -1)))
    fix = "ds['neighbours'] = (ds.neighbours - 1).where(ds.neighbours != <padding>, -1)"
    with pytest.raises(TessellationError, match="looks one-based") as info:
        topology(bad)
    assert fix in str(info.value)
    converted = bad.assign(neighbours=(bad.neighbours - 1).where(bad.neighbours != -1, -1))
    assert rows_of(converted) == rows_of(ds)
    fixed = xtramgrad.from_neighbours(ds.center.values, one_based, start_index=1, fill_value=0)
    assert rows_of(fixed) == rows_of(ds)
    padded_999 = np.where(ds.neighbours.values >= 0, ds.neighbours.values, 999)
    bad = ds.assign(neighbours=(("bin", "nbr"), padded_999))
    fix = "ds['neighbours'] = ds.neighbours.where(ds.neighbours != 999, -1)"
    with pytest.raises(TessellationError, match="holds position 999") as info:
        topology(bad)
    assert fix in str(info.value) and "looks one-based" not in str(info.value)
    bad["neighbours"] = bad.neighbours.where(bad.neighbours != 999, -1)
    assert rows_of(bad) == rows_of(ds)
    negative = ds.assign(neighbours=ds.neighbours.where(ds.neighbours >= 0, -999))
    with pytest.raises(TessellationError, match=r"where\(ds.neighbours != -999, -1\)"):
        topology(negative)


def test_self_loop_fix_for_adjacency_is_right():
    A = sp.csr_array(np.ones((3, 3)))
    with pytest.raises(TessellationError, match=r"A.setdiag\(0\); A.eliminate_zeros\(\)"):
        xtramgrad.from_adjacency(np.arange(3.0), A)
    A.setdiag(0)
    A.eliminate_zeros()
    assert rows_of(xtramgrad.from_adjacency(np.arange(3.0), A)) == [[1, 2], [0, 2], [0, 1]]


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda u: xtramgrad.grid((2, 2), units=u), id="grid"),
        pytest.param(lambda u: xtramgrad.grid((2, 2), units=u, chunks=2), id="grid-lazy"),
        pytest.param(lambda u: xtramgrad.voronoi(np.random.default_rng(0).random((9, 2)),
                                                 units=u), id="voronoi"),
        pytest.param(lambda u: xtramgrad.from_neighbours([0.0, 1.0], [[1], [0]], units=u),
                     id="from_neighbours"),
        pytest.param(lambda u: xtramgrad.from_adjacency([0.0, 1.0], sp.csr_array([[0, 1],
                                                                                  [1, 0]]),
                                                        units=u), id="from_adjacency"),
    ],
)
def test_units(build):
    ds = build("um")
    assert ds.center.attrs["units"] == "um"
    assert "units" not in build(None).center.attrs
    ds["D"] = ("bin", np.arange(float(ds.sizes["bin"])), {"units": "um^2/s"})
    assert ds.tram.grad("D").attrs["units"] == "um^2/s / um"
    with pytest.raises(ValueError, match="units=3; expected a string"):
        build(3)


def test_face_area_units_follow_space_units():
    ds = xtramgrad.from_neighbours([[0.0, 0, 0], [1, 0, 0]], [[1], [0]], units="um",
                                   face_area=[[2.0], [2.0]])
    assert ds.face_area.attrs["units"] == "um^2"


def test_a_prefix_kept_by_xarray_is_refused_by_the_bounds_check():
    ds = grid_d((4, 5))
    prefix = ds.isel(bin=slice(0, 7))  # bin stays 0..6: only the table can tell
    with pytest.raises(TessellationError, match=r"holds position 7 at bin 1, outside \[0, 6\]"
                                                r".*keeping the first rows.*xtramgrad.isel"):
        prefix.tram.grad("D")
    sub = isel(ds, bin=slice(0, 7))
    assert rows_of(sub) == expected_isel(ds, list(range(7)))


def test_gradients_do_not_depend_on_the_layout():
    pts = np.random.default_rng(9).random((200, 2))
    padded = xtramgrad.voronoi(pts, layout="padded")
    ragged = xtramgrad.voronoi(pts, layout="ragged")
    for ds in (padded, ragged):
        ds["D"] = ds.center.sel(space="x") ** 2 - ds.center.sel(space="y")
    want = padded.tram.grad("D").values
    np.testing.assert_array_equal(ragged.tram.grad("D").values, want)
    lazy = ragged.chunk({"bin": 40, "edge": 300}).tram.grad("D").compute()
    np.testing.assert_allclose(lazy.values, want, rtol=1e-13, atol=1e-13)


def test_chunked_hub_is_computed_apart_and_equals_eager():
    """Hubs (rows far wider than the rest) leave the gather: the other rows of their chunk
    stay as narrow as elsewhere, the hubs are computed apart; every method,
    rule, user function and uncertainty gives the eager numbers, extra dims and missing
    values included."""
    from xtramgrad.chunked.gather import gather_plan
    from xtramgrad.kernels.stencil import Rings
    from xtramgrad.topology import topology

    n = 3000
    c, A = hub(n)
    A = A.tocsr().tolil()
    A[1500, 1:700] = 1  # a second hub, inside another chunk
    A[1:700, 1500] = 1
    A.setdiag(0)
    ds = xtramgrad.from_adjacency(c, A.tocsr())
    rng = np.random.default_rng(1)
    D = np.stack([(1 + t) * (c[:, 0] + 2 * c[:, 1] ** 2) for t in range(3)])
    D[1, 5] = D[2, 0] = np.nan  # a missing neighbour of the hub; the hub itself missing
    ds["D"] = (("time", "bin"), D)
    ds["neighbour_label"] = ("edge", rng.choice([-2, -1, 1, 2], size=ds.sizes["edge"]))
    plan = gather_plan(topology(ds.chunk(bin=500)), Rings(1), (500,) * 6, False,
                       split=True)
    assert plan.apart.rows.tolist() == [0, 1500] and plan.width == 4  # ring, hubs

    def user(center, value, neighbour_center, neighbour_value, neighbour_mask):
        """A least-squares plane: singular on a row with no neighbour (the hubs' rows of
        the chunked gather are empty: the function must not see them)."""
        x = np.where(neighbour_mask[..., None], neighbour_center - center[:, None, :], 0.0)
        dv = np.where(neighbour_mask, neighbour_value - value[..., None], 0.0)
        gram = np.einsum("snkd,snke->snde", x, x)
        return np.linalg.solve(gram, np.einsum("snkd,snk->snd", x, dv)[..., None])[..., 0]

    cases = [dict(method="grad1"), dict(method="grad1", selection_angle=0.5),
             dict(method="grad1", selection="labels"), dict(method="gradn"),
             dict(method="lsq"), dict(method=user)]
    for kw in cases:
        want = ds.tram.grad("D", **kw)
        assert np.isfinite(want.isel(bin=[0, 1500]).values[0]).all()
        for chunks in ({"bin": 500}, {"bin": 700, "time": 1}):
            got = ds.chunk(chunks).tram.grad("D", **kw).compute()
            if kw["method"] is user:  # its sums over a differently padded axis may round
                xr.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            else:
                xr.testing.assert_identical(got, want)
    want = ds.tram.grad_std("D", std=0.1, method="lsq")
    got = ds.chunk(bin=500).tram.grad_std("D", std=0.1, method="lsq")
    xr.testing.assert_identical(got.compute(), want)
    bad = ds.copy()
    bad["D"] = bad.D.where(bad.bin != 2999, -np.inf)  # a neighbour of the hub only
    with pytest.raises(TessellationError, match=r"3 infinite value.*first at bin 2999, in the "
                                                 r"chunk of bins 2500\.\.2999"):
        bad.chunk(bin=500).tram.grad("D", method="gradn").compute()


def test_chunked_gather_edge_cases_from_the_hub_attack():
    """Found by attacking the hub path: a table whose only edges are a hub's (every other
    row empty); a user function on a table whose degree groups include only rows of degree
    0; NaN centers, bad labels and negative counts on a lazy table are the eager errors."""
    n = 300
    c = np.random.default_rng(0).random((n, 2))
    star = xtramgrad.from_adjacency(c, [list(range(1, n))] + [[] for _ in range(n - 1)],
                                    layout="ragged", D=c[:, 0])
    for method in ("grad1", "gradn", "lsq"):
        want = star.tram.grad("D", method=method)
        xr.testing.assert_identical(star.chunk(bin=100).tram.grad("D", method=method).compute(),
                                    want)

    def nanmax_fn(center, value, neighbour_center, neighbour_value, neighbour_mask):
        r = np.where(neighbour_mask[..., None], neighbour_center - center[:, None], np.nan)
        return np.nan_to_num(np.nanmax(r, axis=-2), nan=0.0) * value[..., None]

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmax of all-NaN rows
        big = xtramgrad.from_adjacency(*hub(2001), D=np.ones(2001))
        assert big.tram.grad("D", method=nanmax_fn).shape == (2001, 2)
    ds = grid_d((6, 6), layout="ragged")
    bad = ds.copy()
    bad["center"] = bad.center.where(bad.bin != 8)
    with pytest.raises(TessellationError, match="center"):
        bad.tram.grad("D")
    with pytest.raises(TessellationError, match=r"center.*bin 8"):
        bad.chunk(bin=12).tram.grad("D").compute()
    lab = ds.copy()
    lab["neighbour_label"] = ("edge", np.full(ds.sizes["edge"], 7))
    for data in (lab, lab.chunk(bin=12)):
        with pytest.raises(TessellationError, match="'neighbour_label' holds 7"):
            data.tram.grad("D", selection="labels").compute()
    neg = ds.copy()
    count = neg.neighbour_count.values.copy()
    count[3] = -1
    count[4] += 1
    neg["neighbour_count"] = neg.neighbour_count.copy(data=count)
    with pytest.raises(TessellationError, match="'neighbour_count' holds -1 at bin 3"):
        neg.chunk(bin=12).tram.grad("D")


def test_chunked_hub_of_1e5_neighbours_gathers_narrow_rows():
    """The issue's case: 10^5 bins, one 10^5-neighbour hub, chunked; grad1 and gradn equal
    the eager path and no gathered block is wider than the ordinary rows (time and memory:
    benchmarks/bench_hub.py)."""
    from xtramgrad.chunked.gather import gather_plan
    from xtramgrad.kernels.stencil import Rings
    from xtramgrad.topology import topology

    n = 10**5
    c, A = hub(n)
    ds = xtramgrad.from_adjacency(c, A, D=c[:, 0] + 2 * c[:, 1] ** 2)
    lazy = ds.chunk(bin=n // 8)
    plan = gather_plan(topology(lazy), Rings(1), lazy.chunks["bin"], False, split=True)
    assert plan.apart.rows.tolist() == [0] and plan.width == 3
    assert plan.reach[0] == (0, 1, 7)  # the hub's chunk reads its ring's chunks, not all
    for method in ("grad1", "gradn"):
        want = ds.tram.grad("D", method=method)
        xr.testing.assert_identical(lazy.tram.grad("D", method=method).compute(), want)
    assert abs(want.values[0] - [1.0, 4 * c[0, 1]]).max() < 1e-9  # gradn: a quadratic


def test_chunked_gather_of_wide_rows_is_refused_before_allocating(monkeypatch):
    """Rows that are all wide (no hub stands out) are padded to the widest: the chunked
    path says so (and how to go on) before computing anything; smaller chunks or the eager
    path give the same numbers."""
    from xtramgrad.chunked import gather

    n = 100
    c = np.random.default_rng(0).random((n, 2))
    ds = xtramgrad.from_adjacency(c, np.ones((n, n)) - np.eye(n), D=c[:, 0] + 2 * c[:, 1])
    monkeypatch.setattr(gather, "GATHER_LIMIT", 10 * (n - 1) * 2 * 8)  # 10 rows of 99
    with pytest.raises(TessellationError, match=r"99 entries.*at most 10 bins.*ds\.load\(\)"):
        ds.chunk(bin=50).tram.grad("D", method="lsq")
    eager = ds.tram.grad("D", method="lsq")
    small = ds.chunk(bin=10).tram.grad("D", method="lsq")
    np.testing.assert_array_equal(small.values, eager.values)


def test_from_adjacency_neighbour_lists():
    c = np.arange(4.0)
    ds = xtramgrad.from_adjacency(c, [[1], [0], [3], [2]], D=c)  # equal lengths, not (n, n)
    assert ds.neighbours.values.reshape(4, -1)[:, 0].tolist() == [1, 0, 3, 2]
    for bad, found in ((["a"], "\\['a'\\]"), ([[1]], "\\[\\[1\\]\\]"), (None, "None")):
        with pytest.raises(TessellationError, match=f"adjacency row 0 is {found}; expected a "
                                                     "flat list of integer positions"):
            xtramgrad.from_adjacency(c, [bad, [0], [3], [2]])


def test_vector_field_given_as_a_numpy_array_is_a_clear_error():
    p = np.random.default_rng(0).random((50, 2))
    ds = xtramgrad.voronoi(p, geometry=False)
    with pytest.raises(TessellationError, match=r"numpy array of shape \(50, 2\).*xr\.DataArray"):
        ds.tram.div(np.ones((50, 2)))
    with pytest.raises(TessellationError, match="the vector field is float"):
        ds.tram.curl(3.5)


def test_infinite_value_is_located_on_chunked_data():
    ds = xtramgrad.grid(400)
    d = np.arange(400.0)
    d[250] = -np.inf
    ds["D"] = ("bin", d)
    for data in (ds, ds.chunk(bin=100)):
        with pytest.raises(TessellationError, match=r"'D' holds 1 infinite value\(s\) \(first "
                                                     r"at bin 250[,)]"):
            data.tram.grad("D", method="lsq").compute()


def test_multi_ring_stencils_on_a_hub_are_refused_before_walking():
    """Every neighbour of a hub gets the whole hub in its 2-ring: quadratic work, refused
    with the hub named; 1-ring methods run."""
    c, A = hub(4000)
    ds = xtramgrad.from_adjacency(c, A, D=c[:, 0])
    with pytest.raises(TessellationError, match=r"bin 0 has 3999 neighbours .*2-ring stencil "
                                                 r"\(method 'lsq2'\).*1-ring method"):
        ds.tram.grad("D", method="lsq2")
    with pytest.raises(TessellationError, match=r"bin 0 has 3999 neighbours .*'lsq2'"):
        ds.chunk(bin=500).tram.grad("D", method="lsq2")  # chunked: refused before the graph
    assert np.isfinite(ds.tram.grad("D", method="lsq").values).all()

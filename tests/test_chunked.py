"""Out-of-core gradients (xtramgrad.chunked): chunked == eager, laziness, graph size, sort."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xtramgrad
from helpers import CountingScheduler, assert_same, no_compute  # noqa: E402  (tests/ is on sys.path)
from xtramgrad import TessellationError, kernels
from xtramgrad.chunked import HALO_ATTR, PLAN_ATTRS, chunk_dependencies
from xtramgrad.topology import hilbert_key

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Zarr V3 specification.*", "ignore:Consolidated metadata.*"
)

# --------------------------------------------------------------------------- helpers


def vector_mean_slope(center, value, neighbour_center, neighbour_value, neighbour_mask):
    """A vectorised user gradient: mean of the per-neighbour slopes along each axis."""
    dx = neighbour_center[None] - center[None, :, None, :]  # (1, n, k, d)
    dy = (neighbour_value - value[:, :, None])[..., None]  # (S, n, k, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.sum(dx * dx, axis=-1, keepdims=True)
        slope = np.where(neighbour_mask[..., None], dy * dx / r2, 0.0)
        return slope.sum(axis=2) / neighbour_mask.sum(axis=2)[..., None]


@xtramgrad.pointwise
def plane_fit(center, value, nbr_centers, nbr_values):
    g, *_ = np.linalg.lstsq(nbr_centers - center, nbr_values - value, rcond=None)
    return g


MODES = [
    pytest.param({}, id="cone-default"),
    pytest.param({"selection_angle": 0.5}, id="quadrants-2d"),
    pytest.param({"selection": "quadrants"}, id="quadrants"),
    pytest.param({"selection_angle": 0.7}, id="cone-0.7"),
    pytest.param({"eps": 0.0}, id="halfspace"),
    pytest.param({"eps": 0.05}, id="halfspace-margin"),
    pytest.param({"na": 0.0}, id="na-0"),
    pytest.param({"method": "gradn"}, id="gradn"),
    pytest.param({"method": vector_mean_slope}, id="user-vectorised"),
]
MODE_VALUES = [p.values[0] for p in MODES]


def random_tessellation(rng: np.random.Generator, n: int, d: int, n_time: int, missing: float):
    ds = xtramgrad.voronoi(rng.random((n, d)))
    values = rng.normal(size=(n_time, n)) + ds.center.values.sum(axis=1) ** 2
    values[rng.random((n_time, n)) < missing] = np.nan
    ds["D"] = (("time", "bin"), values, {"units": "um2/s"})
    ds.center.attrs["units"] = "um"
    return ds


def labelled_grid(shape: tuple[int, ...]) -> xr.Dataset:
    """A faces-only grid with the signed labels of each neighbour's axis and side."""
    ds = xtramgrad.grid(shape, connectivity="faces")
    table, c = ds.neighbours.values, ds.center.values
    off = c[np.clip(table, 0, None)] - c[:, None, :]
    axis = np.argmax(np.abs(off), axis=2)
    sign = np.sign(np.take_along_axis(off, axis[..., None], 2)[..., 0]).astype(int)
    labels = np.where(table >= 0, sign * (axis + 1), 0)
    return xtramgrad.from_neighbours(c, table, labels=labels)


def unliteral(ds: xr.Dataset, block: int | None = None) -> xr.Dataset:
    """Make the table lazy *and* computed (not literal blocks), then plan it."""
    out = ds.copy()
    out["neighbours"] = (ds.neighbours.chunk({"bin": block or 7}) * 1).astype(np.int64)
    return xtramgrad.plan(out, block=block)


# --------------------------------------------------------------------------- property test


@st.composite
def chunkings(draw, n: int) -> tuple[int, ...]:
    kind = draw(st.sampled_from(["ones", "random", "one"]))
    if kind == "ones":
        return (1,) * n
    if kind == "one":
        return (n,)
    cuts = draw(st.sets(st.integers(1, n - 1), max_size=min(n - 1, 12)))
    bounds = [0, *sorted(cuts), n]
    return tuple(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True))


@st.composite
def problems(draw):
    d = draw(st.sampled_from([1, 2, 3]))
    n = draw(st.integers(10 if d == 3 else 4, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ds = random_tessellation(
        rng, n, d, draw(st.integers(1, 3)), draw(st.sampled_from([0.0, 0.15, 0.5]))
    )
    if draw(st.booleans()):
        ds = ds.tram.sort()
    chunks = draw(chunkings(n))
    time_chunks = draw(st.sampled_from([-1, 1]))
    mode = draw(st.sampled_from(MODE_VALUES))
    lazy_table = draw(st.sampled_from(["literal", "plan"]))
    return ds, chunks, time_chunks, mode, lazy_table


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(problems())
def test_chunked_equals_eager_property(problem):
    ds, chunks, time_chunks, mode, lazy_table = problem
    eager = ds.tram.grad("D", **mode)
    lazy = ds.chunk({"bin": chunks, "time": time_chunks})
    if lazy_table == "plan":
        lazy = unliteral(lazy, block=int(np.random.default_rng(len(chunks)).integers(1, 9)))
    with no_compute():
        chunked = lazy.tram.grad("D", **mode)
    assert chunked.chunks[chunked.get_axis_num("bin")] == chunks
    with dask.config.set(scheduler="sync"):
        assert_same(chunked, eager)


# --------------------------------------------------------------------------- every mode


@pytest.fixture(scope="module")
def voronoi_ds() -> xr.Dataset:
    return random_tessellation(np.random.default_rng(5), 400, 2, 3, 0.2).tram.sort()


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_matches_eager(voronoi_ds, mode):
    eager = voronoi_ds.tram.grad("D", **mode)
    with no_compute():
        chunked = voronoi_ds.chunk({"bin": 37, "time": 2}).tram.grad("D", **mode)
    assert_same(chunked, eager)
    if not callable(mode.get("method")):
        # without missing values, equality is bit for bit
        full = voronoi_ds.assign(D=voronoi_ds.D.fillna(1.0))
        got = full.chunk({"bin": 50}).tram.grad("D", **mode).values
        np.testing.assert_array_equal(got, full.tram.grad("D", **mode).values)


def test_pointwise_user_function(voronoi_ds):
    ds = voronoi_ds.isel(time=[0])
    eager = ds.tram.grad("D", method=plane_fit)
    assert_same(ds.chunk({"bin": 61}).tram.grad("D", method=plane_fit), eager)


def test_labels_selection():
    ds = labelled_grid((9, 7))
    ds["D"] = ds.center.sel(space="x") ** 2 - 3 * ds.center.sel(space="y")
    eager = ds.tram.grad("D", selection="labels")
    with no_compute():
        chunked = ds.chunk({"bin": 5}).tram.grad("D", selection="labels")
    assert_same(chunked, eager)
    np.testing.assert_allclose(eager.sel(space="y").values, -3.0)


def test_several_fields_and_untouched_input(voronoi_ds):
    ds = voronoi_ds.assign(V=-voronoi_ds.D)
    with no_compute():
        out = ds.chunk({"bin": 100}).tram.grad(["D", "V"])
    assert isinstance(out, xr.Dataset)
    assert_same(out.grad_V, ds.tram.grad("V"))


def test_extra_dims_in_any_order_and_chunking(voronoi_ds):
    ds = voronoi_ds.assign(W=voronoi_ds.D.expand_dims(sample=2).transpose("bin", "sample", "time"))
    eager = ds.tram.grad("W")
    with no_compute():
        chunked = ds.chunk({"bin": 90, "sample": 1, "time": 2}).tram.grad("W")
    assert chunked.dims == ("bin", "sample", "time", "space")
    assert_same(chunked, eager)


# --------------------------------------------------------------------------- laziness


def test_in_memory_field_on_lazy_grid():
    """grid(chunks=) is lazy; the result is chunked like its table."""
    with no_compute():
        ds = xtramgrad.grid((60, 50), spacing=0.5, chunks=700)
        ds["D"] = ("bin", np.sin(np.arange(3000) / 100.0))
        g = ds.tram.grad("D")
    assert g.chunks[0] == ds.neighbours.chunks[0]
    ref = xtramgrad.grid((60, 50), spacing=0.5)
    ref["D"] = ds.D
    np.testing.assert_array_equal(g.values, ref.tram.grad("D").values)


def test_lazy_grid_lazy_field_bitwise():
    with no_compute():
        ds = xtramgrad.grid((80, 40), spacing=0.1, chunks=500)
        x, y = ds.center.sel(space="x"), ds.center.sel(space="y")
        ds["D"] = x**2 * y + np.cos(y)
        assert ds.D.chunks is not None
        g = ds.tram.grad("D", eps=0.01)
    assert ds.neighbours.attrs[HALO_ATTR] == 41
    ref = xtramgrad.grid((80, 40), spacing=0.1)
    ref["D"] = ref.center.sel(space="x") ** 2 * ref.center.sel(space="y") + np.cos(
        ref.center.sel(space="y")
    )
    np.testing.assert_array_equal(g.values, ref.tram.grad("D", eps=0.01).values)


def test_zarr_round_trip_with_lazy_table(tmp_path, voronoi_ds):
    pytest.importorskip("zarr")
    store = tmp_path / "tess.zarr"
    xtramgrad.plan(voronoi_ds, block=50).chunk({"bin": 50}).to_zarr(store)
    opened = xr.open_zarr(store)
    assert opened.neighbours.chunks is not None
    assert opened.neighbours.attrs[PLAN_ATTRS[0]] == 50
    with no_compute():
        g = opened.chunk({"bin": 120}).tram.grad("D")
        g2 = opened.tram.grad("D", method="gradn")
    assert g.chunks[1] == (120, 120, 120, 40)
    assert_same(g, voronoi_ds.tram.grad("D"))
    assert_same(g2, voronoi_ds.tram.grad("D", method="gradn"))
    # the result writes back to zarr chunk by chunk
    g.to_dataset(name="grad_D").drop_encoding().to_zarr(tmp_path / "grad.zarr")
    back = xr.open_zarr(tmp_path / "grad.zarr").grad_D
    np.testing.assert_array_equal(back.values, g.values)


def test_lazy_table_without_locality_derives_a_plan(tmp_path, voronoi_ds, caplog):
    """The natural path: a store written by hand, opened the ordinary way, just works. A
    1-ring gradient reads a sample of the table (here every chunk: the reach is exact); a
    wider stencil derives the plan with one chunked pass; the log says how to skip either
    next time."""
    pytest.importorskip("zarr")
    voronoi_ds.chunk({"bin": 100}).to_zarr(tmp_path / "t.zarr")
    opened = xr.open_zarr(tmp_path / "t.zarr")
    with dask.config.set(scheduler=CountingScheduler(1)), caplog.at_level("INFO"):
        g = opened.tram.grad("D")  # one compute: the sample
    assert "xtramgrad plan STORE" in caplog.text and "carries no plan" in caplog.text
    assert_same(g, voronoi_ds.tram.grad("D"))
    caplog.clear()
    with dask.config.set(scheduler=CountingScheduler(2)), caplog.at_level("WARNING"):
        g = opened.tram.grad("D", method="lsq2")  # the planning pass, the widest stencil
    assert "xtramgrad.plan(ds)" in caplog.text and "carries no plan" in caplog.text
    assert_same(g, voronoi_ds.tram.grad("D", method="lsq2"))
    planned = xtramgrad.plan(opened)  # one compute, chunk by chunk
    assert planned.neighbours.attrs[PLAN_ATTRS[0]] == 100
    with no_compute():
        g = planned.tram.grad("D")  # with a plan: no pass at all
    assert_same(g, voronoi_ds.tram.grad("D"))


def test_stale_locality_raises_in_task():
    ds = xtramgrad.grid((10, 10), D=np.arange(100.0))
    ds.neighbours.attrs[HALO_ATTR] = 3  # wrong: rows are 10 bins apart
    lazy = ds.chunk({"bin": 5})
    lazy["neighbours"] = (lazy.neighbours * 1).assign_attrs(ds.neighbours.attrs)
    g = lazy.tram.grad("D")  # the declaration is trusted at graph construction ...
    with pytest.raises(TessellationError, match="outside the locality declared"):
        g.compute()  # ... and checked in each task
    stale = xtramgrad.plan(ds, block=10)
    stale["neighbours"].attrs[PLAN_ATTRS[1]] = 99
    lazy = unliteral(ds, block=10)
    lazy["neighbours"].attrs = stale.neighbours.attrs
    with pytest.raises(TessellationError, match="plan for 99 bins"):
        lazy.tram.grad("D")


def test_invalid_lazy_table_raises_in_task():
    ds = xtramgrad.grid((6, 6), D=np.arange(36.0))
    bad = ds.copy()
    bad["neighbours"] = ds.neighbours.where(ds.neighbours != 7, 99)
    lazy = bad.chunk({"bin": 6})
    lazy["neighbours"] = (lazy.neighbours * 1).assign_attrs(ds.neighbours.attrs)
    g = lazy.tram.grad("D")
    with pytest.raises(TessellationError, match="outside \\[0, 35\\]"):
        g.compute()


def test_plan_with_halo_and_errors():
    ds = xtramgrad.voronoi(np.random.default_rng(2).random((50, 2)))
    assert xtramgrad.plan(ds, halo=50).neighbours.attrs[HALO_ATTR] == 50
    assert HALO_ATTR not in xtramgrad.plan(ds).neighbours.attrs
    assert ds.tram.plan(block=10).neighbours.attrs[PLAN_ATTRS[1]] == 50
    with pytest.raises(ValueError, match="halo=-1"):
        xtramgrad.plan(ds, halo=-1)
    with pytest.raises(ValueError, match="block=0"):
        xtramgrad.plan(ds, block=0)


# --------------------------------------------------------------------------- graph size


def _ancestors(graph, key):
    deps = {k: set(dask.core.get_dependencies(graph, k)) for k in graph}
    seen, todo = set(), [key]
    while todo:
        k = todo.pop()
        for d in deps[k]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_task_count_linear_and_local():
    ds = xtramgrad.grid((120, 40))
    ds["D"] = ds.center.sel(space="x") * ds.center.sel(space="y")
    counts = {}
    for n_chunks in (6, 12, 24, 48):
        size = 4800 // n_chunks
        lazy = ds.chunk({"bin": size})
        with no_compute():
            g = lazy.tram.grad("D")
        graph = dict(g.data.__dask_graph__())
        counts[n_chunks] = len(graph)
        if n_chunks == 24:
            # each output chunk reads only its own and the two adjacent source chunks
            field = lazy.D.data.name
            out_keys = [k for k in g.data.__dask_keys__()]
            for c, (key,) in enumerate(out_keys):
                read = {k[1] for k in _ancestors(graph, key) if k[0] == field}
                assert read <= {c - 1, c, c + 1}, (c, read)
    per_chunk = [counts[c] / c for c in counts]
    # reads, stencil and its parts, gathers, positions, kernel, labelling
    assert max(per_chunk) <= 12
    assert max(per_chunk) / min(per_chunk) < 1.1, counts


def test_sorting_makes_chunks_local():
    rng = np.random.default_rng(3)
    ds = xtramgrad.voronoi(rng.random((3000, 2)))
    chunks = (100,) * 30
    raw = chunk_dependencies(ds.neighbours.values, chunks)
    srt = chunk_dependencies(ds.tram.sort().neighbours.values, chunks)
    assert np.mean([len(d) for d in raw]) > 25  # random order: every chunk needs all
    assert np.mean([len(d) for d in srt]) < 6


# --------------------------------------------------------------------------- sort


@pytest.mark.parametrize("d,bits", [(2, 4), (3, 3)])
def test_hilbert_curve_steps_to_face_neighbours(d, bits):
    cells = np.array(np.meshgrid(*[np.arange(2**bits)] * d, indexing="ij"))
    cells = cells.reshape(d, -1).T.astype(np.uint64)
    key = hilbert_key(cells, bits)
    assert sorted(key.tolist()) == list(range(len(cells)))
    path = cells[np.argsort(key)].astype(int)
    assert (np.abs(np.diff(path, axis=0)).sum(axis=1) == 1).all()


@pytest.mark.parametrize("curve", ["hilbert", "morton"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_sort_round_trip(curve, d):
    ds = random_tessellation(np.random.default_rng(d), 200, d, 2, 0.1)
    s = xtramgrad.sort(ds, curve=curve)
    assert sorted(s.bin_id.values.tolist()) == list(range(200))
    np.testing.assert_array_equal(s.center.values, ds.center.values[s.bin_id.values])
    # the same neighbours, renumbered, in the same order
    back = s.bin_id.values[np.where(s.neighbours >= 0, s.neighbours, 0)]
    expect = ds.neighbours.values[s.bin_id.values]
    np.testing.assert_array_equal(np.where(s.neighbours >= 0, back, -1), expect)
    g = xtramgrad.unsort(s.tram.grad("D"))
    np.testing.assert_array_equal(g.values, ds.tram.grad("D").values)
    assert xtramgrad.unsort(s).equals(ds)
    twice = xtramgrad.sort(s.isel(bin=slice(None, None, -1)).pipe(_renumber_reversed))
    assert xtramgrad.unsort(twice).equals(ds)


def _renumber_reversed(ds):
    """Renumber a reversed table by hand, and say so by resetting the bin coordinate."""
    n = ds.sizes["bin"]
    out = ds.assign(neighbours=xr.where(ds.neighbours >= 0, n - 1 - ds.neighbours, -1))
    return out.assign_coords(bin=np.arange(n))


def test_sort_errors():
    ds = xtramgrad.grid((3, 3))
    with pytest.raises(TessellationError, match="curve='peano'"):
        ds.tram.sort(curve="peano")
    with pytest.raises(TessellationError, match="no 'bin_id' coordinate"):
        xtramgrad.unsort(ds)
    assert HALO_ATTR not in ds.tram.sort().neighbours.attrs  # the band no longer holds


# --------------------------------------------------------------------------- distributed


@pytest.mark.slow
def test_distributed_local_cluster_processes(voronoi_ds):
    distributed = pytest.importorskip("distributed")
    eager = voronoi_ds.tram.grad("D", method="gradn")
    eager1 = voronoi_ds.tram.grad("D", eps=0.01)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy = voronoi_ds.chunk({"bin": 80})
        assert_same(lazy.tram.grad("D", method="gradn"), eager)
        assert_same(lazy.tram.grad("D", eps=0.01), eager1)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_gather_locality_check_same_on_both_backends(backend):
    """An id outside the loaded chunks raises the stale-locality error naming its bin on
    both backends, also when every loaded chunk is empty (the numpy lookup was empty)."""
    from xtramgrad import kernels
    from xtramgrad.chunked.gather import _localize

    if backend == "numba" and not kernels.numba_available():
        pytest.skip("numba not installed")
    previous = kernels.set_backend(backend)
    try:
        # chunks [0, 4) and [8, 12), concatenated: bin 9 is at position 5
        lid = _localize(np.array([[1, -1], [9, 2]]), np.array([0, 8]), np.array([4, 12]), lo=10)
        assert lid.tolist() == [[1, -1], [5, 2]]
        ids = np.array([[1, -1], [7, 2]])
        with pytest.raises(TessellationError, match=r"reaches bin 7 \(a neighbour of bin 11\)"):
            _localize(ids, np.array([0]), np.array([4]), lo=10)
        with pytest.raises(TessellationError, match=r"reaches bin 1 \(a neighbour of bin 10\)"):
            _localize(ids, np.array([5]), np.array([5]), lo=10)
        assert _localize(np.full((2, 3), -1), np.array([5]), np.array([5]), lo=0).tolist() == [
            [-1] * 3, [-1] * 3]
    finally:
        kernels.set_backend(previous)


@pytest.mark.parametrize("seed", range(4))
def test_localize_random_chunk_sets_same_on_both_backends(seed):
    """Local positions of ids jumping between loaded chunks (some empty, some adjacent):
    the compiled lookup (a window kept between ids, searched on a miss) equals the numpy
    one, and both name the same first id outside every chunk."""
    from xtramgrad import kernels
    from xtramgrad.chunked.gather import _localize

    if not kernels.numba_available():
        pytest.skip("numba not installed")
    rng = np.random.default_rng(seed)
    cuts = np.unique(np.r_[0, rng.integers(0, 400, size=30), 400])
    bounds = np.column_stack([cuts[:-1], cuts[1:]])
    keep = rng.random(len(bounds)) < 0.6
    keep[0] = True
    starts, stops = bounds[keep, 0], bounds[keep, 1]
    stops[::3] = starts[::3]  # some loaded chunks empty
    pool = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
    ids = rng.choice(pool, size=(60, 7))
    ids[rng.random(ids.shape) < 0.2] = -1
    # reference: the position of each id in the concatenation of the loaded chunks
    expected = np.where(ids >= 0, np.searchsorted(pool, ids), -1)
    outside = np.setdiff1d(np.arange(400), pool)
    bad = ids.copy()
    bad[41, 3] = outside[len(outside) // 2]  # one id in no loaded chunk
    got, errors = {}, {}
    for backend in ("numpy", "numba"):
        previous = kernels.set_backend(backend)
        try:
            got[backend] = _localize(ids, starts, stops, lo=1000)
            with pytest.raises(TessellationError) as info:
                _localize(bad, starts, stops, lo=1000)
            errors[backend] = str(info.value)
        finally:
            kernels.set_backend(previous)
    np.testing.assert_array_equal(got["numba"], expected)
    np.testing.assert_array_equal(got["numpy"], expected)
    assert errors["numba"] == errors["numpy"]
    assert f"reaches bin {outside[len(outside) // 2]} (a neighbour of bin 1041)" in errors["numba"]


def _far_edge_store(tmp_path, chunk=100):
    """A lattice in C order (rows of 50 bins) written by hand without a plan, with one
    long edge between two chunks that the guess samples do not read (20 chunks of 100
    bins: the samples are chunks 0, 3, 5, 8, 11, 14, 16, 19)."""
    pytest.importorskip("zarr")
    base = xtramgrad.grid((40, 50))
    table = base.neighbours.values.copy()
    a, b = 650, 1250  # chunks 6 and 12
    table = np.c_[table, np.full(2000, -1)]  # a free slot in every row
    for i, j in ((a, b), (b, a)):
        table[i, np.argmax(table[i] < 0)] = j  # rows stay left-packed
    ds = xtramgrad.from_neighbours(base.center.values, table)
    x, y = ds.center.sel(space="x"), ds.center.sel(space="y")
    ds["D"] = x**2 * y + np.cos(y)
    ds["V"] = (("time", "bin"), np.stack([ds.D.values * k for k in (1.0, -2.0, 0.5)]))
    ds["V"][1, 1250] = np.nan  # a missing value read on demand
    store = tmp_path / "far.zarr"
    ds.chunk(bin=chunk, time=2).to_zarr(store)
    return ds, xr.open_zarr(store)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_guessed_reach_reads_the_chunks_it_misses(tmp_path, backend, caplog):
    """A lazy table without a plan: 1-ring stencils start from the band seen in sampled
    chunks (no pass over the table), and the rows reaching beyond it read the chunks they
    need in their own task: every number equals the eager one, bit for bit, with extra
    dims and missing values, and the gathered values, offsets and global ids too."""
    from xtramgrad import kernels
    from xtramgrad.chunked.gather import gather_plan
    from xtramgrad.kernels.stencil import Rings
    from xtramgrad.topology import topology

    if backend == "numba" and not kernels.numba_available():
        pytest.skip("numba not installed")
    eager, lazy = _far_edge_store(tmp_path)
    previous = kernels.set_backend(backend)
    try:
        with caplog.at_level("INFO", logger="xtramgrad"):
            # one compute each: the sample's, no pass over the table
            with dask.config.set(scheduler=CountingScheduler(3)):
                g = lazy.tram.grad("D")
                gv = lazy.tram.grad("V")
                nv = lazy.tram.neighbour_values("V")
        assert "offsets [-1, 1]" in caplog.text and "carries no plan" in caplog.text
        plan = gather_plan(topology(lazy), Rings(1), (100,) * 20, False,
                           fetch_from=[lazy.V.data])
        assert plan.fetch and plan.reach[6] == (5, 6, 7)  # chunk 12 not given to chunk 6
        assert not gather_plan(topology(lazy), Rings(1), (100,) * 20, False).fetch
        assert_same(g, eager.tram.grad("D"), bitwise=True)
        assert_same(gv, eager.tram.grad("V"), bitwise=True)
        assert_same(nv, eager.tram.neighbour_values("V"), bitwise=True)
        np.testing.assert_array_equal(lazy.tram.neighbour_offsets().values,
                                      eager.tram.neighbour_offsets().values)
        ids = plan.ids.compute()
        assert 1250 in ids[650] and 650 in ids[1250]
        np.testing.assert_array_equal(ids, eager.neighbours.values)
    finally:
        kernels.set_backend(previous)


def test_guessed_reach_on_a_distributed_cluster(tmp_path):
    """The chunks read on demand are read inside the workers' tasks."""
    distributed = pytest.importorskip("distributed")
    eager, lazy = _far_edge_store(tmp_path)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        assert_same(lazy.tram.grad("V"), eager.tram.grad("V"), bitwise=True)


def test_guess_falls_back_to_the_plan_pass(tmp_path, voronoi_ds, caplog):
    """A table whose sampled rows reach far (an unsorted mesh) derives the plan instead, and
    a store whose chunks are all sampled gets the exact reach."""
    from xtramgrad.chunked.locality import guessed_dependencies
    from xtramgrad.topology import topology

    pytest.importorskip("zarr")
    rng = np.random.default_rng(5)
    ds = xtramgrad.voronoi(rng.random((3000, 2)))  # random order: rows reach everywhere
    ds["D"] = ds.center.sel(space="x") ** 2
    ds.chunk(bin=100).to_zarr(tmp_path / "r.zarr")
    opened = xr.open_zarr(tmp_path / "r.zarr")
    assert guessed_dependencies(topology(opened), (100,) * 30) is None
    with caplog.at_level("INFO", logger="xtramgrad"):
        g = opened.tram.grad("D")
    assert "reading it once" in caplog.text
    assert_same(g, ds.tram.grad("D"), bitwise=True)
    small = xtramgrad.grid((20, 20), D=np.arange(400.0)).chunk(bin=100)
    small["neighbours"] = (small.neighbours * 1).assign_attrs(
        {k: v for k, v in small.neighbours.attrs.items() if k != HALO_ATTR})
    assert guessed_dependencies(topology(small), (100,) * 4) == [(1,), (0, 2), (1, 3), (2,)]


@pytest.mark.parametrize("chunks", [(100,) * 4 + (37,), (60, 140, 0, 100, 137)])
def test_chunk_refs_counts_the_chunks_a_block_reaches(chunks):
    """The sample's count of the chunks a block of rows points into, on regular and
    irregular chunks (an empty one among them), against a sort of the entries; an entry
    out of range gives [-1]."""
    from xtramgrad.chunked.locality import _chunk_refs, bounds

    b = bounds(chunks)
    n = int(b[-1])
    rng = np.random.default_rng(len(chunks))
    rows = rng.integers(0, 150, size=(50, 6))  # the first chunks
    rows[:, 3:] = np.where(rng.random((50, 3)) < 0.5, -1, rows[:, 3:])  # padding
    rows[:, :2] = rng.integers(n - 40, n, size=(50, 2))  # the last chunk, reached
    expected = np.unique(np.searchsorted(b, rows[rows >= 0], side="right") - 1)
    np.testing.assert_array_equal(_chunk_refs(rows, b), expected)
    assert len(expected) < len(chunks)  # the test is not trivially every chunk
    for bad in (n, -2):
        wrong = rows.copy()
        wrong[7, 1] = bad
        np.testing.assert_array_equal(_chunk_refs(wrong, b), [-1])


def test_guess_warms_the_kernels_alongside_its_sample(tmp_path):
    """On the threaded scheduler the sample's compute also runs the caller's warm-up, once
    (numba loads the 1-ring gather while the chunks are read, not in the gradient's
    first tasks, where every thread would wait); elsewhere it is skipped. The guess is the
    same either way, and after the warm-up a chunked gradient compiles nothing more."""
    from xtramgrad import kernels
    from xtramgrad.chunked.gather import _warm_ring1
    from xtramgrad.chunked.locality import guessed_dependencies
    from xtramgrad.topology import topology

    _, lazy = _far_edge_store(tmp_path)
    topo = topology(lazy)
    calls = []
    with dask.config.set(scheduler="threads"):
        warmed = guessed_dependencies(topo, (100,) * 20, warm=lambda: calls.append(1))
    assert calls == [1]
    with dask.config.set(scheduler="synchronous"):
        assert guessed_dependencies(topo, (100,) * 20, warm=lambda: calls.append(2)) == warmed
    assert calls == [1] and warmed == guessed_dependencies(topo, (100,) * 20)
    if not kernels.numba_available():
        return
    from xtramgrad.kernels import _numba

    previous = kernels.set_backend("numba")
    try:
        _warm_ring1(int(lazy.sizes["space"]))
        loaded = (len(_numba.ring1_rows.signatures), len(_numba.take_values.signatures))
        assert min(loaded) >= 1
        lazy.tram.grad("D").compute()  # the guessed path: the same signatures as the warm-up
        assert (len(_numba.ring1_rows.signatures),
                len(_numba.take_values.signatures)) == loaded
    finally:
        kernels.set_backend(previous)


def test_dask_coordinate_chunked_apart_from_the_data():
    """A dask coordinate along bin chunked otherwise than the field (as a store may hold
    it) is rechunked with it: the gradient equals the eager one and keeps the
    coordinate."""
    import dask.array as da

    ds = xtramgrad.grid((30, 20))
    ds["D"] = np.sin(ds.center.sel(space="x")) * ds.center.sel(space="y")
    lazy = ds.chunk(bin=100).assign_coords(tag=("bin", da.arange(600, chunks=150)))
    got = lazy.tram.grad("D")
    assert got.chunks is not None and "tag" in got.coords
    xr.testing.assert_identical(got.compute().drop_vars("tag"), ds.tram.grad("D"))
    np.testing.assert_array_equal(got.tag.values, np.arange(600))


@pytest.mark.parametrize("bad", [-5, 1000])
def test_guessed_path_refuses_a_value_out_of_range_in_an_unsampled_chunk(bad, backend):
    """The 1-ring tasks check their rows' range themselves (in the compiled pass over the
    rows, on numba): a value below -1 (no padding: the row walk would skip it) or past the
    last bin, in a chunk the guess did not sample, is refused with the table's own error."""
    ds = xtramgrad.grid((100, 10))
    ds["D"] = ds.center.sel(space="x") * 1.0
    table = ds.neighbours.values.copy()
    table[57, 3] = bad  # chunk 5 of 100: the sample reads chunks 0, 14, 28, 42, 57, ...
    lazy = ds.assign(neighbours=(("bin", "nbr"), table)).chunk({"bin": 10})
    lazy["neighbours"] = lazy.neighbours * 1  # computed: no literal blocks, no plan
    with pytest.raises(TessellationError, match=f"holds position {bad} at bin 57"):
        lazy.tram.grad("D").compute()


@pytest.mark.skipif(not kernels.numba_available(), reason="numba not installed")
def test_compiled_ring1_pass_flags_values_out_of_range_in_both_layouts():
    """ring1_rows reports a row problem (``suspect``, the caller then raises the table's
    error) for every value out of range, padded or CSR, in kept rows and in rows computed
    apart (``skip``), and nothing for a valid table."""
    from xtramgrad.kernels import _numba

    n, lo = 40, 10
    padded = np.array([[11, 9, -1], [10, 12, -1], [11, 13, 30], [12, -1, -1]])
    starts, stops = np.array([0]), np.array([n])
    data = np.arange(2.0 * n).reshape(n, 2)

    def run(table, indptr, skip_row=None):
        m = len(indptr) - 1 if len(indptr) else table.shape[0]
        skip = np.zeros(m, np.bool_)
        if skip_row is not None:
            skip[skip_row] = True
        lid, cen = np.empty((m, 3), np.int64), np.empty((m, 3, 2))
        return _numba.ring1_rows(table, indptr, skip, lo, n, starts, stops, np.array([0]),
                                 data, lid, cen, np.empty((0, 0)))

    assert run(padded, np.zeros(0, np.int64)) == (-1, -1, 3, False)
    indptr = np.concatenate([[0], np.cumsum((padded >= 0).sum(axis=1))])
    edges = padded[padded >= 0]
    assert run(edges, indptr) == (-1, -1, 3, False)
    for bad in (-2, -7, n, n + 5):
        for row in (0, 2):
            for skip_row in (None, row):
                t = padded.copy()
                t[row, 2 if row == 2 else 1] = bad
                assert run(t, np.zeros(0, np.int64), skip_row)[3], (bad, row, skip_row)
                if bad >= 0 or bad < -1:
                    e = edges.copy()
                    e[indptr[row]] = bad
                    assert run(e, indptr, skip_row)[3], ("csr", bad, row, skip_row)


_EMPTY_CHUNK_OPS = {
    "grad1": lambda d: d.tram.grad("D"),
    "grad1 over time": lambda d: d.tram.grad("V"),
    "lsq": lambda d: d.tram.grad("D", method="lsq"),
    "gradn": lambda d: d.tram.grad("D", method="gradn"),
    "lsq2": lambda d: d.tram.grad("D", method="lsq2"),
    "grad_std": lambda d: d.tram.grad_std("D", std="S", method="lsq"),
    "neighbour_values": lambda d: d.tram.neighbour_values("D"),
    "div": lambda d: d.tram.div("F"),
    "curl": lambda d: d.tram.curl("F"),
    "laplacian": lambda d: d.tram.laplacian("D"),
}


@pytest.mark.parametrize("chunks", [(100, 0, 300), (0, 150, 0, 250, 0)])
@pytest.mark.parametrize("lazy_table", [False, True])
def test_empty_chunks_along_bin(chunks, lazy_table):
    """Chunks of no bins along bin (a boolean isel of dask data makes them) change no
    number: every operator equals the eager one, bit for bit, with the table in memory
    and lazy (planned in a pass, or its reach guessed)."""
    ds = xtramgrad.grid((20, 20))
    x, y = ds.center.sel(space="x"), ds.center.sel(space="y")
    ds["D"] = x**2 + y
    ds["V"] = (("time", "bin"), np.stack([ds.D.values, -ds.D.values]))
    ds["S"] = 0.1 + 0 * ds.D
    ds["F"] = xr.concat([x * y, x - y], "space").transpose("bin", "space")
    lazy = ds.chunk(bin=chunks)
    if lazy_table:
        lazy["neighbours"] = (lazy.neighbours * 1).assign_attrs(
            {k: v for k, v in lazy.neighbours.attrs.items() if k != HALO_ATTR})
    for name, op in _EMPTY_CHUNK_OPS.items():
        got = op(lazy)
        assert got.chunks is not None and 0 in got.chunks[got.dims.index("bin")], name
        assert_same(got, op(ds), bitwise=True)


@pytest.mark.parametrize("planned", [False, True])
def test_deferred_write_streams(tmp_path, planned):
    """``to_zarr(out, compute=False)`` then ``.compute()`` (a graph with one output) of a
    store opened the ordinary way streams as the plain ``to_zarr`` does: the stencils of a
    few chunks are held at once, not every chunk's (with the reader's array object in a
    task of its own before every read, dask's order gathered all 10 chunks' stencils
    first); the numbers are the eager ones."""
    from dask.callbacks import Callback

    from xtramgrad.chunked.gather import inline_reader

    pytest.importorskip("zarr")
    ds = xtramgrad.grid((100, 100))
    ds["D"] = ds.center.sel(space="x") ** 2 * ds.center.sel(space="y")
    ds.neighbours.attrs.pop(HALO_ATTR)
    ds.chunk(bin=1000).to_zarr(tmp_path / "in.zarr")
    opened = xr.open_zarr(tmp_path / "in.zarr")
    assert "original-" + opened.D.data.name in opened.D.data.__dask_graph__().layers
    assert list(inline_reader(opened.D.data).__dask_graph__().layers) == [opened.D.data.name]
    if planned:
        opened = xtramgrad.plan(opened)
    held = []

    class Held(Callback):
        def _posttask(self, key, result, dsk, state, id):
            held.append(sum(str(k[0]).startswith("xtramgrad-stencil")
                            for k in state["cache"] if isinstance(k, tuple)))

    g = opened.tram.grad("D")
    with dask.config.set(scheduler="synchronous"), Held():
        g.to_dataset(name="g").to_zarr(tmp_path / "out.zarr", compute=False).compute()
    assert 0 < max(held) <= 9  # (lid, centers) of at most 3 chunks of 10 (30 before)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "out.zarr").g.values,
                                  ds.tram.grad("D").values)


@pytest.mark.parametrize("lazy_table", [False, True])
def test_neighbour_values_of_a_table_with_gaps(lazy_table):
    """A padded table may hold -1 between its entries. neighbour_values and
    neighbour_offsets give each row's present neighbours first, in the table's order, then
    the padding: eager and chunked alike, bit for bit (eager kept the table's slots, and
    the two differed). The gradients do not depend on the gaps."""
    base = xtramgrad.grid((12, 10))
    base["D"] = base.center.sel(space="x") ** 2 - base.center.sel(space="y")
    packed = base.neighbours.values
    n, k = packed.shape
    rng = np.random.default_rng(11)
    gapped = np.full((n, k + 3), -1)
    for i, row in enumerate(packed):
        present = row[row >= 0]
        slots = np.sort(rng.choice(k + 3, size=len(present), replace=False))
        gapped[i, slots] = present
    assert ((gapped[:, 1:] >= 0) & (gapped[:, :-1] < 0)).any()  # gaps inside rows
    ds = xtramgrad.from_neighbours(base.center.values, gapped, D=base.D.values)
    lazy = ds.chunk(bin=30)
    if lazy_table:
        lazy["neighbours"] = (lazy.neighbours * 1).assign_attrs(
            {k: v for k, v in lazy.neighbours.attrs.items() if k != HALO_ATTR})
    eager_nv = ds.tram.neighbour_values("D")
    expected = np.full((n, k + 3), np.nan)
    expected[:, :k] = base.tram.neighbour_values("D").values
    np.testing.assert_array_equal(eager_nv.values, expected)
    assert_same(lazy.tram.neighbour_values("D"), eager_nv, bitwise=True)
    assert_same(lazy.tram.neighbour_offsets(), ds.tram.neighbour_offsets(), bitwise=True)
    np.testing.assert_array_equal(ds.tram.grad("D").values, base.tram.grad("D").values)
    assert_same(lazy.tram.grad("D"), ds.tram.grad("D"), bitwise=True)


def test_guessed_and_stored_reach_in_one_graph(tmp_path):
    """A guessed reach and a stored plan of the same table number their entries
    differently: computed together, neither reads the other's tasks."""
    eager, lazy = _far_edge_store(tmp_path)
    planned = xtramgrad.plan(lazy)  # attributes only: the same dask arrays
    got = dask.compute(planned.tram.grad("V"), lazy.tram.grad("D"), lazy.tram.grad("V"))
    for g, ref in zip(got, (eager.tram.grad("V"), eager.tram.grad("D"),
                            eager.tram.grad("V")), strict=True):
        np.testing.assert_array_equal(g.values, ref.values)


def test_guess_only_on_data_readable_chunk_by_chunk(tmp_path):
    """Data persisted on a cluster (futures) or a field that a reduction over bin makes
    cannot be read chunk by chunk inside a task: the plan is derived instead, and the
    numbers are the same."""
    distributed = pytest.importorskip("distributed")
    from xtramgrad.chunked.gather import readable

    eager, lazy = _far_edge_store(tmp_path, chunk=50)
    field = lazy.D - lazy.D.mean("bin")
    assert readable(lazy.D.data) and not readable(field.data)  # 40 chunks to re-reduce
    lazy["E"] = field
    np.testing.assert_array_equal(lazy.tram.grad("E").values,
                                  (eager.D - eager.D.mean("bin")).pipe(
                                      lambda e: eager.assign(E=e).tram.grad("E")).values)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None):
        held = lazy.persist()
        assert not readable(held.center.data)
        np.testing.assert_array_equal(held.tram.grad("V").values, eager.tram.grad("V").values)


def test_guess_checks_the_arrays_as_gathered(tmp_path):
    """grad_std gathers sigma rechunked like the field: the check is made on that array
    (sigma in chunks of 2 bins makes chunks of 50 tasks each), not on sigma as given; a
    cumulative sum along bin, cheap at its first chunk, is looked at by its last."""
    from xtramgrad.chunked.gather import readable

    eager, lazy = _far_edge_store(tmp_path)
    eager["S"] = 0.1 + 0 * eager.D
    lazy["S"] = (0.1 + 0 * lazy.D).chunk(bin=2)
    got = lazy.tram.grad_std("D", std="S", method="lsq")
    want = eager.tram.grad_std("D", std="S", method="lsq")
    np.testing.assert_array_equal(got.values, want.values)
    assert not readable(lazy.D.cumsum("bin").data)

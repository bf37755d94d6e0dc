"""The shipped sample maps, the demo that reports on them, and the summary repr."""

from __future__ import annotations

import io

import numpy as np
import pytest

import xtramgrad
from helpers import no_compute  # noqa: E402  (tests/ is on sys.path)
from xtramgrad import demo, samples
from xtramgrad.samples import load_npz


def test_at_least_two_tramway_samples_are_shipped():
    names = samples.available()
    assert len(names) >= 2 and "hexagon" in names


@pytest.mark.parametrize("name", samples.available())
def test_open_sample_schema_and_metadata(name):
    ds = xtramgrad.open_sample(name)
    ds.tram.validate()
    n = ds.sizes["bin"]
    assert n > 100 and ds.sizes["space"] == 2
    assert ds.D.attrs["units"] == "um^2/s" and ds.D.attrs["long_name"] == "diffusivity"
    assert ds.center.attrs["units"] == "um"
    assert ds.attrs["tramway_version"] == "0.7"
    assert ds.attrs["tessellation"] == name
    true = np.asarray(ds.attrs["true_gradient"])
    assert true.shape == (2,)
    # D_true is the simulated linear field at the centers: its gradient is the known one
    c = ds.center.values
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(n), c]), ds.D_true.values, rcond=None)
    np.testing.assert_allclose(coef[1:], true, rtol=1e-9)
    assert (ds.n_points.values > 0).all()
    # units of the gradient are derived from the field's and the centers' units
    assert ds.tram.grad("D").attrs["units"] == "um^2/s / um"


@pytest.mark.parametrize("name", samples.available())
def test_our_gradient_of_the_sample_is_tramway_s_own(name):
    ds = xtramgrad.open_sample(name)
    g = ds.tram.grad("D")  # the default: selection_angle=0.9, as TRamWAy's infer
    ref = ds.tramway_grad_D.values
    np.testing.assert_array_equal(np.isnan(g.values), np.isnan(ref))
    ok = np.isfinite(ref)
    np.testing.assert_allclose(g.values[ok], ref[ok], rtol=1e-9, atol=1e-12)


def test_grid_sample_records_its_grid():
    ds = xtramgrad.open_sample("grid")
    assert ds.attrs["grid_spacing"] == pytest.approx([0.1, 0.1])
    assert ds.attrs["grid_origin"] == pytest.approx([-0.95, -0.95])
    assert ds.attrs["grid_shape"] == [20, 20]


def test_open_sample_unknown_name():
    with pytest.raises(xtramgrad.TessellationError, match="no sample named 'nope'.*hexagon"):
        xtramgrad.open_sample("nope")


def test_load_npz_minimal_file_and_missing_arrays(tmp_path):
    """The loader against a file of the documented format, written here."""
    rng = np.random.default_rng(0)
    pts = rng.random((30, 2))
    vor = xtramgrad.voronoi(pts)
    path = tmp_path / "sample_test.npz"
    np.savez(
        path, center=pts, neighbours=vor.neighbours.values.astype(np.int32),
        D=pts[:, 0] + 1.0, D_true=pts[:, 0] + 1.0, n_points=np.full(30, 50),
        true_gradient=np.array([1.0, 0.0]), dt=np.array(0.01), seed=np.array(3),
        description=np.array("test"), tramway_version=np.array("0.7"),
    )
    ds = load_npz(path)
    assert ds.neighbours.dtype == np.int64
    np.testing.assert_array_equal(ds.neighbours.values, vor.neighbours.values)
    assert ds.attrs["seed"] == 3 and ds.attrs["dt"] == 0.01 and ds.attrs["description"] == "test"
    assert "tramway_grad_D" not in ds and "tessellation" not in ds.attrs
    np.savez(tmp_path / "bad.npz", center=pts)
    with pytest.raises(xtramgrad.TessellationError, match=r"lacks \['neighbours', 'D'\]"):
        load_npz(tmp_path / "bad.npz")


def test_demo_reports_recovered_versus_known_gradient():
    out = io.StringIO()
    assert demo.main(out=out) == 0
    text = out.getvalue()
    for name in samples.available():
        assert f"sample {name!r}" in text
    assert "known gradient   (+0.1500, -0.0800)" in text
    assert "TRamWAy 0.7's own grad1" in text and "same missing bins: True" in text
    assert text.count("selection_angle=0.9 (default)") == len(samples.available())


@pytest.mark.parametrize("name", samples.available())
def test_demo_default_rule_recovers_the_known_gradient(name):
    err = demo.report(name, io.StringIO())
    assert err < 0.10  # about 2-5 % on the shipped maps


def test_interior_and_recovered_gradient_on_an_exact_field():
    ds = xtramgrad.grid((10, 10), spacing=0.1)
    c = ds.center.values
    ds["V"] = ("bin", 2 * c[:, 0] - c[:, 1])
    mask = demo.interior(ds)
    assert mask.sum() == 64
    s = demo.recovered_gradient(ds.tram.grad("V"), mask)
    np.testing.assert_allclose(s["median"], [2.0, -1.0])
    np.testing.assert_allclose(s["iqr"], 0.0, atol=1e-12)
    assert int(s["count"]) == 64


# --------------------------------------------------------------------------- summary / repr


def test_summary_figures_match_the_tables():
    ds = xtramgrad.open_sample("kmeans")
    s = xtramgrad.summary(ds)
    deg = (ds.neighbours.values >= 0).sum(axis=1)
    assert s.n_bins == ds.sizes["bin"] and s.ndim == 2 and s.space == ["x", "y"]
    assert s.degree == (deg.min(), pytest.approx(deg.mean()), deg.max())
    assert s.table_width == ds.sizes["nbr"] and s.isolated == 0
    names = [m.name for m in s.measurements]
    assert names[:3] == ["D", "D_true", "n_points"]
    assert s.chunks == {}
    text = repr(ds.tram)
    assert f"bins                {ds.sizes['bin']}" in text
    assert f"min {deg.min()}, mean {deg.mean():.2f}, max {deg.max()}" in text
    assert "D(bin) float64 [um^2/s]" in text
    html = ds.tram._repr_html_()
    assert "<table" in html and "<code>D</code>" in html and "diffusivity" in html


def test_summary_of_dask_backed_dataset_computes_nothing_by_default():
    import dask

    ds = xtramgrad.grid((100, 50), chunks=1000)
    ds["D"] = (("bin",), dask.array.ones(5000, chunks=1000))
    with no_compute():
        s = ds.tram.summary()
        text = repr(ds.tram)
    assert s.degree is None and "not computed" in text
    assert "5 chunk(s) of 1,000 bins: center, neighbours, face_area, volume, D" in text
    full = ds.tram.summary(compute=True)
    assert full.degree == (3, pytest.approx((4 * 3 + 2 * (98 + 48) * 5 + 98 * 48 * 8) / 5000), 8)
    assert full.measurements[0].missing == 0


def test_summary_missing_values_isolated_bins_and_bad_dataset():
    ds = xtramgrad.from_neighbours([[0.0], [1.0], [5.0]], [[1], [0], [-1]],
                                   D=[1.0, np.nan, 2.0])
    s = ds.tram.summary()
    assert s.isolated == 1 and s.measurements[0].missing == 1
    assert "1 isolated bin(s)" in repr(s) and "1 missing" in repr(s)
    import xarray as xr

    assert "not a tessellation Dataset" in repr(xr.Dataset().tram)
    assert "not a tessellation Dataset" in xr.Dataset().tram._repr_html_()

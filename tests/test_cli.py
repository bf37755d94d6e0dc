"""The command line: ``python -m xtramgrad grad IN.zarr -v D -o OUT.zarr`` and ``demo``."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xtramgrad
from xtramgrad.cli import main

pytest.importorskip("zarr")
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Zarr V3 specification.*", "ignore:Consolidated metadata.*"
)


@pytest.fixture(scope="module")
def tessellation() -> xr.Dataset:
    rng = np.random.default_rng(11)
    ds = xtramgrad.voronoi(rng.random((500, 2))).tram.sort()
    values = np.sin(3 * ds.center.values[:, 0])[None] + rng.normal(0, 0.1, (2, 500))
    values[rng.random((2, 500)) < 0.1] = np.nan
    ds["D"] = (("time", "bin"), values)
    ds["V"] = ("bin", ds.center.values[:, 1] ** 2)
    return ds


@pytest.fixture()
def store(tmp_path: Path, tessellation: xr.Dataset) -> Path:
    path = tmp_path / "in.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tessellation.chunk({"bin": 100}).to_zarr(path)  # no plan: the CLI makes one
    return path


def close(got: xr.DataArray, expected: xr.DataArray) -> None:
    a, b = got.values, expected.values
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[~np.isnan(b)], b[~np.isnan(b)], rtol=0, atol=1e-12)


def test_grad_end_to_end(store, tmp_path, tessellation, capsys):
    out = tmp_path / "out.zarr"
    code = main(
        ["grad", str(store), "-v", "D", "-v", "V", "--selection-angle", "0.7",
         "--chunks", "120", "-o", str(out)]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "planning" in err and "tasks" in err
    assert "100% [####################] 15/15 chunks" in err  # grad_D, grad_V, bin_id
    result = xr.open_zarr(out)
    assert set(result.data_vars) == {"grad_D", "grad_V"}
    assert result.grad_D.chunks[1][0] == 120
    assert result.grad_D.attrs["xtramgrad_selection"] == "cone(selection_angle=0.7)"
    close(result.grad_D, tessellation.tram.grad("D", selection_angle=0.7))
    close(result.grad_V, tessellation.tram.grad("V", selection_angle=0.7))
    np.testing.assert_array_equal(result.bin_id.values, tessellation.bin_id.values)


def test_eps_gradn_and_overwrite(store, tmp_path, tessellation, capsys):
    out = tmp_path / "out.zarr"
    assert main(["grad", str(store), "-v", "V", "--eps", "0.01", "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    close(xr.open_zarr(out).grad_V, tessellation.tram.grad("V", eps=0.01))
    assert main(["grad", str(store), "-v", "V", "--method", "gradn", "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    args = ["grad", str(store), "-v", "V", "--method", "gradn", "-o", str(out), "--overwrite"]
    assert main([*args, "--quiet"]) == 0
    close(xr.open_zarr(out).grad_V, tessellation.tram.grad("V", method="gradn"))


@pytest.mark.parametrize(
    "argv, kw",
    [
        pytest.param(["--method", "lsq", "--power", "1"], {"method": "lsq", "power": 1},
                     id="lsq-power"),
        pytest.param(["--method", "lsq2", "--cutoff", "inf"],
                     {"method": "lsq2", "cutoff": float("inf")}, id="lsq2-cutoff"),
        pytest.param(["--method", "local", "--bandwidth", "0.1", "--degree", "2"],
                     {"method": "local", "bandwidth": 0.1, "degree": 2}, id="local"),
    ],
)
def test_every_registered_method_with_its_options(store, tmp_path, tessellation, argv, kw):
    out = tmp_path / "out.zarr"
    assert main(["grad", str(store), "-v", "V", *argv, "-o", str(out), "--quiet"]) == 0
    got = xr.open_zarr(out).grad_V
    close(got, tessellation.tram.grad("V", **kw))
    assert got.attrs["xtramgrad_method"] == kw["method"]


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["--method", "lsq", "--bandwidth", "1"],
                     "--method lsq takes no --bandwidth", id="foreign-option"),
        pytest.param(["--method", "lsq", "--power", "-1"], "power=-1; expected", id="bad-value"),
        pytest.param(["--method", "gradn", "--eps", "0"], "--method gradn takes no --eps",
                     id="selection-on-gradn"),
        pytest.param(["--method", "local", "--degree", "3"], "degree=3; expected",
                     id="bad-degree"),
    ],
)
def test_method_option_errors_before_reading(store, tmp_path, capsys, argv, message):
    from helpers import no_compute

    with no_compute():  # detected from the metadata: nothing is read
        code = main(["grad", str(store), "-v", "V", *argv, "-o", str(tmp_path / "o.zarr")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.zarr").exists()


def test_errors(store, tmp_path, capsys):
    out = str(tmp_path / "o.zarr")
    with pytest.raises(SystemExit):
        main(["grad", str(store), "-v", "D", "--eps", "0", "--selection-angle", "0.9", "-o", out])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["grad", str(tmp_path / "missing.zarr"), "-v", "D", "-o", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["grad", str(store), "-v", "W", "-o", out, "--quiet"]) == 2
    assert "no variable 'W'" in capsys.readouterr().err
    assert main(["grad", str(store), "-v", "D", "--selection-angle", "1.5", "-o", out]) == 2
    assert "expected a value in [0.5, 1)" in capsys.readouterr().err


def test_scheduler_address(store, tmp_path, tessellation, capsys):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out.zarr"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        code = main(
            ["grad", str(store), "-v", "D", "-o", str(out), "--scheduler",
             cluster.scheduler_address]
        )
    assert code == 0
    assert f"on {cluster.scheduler_address}" in capsys.readouterr().err
    close(xr.open_zarr(out).grad_D, tessellation.tram.grad("D"))


def test_module_and_console_script(store, tmp_path, tessellation):
    out = tmp_path / "out.zarr"
    run = subprocess.run(
        [sys.executable, "-m", "xtramgrad", "grad", str(store), "-v", "V", "-o", str(out)],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stderr
    close(xr.open_zarr(out).grad_V, tessellation.tram.grad("V"))
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="xtramgrad")
    assert script.load() is main


def test_demo_subcommand_dispatches(monkeypatch):
    import xtramgrad.demo

    calls = []
    monkeypatch.setattr(xtramgrad.demo, "main", lambda names=None: calls.append(names) or 0)
    assert main(["demo"]) == 0
    assert main(["demo", "grid"]) == 0
    assert calls == [None, ["grid"]]

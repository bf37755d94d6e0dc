"""The command line never loses a file, never leaves a half-written store, never shows a
traceback for a user mistake, and guides (progress, hints, sort and plan subcommands)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xtramgrad
from helpers import no_compute
from xtramgrad import cli
from xtramgrad.cli import main
from xtramgrad.io import store

pytest.importorskip("zarr")
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Zarr V3 specification.*", "ignore:Consolidated metadata.*"
)


# --------------------------------------------------------------------------- helpers


def tree(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path``, by relative path."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def leftovers(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out.parent) if n.startswith(f".{out.name}.xtramgrad-"))


def to_zarr(ds: xr.Dataset, path: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, **kwargs)
    return path


def one_error_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xtramgrad ") and ": error: " in lines[0], err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tessellation() -> xr.Dataset:
    rng = np.random.default_rng(3)
    ds = xtramgrad.voronoi(rng.random((2000, 2))).tram.sort()
    ds["D"] = 2.0 * ds.center.sel(space="x") - ds.center.sel(space="y")
    ds["V"] = ds.center.sel(space="y") ** 2
    return ds


@pytest.fixture()
def source(tmp_path: Path, tessellation: xr.Dataset) -> Path:
    return to_zarr(tessellation.chunk({"bin": 200}), tmp_path / "in.zarr")  # no plan


@pytest.fixture()
def previous(tmp_path: Path, source: Path, capsys) -> Path:
    """A complete earlier result at OUT."""
    out = tmp_path / "out.zarr"
    assert main(["grad", str(source), "-v", "D", "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    return out


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


# a CLI process whose chunk writes take `delay` seconds each, to be signalled mid-run
SLOW_CLI = """
import sys, time
import xtramgrad.io.store as s
_write = s._write_block
def _slow(*args):
    time.sleep({delay})
    return _write(*args)
s._write_block = _slow
from xtramgrad.cli import main
sys.exit(main(sys.argv[1:]))
"""


def spawn(args: list[str], delay: float | None = None) -> subprocess.Popen:
    code = SLOW_CLI.format(delay=delay) if delay else "import sys; from xtramgrad.cli " \
        "import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True,
        preexec_fn=_interactive_sigint,
    )


@pytest.fixture(autouse=True)
def _sigint_as_in_a_terminal():
    """Ctrl-C raises KeyboardInterrupt in this process too, even when the suite was started
    in the background (SIGINT inherited ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _interactive_sigint() -> None:
    """The child gets SIGINT as in a terminal: a suite started in the background (``&``,
    no job control) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_partial(out: Path, proc: subprocess.Popen, timeout: float = 60) -> str:
    """Wait until the process has created its temporary store; return its name."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        mine = [n for n in leftovers(out) if f"-{proc.pid}-" in n]
        if mine:
            return mine[0]
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    raise AssertionError("the run never started writing")


# --------------------------------------------------------------------------- defects 1, 2, 4


@pytest.mark.parametrize(
    "where, match",
    [
        pytest.param("same", "is the input", id="out-is-in"),
        pytest.param("inside", "lies inside the input", id="out-inside-in"),
        pytest.param("parent", "contains the input", id="out-contains-in"),
    ],
)
def test_output_overlapping_the_input_is_refused_before_reading(
    source, tmp_path, capsys, where, match
):
    before = tree(tmp_path)
    out = {"same": source, "inside": source / "g.zarr", "parent": tmp_path}[where]
    with no_compute():
        code, err = run(["grad", str(source), "-v", "D", "-o", str(out), "--overwrite"], capsys)
    assert code == 2
    one_error_line(err, match, str(source))
    assert tree(tmp_path) == before  # IN byte-identical


def test_overwrite_never_deletes_a_directory_that_is_not_a_zarr_store(source, tmp_path, capsys):
    mydata = tmp_path / "mydata"
    (mydata / "sub").mkdir(parents=True)
    (mydata / "thesis.tex").write_text("\\chapter{One}")
    (mydata / "sub" / "raw.csv").write_text("1,2,3\n")
    before = tree(mydata)
    with no_compute():
        code, err = run(["grad", str(source), "-v", "D", "-o", str(mydata), "--overwrite"], capsys)
    assert code == 2
    one_error_line(err, str(mydata), "not a zarr store")
    assert tree(mydata) == before


def test_error_inside_a_task_leaves_the_previous_result(source, previous, tmp_path, capsys):
    """A stale plan raises inside one chunk's task, mid-run: nothing changes at OUT."""
    import zarr

    planned = tmp_path / "planned.zarr"
    ds = xtramgrad.plan(xr.open_zarr(source))
    attrs = ds.neighbours.attrs
    assert attrs["xtramgrad_plan_block"] == 200
    indptr, indices = attrs["xtramgrad_plan_indptr"], attrs["xtramgrad_plan_indices"]
    far = min(set(range(10)) - set(indices[indptr[9] : indptr[10]]))
    to_zarr(ds.drop_encoding(), planned)
    table = zarr.open_group(planned, mode="r+")["neighbours"]
    rows = table[1900:2000]
    rows[:, 0] = 200 * far  # the last chunk now points into a block outside its plan
    table[1900:2000] = rows
    before = tree(previous)
    code, err = run(
        ["grad", str(planned), "-v", "D", "-o", str(previous), "--overwrite", "--quiet"], capsys
    )
    assert code == 2
    one_error_line(err, "outside the locality declared", f"nothing was written to {previous}")
    assert tree(previous) == before
    assert leftovers(previous) == []


@pytest.mark.parametrize(
    "sig, code, word",
    [
        pytest.param(signal.SIGINT, 130, "interrupted (SIGINT)", id="SIGINT"),
        pytest.param(signal.SIGTERM, 143, "terminated (SIGTERM)", id="SIGTERM"),
    ],
)
@pytest.mark.parametrize("existing", [True, False], ids=["previous", "absent"])
def test_signals_mid_run(source, tmp_path, capsys, sig, code, word, existing, request):
    out = request.getfixturevalue("previous") if existing else tmp_path / "out.zarr"
    before = tree(out) if existing else None
    proc = spawn(["grad", str(source), "-v", "D", "-o", str(out), "--overwrite", "--quiet"],
                 delay=0.2)
    wait_for_partial(out, proc)
    time.sleep(0.4)  # some chunks written, more to come (20 chunks, 2 threads: >= 2 s)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, err
    assert err == f"xtramgrad grad: {word}; nothing was written to {out}\n"
    assert (tree(out) if out.exists() else None) == before
    assert leftovers(out) == []


def test_interrupt_with_progress_bar_ends_its_line(source, tmp_path):
    out = tmp_path / "out.zarr"
    proc = spawn(["grad", str(source), "-v", "D", "-o", str(out)], delay=0.2)
    wait_for_partial(out, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert "Traceback" not in err and not out.exists()
    lines = err.rstrip("\n").split("\n")  # the pipe turned the bar's \r into \n
    assert lines[-1] == f"xtramgrad grad: interrupted (SIGINT); nothing was written to {out}"
    assert re.match(r"^ *\d+% \[[#-]{20}\] \d+/20 chunks", lines[-2])  # the bar, ended


def test_next_run_removes_the_leftover_of_a_killed_run(source, tmp_path, capsys):
    out = tmp_path / "out.zarr"
    proc = spawn(["grad", str(source), "-v", "D", "-o", str(out), "--quiet"], delay=0.3)
    name = wait_for_partial(out, proc)
    proc.kill()
    proc.wait()
    assert not out.exists() and leftovers(out) == [name]
    code, err = run(["grad", str(source), "-v", "D", "-o", str(out), "--quiet"], capsys)
    assert code == 0
    assert err == (
        f"xtramgrad grad: removed {name}, a temporary store left next to out.zarr by an "
        f"interrupted run (process {proc.pid}).\n"
    )
    assert leftovers(out) == []


def test_lost_scheduler_mid_run(source, previous, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import threading

    write = store._write_block

    def slow(*args):
        time.sleep(0.3)
        return write(*args)

    monkeypatch.setattr(store, "_write_block", slow)  # the in-process workers use it
    before = tree(previous)
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    threading.Timer(1.5, cluster.close).start()
    code, err = run(
        ["grad", str(source), "-v", "D", "-o", str(previous), "--overwrite", "--quiet",
         "--scheduler", cluster.scheduler_address, "--timeout", "2"],
        capsys,
    )
    assert code == 1
    one_error_line(err, "dropped the computation", f"nothing was written to {previous}")
    assert tree(previous) == before
    assert leftovers(previous) == []


def test_full_disk_mid_run(source, previous, capsys, monkeypatch):
    write = store._write_block
    calls = []

    def full(*args):
        calls.append(1)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return write(*args)

    monkeypatch.setattr(store, "_write_block", full)
    before = tree(previous)
    code, err = run(
        ["grad", str(source), "-v", "D", "-o", str(previous), "--overwrite", "--quiet"], capsys
    )
    assert code == 1
    one_error_line(err, "No space left on device", f"nothing was written to {previous}")
    assert tree(previous) == before and leftovers(previous) == []


def test_ctrl_c_while_moving_the_store_into_place(source, previous, capsys, monkeypatch):
    """Ctrl-C waits for the few renames that swap the stores, and says what happened."""
    monkeypatch.setattr(store, "_fsync_dir", lambda path: os.kill(os.getpid(), signal.SIGINT))
    before = tree(previous)
    code, err = run(
        ["grad", str(source), "-v", "V", "-o", str(previous), "--overwrite", "--quiet"], capsys
    )
    assert code == 130
    assert err == f"xtramgrad grad: interrupted (SIGINT); {previous} was already complete\n"
    assert tree(previous) != before and "grad_V" in xr.open_zarr(previous)
    # the old store, renamed aside, was not deleted yet: the next write removes it
    (left,) = leftovers(previous)
    assert "xtramgrad-partial" in left
    assert store.clean_leftovers(previous)[0].startswith(f"removed {left}")
    assert leftovers(previous) == []


# --------------------------------------------------------------------------- defect 5


def _case_non_zarr_dir(tmp_path: Path, args: list[str]) -> list[str]:
    (tmp_path / "notzarr").mkdir()
    (tmp_path / "notzarr" / "data.csv").write_text("1,2")
    return ["grad", str(tmp_path / "notzarr"), *args[2:]]


USER_ERRORS = [
    pytest.param(
        lambda t, a: _case_non_zarr_dir(t, a), "is a directory but not a zarr store",
        id="input-dir-not-zarr",
    ),
    pytest.param(
        lambda t, a: (t.joinpath("table.csv").write_text("1,2"),
                      ["grad", str(t / "table.csv"), *a[2:]])[1],
        "neither netCDF nor a zarr store", id="input-file-not-netcdf",
    ),
    pytest.param(
        lambda t, a: (t.joinpath("broken.nc").write_bytes(b"\x89HDF\r\n\x1a\nbroken"),
                      ["grad", str(t / "broken.nc"), *a[2:]])[1],
        "cannot read input", id="input-netcdf-corrupt",
    ),
    pytest.param(
        lambda t, a: ["grad", str(t / "nothere.zarr"), *a[2:]], "does not exist",
        id="input-missing",
    ),
    pytest.param(
        lambda t, a: (t.joinpath("o.zarr").write_text("x"), a)[1], "exists and is a file",
        id="output-is-a-file",
    ),
    pytest.param(
        lambda t, a: (t.joinpath("f").write_text("x"),
                      [*a[:-1], str(t / "f" / "o.zarr")])[1],
        "which is a file, not a directory", id="output-under-a-file",
    ),
    pytest.param(
        lambda t, a: [*a[:-1], str(t / "no" / "o.zarr")], "does not exist; create it first",
        id="output-dir-missing",
    ),
    pytest.param(
        lambda t, a: [*a, "--method", "gradn", "--eps", "0.1"],
        "--method gradn takes no --eps", id="gradn-with-eps",
    ),
    pytest.param(
        lambda t, a: [*a, "--selection-angle", "1.5"],
        "--selection-angle 1.5: selection_angle=1.5; expected a value in [0.5, 1)",
        id="bad-angle",
    ),
    pytest.param(
        lambda t, a: [*a, "--selection", "labels"], "needs a 'neighbour_label' variable",
        id="labels-without-labels",
    ),
    pytest.param(lambda t, a: [*a, "-v", "W"], "no variable 'W'", id="unknown-variable"),
    pytest.param(
        lambda t, a: [*a, "--chunks", "0"], "--chunks 0: expected a positive", id="chunks-0"
    ),
    pytest.param(
        lambda t, a: [*a, "--scheduler", "tcp://127.0.0.1:9", "--timeout", "0.5"],
        "cannot reach the dask scheduler at --scheduler tcp://127.0.0.1:9", id="no-scheduler",
    ),
]


@pytest.mark.parametrize("make, match", USER_ERRORS)
def test_user_errors_are_one_line_before_anything_is_read(source, tmp_path, capsys, make, match):
    args = make(tmp_path, ["grad", str(source), "-v", "D", "-o", str(tmp_path / "o.zarr")])
    with no_compute():  # not one chunk is read
        code, err = run(args, capsys)
    assert code == 2
    one_error_line(err, match)


def test_read_only_output_directory(source, tmp_path, capsys, monkeypatch):
    # root ignores permission bits: simulate a directory the user cannot write in
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(
        store.os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode)
    )
    code, err = run(["grad", str(source), "-v", "D", "-o", str(locked / "o.zarr")], capsys)
    assert code == 2
    one_error_line(err, f"no permission to write in the directory {locked}")


@pytest.mark.parametrize(
    "module, extra_args, match",
    [
        pytest.param("zarr", [], "zarr stores needs zarr", id="zarr"),
        pytest.param(
            "distributed", ["--scheduler", "tcp://127.0.0.1:9"],
            "--scheduler (a dask cluster) needs distributed", id="distributed",
        ),
    ],
)
def test_missing_extra_names_it(source, tmp_path, capsys, monkeypatch, module, extra_args, match):
    monkeypatch.setitem(sys.modules, module, None)
    code, err = run(
        ["grad", str(source), "-v", "D", "-o", str(tmp_path / "o.zarr"), *extra_args], capsys
    )
    assert code == 2
    line = one_error_line(err, match)
    extra = "io" if module == "zarr" else "distributed"
    assert f'pip install -e ".[{extra}]"' in line


def test_argument_errors_are_one_line(source, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["grad", str(source), "-v", "D", "--eps", "0", "--selection-angle", "0.9",
              "-o", str(tmp_path / "o.zarr")])
    assert exc.value.code == 2
    one_error_line(capsys.readouterr().err, "not allowed with argument", "--help")


def test_netcdf_input(tessellation, tmp_path, capsys):
    nc = tmp_path / "map.nc"
    tessellation.to_netcdf(nc, engine="h5netcdf")
    out = tmp_path / "g.zarr"
    code, err = run(["grad", str(nc), "-v", "D", "--chunks", "500", "-o", str(out)], capsys)
    assert code == 0, err
    expected = tessellation.tram.grad("D")
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, expected.values, atol=1e-12)
    assert "xtramgrad plan" not in err and "xtramgrad sort" in err  # plan needs zarr


# --------------------------------------------------------------------------- guidance


def test_progress_bar_single_line_at_most_four_redraws_per_second():
    import io

    now = [0.0]
    out = io.StringIO()
    bar = cli.ProgressBar(1000, 1000.0, 10**6, stream=out, clock=lambda: now[0])
    for _ in range(1000):
        now[0] += 0.002  # 500 chunks per second for 2 s
        bar.advance(1.0)
    bar.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") <= 2 / 0.25 + 2
    final = text.split("\r")[-1].strip()
    assert final.startswith("100% [####################] 1000/1000 chunks | 500k bins/s")


def test_progress_on_stderr_and_quiet(source, tmp_path, capsys):
    code, err = run(["grad", str(source), "-v", "D", "-o", str(tmp_path / "a.zarr")], capsys)
    assert code == 0
    planning, bar_line = [line for line in err.split("\n") if "\r" in line]
    assert planning.startswith("\rplanning   0% [") and planning.rstrip().endswith(" s")
    assert bar_line.count("chunks") == bar_line.count("\r") >= 2
    assert bar_line.split("\r")[-1].startswith("100% [####################] 20/20 chunks")
    assert "left" in err and "bins/s" in err
    code, err = run(
        ["grad", str(source), "-v", "D", "-o", str(tmp_path / "b.zarr"), "--quiet"], capsys
    )
    assert code == 0 and err == ""


def test_hint_for_unsorted_bins_and_the_sort_it_suggests(tmp_path, capsys):
    rng = np.random.default_rng(5)
    ds = xtramgrad.voronoi(rng.random((6000, 2)))  # random order
    ds["D"] = ds.center.sel(space="x") ** 2
    raw = to_zarr(ds.chunk({"bin": 200}), tmp_path / "raw.zarr")
    code, err = run(["grad", str(raw), "-v", "D", "-o", str(tmp_path / "g1.zarr")], capsys)
    assert code == 0
    (hint,) = [line for line in err.splitlines() if line.startswith("hint:")]
    command = re.search(r"\): (xtramgrad sort .*) and run grad on ", hint)[1]
    assert command == f"xtramgrad sort {raw} -o {tmp_path / 'raw-sorted.zarr'}"
    code, err = run(shlex.split(command)[1:], capsys)
    assert code == 0, err
    assert "now has neighbours in" in err
    sorted_store = tmp_path / "raw-sorted.zarr"
    code, err = run(
        ["grad", str(sorted_store), "-v", "D", "-o", str(tmp_path / "g2.zarr")], capsys
    )
    assert code == 0
    assert "hint:" not in err and "planning" not in err  # sorted, and the plan came along
    got = xtramgrad.unsort(xr.open_zarr(tmp_path / "g2.zarr").grad_D.load())
    np.testing.assert_allclose(got.values, ds.tram.grad("D").values, rtol=1e-12, atol=1e-12)
    first = xr.open_zarr(tmp_path / "g1.zarr").grad_D.values
    np.testing.assert_allclose(first, ds.tram.grad("D").values, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("zarr_format", [3, 2], ids=["zarr-v3", "zarr-v2"])
def test_plan_subcommand_stores_the_plan_without_rewriting_data(
    tessellation, tmp_path, capsys, zarr_format
):
    src = to_zarr(tessellation.chunk({"bin": 200}), tmp_path / "in.zarr", zarr_format=zarr_format)
    meta = {"zarr.json", ".zattrs", ".zmetadata", ".zarray", ".zgroup"}
    data_before = {k: v for k, v in tree(src).items() if Path(k).name not in meta}
    code, err = run(["plan", str(src)], capsys)
    assert code == 0, err
    assert "stored the plan" in err and "data were not rewritten" in err
    assert {k: v for k, v in tree(src).items() if Path(k).name not in meta} == data_before
    attrs = xr.open_zarr(src).neighbours.attrs
    expected = xtramgrad.plan(tessellation, block=200).neighbours.attrs
    assert attrs["xtramgrad_plan_indices"] == expected["xtramgrad_plan_indices"]
    code, err = run(["grad", str(src), "-v", "D", "-o", str(tmp_path / "g.zarr")], capsys)
    assert code == 0 and "planning" not in err
    np.testing.assert_allclose(
        xr.open_zarr(tmp_path / "g.zarr").grad_D.values, tessellation.tram.grad("D").values,
        rtol=1e-12, atol=1e-12,
    )


def test_plan_of_a_netcdf_file_says_what_to_do(tessellation, tmp_path, capsys):
    nc = tmp_path / "map.nc"
    tessellation.to_netcdf(nc, engine="h5netcdf")
    before = tree(tmp_path)
    code, err = run(["plan", str(nc)], capsys)
    assert code == 2
    one_error_line(err, "cannot edit the netCDF file", f"xtramgrad sort {nc} -o")
    assert tree(tmp_path) == before


def test_methods_are_read_from_one_place(monkeypatch):
    table = dict(cli.methods())
    table["fancy"] = cli.MethodInfo("a future method", ())
    monkeypatch.setattr(cli, "methods", lambda: table)
    parser = cli.build_parser()
    args = parser.parse_args(["grad", "in.zarr", "-v", "D", "-o", "o.zarr", "--method", "fancy"])
    assert args.method == "fancy"


# --------------------------------------------------------------------------- SIGKILL


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> Path:
    ds = xtramgrad.grid((2500, 2000), chunks=262144)  # 5 * 10^6 bins
    ds["D"] = 2.0 * ds.center.sel(space="x") - 3.0 * ds.center.sel(space="y")
    return to_zarr(ds, tmp_path_factory.mktemp("big") / "big.zarr")


def complete_and_exact(out: Path) -> bool:
    """Every interior bin has the exact gradient (2, -3) of the linear field: a store with
    unwritten chunks (fill values) fails this."""
    g = xr.open_zarr(out).grad_D.values.reshape(2500, 2000, 2)[1:-1, 1:-1]
    return bool(np.allclose(g[..., 0], 2.0, atol=1e-9) and np.allclose(g[..., 1], -3.0, atol=1e-9))


@pytest.mark.slow
def test_sigkill_at_random_moments(big_store, tmp_path):
    rng = random.Random(20240607)
    out = tmp_path / "out.zarr"
    args = ["grad", str(big_store), "-v", "D", "-o", str(out), "--overwrite"]
    killed_while_writing = 0
    previous: dict[str, str] | None = None
    seen_leftovers: list[str] = []
    for attempt in range(6):
        if attempt == 2:  # from now on there is a previous complete result to protect
            proc = spawn(args)
            err = proc.communicate(timeout=120)[1]
            assert proc.returncode == 0, err
            assert complete_and_exact(out)
            previous = tree(out)
        proc = spawn(args)
        if attempt % 2:  # anywhere in the run, startup included
            time.sleep(rng.uniform(0.2, 3.0))
        else:  # while chunks are being written
            wait_for_partial(out, proc)
            time.sleep(rng.uniform(0.0, 1.2))
        proc.kill()
        err = proc.communicate(timeout=60)[1]
        if proc.returncode == 0:  # finished before the kill: a complete, exact result
            assert complete_and_exact(out)
            previous = tree(out)
            continue
        assert proc.returncode == -signal.SIGKILL
        assert (tree(out) if out.exists() else None) == previous
        for name in seen_leftovers:  # this run found the earlier ones and removed them
            if f"removed {name}" in err:
                assert not (tmp_path / name).exists()
        mine = [n for n in leftovers(out) if f"-{proc.pid}-" in n]
        killed_while_writing += bool(mine)
        assert all("xtramgrad-partial" in n for n in mine)
        seen_leftovers = leftovers(out)
    assert killed_while_writing >= 3
    # the next run reports and removes what the killed ones left, and completes
    proc = spawn(args)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, err
    for name in seen_leftovers:
        assert f"removed {name}" in err
    assert leftovers(out) == [] and complete_and_exact(out)

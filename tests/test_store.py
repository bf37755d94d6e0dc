"""Atomic zarr outputs (xtramgrad.io.store): complete or absent, never a lost file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xtramgrad
from xtramgrad.errors import MissingExtraError
from xtramgrad.io import store
from xtramgrad.io.store import OutputPathError, store_zarr

pytest.importorskip("zarr")
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*Zarr V3 specification.*", "ignore:Consolidated metadata.*"
)


def tree(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path``, by relative path."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def siblings(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path.parent) if "xtramgrad-" in n)


@pytest.fixture()
def result() -> xr.Dataset:
    ds = xtramgrad.grid((30, 20), spacing=0.1)
    ds["D"] = 3.0 * ds.center.sel(space="x") - ds.center.sel(space="y")
    out = ds.chunk({"bin": 100}).tram.grad("D").to_dataset()
    out["extra"] = ("bin", np.arange(600.0))  # an in-memory variable, written up front
    return out


def failing(ds: xr.Dataset, exc: BaseException, block: int = 3) -> xr.Dataset:
    """``ds`` with a variable whose chunk ``block`` raises ``exc`` when computed."""

    def boom(x: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][0] == block:
            raise exc
        return x

    bad = da.map_blocks(boom, da.zeros(600, chunks=100), dtype=float)
    return ds.assign(bad=("bin", bad))


def test_same_bytes_as_to_zarr(result, tmp_path):
    store_zarr(result, tmp_path / "a.zarr")
    result.to_zarr(tmp_path / "b.zarr")
    a, b = tree(tmp_path / "a.zarr"), tree(tmp_path / "b.zarr")
    assert a == b and "zarr.json" in a  # consolidated metadata included
    assert siblings(tmp_path / "a.zarr") == []


def test_existing_output_needs_overwrite_and_is_replaced_only_after_compute(result, tmp_path):
    out = tmp_path / "out.zarr"
    store_zarr(result, out)
    before = tree(out)
    with pytest.raises(OutputPathError, match=r"out.zarr exists; pass overwrite=True"):
        store_zarr(result * 2, out)
    write = store_zarr(result * 2, out, overwrite=True, compute=False)
    assert tree(out) == before  # building the graph deletes nothing
    assert len(siblings(out)) == 1 and "partial" in siblings(out)[0]
    assert write.compute() == str(out.resolve())
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, 2 * result.grad_D.values)
    assert siblings(out) == []


def test_in_place_rewrite_reads_everything_before_replacing(result, tmp_path):
    out = tmp_path / "out.zarr"
    store_zarr(result, out)
    back = xr.open_dataset(out, engine="zarr", chunks={})
    store_zarr((back * 10).drop_encoding(), out, overwrite=True)
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, 10 * result.grad_D.values)


@pytest.mark.parametrize(
    "exc, kind",
    [
        pytest.param(RuntimeError("disk on fire"), RuntimeError, id="error-in-task"),
        pytest.param(KeyboardInterrupt(), KeyboardInterrupt, id="interrupt-in-task"),
    ],
)
@pytest.mark.parametrize("existing", [True, False], ids=["previous", "absent"])
def test_failed_write_leaves_output_as_it_was(result, tmp_path, exc, kind, existing):
    out = tmp_path / "out.zarr"
    if existing:
        store_zarr(result, out)
    before = tree(out) if existing else None
    with pytest.raises(kind):
        store_zarr(failing(result, exc), out, overwrite=True)
    assert (tree(out) if out.exists() else None) == before
    assert siblings(out) == []


def test_lazy_failure_keeps_output_and_leftover_is_cleaned_at_exit(result, tmp_path):
    out = tmp_path / "out.zarr"
    store_zarr(result, out)
    before = tree(out)
    write = store_zarr(failing(result, RuntimeError("late")), out, overwrite=True, compute=False)
    with pytest.raises(RuntimeError, match="late"):
        dask.compute(write)
    assert tree(out) == before
    (left,) = siblings(out)
    notes = store.clean_leftovers(out)  # this process's own store, still referenced
    assert len(notes) == 1 and "still in progress" in notes[0]
    assert (tmp_path / left).exists()
    store._remove_pending()  # what the interpreter runs at exit
    assert siblings(out) == []


def test_non_zarr_directory_is_never_replaced(result, tmp_path):
    mydata = tmp_path / "mydata"
    (mydata / "sub").mkdir(parents=True)
    (mydata / "thesis.tex").write_text("chapter 1")
    (mydata / "sub" / "raw.csv").write_text("1,2,3")
    before = tree(mydata)
    with pytest.raises(OutputPathError, match=r"mydata is a directory that is not a zarr store"):
        store_zarr(result, mydata, overwrite=True)
    assert tree(mydata) == before
    # a zarr store with other files in it is refused too
    out = tmp_path / "out.zarr"
    store_zarr(result, out)
    (out / "notes.txt").write_text("keep me")
    (out / "figures").mkdir()
    with pytest.raises(OutputPathError, match=r"also holds other files \(figures/, notes.txt\)"):
        store_zarr(result, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"
    assert siblings(out) == []


def test_an_empty_directory_may_be_replaced(result, tmp_path):
    out = tmp_path / "out.zarr"
    out.mkdir()
    with pytest.raises(OutputPathError, match="exists; pass overwrite=True"):
        store_zarr(result, out)
    store_zarr(result, out, overwrite=True)
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, result.grad_D.values)


def test_zarr_v2_store_is_recognised_and_replaced(result, tmp_path):
    out = tmp_path / "v2.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result.to_zarr(out, zarr_format=2)
    assert store.zarr_format(out) == 2 and store.is_zarr_store(out)
    store_zarr(result * 3, out, overwrite=True)
    assert store.zarr_format(out) == 3
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, 3 * result.grad_D.values)


@pytest.mark.parametrize(
    "make, match",
    [
        pytest.param(lambda p: p.write_text("x"), r"exists and is a file", id="file"),
        pytest.param(lambda p: None, r"does not exist; create it first", id="no-parent"),
        pytest.param(lambda p: None, r"which is a file, not a directory", id="under-a-file"),
    ],
)
def test_bad_output_paths(result, tmp_path, make, match, request):
    case = request.node.callspec.id
    if case == "file":
        path = tmp_path / "out.zarr"
    elif case == "no-parent":
        path = tmp_path / "missing" / "out.zarr"
    else:
        (tmp_path / "afile").write_text("x")
        path = tmp_path / "afile" / "out.zarr"
    make(path)
    with pytest.raises(OutputPathError, match=match):
        store_zarr(result, path, overwrite=True)


def test_read_only_directory(result, tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(
        store.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode)
    )
    with pytest.raises(OutputPathError, match=r"no permission to write in the directory"):
        store_zarr(result, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_output_overlapping_an_input(tmp_path):
    data = tmp_path / "in.zarr"
    data.mkdir()
    for out, match in [
        (data, "is the input"),
        (data / "sub.zarr", "lies inside the input"),
        (tmp_path, "contains the input"),
    ]:
        with pytest.raises(OutputPathError, match=match):
            store.check_output(out, overwrite=True, inputs=[data])


def test_missing_zarr_names_the_extra(result, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(MissingExtraError, match=r"pip install -e \"\.\[io\]\""):
        store_zarr(result, tmp_path / "out.zarr")


def test_fallback_without_atomic_exchange(result, tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_rename2", lambda a, b, flags: False)
    out = tmp_path / "out.zarr"
    store_zarr(result, out)
    store_zarr(result * 2, out, overwrite=True)
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, 2 * result.grad_D.values)
    assert siblings(out) == []
    # the second rename fails: the previous store is put back
    before = tree(out)
    real = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(a, b)

    monkeypatch.setattr(store.os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        store_zarr(result * 5, out, overwrite=True)
    assert tree(out) == before
    assert siblings(out) == []


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_store(path: Path, value: float) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"a": ("x", np.full(4, value))}).to_zarr(path)
    return tree(path)


def test_leftovers_of_dead_and_live_processes(tmp_path):
    out = tmp_path / "out.zarr"
    host, dead = store._host(), dead_pid()
    partial = tmp_path / f".out.zarr.xtramgrad-partial-{host}-{dead}-0123abcd"
    fake_store(partial, 1.0)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        running = tmp_path / f".out.zarr.xtramgrad-partial-{host}-{live.pid}-89abcdef"
        fake_store(running, 2.0)
        remote = tmp_path / ".out.zarr.xtramgrad-partial-elsewhere-12-00000000"
        fake_store(remote, 3.0)
        unrelated = tmp_path / f".other.zarr.xtramgrad-partial-{host}-{dead}-0123abcd"
        fake_store(unrelated, 4.0)
        notes = store.clean_leftovers(out)
        assert len(notes) == 3
        assert any("removed" in n and f"process {dead}" in n for n in notes)
        assert any(f"still in progress (process {live.pid})" in n for n in notes)
        assert any("on host elsewhere" in n for n in notes)
        assert not partial.exists() and running.exists() and remote.exists()
        assert unrelated.exists()  # another output's leftover is not ours to judge
    finally:
        live.kill()
        live.wait()


def test_killed_between_the_two_renames_is_restored(tmp_path):
    out = tmp_path / "out.zarr"
    host, dead = store._host(), dead_pid()
    old = fake_store(tmp_path / f".out.zarr.xtramgrad-previous-{host}-{dead}-00000001", 1.0)
    fake_store(tmp_path / f".out.zarr.xtramgrad-partial-{host}-{dead}-00000002", 2.0)
    notes = store.clean_leftovers(out)
    assert any(n.startswith("restored") for n in notes)
    assert tree(out) == old
    assert siblings(out) == []
    # killed after the second rename: the new store is in place, the old one goes
    new = tree(out)
    fake_store(tmp_path / f".out.zarr.xtramgrad-previous-{host}-{dead}-00000003", 9.0)
    store.clean_leftovers(out)
    assert tree(out) == new and siblings(out) == []


def test_a_discarded_store_takes_no_more_chunks(result, tmp_path):
    pending = store.prepare_zarr(result, tmp_path / "out.zarr")
    key = next(iter(pending.sizes))
    pending.abort()
    assert not pending.temp.exists()
    with pytest.raises(OutputPathError, match="was discarded"):
        store._write_block(np.zeros((100, 2)), str(pending.temp), "grad_D",
                           (slice(0, 100), slice(0, 2)))
    assert not pending.temp.exists() and key[0].startswith("xtramgrad-write-")


def test_interrupt_during_the_swap_is_delivered_after_it(result, tmp_path, monkeypatch):
    out = tmp_path / "out.zarr"
    store_zarr(result, out)
    monkeypatch.setattr(store, "_fsync_dir", lambda path: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        store_zarr(result * 2, out, overwrite=True)
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, 2 * result.grad_D.values)
    (left,) = siblings(out)  # the previous store, not deleted yet; the next write does it
    assert store.clean_leftovers(out) == [
        f"removed {left}, a temporary store left next to out.zarr by an interrupted run "
        f"(process {os.getpid()})."
    ]
    assert siblings(out) == []


def test_signals_are_deferred_while_moving_stores():
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with store.deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append(True)
    assert reached == [True]


def test_on_a_distributed_client(result, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out.zarr"
    with distributed.Client(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ):
        store_zarr(result, out)
        with pytest.raises(RuntimeError, match="worker"):
            store_zarr(failing(result, RuntimeError("worker")), out, overwrite=True)
    np.testing.assert_allclose(xr.open_zarr(out).grad_D.values, result.grad_D.values)
    assert siblings(out) == []

"""Atomic writing of Datasets to zarr stores: an output is complete, or it is not there.

A gradient of a 10^8-bin map takes minutes to write; a run can be killed (SIGKILL, an
out-of-memory killer, a batch system's time limit), interrupted (Ctrl-C, SIGTERM) or fail
(an error raised inside a dask task, a lost scheduler, a full disk). Writing into the
output path directly leaves, in each of these cases, a store that opens as if it were
complete, with unwritten chunks read back as fill values. :func:`store_zarr` never does:

1. it checks the output path before anything is computed (:func:`check_output`): an
   existing store is replaced only with ``overwrite=True``, and only if it *is* a zarr
   store (a directory holding anything else is refused and left untouched);
2. it writes into a temporary sibling store in the same directory, named
   ``.OUT.xtramgrad-partial-<host>-<pid>-<random>``: metadata first (``Dataset.to_zarr``
   with ``compute=False``), then the chunks, one dask task per chunk, each task depending
   on that chunk only (dask orders such a graph chunk after chunk, with memory bounded by a
   few chunks per thread);
3. after the last chunk is written it moves the new store into place: ``rename`` when the
   output does not exist; when it does, Linux's atomic exchange of two paths
   (``renameat2(RENAME_EXCHANGE)``) swaps the old and the new store and the old one is then
   deleted. Where the exchange is not available (other systems, some network
   filesystems) the old store is renamed aside (``.OUT.xtramgrad-previous-...``), the new
   one renamed into place, and the old one deleted, restoring it if the second rename
   fails. SIGINT and SIGTERM are deferred during these few system calls.

So, whatever happens, the output path holds afterwards either what it held before (nothing,
or the previous complete store, byte for byte) or the new complete store. A failed or
interrupted write removes its temporary store; a killed process cannot, and leaves it under
its ``partial`` name, which nothing opens by mistake. The next write to the same output
(:func:`clean_leftovers`) removes the leftovers of processes that are gone (checked with
the pid and host in the name), restores an old store renamed aside by a process killed
between the two renames of the fallback, and reports leftovers of processes still running.

Examples
--------
>>> import os, tempfile, xarray as xr, xtramgrad
>>> from xtramgrad.io.store import store_zarr
>>> ds = xtramgrad.grid((20, 20), spacing=0.1)
>>> ds["D"] = ds.center.sel(space="x") ** 2
>>> g = ds.chunk({"bin": 100}).tram.grad("D").to_dataset()
>>> out = os.path.join(tempfile.mkdtemp(), "grad.zarr")
>>> store_zarr(g, out)
>>> xr.open_zarr(out).grad_D.shape
(400, 2)

A second write needs ``overwrite=True``; the lazy form returns one dask object whose
computation writes the chunks and then moves the store into place:

>>> store_zarr(g, out)
Traceback (most recent call last):
...
xtramgrad.io.store.OutputPathError: output ... exists; pass overwrite=True to replace it.
>>> write = store_zarr(g * 2, out, overwrite=True, compute=False)
>>> round(float(xr.open_zarr(out).grad_D[210, 0]), 9)  # still the previous result
2.0
>>> write.compute() == os.path.realpath(out)
True
>>> round(float(xr.open_zarr(out).grad_D[210, 0]), 9)
4.0
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import functools
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require

__all__ = [
    "OutputPathError",
    "PendingZarr",
    "check_output",
    "clean_leftovers",
    "find_leftovers",
    "is_zarr_store",
    "prepare_zarr",
    "store_zarr",
    "uniform_chunks",
    "zarr_format",
    "zarr_node_type",
]

PARTIAL = "xtramgrad-partial"
PREVIOUS = "xtramgrad-previous"
MARKER = ".xtramgrad-writing"
_WRITE_PREFIX = "xtramgrad-write-"
_COMMIT_PREFIX = "xtramgrad-commit-"
_META_FILES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")
_CHUNK_KEY = re.compile(r"^\d+(\.\d+)*$")
_LEFTOVER = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>xtramgrad-partial|xtramgrad-previous)"
    r"-(?P<host>.*)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})$"
)


class OutputPathError(ValueError):
    """An output path that cannot be written safely (exists, not a zarr store, overlaps
    the input, in a missing or read-only directory); raised before anything is computed."""


# --------------------------------------------------------------------------- recognising stores


def zarr_format(path: str | os.PathLike[str]) -> int | None:
    """The zarr format of the store (or node) at ``path``: 3, 2, or None if it is not one.

    Recognised by its metadata files: ``zarr.json`` (v3), ``.zgroup`` or ``.zarray`` (v2).

    Examples
    --------
    >>> import tempfile
    >>> zarr_format(tempfile.mkdtemp()) is None
    True
    """
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "zarr.json").is_file():
        return 3
    if (p / ".zgroup").is_file() or (p / ".zarray").is_file():
        return 2
    return None


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zarr store (v2 or v3) holding nothing but zarr nodes.

    A directory that merely contains a zarr metadata file next to other data (a thesis, a
    ``raw/`` folder) is not: replacing it would delete them.
    """
    return zarr_format(path) is not None and not _foreign_entries(Path(path))


def zarr_node_type(path: str | os.PathLike[str]) -> str | None:
    """``"group"`` or ``"array"`` for a zarr node at ``path`` (v2 or v3), else None."""
    p = Path(path)
    if (p / ".zarray").is_file():
        return "array"
    if (p / ".zgroup").is_file():
        return "group"
    try:
        meta = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    kind = meta.get("node_type") if isinstance(meta, dict) else None
    return kind if kind in ("group", "array") else None


def _foreign_entries(path: Path) -> list[str]:
    """Top-level entries of a zarr store that are not zarr metadata, nodes or chunks."""
    root_array = zarr_node_type(path) == "array"
    foreign = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        name = entry.name
        if name in _META_FILES:
            continue
        if entry.is_dir(follow_symlinks=False):
            if zarr_format(entry.path) is not None:
                continue  # a child group or array
            if root_array and (name == "c" or _CHUNK_KEY.match(name)):
                continue  # chunks of a root array (v3 'c/', v2 nested keys)
            foreign.append(name + "/")
        elif root_array and _CHUNK_KEY.match(name):
            continue
        else:
            foreign.append(name)
    return foreign


# --------------------------------------------------------------------------- checking paths


def _resolve(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(path))).resolve()


def check_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "overwrite=True",
) -> Path:
    """Refuse, before anything is read or computed, an output that cannot be written safely.

    Parameters
    ----------
    path : path-like
        The output zarr store.
    overwrite : bool
        Whether an existing zarr store at ``path`` may be replaced (after success).
    inputs : iterable of path-like
        Stores or files the computation reads: the output may not be one of them, lie
        inside one, or contain one (resolved paths are compared).
    option : str
        How the caller spells ``overwrite`` in messages (the CLI says ``--overwrite``).

    Returns
    -------
    pathlib.Path
        The resolved output path (symbolic links followed).

    Raises
    ------
    OutputPathError

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "thesis.tex"), "w").close()
    >>> check_output(d, overwrite=True)
    Traceback (most recent call last):
    ...
    xtramgrad.io.store.OutputPathError: output ... is a directory that is not a zarr store ...
    """
    shown = os.fspath(path)
    target = _resolve(path)
    for item in inputs:
        source = _resolve(item)
        if target == source:
            raise OutputPathError(
                f"output {shown} is the input {os.fspath(item)}: writing it would replace the "
                "data being read. Choose another output path."
            )
        if source in target.parents:
            raise OutputPathError(
                f"output {shown} lies inside the input {os.fspath(item)}: writing it would "
                "change the data being read. Choose an output path outside the input."
            )
        if target in source.parents:
            raise OutputPathError(
                f"output {shown} contains the input {os.fspath(item)}: replacing it would "
                "delete the data being read. Choose another output path."
            )
    parent = target.parent
    if not parent.exists():
        raise OutputPathError(
            f"the directory {parent} of output {shown} does not exist; create it first "
            f"(mkdir -p {parent}) or choose another output path."
        )
    if not parent.is_dir():
        raise OutputPathError(
            f"output {shown} lies under {parent}, which is a file, not a directory; choose "
            "an output path inside a directory."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"cannot create output {shown}: no permission to write in the directory "
            f"{parent}. Choose an output path in a writable directory."
        )
    if target.exists():
        if not target.is_dir():
            raise OutputPathError(
                f"output {shown} exists and is a file, not a zarr store (xtramgrad writes "
                "zarr stores, which are directories); remove it or choose another path."
            )
        if not overwrite:
            raise OutputPathError(f"output {shown} exists; pass {option} to replace it.")
        if zarr_format(target) is None and any(os.scandir(target)):  # empty: nothing to lose
            raise OutputPathError(
                f"output {shown} is a directory that is not a zarr store (no zarr.json, "
                ".zgroup nor .zarray in it); refusing to replace it, since it may hold other "
                "data. Choose another output path (or delete that directory yourself)."
            )
        foreign = _foreign_entries(target)
        if foreign:
            listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise OutputPathError(
                f"output {shown} is a zarr store that also holds other files ({listed}); "
                "refusing to replace it, since they would be deleted. Move them out or "
                "choose another output path."
            )
        if not os.access(target, os.W_OK | os.X_OK):
            raise OutputPathError(
                f"cannot replace output {shown}: no permission to write in it. Choose "
                "another output path."
            )
    return target


# --------------------------------------------------------------------------- leftovers


def _host() -> str:
    return socket.gethostname().replace(os.sep, "_") or "localhost"


def _sibling(target: Path, kind: str) -> Path:
    token = secrets.token_hex(4)
    return target.parent / f".{target.name}.{kind}-{_host()}-{os.getpid()}-{token}"


@dataclass(frozen=True)
class Leftover:
    """A temporary store left next to an output by a run that did not finish."""

    path: Path
    kind: str
    host: str
    pid: int


def find_leftovers(path: str | os.PathLike[str]) -> list[Leftover]:
    """The temporary stores next to the output ``path`` (partial or renamed-aside ones)."""
    target = _resolve(path)
    try:
        entries = os.listdir(target.parent)
    except OSError:
        return []
    found = []
    for name in sorted(entries):
        m = _LEFTOVER.match(name)
        if m and m["name"] == target.name:
            found.append(
                Leftover(target.parent / name, m["kind"], m["host"], int(m["pid"]))
            )
    return found


# temporary stores prepared by this process and not yet committed nor aborted
_PENDING: dict[str, int] = {}
_PENDING_LOCK = threading.Lock()


def _alive(host: str, pid: int) -> bool | None:
    """Whether the process that made a leftover still runs (None: another host)."""
    if host != _host():
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. a pid out of range
        return False
    return True


def clean_leftovers(path: str | os.PathLike[str]) -> list[str]:
    """Remove or report the temporary stores that interrupted runs left next to ``path``.

    * a partial store of a process that is gone: removed;
    * an old store renamed aside by a process killed while swapping the stores, with
      ``path`` absent: renamed back to ``path`` (the state before that run); with ``path``
      present (the new store was already in place): removed;
    * a store of a process that still runs, of this process while it is in use, or of
      another host: left alone, and reported.

    Returns
    -------
    list of str
        One sentence per leftover found, saying what was done.
    """
    target = _resolve(path)
    notes = []
    for lo in find_leftovers(target):
        alive = _alive(lo.host, lo.pid)
        if lo.pid == os.getpid() and lo.host == _host():
            with _PENDING_LOCK:
                alive = str(lo.path) in _PENDING
        if alive is None:
            notes.append(
                f"{lo.path} was left by process {lo.pid} on host {lo.host}, which cannot be "
                "checked from here; remove it yourself once that run is over."
            )
            continue
        if alive:
            notes.append(
                f"{lo.path} belongs to a run still in progress (process {lo.pid}); left alone."
            )
            continue
        try:
            if lo.kind == PREVIOUS and not os.path.lexists(target):
                os.rename(lo.path, target)
                notes.append(
                    f"restored {target} from {lo.path.name}: the run of process {lo.pid} "
                    "was killed while replacing it."
                )
            else:
                _rmtree(lo.path)
                notes.append(
                    f"removed {lo.path.name}, a temporary store left next to {target.name} "
                    f"by an interrupted run (process {lo.pid})."
                )
        except OSError as err:
            notes.append(f"could not clean up {lo.path}: {err}; remove it yourself.")
    return notes


def _rmtree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree, tolerating concurrent removal and late writers."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05)  # pragma: no cover - a writer recreated part of it
    shutil.rmtree(path, ignore_errors=True)  # pragma: no cover


@atexit.register
def _remove_pending() -> None:  # pragma: no cover - runs at interpreter exit
    with _PENDING_LOCK:
        mine = [p for p, pid in _PENDING.items() if pid == os.getpid()]
        _PENDING.clear()
    for p in mine:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(p, MARKER))
        _rmtree(p)


# --------------------------------------------------------------------------- moving into place

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the call or flag is unsupported."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where the system cannot."""
    return _rename2(a, b, _RENAME_EXCHANGE)


def _rename_new(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, which must not exist."""
    try:
        if _rename2(src, dst, _RENAME_NOREPLACE):
            return
    except FileExistsError as err:
        raise OutputPathError(
            f"output {dst} appeared while it was being written (another process?); the new "
            "result was discarded."
        ) from err
    os.rename(src, dst)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver them.

    A no-op outside the main thread (where Python cannot set signal handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, hold)
        except (ValueError, OSError):  # pragma: no cover
            pass
    try:
        yield
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


@dataclass
class _Swap:
    """Moves a finished temporary store into place (picklable: paths and flags only)."""

    target: Path
    temp: Path
    overwrite: bool
    option: str
    shown: str
    committed: bool = False

    def commit(self) -> None:
        old: Path | None = None
        with deferred_signals():
            check_output(self.target, overwrite=self.overwrite, option=self.option)
            if not (self.temp / MARKER).is_file():
                raise OutputPathError(
                    f"the temporary store {self.temp} of output {self.shown} is gone or was "
                    "discarded; nothing was written to the output."
                )
            os.remove(self.temp / MARKER)
            if os.path.lexists(self.target):
                if _exchange(self.temp, self.target):
                    old = self.temp  # now holds the previous store
                else:
                    old = _sibling(self.target, PREVIOUS)
                    os.rename(self.target, old)
                    try:
                        os.rename(self.temp, self.target)
                    except BaseException:
                        os.rename(old, self.target)
                        raise
            else:
                _rename_new(self.temp, self.target)
            _fsync_dir(self.target.parent)
            self.committed = True
            _forget(self.temp)
        # the new store is in place; deleting the old one may take a while and can be
        # interrupted: what is left of it is a leftover that the next write removes
        if old is not None:
            _rmtree(old)

    def abort(self) -> None:
        if self.committed:
            return
        with deferred_signals():
            with contextlib.suppress(OSError):
                os.remove(self.temp / MARKER)  # tasks still running stop writing
            _rmtree(self.temp)
            _forget(self.temp)


def _forget(temp: Path) -> None:
    with _PENDING_LOCK:
        _PENDING.pop(str(temp), None)


# --------------------------------------------------------------------------- writing chunks


@functools.lru_cache(maxsize=256)
def _open_array(temp: str, name: str) -> Any:
    import zarr

    return zarr.open_array(store=temp, path=name, mode="r+")


def _write_block(
    block: np.ndarray, temp: str, name: str, region: tuple[slice, ...]
) -> np.ndarray:
    """Write one chunk into the temporary store; refuse once the store was discarded."""
    marker = os.path.join(temp, MARKER)
    if not os.path.exists(marker):
        raise OutputPathError(
            f"the temporary store {temp} was discarded (its run failed or was interrupted); "
            f"chunk {region} of {name!r} not written."
        )
    data = np.asarray(block)
    _open_array(temp, name)[region] = data
    if not os.path.exists(marker):  # discarded while this chunk was written: clean behind
        _rmtree(temp)
    return np.full((1,) * data.ndim, data.size, dtype=np.int64)


def _commit_task(done: Any, swap: _Swap) -> str:
    swap.commit()
    return str(swap.target)


def uniform_chunks(ds: Any) -> Any:
    """Zarr needs regular chunks: rechunk ``bin`` to its largest chunk where needed.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid(10).chunk({"bin": (3, 5, 2)})
    >>> uniform_chunks(ds).chunksizes["bin"]
    (5, 5)
    """
    sizes: dict[Hashable, int] = {}
    for var in ds.variables.values():
        for dim, c in zip(var.dims, var.chunks or (), strict=False):
            if len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]):
                sizes[dim] = max(sizes.get(dim, 0), max(c))
    return ds.chunk(sizes) if sizes else ds


def _aligned(src: Any, zchunks: tuple[int, ...]) -> Any:
    """``src`` rechunked, if needed, so that each dask chunk covers whole zarr chunks."""
    ok = all(
        all(b % z == 0 for b in np.cumsum(c)[:-1])
        for c, z in zip(src.chunks, zchunks, strict=True)
    )
    return src if ok else src.rechunk(zchunks)


@dataclass
class PendingZarr:
    """A zarr store being written: metadata in place, chunks to write, then a commit.

    Made by :func:`prepare_zarr`. Compute :attr:`writes` (one dask array per dask-backed
    variable; each block's task writes one chunk and returns its number of elements), then
    call :meth:`commit`; on any failure or interruption call :meth:`abort`. :meth:`compute`
    does all three; :meth:`to_delayed` gives the lazy form.
    """

    path: Path
    temp: Path
    writes: list[Any]
    sizes: dict[Any, int] = field(default_factory=dict)
    _swap: _Swap | None = None

    @property
    def n_chunks(self) -> int:
        """Number of chunk-writing tasks."""
        return len(self.sizes)

    @property
    def committed(self) -> bool:
        """Whether the new store is in place at :attr:`path`."""
        return self._swap is not None and self._swap.committed

    def commit(self) -> None:
        """Move the finished store into place (after every chunk was written)."""
        assert self._swap is not None
        try:
            self._swap.commit()
        except BaseException:
            self._swap.abort()
            raise

    def abort(self) -> None:
        """Discard the temporary store; the output path is left as it was (a no-op once
        committed)."""
        assert self._swap is not None
        self._swap.abort()

    def compute(self, **kwargs: Any) -> None:
        """Write every chunk (``dask.compute``), then commit; abort on any failure."""
        import dask

        try:
            with _local_pool(self.writes) as pool:
                dask.compute(*self.writes, **pool, **kwargs)
            self.commit()
        except BaseException:
            self.abort()
            raise

    def to_delayed(self) -> Any:
        """One dask object whose computation writes every chunk, then commits."""
        from dask.base import tokenize
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        assert self._swap is not None
        name = _COMMIT_PREFIX + tokenize(str(self.temp), [w.name for w in self.writes])
        keys = list(self.sizes)
        graph = HighLevelGraph.from_collections(
            name, {name: (_commit_task, keys, self._swap)}, dependencies=self.writes
        )
        return Delayed(name, graph)


@contextlib.contextmanager
def _local_pool(collections: list[Any]) -> Iterator[dict[str, Any]]:
    """A thread pool of our own for dask's threaded scheduler, so that a failure or an
    interrupt can wait for the running chunks before the temporary store is removed."""
    import dask.threaded
    from dask.base import get_scheduler

    if not collections or get_scheduler(collections=collections) is not dask.threaded.get:
        yield {}
        return
    from concurrent.futures import ThreadPoolExecutor

    import dask

    workers = dask.config.get("num_workers", None) or dask.threaded.CPU_COUNT
    # dask's own pool class carries contextvars (dask.config) into the tasks
    executor = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
    pool = executor(int(workers))
    try:
        yield {"pool": pool}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def prepare_zarr(
    result: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "overwrite=True",
    notify: Callable[[str], None] | None = None,
) -> PendingZarr:
    """Start an atomic write: check ``path``, write the metadata into a temporary sibling.

    Nothing at ``path`` changes until :meth:`PendingZarr.commit`. Numpy-backed variables
    are written at once with the metadata; dask-backed ones by :attr:`PendingZarr.writes`.

    Parameters
    ----------
    result : xarray.Dataset
    path : path-like
        The output store.
    overwrite, inputs, option
        See :func:`check_output`.
    notify : callable, optional
        Receives one sentence per leftover of an earlier run found next to ``path``
        (:func:`clean_leftovers`); default: a :class:`RuntimeWarning`.

    Returns
    -------
    PendingZarr
    """
    require("zarr", "io", "writing zarr stores")
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    shown = os.fspath(path)
    target = check_output(path, overwrite=overwrite, inputs=inputs, option=option)
    for note in clean_leftovers(target):
        (notify or _warn)(note)
    result = uniform_chunks(result)
    temp = _sibling(target, PARTIAL)
    with _PENDING_LOCK:
        _PENDING[str(temp)] = os.getpid()
    swap = _Swap(target, temp, overwrite, option, shown)
    try:
        result.to_zarr(temp, mode="w-", compute=False)
        (temp / MARKER).write_text(f"{os.getpid()}\n")
        writes: list[Any] = []
        sizes: dict[Any, int] = {}
        for name, var in result.variables.items():
            if var.chunks is None:
                continue
            zchunks = tuple(int(c) for c in _open_array(str(temp), str(name)).chunks)
            src = _aligned(var.data, zchunks)
            wname = _WRITE_PREFIX + tokenize(src.name, str(temp), str(name))
            bounds = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in src.chunks]
            layer: dict[Any, Any] = {}
            for idx in np.ndindex(*src.numblocks):
                region = tuple(
                    slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, idx, strict=True)
                )
                key = (wname, *idx)
                layer[key] = (_write_block, (src.name, *idx), str(temp), str(name), region)
                sizes[key] = math.prod(r.stop - r.start for r in region)
            graph = HighLevelGraph.from_collections(wname, layer, dependencies=[src])
            writes.append(
                da.Array(
                    graph, wname, chunks=tuple((1,) * n for n in src.numblocks),
                    dtype=np.int64, meta=np.empty((0,) * src.ndim, dtype=np.int64),
                )
            )
    except BaseException:
        swap.abort()
        raise
    return PendingZarr(target, temp, writes, sizes, swap)


def store_zarr(
    result: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    compute: bool = True,
) -> Any:
    """Write a Dataset to a zarr store atomically: complete, or not there at all.

    The Dataset is written into a temporary sibling of ``path`` (metadata with
    ``Dataset.to_zarr(compute=False)``, then one dask task per chunk, which dask schedules
    chunk after chunk: memory stays bounded by a few chunks per thread) and moved into
    place after the last chunk; see :mod:`xtramgrad.io.store`. An interrupted or failed
    write leaves ``path`` as it was and removes the temporary store. Consolidated metadata
    as ``to_zarr`` writes them by default.

    Parameters
    ----------
    result : xarray.Dataset
        Dask-backed or in memory.
    path : path-like
        The output store.
    overwrite : bool
        Replace an existing zarr store at ``path`` (only once the new one is complete). A
        directory that is not a zarr store is never replaced.
    compute : bool
        True (default): write now. False: return one dask object (a
        :class:`dask.delayed.Delayed`) whose computation writes the chunks and then moves
        the store into place, returning the resolved output path; the temporary store
        already holds the metadata. If that computation fails, its temporary store is
        removed when the process exits, or by the next write to ``path`` after that.

    Returns
    -------
    None or dask.delayed.Delayed

    Raises
    ------
    OutputPathError
        Before anything is computed: ``path`` exists (without ``overwrite``), is not a zarr
        store, is a file, or lies in a missing or read-only directory.
    """
    pending = prepare_zarr(result, path, overwrite=overwrite)
    if not compute:
        return pending.to_delayed()
    pending.compute()
    return None
